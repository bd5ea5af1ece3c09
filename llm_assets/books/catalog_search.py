"""The selection rules (see :mod:`llm_assets.books.catalog`) run over search columns.

A catalog is searched through a few columns, one value per row in ascending id order: the text
each rule compares, already folded. The same columns come from a freshly parsed CSV or from the
derived index beside it (:mod:`llm_assets.books.catalog_index`), so the rules exist once, and a
query reads only the columns it needs (a ``bookshelf:`` list never loads the 10 MB of subjects).
Folded values never hold a newline or a tab (:func:`~llm_assets.books.folding.fold`), so those
separate the items of one row and a query can never match across two items.
"""

from __future__ import annotations

import bisect
import re
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Protocol

from llm_assets.books.folding import (
    SHELF_PREFIX,
    dates_key,
    fold,
    parse_creator,
    role_key,
    shelf_key,
    split_list,
)

SELECTORS = ("author", "title", "subject", "bookshelf")
TEXT_TYPE = "Text"
_LANGUAGE = re.compile(r"[a-z]{2,3}")
_WORDS = re.compile(r"\w+")
# Bump when a column's content or a rule changes: derived indexes and cached resolutions made by
# older code are then rebuilt instead of trusted.
RULES_VERSION = 2


class Row(Protocol):
    """What a column is built from: one catalog row (``CatalogBook``)."""

    book_id: int
    types: tuple[str, ...]
    title: str
    languages: tuple[str, ...]
    authors_text: str
    subjects: tuple[str, ...]
    bookshelves: tuple[str, ...]


# Catalog values repeat (a shelf on thousands of rows, a prolific author's entry, a common subject):
# each distinct one is folded or parsed once per process, not once per row.
_CACHE = 1 << 16


@lru_cache(maxsize=_CACHE)
def _folded(item: str) -> str:
    return fold(item)


@lru_cache(maxsize=_CACHE)
def _shelf(item: str) -> str:
    return shelf_key(item)


@lru_cache(maxsize=_CACHE)
def _creator_cell(raw: str) -> str:
    """One creator as searched: "words<TAB>dates<TAB>role" (words folded and sorted)."""
    creator = parse_creator(raw)
    return f"{' '.join(sorted(creator.words))}\t{dates_key(creator.dates)}\t{creator.role}"


def forget_repeats() -> None:
    """Empty the caches above (after an index is built: a long-running process keeps no catalog)."""
    for cached in (_folded, _shelf, _creator_cell):
        cached.cache_clear()


# name -> how one row's value is made. Every value is JSON-plain (int or str).
SEARCH_COLUMNS: dict[str, Callable[[Row], Any]] = {
    "ids": lambda b: b.book_id,
    "text": lambda b: int(TEXT_TYPE in b.types),
    "languages": lambda b: f" {' '.join(b.languages)} ",
    "titles": lambda b: " ".join(b.title.split()),  # as shown in metadata: on one line
    "title_keys": lambda b: fold(b.title),
    "subject_keys": lambda b: "\n".join(map(_folded, b.subjects)),
    "shelf_keys": lambda b: "\n".join(map(_shelf, b.bookshelves)),
    "creators": lambda b: "\n".join(map(_creator_cell, split_list(b.authors_text))),
}


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


@dataclass(frozen=True)
class _AuthorQuery:
    words: frozenset[str]
    dates: str
    role: str

    @classmethod
    def of(cls, text: str) -> _AuthorQuery:
        wanted = parse_creator(text)
        return cls(wanted.words, dates_key(wanted.dates), role_key(wanted.role))

    def creators(self, cell: str) -> Iterator[tuple[frozenset[str], str, str]]:
        """(words, dates, raw role) of each creator in one row whose name holds every query word."""
        if not all(w in cell for w in self.words):  # a cheap substring test first
            return
        for creator in cell.split("\n"):
            words, dates, role = creator.split("\t")
            names = frozenset(words.split(" "))
            if self.words <= names:
                yield names, dates, role

    def matches(self, cell: str) -> bool:
        return any(
            role_key(role) == self.role and (not self.dates or dates == self.dates)
            for _, dates, role in self.creators(cell)
        )


