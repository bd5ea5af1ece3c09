"""The corpus: every selected book cleaned and joined into one UTF-8 text, and read back book by book.

The text and its index (where each book starts and ends) are one unit: they are written into one
version folder and published by one link swap (see ``llm_assets.atomic``), and every reader
resolves the link once, so a reader never pairs one corpus with another corpus's index.
"""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from llm_assets.atomic import new_version
from llm_assets.books.cleaning import clean_book, find_boilerplate_lines
from llm_assets.books.downloads import Selection, read_raw_book, snapshot_selection
from llm_assets.books.workers import ordered_map
from llm_assets.digests import DigestCache

INDEX_FILE = "all_books.index.json"
SEPARATOR = b"\n\n"  # a blank line between books


class CorpusError(RuntimeError):
    """The corpus or its index cannot be used; the message says which stage to re-run."""


@dataclass(frozen=True)
class CorpusBook:
    """Where one book lies in the corpus file (byte offsets, end exclusive) and how it was cleaned."""

    id: int
    start: int
    end: int
    lines: int = 0
    markers_found: bool = True
    warnings: tuple[str, ...] = ()  # what the cleaner was unsure of, shown per book in metadata


@dataclass(frozen=True)
class CorpusReport:
    path: Path
    books: tuple[CorpusBook, ...]
    total_bytes: int
    unmarked: tuple[int, ...]  # ids kept whole for lack of markers
    seconds: float


@dataclass(frozen=True)
class CorpusFiles:
    """One published corpus version: its text and its index, resolved together."""

    text: Path
    index: Path


def resolve_corpus(corpus_path: Path) -> CorpusFiles:
    """Pin the corpus version ``corpus_path`` names now; read both files through the result."""
    corpus_path = Path(corpus_path)
    if not corpus_path.is_file():
        raise FileNotFoundError(f"Corpus file {corpus_path} not found: materialize the `corpus` asset first.")
    text = corpus_path.resolve()
    index = text.parent / INDEX_FILE
    if not index.is_file():
        raise FileNotFoundError(f"Corpus index {index} not found: re-materialize the `corpus` asset.")
    return CorpusFiles(text=text, index=index)


def build_corpus(
    raw_dir: Path, corpus_path: Path, progress: Callable[[int, int, int], None] | None = None,
    workers: int | None = None,
) -> CorpusReport:
    """Clean every selected raw book and publish them, in list order, as ``corpus_path`` + index."""
    corpus_path = Path(corpus_path)
    with new_version(corpus_path, member=corpus_path.name) as folder:
        report = write_corpus(snapshot_selection(raw_dir), raw_dir, folder / corpus_path.name, progress, workers)
    return dataclasses.replace(report, path=corpus_path)


@dataclass(frozen=True)
class _CleanedBook:
    """One book as a worker hands it back: its cleaned UTF-8 bytes and what the cleaner found."""

    id: int
    data: bytes
    lines: int
    markers_found: bool
    warnings: tuple[str, ...]


def _clean_entry(job: tuple[Path, dict]) -> _CleanedBook:
    """Read, verify and clean one selected book (runs in a worker process: module level, picklable)."""
    raw_dir, entry = job
    book_id, raw = read_raw_book(raw_dir, entry)
    cleaned = clean_book(raw)
    data = cleaned.text.encode("utf-8")
    if not data.strip():
        raise CorpusError(
            f"book {book_id}: {Path(raw_dir) / f'{book_id}.txt'} holds no text: "
            "remove it from the book list or re-download it with force_refresh."
        )
    return _CleanedBook(book_id, data, cleaned.text.count("\n") + 1, cleaned.markers_found, cleaned.warnings)


