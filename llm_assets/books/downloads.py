"""The local copy of the listed books: each downloaded once, verified, and never half-written.

``index.json`` records every book ever fetched (size, SHA-256, URL), so an unchanged book list
costs no request at all, and with the stage's ``DigestCache`` no read either (a file is hashed
again only when its identity changed); ``books.json`` is the current list's selection, in order,
written only when the whole list is accounted for: the corpus is built from exactly that.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from llm_assets.atomic import atomic_write, atomic_write_json
from llm_assets.books.gutenberg import (
    BookUnavailableError,
    GutenbergClient,
    check_book_id,
)
from llm_assets.digests import DigestCache

log = logging.getLogger(__name__)

INDEX_FILE = "index.json"  # every book ever downloaded: size, sha256, url (the cache)
SELECTION_FILE = "books.json"  # the books of the current list, in order: what the corpus is built from


class SelectionError(RuntimeError):
    """The downloaded books on disk do not form a usable selection (missing, altered or empty)."""


@dataclass(frozen=True)
class DownloadedBook:
    book_id: int
    path: Path
    size: int
    sha256: str
    url: str
    fetched: bool  # False: served from the local cache, no request made


@dataclass(frozen=True)
class DownloadReport:
    books: tuple[DownloadedBook, ...]  # in list order, only the ones available
    skipped: tuple[tuple[int, str], ...]  # (book id, reason) when skip_unavailable=True
    requests: int  # HTTP requests made, retries included
    bytes_downloaded: int
    seconds: float


ProgressFn = Callable[[int, int, DownloadedBook], None]


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _load_index(raw_dir: Path) -> dict[str, dict]:
    path = raw_dir / INDEX_FILE
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        books = data["books"]
        if not isinstance(books, dict):
            raise TypeError("books is not a mapping")
        return books
    except FileNotFoundError:
        return {}
    except (ValueError, KeyError, TypeError) as exc:
        # The index only saves requests: a damaged one means re-verifying by re-downloading.
        log.warning("%s is unreadable (%s): cached books will be downloaded again", path, exc)
        return {}


def _save_index(raw_dir: Path, books: dict[str, dict]) -> None:
    atomic_write_json(raw_dir / INDEX_FILE, {"version": 1, "books": books})


INDEX_SAVE_SECONDS = 2.0


class _Index:
    """``index.json`` in memory, written at most every INDEX_SAVE_SECONDS and when the run ends.

    The file is rewritten whole (and fsynced): once per book would make a thousand-book download
    write the growing index a thousand times. A process killed outright loses at most the last
    seconds of records; those books are then downloaded again, never used unverified.
    """

    def __init__(self, raw_dir: Path) -> None:
        self.raw_dir = raw_dir
        self.books = _load_index(raw_dir)
        self._dirty = False
        self._saved = time.monotonic()

    def record(self, book_id: int, entry: dict) -> None:
        self.books[str(book_id)] = entry
        self._dirty = True
        if time.monotonic() - self._saved >= INDEX_SAVE_SECONDS:
            self.save()

    def save(self) -> None:
        if self._dirty:
            _save_index(self.raw_dir, self.books)
            self._dirty = False
        self._saved = time.monotonic()


def _cached(raw_dir: Path, book_id: int, entry: dict | None, digests: DigestCache) -> DownloadedBook | None:
    """The cached book if the file on disk still has the recorded size and hash (read again only
    when its identity changed since ``digests`` last hashed it)."""
    if not entry:
        return None
    path = raw_dir / f"{book_id}.txt"
    try:
        if path.stat().st_size != entry.get("size"):
            return None
        sha256 = digests.digest_file(path)
    except OSError:
        return None
    if sha256 != entry.get("sha256"):
        return None
    return DownloadedBook(book_id, path, entry["size"], sha256, entry.get("url", ""), False)


def download_books(
    book_ids: Sequence[int],
    raw_dir: Path,
    client: GutenbergClient,
    *,
    force_refresh: bool = False,
    skip_unavailable: bool = False,
    progress: ProgressFn | None = None,
    digests: DigestCache | None = None,
) -> DownloadReport:
    """Make ``raw_dir`` hold every listed book, fetching only what the cache lacks.

    Each book is written as soon as it arrives and recorded in ``index.json`` every few seconds and
    when the run ends, however it ends, so a failure later in the list loses nothing.
    ``books.json`` (the selection the corpus is built from) is written only when the whole list is
    accounted for, so a failed run never leaves a partial selection behind.
    ``digests``: the stage's digest cache, so a cached book unchanged since it was last checked is
    not read again (None: every cached book is read and hashed).
    """
    digests = digests if digests is not None else DigestCache()
    began = time.perf_counter()
    requests_before = client.requests_made
    ids = [check_book_id(book_id) for book_id in book_ids]
    raw_dir.mkdir(parents=True, exist_ok=True)
    index = _Index(raw_dir)
    books: list[DownloadedBook] = []
    skipped: list[tuple[int, str]] = []
    failures: list[BookUnavailableError] = []
    downloaded = 0

    try:
        for n, book_id in enumerate(ids, start=1):
            book = None if force_refresh else _cached(raw_dir, book_id, index.books.get(str(book_id)), digests)
            if book is None:
                try:
                    body, url = client.fetch(book_id)
                except BookUnavailableError as exc:
                    log.warning("%s", exc)
                    if skip_unavailable:
                        skipped.append((book_id, str(exc)))
                    else:
                        failures.append(exc)
                    continue
                path = raw_dir / f"{book_id}.txt"
                atomic_write(path, body)
                book = DownloadedBook(book_id, path, len(body), _sha256(body), url, True)
                index.record(book_id, {
                    "size": book.size,
                    "sha256": book.sha256,
                    "url": url,
                    "fetched_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
                })
                downloaded += book.size
            books.append(book)
            if progress is not None:
                progress(n, len(ids), book)
    finally:
        index.save()  # whatever happened: every book written so far is recorded

    if failures:
        first = failures[0]
        if len(failures) > 1:
            others = ", ".join(str(f.book_id) for f in failures[1:])
            first.args = (f"{first.args[0]} (also unavailable: {others})",)
        raise first

    selection = {
        "books": [
            {"id": b.book_id, "size": b.size, "sha256": b.sha256, "url": b.url} for b in books
        ],
        "skipped": [{"id": book_id, "reason": reason} for book_id, reason in skipped],
    }
    atomic_write_json(raw_dir / SELECTION_FILE, selection)
    return DownloadReport(
        books=tuple(books),
        skipped=tuple(skipped),
        requests=client.requests_made - requests_before,
        bytes_downloaded=downloaded,
        seconds=time.perf_counter() - began,
    )


@dataclass(frozen=True)
class Selection:
    """``books.json`` as read once: what a build keys on (``digest``) is what it builds from (``books``)."""

    books: list[dict]
    digest: str  # SHA-256 of the file's bytes


def read_selection(raw_dir: Path) -> list[dict]:
    """The ordered selection ``download_books`` wrote: the books the corpus is built from."""
    return snapshot_selection(raw_dir).books


def snapshot_selection(raw_dir: Path) -> Selection:
    """Read ``books.json`` once: its books and the digest of exactly those bytes."""
    path = Path(raw_dir) / SELECTION_FILE
    try:
        raw = path.read_bytes()
        data = json.loads(raw.decode("utf-8"))
    except FileNotFoundError:
        raise SelectionError(
            f"{path} not found: materialize raw_books first (it writes the book selection)."
        ) from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise SelectionError(f"{path} is not valid JSON ({exc}): re-run raw_books.") from None
    books = data.get("books") if isinstance(data, dict) else None
    if not isinstance(books, list) or not books:
        raise SelectionError(f"{path} lists no books: check the book list and re-run raw_books.")
    return Selection(books=books, digest=_sha256(raw))


def read_raw_book(raw_dir: Path, entry: dict) -> tuple[int, bytes]:
    """A selected book's bytes, checked against the hash recorded when it was downloaded."""
    book_id = int(entry["id"])
    path = Path(raw_dir) / f"{book_id}.txt"
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise SelectionError(f"book {book_id}: {path} is missing: re-run raw_books.") from None
    expected = entry.get("sha256")
    if expected and _sha256(raw) != expected:
        raise SelectionError(
            f"book {book_id}: {path} does not match the hash raw_books recorded: "
            "re-run raw_books (it re-downloads altered files)."
        )
    return book_id, raw


def verify_selection(raw_dir: Path, digests: DigestCache | None = None) -> tuple[int, list[int]]:
    """(books selected, ids whose file is missing or differs from the hash recorded at download).

    ``digests``: a digest cache, so a file unchanged since it was last hashed is not read again."""
    digests = digests if digests is not None else DigestCache()
    bad = []
    selection = read_selection(raw_dir)
    for entry in selection:
        book_id = int(entry["id"])
        path = Path(raw_dir) / f"{book_id}.txt"
        expected = entry.get("sha256")
        try:
            intact = path.is_file() and (not expected or digests.digest_file(path) == expected)
        except OSError:
            intact = False
        if not intact:
            bad.append(book_id)
    return len(selection), bad
