"""Score the cleaner against the hand-checked body lines of the shared Gutenberg books.

Used by the CI test (test_cleaning_shared.py) and by ``benchmarks/cleaning_report.py``. The
reference body is decoded with the manifest's encoding, not with the cleaner's decoder, so a
decoding mistake shows up as lost recall rather than agreeing with itself.
"""

from __future__ import annotations

import csv
import re
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from llm_assets.books.cleaning import clean_book

# Lines that must never survive cleaning: markers, licence and small-print vocabulary.
BOILERPLATE = re.compile(
    r"project\s*gutenberg|gutenberg\.org|gutenberg\.net|pgdp\.net|small\s+print|"
    r"\bSTART\s+OF\s+(?:THE|THIS)\b|\bEND\s+OF\s+(?:THE|THIS)\b|licen[cs]e|"
    r"distributed\s+proofread|this\s+file\s+should\s+be\s+named|e-?text\s+prepared\s+by|"
    r"produced\s+by|\betext|html\s+version|royalt|trademark|donation",
    re.IGNORECASE,
)
MARKER = re.compile(
    r"\*+\s*(?:START|END)\s+OF\s+(?:THE|THIS)\s+PROJECT\s*GUTENBERG|SMALL\s+PRINT!",
    re.IGNORECASE,
)
_MANIFEST_ENCODING = {"ascii": "utf-8", "utf-8": "utf-8", "utf-8-bom": "utf-8-sig", "latin-1": "latin-1"}


@dataclass(frozen=True)
class ManifestBook:
    book_id: int
    title: str
    language: str
    encoding: str
    line_endings: str
    path: Path
    body_first_line: int
    body_last_line: int

    def raw(self) -> bytes:
        return self.path.read_bytes()

    def lines(self) -> list[str]:
        """The original, decoded with the manifest's encoding and split like the manifest counts."""
        text = self.raw().decode(_MANIFEST_ENCODING[self.encoding])
        return text.replace("\r\n", "\n").replace("\r", "\n").split("\n")

    def body_lines(self) -> list[str]:
        return self.lines()[self.body_first_line - 1 : self.body_last_line]


def load_manifest(shared: Path) -> list[ManifestBook]:
    with (shared / "MANIFEST.tsv").open(encoding="utf-8", newline="") as handle:
        rows = list(csv.DictReader(handle, delimiter="\t"))
    return [
        ManifestBook(
            book_id=int(row["id"]),
            title=row["title"],
            language=row["language"],
            encoding=row["encoding"],
            line_endings=row["line_endings"],
            path=shared / "mirror" / "cache" / "epub" / row["id"] / f"pg{row['id']}.txt",
            body_first_line=int(row["body_first_line"]),
            body_last_line=int(row["body_last_line"]),
        )
        for row in rows
    ]


def _text_of(raw: bytes) -> str:
    """Decode a variant for re-encoding: the same rule every variant is derived by."""
    if raw.startswith(b"\xef\xbb\xbf"):
        raw = raw[3:]
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return raw.decode("latin-1")


def variants(book: ManifestBook) -> Iterator[tuple[str, bytes]]:
    """The book as served, then re-encoded, with other line endings, with the BOM toggled.

    Every variant has the same lines as the original, so the manifest's line numbers still hold.
    """
    raw = book.raw()
    yield "as served", raw
    has_bom = raw.startswith(b"\xef\xbb\xbf")
    text = _text_of(raw).replace("\r\n", "\n").replace("\r", "\n")
    crlf = book.line_endings != "lf"
    swapped_newline = "\n" if crlf else "\r\n"
    original_newline = "\r\n" if crlf else "\n"
    if book.encoding == "latin-1":
        utf8 = text.replace("\n", original_newline).encode("utf-8")
        yield "latin-1 -> utf-8", utf8
        yield "latin-1 -> utf-8 + BOM", b"\xef\xbb\xbf" + utf8
    else:
        if has_bom:
            yield "BOM removed", raw[3:]
        else:
            yield "BOM added", b"\xef\xbb\xbf" + raw
        try:
            yield "utf-8 -> latin-1", text.replace("\n", original_newline).encode("latin-1")
        except UnicodeEncodeError:
            pass  # characters Latin-1 cannot hold (macrons, curly quotes): no such variant
    encoding = "latin-1" if book.encoding == "latin-1" else "utf-8"
    swapped = text.replace("\n", swapped_newline).encode(encoding)
    yield f"{'CRLF -> LF' if crlf else 'LF -> CRLF'}", swapped
    yield "CR only (classic Mac)", text.replace("\n", "\r").encode(encoding)


@dataclass(frozen=True)
class Score:
    body: int  # non-blank reference body lines
    kept: int  # non-blank lines the cleaner kept
    matched: int
    leaked: int  # kept lines outside the body that look like boilerplate
    markers: int  # kept lines that are START/END/SMALL PRINT markers
    markers_found: bool

    @property
    def recall(self) -> float:
        return self.matched / self.body if self.body else 1.0

    @property
    def precision(self) -> float:
        return self.matched / self.kept if self.kept else 1.0


def _normalise(lines: list[str]) -> list[str]:
    return [line.rstrip() for line in lines if line.strip()]


def score_lines(kept_lines: list[str], body_lines: list[str], markers_found: bool = True) -> Score:
    """Multiset overlap of non-blank lines (trailing whitespace ignored)."""
    kept = Counter(_normalise(kept_lines))
    body = Counter(_normalise(body_lines))
    matched = kept & body
    extra = kept - body
    return Score(
        body=sum(body.values()),
        kept=sum(kept.values()),
        matched=sum(matched.values()),
        leaked=sum(n for line, n in extra.items() if BOILERPLATE.search(line)),
        markers=sum(n for line, n in kept.items() if MARKER.search(line)),
        markers_found=markers_found,
    )


def score_raw(raw: bytes, body_lines: list[str]) -> Score:
    cleaned = clean_book(raw)
    return score_lines(cleaned.text.split("\n"), body_lines, cleaned.markers_found)


def total(scores: list[Score]) -> Score:
    return Score(
        body=sum(s.body for s in scores),
        kept=sum(s.kept for s in scores),
        matched=sum(s.matched for s in scores),
        leaked=sum(s.leaked for s in scores),
        markers=sum(s.markers for s in scores),
        markers_found=all(s.markers_found for s in scores),
    )
