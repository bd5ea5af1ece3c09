"""Resolve a book list to Gutenberg ids, in order, each with the entry that chose it.

Resolution keeps list order: entry after entry, each query's ids ascending (cut to its ``limit``
before anything else, so an entry's picks do not depend on the other entries), and an id chosen
twice stays where it was first chosen. The fingerprint of the resolved ids is what the automation
compares. Against a cached catalog, a resolution is cached too (:mod:`llm_assets.books.resolution_store`):
the sensor asks for the same one every 30 s.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

from llm_assets.books.booklist import (
    BookEntry,
    BookList,
    BookListError,
    IdEntry,
    QueryEntry,
    load_book_list,
)
from llm_assets.books.catalog_cache import (
    CATALOG_LOCK,
    DEFAULT_MAX_AGE,
    CachedCatalog,
    cached_catalog,
    fetch_catalog,
)
from llm_assets.books.catalog_search import CatalogSearch
from llm_assets.books.gutenberg import GutenbergClient
from llm_assets.books.resolution_store import cached_resolution, remember_resolution, resolution_key
from llm_assets.locks import exclusive

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ChosenBook:
    """One resolved book and the entry that chose it (for ``raw_books``' metadata)."""

    book_id: int
    line: int  # the entry's line in the book list
    entry: str  # the entry, e.g. `1342` or `author: "Dickens, Charles", limit: 20`
    title: str  # the catalog's title (one line) when a catalog was used and knows the id; else ""


@dataclass(frozen=True)
class EntryResult:
    """What one entry picked."""

    line: int
    entry: str
    matched: int  # catalog rows the entry matches before `limit` (1 for an id)
    chosen: tuple[int, ...]  # its picks after `limit`, ids ascending (an id entry: that id)
    new: tuple[int, ...]  # those no earlier entry had chosen


@dataclass(frozen=True)
class ResolvedBookList:
    path: Path
    books: tuple[ChosenBook, ...]  # the final order: what is downloaded and trained on
    entries: tuple[EntryResult, ...]  # one per entry, in list order
    duplicates: tuple[int, ...]  # ids chosen by more than one entry (kept at the first)

    @property
    def ids(self) -> tuple[int, ...]:
        return tuple(b.book_id for b in self.books)

    @property
    def fingerprint(self) -> str:
        return ids_fingerprint(self.ids)

    def metadata(self) -> dict:
        """JSON-ready: the ids and, for each, the entry (text and line) that chose it."""
        return {
            "book_ids": list(self.ids),
            "fingerprint": self.fingerprint,
            "chosen_by": [
                {"id": b.book_id, "line": b.line, "entry": b.entry, "title": b.title}
                for b in self.books
            ],
            "entries": [
                {"line": e.line, "entry": e.entry, "matched": e.matched, "chosen": list(e.chosen),
                 "new": list(e.new)}
                for e in self.entries
            ],
            "duplicates": list(self.duplicates),
        }

    def record(self, catalog: CachedCatalog | None) -> dict:
        """The full resolution as raw_books keeps it beside the books: :meth:`metadata`, the list
        it came from and the catalog version it was resolved against."""
        source = None if catalog is None else {
            "path": str(catalog.path), "url": catalog.url, "sha256": catalog.sha256,
            "fetched_at": catalog.fetched_at.isoformat(), "books": catalog.books,
        }
        return {"format": 1, "book_list": str(self.path), "catalog": source, **self.metadata()}

    @classmethod
    def from_metadata(cls, path: Path, data: dict) -> ResolvedBookList:
        """The resolution :meth:`metadata` describes (read back from a cache or a record)."""
        books = tuple(ChosenBook(int(b["id"]), int(b["line"]), str(b["entry"]), str(b["title"]))
                      for b in data["chosen_by"])
        entries = tuple(EntryResult(int(e["line"]), str(e["entry"]), int(e["matched"]), tuple(e["chosen"]),
                                    tuple(e["new"])) for e in data["entries"])
        resolved = cls(Path(path), books, entries, tuple(data["duplicates"]))
        if resolved.fingerprint != data["fingerprint"]:
            raise ValueError("the stored resolution does not match its fingerprint")
        return resolved


def _title(catalog: CatalogSearch | None, book_id: int) -> str:
    return catalog.title(book_id) if catalog is not None else ""


def _picks(entry: BookEntry, catalog: CatalogSearch | None) -> tuple[int, tuple[int, ...]]:
    if isinstance(entry, IdEntry):
        return 1, (entry.book_id,)  # never checked against the catalog: it may be older than the book
    assert catalog is not None
    matched = catalog.matches(entry.query)
    limit = entry.query.limit
    return len(matched), matched if limit is None else matched[:limit]


def _no_match(path: Path, entry: QueryEntry, catalog: CatalogSearch) -> str:
    hint = catalog.explain_no_match(entry.query)
    return (
        f"{path}, line {entry.line}: `{entry.describe()}` matches no book in the catalog "
        f"({catalog.source}, {len(catalog)} books){f': {hint}' if hint else ''}."
    )


def resolve_book_list(book_list: BookList, catalog: CatalogSearch | None = None) -> ResolvedBookList:
    """The list's ids in their final order, each with the entry that chose it.

    Raises BookListError naming file, line and entry for every query that matches nothing
    (unless it says ``allow_empty: true``), and when the list needs a catalog and none is given.
    """
    path = book_list.path
    if book_list.needs_catalog and catalog is None:
        raise book_list.catalog_needed()
    books: dict[int, ChosenBook] = {}
    results: list[EntryResult] = []
    duplicates: list[int] = []
    empty: list[str] = []
    for entry in book_list.entries:
        matched, chosen = _picks(entry, catalog)
        if not chosen and isinstance(entry, QueryEntry):
            assert catalog is not None
            problem = _no_match(path, entry, catalog)
            if entry.allow_empty:
                log.warning("%s (allowed by allow_empty: true)", problem)
            else:
                empty.append(problem)
        new = []
        for book_id in chosen:
            if book_id in books:
                if book_id not in duplicates:
                    duplicates.append(book_id)
                continue
            books[book_id] = ChosenBook(book_id, entry.line, entry.describe(), _title(catalog, book_id))
            new.append(book_id)
        results.append(EntryResult(entry.line, entry.describe(), matched, chosen, tuple(new)))
    if empty:
        raise BookListError(
            "\n".join(empty) + "\nCheck the spelling (matching ignores case and accents; author "
            'names match as whole words, e.g. "Dickens, Charles" or "Charles Dickens"), drop the '
            "language filter, refresh the catalog if the book is new, or add `allow_empty: true` "
            "to the entry."
        )
    if not books:
        raise BookListError(f"{path}: every entry matched nothing, so the list selects no book.")
    return ResolvedBookList(path, tuple(books.values()), tuple(results), tuple(duplicates))


def ids_fingerprint(ids: Sequence[int]) -> str:
    """SHA-256 of the ids in order: what the sensor compares to decide whether to re-run."""
    return hashlib.sha256(",".join(map(str, ids)).encode("ascii")).hexdigest()


def book_list_fingerprint(path: Path, catalog: CatalogSearch | None = None) -> str:
    """The fingerprint of the resolved ids: comments, formatting and which entry chose a book are
    not changes, order is. A list of ids alone needs no catalog and hashes exactly as it always has."""
    return resolve_book_list(load_book_list(path), catalog).fingerprint


def describe_change(before: Sequence[int], after: Sequence[int]) -> str:
    """One line for the log when the resolved ids differ from the last run's."""
    added = [i for i in after if i not in set(before)]
    removed = [i for i in before if i not in set(after)]
    if not added and not removed:
        return "unchanged" if list(before) == list(after) else "the same books in a new order"

    def some(ids: list[int]) -> str:
        return ", ".join(map(str, ids[:10])) + (", ..." if len(ids) > 10 else "")

    parts = [f"{len(added)} added ({some(added)})"] if added else []
    parts += [f"{len(removed)} removed ({some(removed)})"] if removed else []
    return "books " + "; ".join(parts)


def resolve_with_catalog(
    book_list: BookList,
    raw_dir: Path,
    client: GutenbergClient | None,
    *,
    refresh: bool = False,
    max_age: timedelta | None = DEFAULT_MAX_AGE,
) -> tuple[ResolvedBookList, CachedCatalog | None]:
    """Resolve ``book_list``, fetching Gutenberg's catalog only if the list names books through it.

    ``client=None`` never makes a request: the cached catalog is used, or the error says to
    materialize raw_books first (what the sensor does). Downloads hold the catalog's lock. The
    same list against the same catalog version is resolved once: later calls read the cache.
    """
    if not book_list.needs_catalog:
        return resolve_book_list(book_list), None
    if client is None:
        cached = cached_catalog(raw_dir)
        if cached is None:
            raise BookListError(
                f"{book_list.path} names books through Project Gutenberg's catalog, which has not been "
                "downloaded yet: materialize raw_books (it downloads the catalog)."
            )
    else:
        with exclusive(Path(raw_dir) / CATALOG_LOCK, "Project Gutenberg's catalog"):
            cached = fetch_catalog(raw_dir, client, refresh=refresh, max_age=max_age)
    key = resolution_key(book_list, cached.sha256)
    stored = cached_resolution(raw_dir, key)
    if stored is not None:
        try:
            resolved = ResolvedBookList.from_metadata(book_list.path, stored)
        except (KeyError, TypeError, ValueError) as exc:
            log.warning("cached resolution not used (%s); resolving again", exc)
        else:
            for entry in resolved.entries:
                if not entry.matched:  # said at every resolution, cached or not
                    log.warning("%s, line %d: `%s` matches no book in the catalog (allowed by allow_empty: true)",
                                book_list.path, entry.line, entry.entry)
            return resolved, cached
    resolved = resolve_book_list(book_list, cached.catalog)
    remember_resolution(raw_dir, key, resolved.metadata())
    return resolved, cached
