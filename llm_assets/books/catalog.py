"""Project Gutenberg's catalog (``pg_catalog.csv``) and the rules that pick books from it.

The book list may name books the way readers think of them ("every text by Dickens in English")
instead of by id. Those entries are resolved here, against one downloaded catalog, by rules that
are exact and deterministic, so the same list and the same catalog always give the same ids.

The file: UTF-8 CSV (RFC 4180 quoting, titles may hold newlines) with the header ``Text#, Type,
Issued, Title, Language, Authors, Subjects, LoCC, Bookshelves``. ``Type``, ``Language``,
``Subjects``, ``LoCC`` and ``Bookshelves`` are lists joined by ``"; "`` (the newest books have no
subjects or shelves yet); ``Authors`` too, each creator written ``Lastname, Firstname, dates``
with an optional role in brackets (``Rackham, Arthur, 1867-1939 [Illustrator]``), or an
organisation (``United States. Central Intelligence Agency``). Dates take many forms:
``1812-1870``, ``1869-``, ``-1919``, ``1842-1914?``, ``621? BCE-565? BCE``, ``active 1799-1828``.

Selection rules (one query: one of author / title / subject / bookshelf, optional language/limit)

1. Only rows whose ``Type`` list holds ``Text`` are ever chosen (never Sound, Image, Dataset, ...).
2. Text is compared *folded*: case-insensitive (``casefold``), accents ignored (``Moliere`` matches
   ``Molière``; letters such as ``þ`` or ``ø`` have no accent to drop and stay as they are),
   typographic apostrophes and quotes read as the keyboard's (``Aesop's`` matches ``Aesop’s``,
   ``"Captains`` matches ``“Captains``), every dash (en, em, minus, ...) as a hyphen
   (``1790-1826`` matches ``1790–1826``), and any run of whitespace, newlines included, counts as
   one space. Hyphens and other punctuation are kept: ``Science Fiction`` does not match
   ``Science-Fiction & Fantasy``.
3. ``title``: the folded query is a substring of the folded title (title and subtitle together).
4. ``subject`` / ``bookshelf``: the folded query is a substring of one subject / one bookshelf
   (each ``"; "``-separated item alone, so a query never spans two items). ``Science Fiction``
   matches the shelves ``Science Fiction``, ``Precursors of Science Fiction`` and ``Science
   Fiction by Women``. Gutenberg's automated shelves carry a prefix, ``Browsing: `` in catalogs
   before mid-2025 and ``Category: `` since; the two prefixes read as one, on both sides, so
   ``Category: Novels`` and ``Browsing: Novels`` find the same books in an old or a new file, and
   ``Novels`` (no prefix) finds them too, along with any reading-list shelf that holds the word.
   Only a shelf Gutenberg renamed beyond its prefix (some were reorganised under new names, such
   as ``Category: Crime, Thrillers and Mystery``) has to be written again.
5. ``author``: compared with each creator of a row separately. Both the query and the creator are
   read the same way: a trailing ``[Role]`` is the role (``[Author of introduction, etc.]`` whole),
   a trailing comma part made only of dates (numbers, ``?``, ``BCE``, ``active``, ...) is the
   dates, the rest is the name, split into words (letters and digits; ``.``, ``,``, ``'``, ``-``
   and brackets separate words; an organisation keeps the year it ends in as a word of its name
   unless a comma sets it apart as dates). A creator matches when
   - every word of the query's name is a word of the creator's name, in any order, so
     ``Dickens``, ``Dickens, Charles``, ``Charles Dickens`` all match ``Dickens, Charles,
     1812-1870``, and ``H. G. Wells`` or ``Herbert George Wells`` match ``Wells, H. G. (Herbert
     George), 1866-1946`` (whole words: ``Dicken`` matches nothing);
   - if the query gives dates, they equal the creator's, folded and without spaces
     (``Dickens, Charles, 1812-1870`` tells the novelist from his son ``Dickens, Charles,
     1837-1896``; ``Aesop, 621? BCE-565? BCE``); a query without dates ignores them;
   - the roles agree: a query without a role matches only creators listed without one (the
     authors proper); translators, illustrators, editors, ``[Unknown role]`` and every other
     bracketed role count only when the query names that role, e.g. ``Rackham, Arthur
     [Illustrator]``.
   The words must all belong to one creator: ``Charles Wells`` does not match a book by Charles
   Dickens and H. G. Wells.
6. ``language``: a row matches when the code is one of its languages (``en`` matches ``en; la``).
7. Order: ids ascending. ``limit`` keeps the first ``limit`` of them (the lowest ids, the
   longest-published books), so what an entry picks does not depend on the other entries.

The rules run over search columns (:mod:`llm_assets.books.catalog_search`); the text comparisons
are in :mod:`llm_assets.books.folding`.
"""

from __future__ import annotations

import csv
import io
import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

from llm_assets.books.catalog_search import (
    SEARCH_COLUMNS,
    SELECTORS,
    TEXT_TYPE,
    CatalogQuery,
    CatalogSearch,
)
from llm_assets.books.folding import Creator, fold, parse_creator, parse_creators, split_list

__all__ = [
    "COLUMNS", "SELECTORS", "TEXT_TYPE", "Catalog", "CatalogBook", "CatalogError", "CatalogQuery",
    "Creator", "fold", "load_catalog", "parse_catalog", "parse_creator", "parse_creators",
]

log = logging.getLogger(__name__)

COLUMNS = ("Text#", "Type", "Issued", "Title", "Language", "Authors", "Subjects", "LoCC", "Bookshelves")
_REQUIRED = ("Text#", "Type", "Title", "Language", "Authors", "Subjects", "Bookshelves")


class CatalogError(ValueError):
    """The catalog cannot be used; the message names the file (or URL) and line."""