class CatalogSearch:
    """The rules over columns; a subclass says where a column comes from (:meth:`column`)."""

    source: str

    def column(self, name: str) -> Sequence[Any]:
        """One column of SEARCH_COLUMNS, in ascending id order (loaded or built on first use)."""
        raise NotImplementedError

    def __len__(self) -> int:
        return len(self.column("ids"))

    def title(self, book_id: int) -> str:
        """The row's title on one line, or "" when the catalog does not know the id."""
        ids = self.column("ids")
        at = bisect.bisect_left(ids, book_id)
        return self.column("titles")[at] if at < len(ids) and ids[at] == book_id else ""

    def _rows(self, query: CatalogQuery) -> Iterable[int]:
        """Positions of every row (of any type or language) the selector matches."""
        if query.selector == "author":
            author, cells = _AuthorQuery.of(query.value), self.column("creators")
            longest = max(author.words, key=len)  # one substring test per row first: the rarest word
            return [i for i in [i for i, cell in enumerate(cells) if longest in cell] if author.matches(cells[i])]
        name, needle = {
            "title": ("title_keys", fold(query.value)),
            "subject": ("subject_keys", fold(query.value)),
            "bookshelf": ("shelf_keys", shelf_key(query.value)),
        }[query.selector]
        return [i for i, cell in enumerate(self.column(name)) if needle in cell]

    def matches(self, query: CatalogQuery, *, any_language: bool = False) -> tuple[int, ...]:
        """Every Text row the query matches, ids ascending, before ``limit``."""
        ids, text, languages = self.column("ids"), self.column("text"), self.column("languages")
        language = None if any_language or query.language is None else f" {query.language} "
        return tuple(
            ids[i] for i in self._rows(query) if text[i] and (language is None or language in languages[i])
        )

    def select(self, query: CatalogQuery) -> tuple[int, ...]:
        """The ids the query picks: :meth:`matches` cut to ``limit``."""
        found = self.matches(query)
        return found if query.limit is None else found[: query.limit]

    def explain_no_match(self, query: CatalogQuery) -> str:
        """Why a query found nothing, when the catalog can tell: other languages, other roles."""
        hints = []
        if query.language is not None:
            found = set(self.matches(query, any_language=True))
            languages = self.column("languages")
            other = sorted({lang for i, book_id in enumerate(self.column("ids")) if book_id in found
                            for lang in languages[i].split()})
            if other:
                hints.append(f"it matches books in {', '.join(other)} but not in {query.language}")
        wanted = parse_creator(query.value)
        if query.selector == "author" and not wanted.role:
            author = _AuthorQuery.of(query.value)
            text = self.column("text")
            roles = sorted({role for i, cell in enumerate(self.column("creators")) if text[i]
                            for _, _, role in author.creators(cell) if role})
            if roles:
                hints.append(
                    f"that name appears only as {', '.join(f'[{r}]' for r in roles)}; add the role "
                    f'to match it, e.g. author: "{wanted.name} [{roles[0]}]"'
                )
        if query.selector == "bookshelf":
            hints.extend(self._renamed_shelf(shelf_key(query.value)))
        return "; ".join(hints)

    def _renamed_shelf(self, key: str) -> list[str]:
        """For an automated shelf (``Category:``/``Browsing:``) found nowhere: the shelves that
        share a word with it, since Gutenberg gave some shelves new names in 2025 (such as
        ``Category: Crime, Thrillers and Mystery``)."""
        if not key.startswith(SHELF_PREFIX):
            return []
        found = set(_WORDS.findall(key[len(SHELF_PREFIX):]))
        words = {w for w in found if len(w) > 3} or found  # not "and", "of"
        shelves = {s for cell in self.column("shelf_keys") for s in cell.split("\n") if s.startswith(SHELF_PREFIX)}
        similar = sorted(s for s in shelves if words & set(_WORDS.findall(s[len(SHELF_PREFIX):])))
        hint = ("Project Gutenberg renamed some of its automated shelves in 2025 (`Browsing:` and `Category:` "
                "read as one, but not every name after them stayed)")
        if similar:
            hint += "; this catalog has " + ", ".join(f'"{s}"' for s in similar[:5])
        return [hint]