def write_corpus(
    selection: Selection, raw_dir: Path, text_path: Path, progress: Callable[[int, int, int], None] | None = None,
    workers: int | None = None,
) -> CorpusReport:
    """Write the cleaned books of ``selection`` to ``text_path``, and its index beside it.

    ``selection`` is the one snapshot of ``books.json`` the caller also keyed on; each raw book is
    checked against the hash that snapshot records, so the corpus is built from exactly it. Books
    are cleaned on ``workers`` processes (None: every available core) and written in list order,
    so the corpus is the same bytes whatever the number of workers.
    """
    began = time.perf_counter()
    books: list[CorpusBook] = []
    offset = 0
    jobs = [(Path(raw_dir), entry) for entry in selection.books]
    with open(text_path, "wb") as handle:
        for n, book in enumerate(ordered_map(_clean_entry, jobs, workers), start=1):
            if books:
                handle.write(SEPARATOR)
                offset += len(SEPARATOR)
            handle.write(book.data)
            books.append(CorpusBook(id=book.id, start=offset, end=offset + len(book.data), lines=book.lines,
                                    markers_found=book.markers_found, warnings=book.warnings))
            offset += len(book.data)
            if progress is not None:
                progress(n, len(jobs), book.id)
        handle.write(b"\n")
        offset += 1
    index = {"corpus": text_path.name, "total_bytes": offset, "books": [_index_entry(b) for b in books]}
    (text_path.parent / INDEX_FILE).write_text(json.dumps(index, indent=1) + "\n", encoding="utf-8")
    return CorpusReport(
        path=Path(text_path),
        books=tuple(books),
        total_bytes=offset,
        unmarked=tuple(b.id for b in books if not b.markers_found),
        seconds=time.perf_counter() - began,
    )


def _index_entry(book: CorpusBook) -> dict:
    return {
        "id": book.id,
        "start": book.start,
        "end": book.end,
        "lines": book.lines,
        "markers_found": book.markers_found,
        "warnings": list(book.warnings),
    }


def read_corpus_index(files: CorpusFiles) -> list[CorpusBook]:
    """Read and check the book offsets up front, so a stale index fails before minutes of work."""
    try:
        raw = json.loads(files.index.read_text(encoding="utf-8"))
        books = [
            CorpusBook(
                id=int(e["id"]),
                start=int(e["start"]),
                end=int(e["end"]),
                lines=int(e.get("lines", 0)),
                markers_found=bool(e.get("markers_found", True)),
                warnings=tuple(e.get("warnings", ())),
            )
            for e in raw["books"]
        ]
    except (ValueError, KeyError, TypeError) as exc:
        raise CorpusError(
            f"Corpus index {files.index} is not of the form "
            f'{{"books": [{{"id": ..., "start": ..., "end": ...}}, ...]}} ({exc!r}): '
            "re-materialize the `corpus` asset."
        ) from exc
    if not books:
        raise CorpusError(f"Corpus index {files.index} lists no books: add books to the book list.")
    size = files.text.stat().st_size
    previous_end = 0
    for book in books:
        if not previous_end <= book.start <= book.end <= size:
            raise CorpusError(
                f"Book {book.id} has offsets [{book.start}, {book.end}) in {files.index} that do "
                f"not fit {files.text} ({size} bytes, previous book ends at {previous_end}): "
                "re-materialize the `corpus` asset."
            )
        previous_end = book.end
    return books


def iter_corpus_books(files: CorpusFiles) -> Iterator[tuple[CorpusBook, str]]:
    """Yield ``(book, text)`` in corpus order, one book in memory at a time."""
    books = read_corpus_index(files)
    with open(files.text, "rb") as corpus:
        for book in books:
            corpus.seek(book.start)
            data = corpus.read(book.end - book.start)
            try:
                text = data.decode("utf-8")
            except UnicodeDecodeError as exc:
                raise CorpusError(
                    f"Book {book.id} in {files.text} is not valid UTF-8 at byte "
                    f"{book.start + exc.start}: re-materialize the `corpus` asset."
                ) from exc
            yield book, text


def corpus_digest(files: CorpusFiles, cache: DigestCache | None = None) -> str:
    """One digest over the corpus text and its index: what later stages record they were built from.

    ``cache``: a stage's digest cache, so an unchanged corpus is not read again to say so."""
    return (cache or DigestCache()).digest_files(files.text.parent, [files.text, files.index])


@dataclass(frozen=True)
class CorpusCheck:
    books: int
    empty_books: tuple[int, ...]
    leaked_lines: tuple[str, ...]  # Gutenberg markers or licence lines left in the text

    @property
    def passed(self) -> bool:
        return self.books > 0 and not self.empty_books and not self.leaked_lines


def check_corpus(files: CorpusFiles) -> CorpusCheck:
    """Read the whole corpus once: no book empty, no boilerplate line left."""
    books = read_corpus_index(files)
    leaked: list[str] = []
    with open(files.text, encoding="utf-8") as handle:
        for lines in iter(lambda: handle.readlines(1 << 22), []):
            leaked += find_boilerplate_lines("".join(lines))
    return CorpusCheck(
        books=len(books),
        empty_books=tuple(b.id for b in books if b.end <= b.start),
        leaked_lines=tuple(leaked),
    )
