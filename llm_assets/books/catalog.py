"""Project Gutenberg's catalog (``pg_catalog.csv``) and the rules that pick books from it.

The book list may name books the way readers think of them ("every text by Dickens in English")
instead of by id. Those entries are resolved here, against one downloaded catalog, by rules that
are exact and deterministic, so the same list and the same catalog always give the same ids.

The file: UTF-8 CSV (RFC 4180 quoting, titles may hold newlines) with the header ``Text#, Type,
Issued, Title, Language, Authors, Subjects, LoCC, Bookshelves``. ``Language``, ``Subjects``,
``LoCC`` and ``Bookshelves`` are lists joined by ``"; "``; ``Authors`` too, each creator written
``Lastname, Firstname, birth-death`` with an optional role in brackets (``Rackham, Arthur,
1867-1939 [Illustrator]``), or an organisation (``United States. Central Intelligence Agency``).

Selection rules (one query: one of author / title / subject / bookshelf, optional language/limit)

1. Only rows whose ``Type`` is ``Text`` are ever chosen (never Sound, Image, Dataset, ...).
2. Text is compared *folded*: case-insensitive (``casefold``), accents ignored (``Moliere`` matches
   ``Molière``; letters such as ``þ`` or ``ø`` have no accent to drop and stay as they are), and
   any run of whitespace, newlines included, counts as one space. Hyphens and other punctuation
   are kept: ``Science Fiction`` does not match ``Science-Fiction & Fantasy``.
3. ``title``: the folded query is a substring of the folded title (title and subtitle together).
4. ``subject`` / ``bookshelf``: the folded query is a substring of one subject / one bookshelf
   (each ``"; "``-separated item alone, so a query never spans two items). A bookshelf is compared
   as written, prefix included: ``Science Fiction`` matches the shelves ``Science Fiction``,
   ``Precursors of Science Fiction`` and ``Science Fiction by Women``; the broader browsing
   category is reached by writing it, e.g. ``Browsing: Science-Fiction & Fantasy`` (or just
   ``Science-Fiction & Fantasy``).
5. ``author``: compared with each creator of a row separately. Both the query and the creator are
   read the same way: a trailing ``[Role]`` is the role, a trailing comma part holding a digit
   is the life dates, the rest is the name, split into words (letters and digits; ``.``, ``,``,
   ``'``, ``-`` and brackets separate words). A creator matches when
   - every word of the query's name is a word of the creator's name, in any order, so
     ``Dickens``, ``Dickens, Charles``, ``Charles Dickens`` all match ``Dickens, Charles,
     1812-1870``, and ``H. G. Wells`` or ``Herbert George Wells`` match ``Wells, H. G. (Herbert
     George), 1866-1946`` (whole words: ``Dicken`` matches nothing);
   - if the query gives dates, they equal the creator's (``Dickens, Charles, 1812-1870`` tells
     the novelist from his son ``Dickens, Charles, 1837-1896``);
   - the roles agree: a query without a role matches only creators listed without one (the
     authors proper); translators, illustrators, editors and every other bracketed role count
     only when the query names that role, e.g. ``Rackham, Arthur [Illustrator]``.
   The words must all belong to one creator: ``Charles Wells`` does not match a book by Charles
   Dickens and H. G. Wells.
6. ``language``: a row matches when the code is one of its languages (``en`` matches ``en; la``).
7. Order: ids ascending. ``limit`` keeps the first ``limit`` of them (the lowest ids, the
   longest-published books), so what an entry picks does not depend on the other entries.
"""

from __future__ import annotations

import csv
import io
import logging
import re
import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

log = logging.getLogger(__name__)

