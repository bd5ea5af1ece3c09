"""Turn raw Project Gutenberg files into clean book text, and the cleaned books into one corpus.

Gutenberg files are not uniform: 30 years of headers ("SMALL PRINT" etexts, ``*** START OF THE
PROJECT GUTENBERG EBOOK`` and ``*** START OF THIS ...`` markers, markers without spaces, markers
wrapped over two lines, indented END lines), three encodings and two line-ending conventions. The
cleaner therefore works on structure, not on a list of exact strings:

1. the body starts after the START marker (or, in 1990s etexts without one, after the end of the
   SMALL PRINT licence), then leading credit paragraphs ("Produced by", "E-text prepared by",
   "Note: Project Gutenberg also has an HTML version") are dropped;
2. the body ends before the first footer line found after it: the END marker, an
   "End of (the) Project Gutenberg ..." line, the full licence or a SMALL PRINT block.

Only the lines between are kept, unchanged, so the body stays one contiguous slice of the
original file. Nothing depends on the book's language: the boilerplate is English in every
Gutenberg file, whatever the book is written in. A file with none of these markers is kept whole,
and the result says so (``markers_found=False``) so the caller can warn rather than drop it.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

# --- decoding -------------------------------------------------------------------------------

_UTF8_BOM = b"\xef\xbb\xbf"
_UTF16_BOMS = (b"\xff\xfe", b"\xfe\xff")
# Bytes 0x80-0x9F are C1 control characters in Latin-1 and never occur in prose; in a file that
# is not UTF-8 they are Windows-1252 punctuation (curly quotes, dashes) unless cp1252 leaves them
# undefined.
_C1_BYTES = re.compile(rb"[\x80-\x9f]")
_CP1252_UNDEFINED = frozenset(b"\x81\x8d\x8f\x90\x9d")


def decode_gutenberg(raw: bytes) -> str:
    """Decode a Gutenberg text file and normalise line endings to LF.

    Gutenberg ships UTF-8 (``-0.txt``, often with a BOM), ISO-8859-1 (``-8.txt``) and ASCII. UTF-8
    is tried strictly first because a Latin-1 file almost never decodes as UTF-8 by accident; a
    file that is not UTF-8 is Latin-1, or Windows-1252 when it holds bytes only cp1252 gives a
    printable meaning to.
    """
    if raw.startswith(_UTF16_BOMS):
        text = raw.decode("utf-16")
    else:
        if raw.startswith(_UTF8_BOM):
            raw = raw[len(_UTF8_BOM) :]
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError:
            c1 = {m.group()[0] for m in _C1_BYTES.finditer(raw)}
            encoding = "cp1252" if c1 and not (c1 & _CP1252_UNDEFINED) else "latin-1"
            text = raw.decode(encoding)
    text = text.lstrip("\ufeff")
    return text.replace("\r\n", "\n").replace("\r", "\n")


def split_lines(text: str) -> list[str]:
    """Split on LF only: ``str.splitlines`` also splits on form feeds, NEL (0x85 in Latin-1) and
    other characters that are ordinary content in Gutenberg files, which would shift line numbers."""
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    return lines


# --- boundary patterns ----------------------------------------------------------------------

_PG = r"PRO[JY]E[CK]T\s*GUTENBERG"
# "*** START OF THE PROJECT GUTENBERG EBOOK X ***", "***START OF THE ...", "*** START OF THIS ...",
# "*** START OF THE COPYRIGHTED PROJECT GUTENBERG ...", optionally indented.
START_MARKER = re.compile(
    rf"^\s*\*+\s*START\s+OF\s+(?:THE|THIS)\s+(?:COPYRIGHTED\s+)?{_PG}", re.IGNORECASE
)
END_MARKER = re.compile(
    rf"^\s*\*+\s*END\s+OF\s+(?:THE|THIS)\s+(?:COPYRIGHTED\s+)?{_PG}", re.IGNORECASE
)
# The last line of the 1990s-2000s licence: "*END*THE SMALL PRINT! FOR PUBLIC DOMAIN ETEXTS*Ver..."
# and "*END THE SMALL PRINT! ...".
SMALL_PRINT_END = re.compile(r"^\s*\*+\s*END\s*\**\s*THE\s+SMALL\s+PRINT", re.IGNORECASE)
SMALL_PRINT_START = re.compile(
    r"^\s*\*+\s*START\s*\**\s*THE\s+SMALL\s+PRINT|^\s*\*+\s*SMALL\s+PRINT!", re.IGNORECASE
)
# Lines that open the footer when no END marker closes the body (or before it).
_FOOTER = re.compile(
    rf"""^\s*(?:
        END\s+OF\s+(?:THE\s+|THIS\s+)?{_PG}          # End of (the) Project Gutenberg('s) ...
      | ENDE\s+DIESES\s+{_PG}                        # German
      | FIN\s+(?:DE(?:L)?\s+)?{_PG}                  # French / Spanish
      | \*+\s*START:?\s+FULL\s+LICEN[CS]E            # *** START: FULL LICENSE ***
      | START\s+OF\s+THE\s+{_PG}\s+LICEN[CS]E        # new-style licence heading
    )""",
    re.IGNORECASE | re.VERBOSE,
)
# First line of a paragraph that credits the transcribers rather than belonging to the book.
_CREDIT = re.compile(
    r"""^\s*(?:
        (?:this\s+)?(?:e-?text|e-?book|etext|ebook|text|file)\b.{0,60}?
            \b(?:produced|prepared|transcribed|scanned|created|proofread|digiti[sz]ed)\b
      | (?:produced|prepared|transcribed|scanned|digiti[sz]ed|proofread)\s+(?:from\b.*?\s)?by\b
      | note:.*project\s*gutenberg
      | project\s*gutenberg\s+also\s+has
      | special\s+thanks\b
    )""",
    re.IGNORECASE | re.VERBOSE | re.DOTALL,
)
# A paragraph made only of links ("http://www.pgdp.net" split from the credit above it).
_URL_ONLY = re.compile(r"^\s*[(<\[]?(?:https?://|www\.)\S*[)>\]]?\s*$", re.IGNORECASE)
# Credits can only lead the body: this many paragraphs at most are examined for them.
_MAX_CREDIT_PARAGRAPHS = 4


# Lines that only Gutenberg's own boilerplate contains: a clean corpus has none of them. Kept
# narrow on purpose (books do say "licence" or "small printing error"), so a hit is a real leak.
_BOILERPLATE_LINES = (
    START_MARKER,
    END_MARKER,
    SMALL_PRINT_START,
    SMALL_PRINT_END,
    _FOOTER,
    re.compile(rf"FULL\s+{_PG}\s+LICEN[CS]E", re.IGNORECASE),
    re.compile(rf"{_PG}\s*(?:-tm\b|\u2122)", re.IGNORECASE),
    re.compile(rf"{_PG}\s+Literary\s+Archive\s+Foundation", re.IGNORECASE),
    re.compile(r"This\s+file\s+should\s+be\s+named\s+\S+\.(?:txt|zip)", re.IGNORECASE),
)


def find_boilerplate_lines(text: str) -> list[str]:
    """Lines of ``text`` that are Gutenberg markers, licence or footer: the corpus check's test."""
    return [
        line
        for line in text.split("\n")
        if any(pattern.search(line) for pattern in _BOILERPLATE_LINES)
    ]