@dataclass(frozen=True)
class CatalogBook:
    """One row of the catalog."""

    book_id: int
    type: str  # the Type column as written: "Text", "Sound", "Dataset", ...
    issued: str  # "1998-01-01"
    title: str  # as written, newlines included
    languages: tuple[str, ...]  # lower-case codes, e.g. ("en",) or ("en", "la")
    authors_text: str  # the Authors column as written; read into `creators` on first use
    subjects: tuple[str, ...]  # () for the newest books, not yet catalogued
    locc: tuple[str, ...]
    bookshelves: tuple[str, ...]  # () for the newest books, not yet shelved
    line: int  # where the row starts in the CSV file

    @property
    def types(self) -> tuple[str, ...]:
        """The Type list (``"; "``-joined like the other list columns)."""
        return split_list(self.type)

    @property
    def is_text(self) -> bool:
        return TEXT_TYPE in self.types

    @cached_property
    def creators(self) -> tuple[Creator, ...]:
        """Every entry of the Authors column, roles included (parsed lazily: most lists never
        ask, and it is the costliest column of a 77,000-row catalog)."""
        return parse_creators(self.authors_text)

    @property
    def authors(self) -> tuple[Creator, ...]:
        """The creators without a role: the authors proper."""
        return tuple(c for c in self.creators if c.is_author)


class Catalog(CatalogSearch):
    """The catalog's rows by id, searched by the rules of the module docstring."""

    def __init__(
        self, books: Iterable[CatalogBook], source: str, skipped: Iterable[tuple[int, str]] = ()
    ) -> None:
        self.source = source
        self.books = tuple(sorted(books, key=lambda b: b.book_id))
        self.skipped = tuple(skipped)  # (line, reason): rows that could not be read
        self._by_id = {b.book_id: b for b in self.books}
        self._columns: dict[str, list[Any]] = {}

    def __len__(self) -> int:
        return len(self.books)

    def get(self, book_id: int) -> CatalogBook | None:
        return self._by_id.get(book_id)

    def column(self, name: str) -> Sequence[Any]:
        """A search column, built from the rows on first use (each costs one pass over them)."""
        if name not in self._columns:
            make = SEARCH_COLUMNS[name]
            self._columns[name] = [make(b) for b in self.books]
        return self._columns[name]


# --- reading the CSV ---------------------------------------------------------------------------


def _header(source: str, row: list[str]) -> dict[str, int]:
    columns = {name.strip(): i for i, name in enumerate(row)}
    missing = [name for name in _REQUIRED if name not in columns]
    if missing:
        raise CatalogError(
            f"{source}, line 1: not Project Gutenberg's catalog: the header lacks "
            f"{', '.join(missing)} (expected {', '.join(COLUMNS)}). Delete the file to download it "
            "again, or check that GUTENBERG_MIRROR serves /cache/epub/feeds/pg_catalog.csv."
        )
    return columns


def _book(row: list[str], columns: dict[str, int], line: int) -> CatalogBook:
    text_id, kind, issued, title, language, authors, subjects, locc, shelves = (
        row[columns[name]] if name in columns else "" for name in COLUMNS
    )
    text_id = text_id.strip()
    if not text_id.isdigit() or int(text_id) == 0:
        raise ValueError(f"Text# {text_id!r} is not a book id")
    return CatalogBook(
        book_id=int(text_id),
        type=kind.strip(),
        issued=issued.strip(),
        title=title.strip(),
        languages=split_list(language.lower()),
        authors_text=authors.strip(),
        subjects=split_list(subjects),
        locc=split_list(locc),
        bookshelves=split_list(shelves),
        line=line,
    )


def parse_catalog(text: str, source: str = "pg_catalog.csv") -> Catalog:
    """Read the catalog's CSV text. A row that cannot be read is skipped with a warning (one bad
    row upstream must not block every book list); a file that is not the catalog raises."""
    reader = csv.reader(io.StringIO(text.removeprefix("\ufeff"), newline=""), strict=True)
    books: dict[int, CatalogBook] = {}
    skipped: list[tuple[int, str]] = []
    columns: dict[str, int] | None = None
    line = 1
    try:
        for row in reader:
            start, line = line, reader.line_num + 1
            if not row or row == [""]:
                continue
            if columns is None:
                columns = _header(source, row)
                continue
            if len(row) != len(columns):
                skipped.append((start, f"{len(row)} fields, the header has {len(columns)}"))
                continue
            try:
                book = _book(row, columns, start)
            except ValueError as exc:
                skipped.append((start, str(exc)))
                continue
            if book.book_id in books:
                first = books[book.book_id].line
                skipped.append((start, f"Text# {book.book_id} again (first on line {first})"))
                continue
            books[book.book_id] = book
    except csv.Error as exc:
        raise CatalogError(
            f"{source}, line {line}: not valid CSV ({exc}) in the row that starts there; the file "
            "is damaged: delete it (or refresh the catalog) to download it again."
        ) from None
    if columns is None or not books:
        raise CatalogError(f"{source}: the catalog holds no books; refresh it to download it again.")
    for where, reason in skipped[:5]:
        log.warning("%s, line %d: row skipped: %s", source, where, reason)
    if len(skipped) > 5:
        log.warning("%s: %d more rows skipped", source, len(skipped) - 5)
    return Catalog(books.values(), source, skipped)


def load_catalog(path: Path) -> Catalog:
    """Parse the catalog file at ``path``."""
    path = Path(path)
    try:
        text = path.read_bytes().decode("utf-8")
    except UnicodeDecodeError as exc:
        raise CatalogError(
            f"{path}: not UTF-8 ({exc}); refresh the catalog to download it again."
        ) from None
    return parse_catalog(text, str(path))
