"""Turn a raw Project Gutenberg file into the book's own text: header, licence, credits and footer gone.

Thirty years of headers, three encodings and two line-ending conventions differ in wording, so the
cleaner works on structure (after the START marker or the SMALL PRINT licence, before the first
footer line) and keeps the body as one unchanged slice. A file without markers is kept whole, and
the result says so.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

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


# A word every pattern above requires: only a line holding one can be boilerplate. Found with
# str.find in the lowercased text, so a 300 MB corpus is checked in seconds rather than by nine
# searches of each of its millions of lines. Three letters match a word's letter when case is
# ignored (as the patterns ignore it) yet lowercase to something else; a text holding one is
# scanned by a regular expression ignoring case instead (slower, the same lines).
_BOILERPLATE_WORDS = ("gutenberg", "small", "licen", "named")
_BOILERPLATE_WORDS_ANY_CASE = re.compile("|".join(_BOILERPLATE_WORDS), re.IGNORECASE)
_FOLD_APART = ("\u0130", "\u0131", "\u017f")  # İ, ı, ſ


def _boilerplate_words(text: str) -> list[tuple[int, int]]:
    """(start, end) of every boilerplate word in ``text``, ignoring case, in text order."""
    if any(letter in text for letter in _FOLD_APART):
        return [(m.start(), m.end()) for m in _BOILERPLATE_WORDS_ANY_CASE.finditer(text)]
    lowered = text.lower()  # the same length: only U+0130 lowercases to two characters
    found = []
    for word in _BOILERPLATE_WORDS:
        at = lowered.find(word)
        while at != -1:
            found.append((at, at + len(word)))
            at = lowered.find(word, at + 1)
    return sorted(found)


def find_boilerplate_lines(text: str) -> list[str]:
    """Lines of ``text`` that are Gutenberg markers, licence or footer: the corpus check's test.

    The same lines, in the same order, as testing every LF-separated line against the patterns;
    only the lines that hold one of the words the patterns require are tested."""
    found: list[str] = []
    examined_to = -1  # end of the last line tested: a line with several words is tested once
    for word_start, word_end in _boilerplate_words(text):
        if word_start < examined_to:
            continue
        start = text.rfind("\n", 0, word_start) + 1
        end = text.find("\n", word_end)
        end = len(text) if end == -1 else end
        line = text[start:end]
        if any(pattern.search(line) for pattern in _BOILERPLATE_LINES):
            found.append(line)
        examined_to = end
    return found


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