COLUMNS = ("Text#", "Type", "Issued", "Title", "Language", "Authors", "Subjects", "LoCC", "Bookshelves")
_REQUIRED = ("Text#", "Type", "Title", "Language", "Authors", "Subjects", "Bookshelves")
SELECTORS = ("author", "title", "subject", "bookshelf")
TEXT_TYPE = "Text"
_SEPARATOR = "; "
_ROLE = re.compile(r"\[([^\[\]]*)\]\s*$")
_WORD = re.compile(r"\w+")
_LANGUAGE = re.compile(r"[a-z]{2,3}")


class CatalogError(ValueError):
    """The catalog cannot be used; the message names the file (or URL) and line."""


def fold(text: str) -> str:
    """Case, accents and whitespace removed from the comparison (rule 2 of the module docstring)."""
    if not text.isascii():
        decomposed = unicodedata.normalize("NFKD", text)
        text = "".join(c for c in decomposed if not unicodedata.combining(c))
    return " ".join(text.casefold().split())


def _split(field: str) -> tuple[str, ...]:
    return tuple(filter(None, map(str.strip, field.split(_SEPARATOR)))) if field else ()


@dataclass(frozen=True)
class Creator:
    """One entry of the ``Authors`` column: ``Lastname, Firstname, dates [Role]``."""

    name: str  # "Dickens, Charles": without dates and role
    dates: str  # "1812-1870", "-1878", "1842-1914?"; "" when not given
    role: str  # "Illustrator", "Translator", ...; "" for the author proper
    raw: str

    @property
    def is_author(self) -> bool:
        return not self.role

    @cached_property
    def words(self) -> frozenset[str]:
        return frozenset(_WORD.findall(fold(self.name)))


def parse_creator(text: str) -> Creator:
    """Read one creator (or an author query, which is written the same way)."""
    raw = " ".join(text.split())
    rest, role = raw, ""
    found = _ROLE.search(raw) if raw.endswith("]") else None
    if found:
        rest, role = raw[: found.start()].strip(), found.group(1).strip()
    parts = [part.strip() for part in rest.split(",")]
    dates = ""
    if len(parts) > 1 and any(ch.isdigit() for ch in parts[-1]):
        dates = parts.pop()
    return Creator(name=", ".join(p for p in parts if p), dates=dates, role=role, raw=raw)


def parse_creators(field: str) -> tuple[Creator, ...]:
    return tuple(parse_creator(item) for item in _split(field))


@dataclass(frozen=True)
class CatalogBook:
    """One row of the catalog."""

    book_id: int
    type: str  # "Text", "Sound", "Image", ...
    issued: str  # "1998-01-01"
    title: str  # as written, newlines included
    languages: tuple[str, ...]  # lower-case codes, e.g. ("en",) or ("en", "la")
    authors_text: str  # the Authors column as written; read into `creators` on first use
    subjects: tuple[str, ...]
    locc: tuple[str, ...]
    bookshelves: tuple[str, ...]
    line: int  # where the row starts in the CSV file

    @property
    def is_text(self) -> bool:
        return self.type == TEXT_TYPE

    @cached_property
    def creators(self) -> tuple[Creator, ...]:
        """Every entry of the Authors column, roles included (parsed lazily: most lists never
        ask, and it is the costliest column of a 75,000-row catalog)."""
        return parse_creators(self.authors_text)

    @property
    def authors(self) -> tuple[Creator, ...]:
        """The creators without a role: the authors proper."""
        return tuple(c for c in self.creators if c.is_author)