@dataclass(frozen=True)
class CleanedBook:
    """A book's body. Line numbers are 1-based, in the decoded original (LF-split)."""

    text: str  # the body, LF line endings, stripped of leading/trailing blank lines
    markers_found: bool  # False: no recognisable boilerplate, kept whole (caller warns)
    body_first_line: int
    body_last_line: int
    warnings: tuple[str, ...] = ()  # partial boilerplate (e.g. an END marker but no START)


def _find_start(lines: list[str]) -> int | None:
    """Index of the first body candidate line after the START marker (None if there is none)."""
    for i, line in enumerate(lines):
        if START_MARKER.match(line):
            return _skip_wrapped_marker(lines, i) + 1
    return None


def _skip_wrapped_marker(lines: list[str], i: int) -> int:
    """Index of the last line of the marker starting at ``i``.

    A long title wraps the marker over two lines ("...ON THE" / "COLUMBIA***"); the marker ends at
    the first following non-blank line that ends in an asterisk, looked for in the next two lines
    only, so an unterminated marker never swallows the body.
    """
    if lines[i].rstrip().endswith("*"):
        return i
    for j in range(i + 1, min(i + 3, len(lines))):
        stripped = lines[j].strip()
        if not stripped:
            break
        if stripped.endswith("*"):
            return j
    return i