@dataclass(frozen=True)
class CatalogQuery:
    """One book-list entry that names books instead of an id."""

    selector: str  # one of SELECTORS
    value: str
    language: str | None = None
    limit: int | None = None

    def __post_init__(self) -> None:
        if self.selector not in SELECTORS:
            raise ValueError(f"unknown selector {self.selector!r}; use one of {', '.join(SELECTORS)}")
        if not fold(self.value):
            raise ValueError(f"`{self.selector}:` is empty; write what to look for")
        if self.selector == "author" and all(w.isdigit() for w in parse_creator(self.value).words):
            raise ValueError(f"`author: {self.value}` holds no name, e.g. author: \"Dickens, Charles\"")
        if self.language is not None and not _LANGUAGE.fullmatch(self.language):
            raise ValueError(
                f"language {self.language!r} is not a lower-case 2-3 letter code such as en"
            )
        if self.limit is not None and (isinstance(self.limit, bool) or self.limit < 1):
            raise ValueError(f"limit must be a positive whole number, got {self.limit!r}")

    def describe(self) -> str:
        """The entry as the user would write it: ``author: "Dickens, Charles", limit: 20``."""
        value = self.value.replace("\\", "\\\\").replace('"', '\\"')
        text = f'{self.selector}: "{value}"'
        if self.language:
            text += f", language: {self.language}"
        if self.limit is not None:
            text += f", limit: {self.limit}"
        return text


def _role(creator: Creator) -> str:
    role = fold(creator.role)
    return "" if role == "author" else role  # `[Author]` in a query means no role


def _creator_matches(query: Creator, words: frozenset[str], creator: Creator) -> bool:
    if _role(query) != _role(creator):
        return False
    if query.dates and "".join(query.dates.split()) != "".join(creator.dates.split()):
        return False
    return words <= creator.words


class Catalog:
    """The catalog's rows by id, and the selection rules of the module docstring."""

    def __init__(
        self, books: Iterable[CatalogBook], source: str, skipped: Iterable[tuple[int, str]] = ()
    ) -> None:
        self.source = source
        self.books = tuple(sorted(books, key=lambda b: b.book_id))
        self.skipped = tuple(skipped)  # (line, reason): rows that could not be read
        self._by_id = {b.book_id: b for b in self.books}

    def __len__(self) -> int:
        return len(self.books)

    def get(self, book_id: int) -> CatalogBook | None:
        return self._by_id.get(book_id)

    def matches(self, query: CatalogQuery, *, any_language: bool = False) -> tuple[int, ...]:
        """Every Text row the query matches, ids ascending, before ``limit``."""
        test = _matcher(query)
        language = None if any_language else query.language
        return tuple(
            b.book_id
            for b in self.books
            if b.is_text and (language is None or language in b.languages) and test(b)
        )

    def select(self, query: CatalogQuery) -> tuple[int, ...]:
        """The ids the query picks: :meth:`matches` cut to ``limit``."""
        found = self.matches(query)
        return found if query.limit is None else found[: query.limit]

    def explain_no_match(self, query: CatalogQuery) -> str:
        """Why a query found nothing, when the catalog can tell: other languages, other roles."""
        hints = []
        if query.language is not None:
            found = self.matches(query, any_language=True)
            other = sorted({lang for i in found for lang in self._by_id[i].languages})
            if other:
                hints.append(f"it matches books in {', '.join(other)} but not in {query.language}")
        if query.selector == "author" and not parse_creator(query.value).role:
            wanted = parse_creator(query.value)
            roles = sorted(
                {c.role for b in self.books if b.is_text for c in b.creators
                 if c.role and wanted.words <= c.words}
            )
            if roles:
                hints.append(
                    f"that name appears only as {', '.join(f'[{r}]' for r in roles)}; add the role "
                    f'to match it, e.g. author: "{wanted.name} [{roles[0]}]"'
                )
        return "; ".join(hints)


def _matcher(query: CatalogQuery):
    needle = fold(query.value)
    if query.selector == "title":
        return lambda b: needle in fold(b.title)
    if query.selector == "subject":
        return lambda b: any(needle in fold(s) for s in b.subjects)
    if query.selector == "bookshelf":
        return lambda b: any(needle in fold(s) for s in b.bookshelves)
    wanted = parse_creator(query.value)
    words = wanted.words
    return lambda b: any(_creator_matches(wanted, words, c) for c in b.creators)


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
        languages=_split(language.lower()),
        authors_text=authors.strip(),
        subjects=_split(subjects),
        locc=_split(locc),
        bookshelves=_split(shelves),
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