def _find_small_print_end(lines: list[str]) -> int | None:
    """Line after the end of a SMALL PRINT licence that heads the file (1990s etexts).

    A SMALL PRINT that comes after an END marker or an "End of ... Project Gutenberg" line is
    footer, not header (2002 files put it there), so the search stops at the first of those.
    """
    for i, line in enumerate(lines):
        if SMALL_PRINT_END.match(line):
            return i + 1
        if END_MARKER.match(line) or _FOOTER.match(line):
            return None
    return None


def _find_end(lines: list[str], start: int) -> tuple[int | None, bool]:
    """(index of the first footer line at or after ``start``, whether it is an END marker)."""
    for i in range(start, len(lines)):
        line = lines[i]
        if END_MARKER.match(line):
            return i, True
        if _FOOTER.match(line) or SMALL_PRINT_START.match(line):
            return i, False
    return None, False


def _paragraphs(lines: list[str], start: int, stop: int) -> list[tuple[int, int]]:
    """(first, last+1) index pairs of runs of non-blank lines in ``lines[start:stop]``."""
    spans: list[tuple[int, int]] = []
    i = start
    while i < stop:
        if not lines[i].strip():
            i += 1
            continue
        j = i
        while j < stop and lines[j].strip():
            j += 1
        spans.append((i, j))
        i = j
    return spans


def _is_credit(paragraph: list[str]) -> bool:
    if all(_URL_ONLY.match(line) for line in paragraph):
        return True
    return bool(_CREDIT.match(" ".join(line.strip() for line in paragraph)))


def _drop_leading_credits(lines: list[str], start: int, stop: int) -> int:
    for first, last in _paragraphs(lines, start, stop)[:_MAX_CREDIT_PARAGRAPHS]:
        if not _is_credit(lines[first:last]):
            return first
        start = last
    return start


def _trim_blank(lines: list[str], start: int, stop: int) -> tuple[int, int]:
    while start < stop and not lines[start].strip():
        start += 1
    while stop > start and not lines[stop - 1].strip():
        stop -= 1
    return start, stop


def clean_text(text: str) -> CleanedBook:
    """Keep the body of a decoded Gutenberg text, drop the header, credits, footer and licence."""
    lines = split_lines(text.replace("\r\n", "\n").replace("\r", "\n"))
    warnings: list[str] = []
    start = _find_start(lines)
    if start is None:
        start = _find_small_print_end(lines)
    start_found = start is not None
    start = start or 0
    stop, end_marker = _find_end(lines, start)
    end_found = stop is not None
    stop = len(lines) if stop is None else stop

    if start_found:
        start = _drop_leading_credits(lines, start, stop)
    elif end_found:
        warnings.append("no START marker or SMALL PRINT header: kept from the first line")
    if start_found and not end_found:
        warnings.append("no END marker or footer: kept to the last line")
    if start_found and end_found and not end_marker and not any(
        END_MARKER.match(line) for line in lines
    ):
        warnings.append("no END marker: body ends at the first footer line")

    first, last = _trim_blank(lines, start, stop)
    markers_found = start_found or end_found
    if first == last and markers_found:
        # Markers with nothing between them: better to keep everything and say so than to emit
        # an empty book or guess.
        warnings.append("markers enclose no text: kept whole")
        first, last = _trim_blank(lines, 0, len(lines))
        markers_found = False
    if not markers_found:
        warnings.append("no Project Gutenberg markers recognised: kept whole")
    return CleanedBook(
        text="\n".join(lines[first:last]),
        markers_found=markers_found,
        body_first_line=first + 1,
        body_last_line=last,
        warnings=tuple(warnings),
    )


def clean_book(raw: bytes) -> CleanedBook:
    """Decode raw bytes as served and clean them."""
    return clean_text(decode_gutenberg(raw))


# --- corpus ----------------------------------------------------------------------------------


class CorpusError(RuntimeError):
    """The raw books on disk do not form a usable selection (missing, altered or empty)."""


@dataclass(frozen=True)
class CorpusBook:
    book_id: int
    start: int  # byte offsets of this book's text in the UTF-8 corpus file (end exclusive)
    end: int
    lines: int
    markers_found: bool
    warnings: tuple[str, ...] = ()  # what the cleaner was unsure of, shown per book in metadata


@dataclass(frozen=True)
class CorpusReport:
    path: Path
    index_path: Path
    books: tuple[CorpusBook, ...]
    total_bytes: int
    unmarked: tuple[int, ...]  # ids kept whole for lack of markers
    seconds: float


SELECTION_FILE = "books.json"
SEPARATOR = b"\n\n"  # a blank line between books


def read_selection(raw_dir: Path) -> list[dict]:
    """The ordered selection ``download_books`` wrote; the corpus contains exactly these books."""
    path = raw_dir / SELECTION_FILE
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise CorpusError(
            f"{path} not found: materialize raw_books first (it writes the book selection)."
        ) from None
    except json.JSONDecodeError as exc:
        raise CorpusError(f"{path} is not valid JSON ({exc}): re-run raw_books.") from None
    books = data.get("books") if isinstance(data, dict) else None
    if not isinstance(books, list) or not books:
        raise CorpusError(f"{path} lists no books: check the book list and re-run raw_books.")
    return books


def _read_raw(raw_dir: Path, entry: dict) -> tuple[int, bytes]:
    book_id = int(entry["id"])
    path = raw_dir / f"{book_id}.txt"
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise CorpusError(f"book {book_id}: {path} is missing: re-run raw_books.") from None
    expected = entry.get("sha256")
    if expected and hashlib.sha256(raw).hexdigest() != expected:
        raise CorpusError(
            f"book {book_id}: {path} does not match the hash raw_books recorded: "
            "re-run raw_books (it re-downloads altered files)."
        )
    return book_id, raw


def atomic_write(path: Path, write: Callable[[object], None], mode: str = "wb") -> None:
    """Write through a temporary file in the same folder, then rename: readers never see half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, mode, **({} if "b" in mode else {"encoding": "utf-8"})) as handle:
            write(handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def build_corpus(
    raw_dir: Path,
    corpus_path: Path,
    index_path: Path,
    progress: Callable[[int, int, int], None] | None = None,
) -> CorpusReport:
    """Clean every selected raw book and concatenate them, in list order, into one UTF-8 file.

    The index records each book's byte span so later stages can respect book boundaries (no
    training block needs to straddle two books) without re-cleaning anything.
    """
    began = time.perf_counter()
    selection = read_selection(raw_dir)
    books: list[CorpusBook] = []
    unmarked: list[int] = []
    offset = 0

    def write(handle) -> None:
        nonlocal offset
        for n, entry in enumerate(selection, start=1):
            book_id, raw = _read_raw(raw_dir, entry)
            cleaned = clean_book(raw)
            data = cleaned.text.encode("utf-8")
            if not data.strip():
                raise CorpusError(
                    f"book {book_id}: {raw_dir / f'{book_id}.txt'} holds no text: "
                    "remove it from the book list or re-download it with force_refresh."
                )
            if books:
                handle.write(SEPARATOR)
                offset += len(SEPARATOR)
            handle.write(data)
            books.append(
                CorpusBook(
                    book_id=book_id,
                    start=offset,
                    end=offset + len(data),
                    lines=cleaned.text.count("\n") + 1,
                    markers_found=cleaned.markers_found,
                    warnings=cleaned.warnings,
                )
            )
            offset += len(data)
            if not cleaned.markers_found:
                unmarked.append(book_id)
            if progress is not None:
                progress(n, len(selection), book_id)
        handle.write(b"\n")
        offset += 1

    atomic_write(corpus_path, write)
    index = {
        "corpus": corpus_path.name,
        "total_bytes": offset,
        "books": [
            {
                "id": b.book_id,
                "start": b.start,
                "end": b.end,
                "lines": b.lines,
                "markers_found": b.markers_found,
            }
            for b in books
        ],
    }
    atomic_write(
        index_path, lambda h: h.write(json.dumps(index, indent=1) + "\n"), mode="w"
    )
    return CorpusReport(
        path=corpus_path,
        index_path=index_path,
        books=tuple(books),
        total_bytes=offset,
        unmarked=tuple(unmarked),
        seconds=time.perf_counter() - began,
    )
