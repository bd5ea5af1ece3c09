"""Read and validate the book list (``data/books.yaml``), and resolve it to Gutenberg ids.

The list decides what is downloaded and in which order books enter the corpus, and its ids end up
in file names and URLs. So it is parsed strictly: only positive integers (never a path, a URL or a
quoted string like ``"../x"``), every error names the file and line, and duplicates are dropped
with a warning instead of silently doubling a book's weight in the corpus.

Entries are ids (``- 1342``, ``- id: 84`` with an optional free-text ``title:`` label) or queries
against Project Gutenberg's catalog, exactly one of ``author:``, ``title:``, ``subject:``,
``bookshelf:`` with optional ``language:`` (a code such as ``en``), ``limit:`` (a positive whole
number) and ``allow_empty:`` (true: matching nothing is not an error). ``title:`` *with* ``id:`` is
a label, *without* it a query. The matching rules are in :mod:`llm_assets.books.catalog`. A list of
ids alone never needs the catalog (:func:`needs_catalog`).

Turning entries into ids is ``selection.py``'s job.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from pathlib import Path

import yaml
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from llm_assets.books.catalog import SELECTORS, CatalogQuery

log = logging.getLogger(__name__)

_EXAMPLE = (
    'books:\n  - 1342\n  - id: 84\n  - author: "Dickens, Charles"   # or title:, subject:, '
    "bookshelf:\n    language: en\n    limit: 20"
)
_INT_TAG = "tag:yaml.org,2002:int"
_STR_TAG = "tag:yaml.org,2002:str"
_BOOL_TAG = "tag:yaml.org,2002:bool"
_NULL_TAG = "tag:yaml.org,2002:null"
_DIGITS = re.compile(r"[0-9]+")
_LANGUAGE = re.compile(r"[A-Za-z]{2,3}")
_ITEM_KEYS = ("id", "title")  # long form: `- id: 84` with an optional free-text title
_QUERY_KEYS = (*SELECTORS, "language", "limit", "allow_empty")


class BookListError(ValueError):
    """The book list cannot be used; the message names the file, the line and the fix."""


@dataclass(frozen=True)
class IdEntry:
    """``- 1342`` or ``- id: 1342``."""

    line: int
    book_id: int

    def describe(self) -> str:
        return str(self.book_id)


@dataclass(frozen=True)
class QueryEntry:
    """``- author: ...`` (or title/subject/bookshelf), resolved against the catalog."""

    line: int
    query: CatalogQuery
    allow_empty: bool = False

    def describe(self) -> str:
        return self.query.describe() + (", allow_empty: true" if self.allow_empty else "")


BookEntry = IdEntry | QueryEntry


@dataclass(frozen=True)
class BookList:
    path: Path
    entries: tuple[BookEntry, ...]  # as listed, repeats included
    duplicates: tuple[int, ...]  # plain ids listed more than once (warned about, dropped)

    @property
    def needs_catalog(self) -> bool:
        return any(isinstance(e, QueryEntry) for e in self.entries)

    @property
    def ids(self) -> tuple[int, ...]:
        """The listed ids in order, duplicates dropped; a list with queries must be resolved."""
        if self.needs_catalog:
            raise self.catalog_needed()
        return tuple(dict.fromkeys(e.book_id for e in self.entries if isinstance(e, IdEntry)))

    def catalog_needed(self) -> BookListError:
        first = next(e for e in self.entries if isinstance(e, QueryEntry))
        return BookListError(
            f"{self.path}, line {first.line}: `{first.describe()}` names books through Project "
            "Gutenberg's catalog; resolve the list with resolve_book_list(book_list, catalog)."
        )


def needs_catalog(book_list: BookList) -> bool:
    """Whether resolving the list needs Project Gutenberg's catalog (any non-id entry)."""
    return book_list.needs_catalog


def _where(path: Path, node: Node | None) -> str:
    return f"{path}, line {node.start_mark.line + 1}" if node is not None else str(path)


def _error(path: Path, node: Node | None, problem: str) -> BookListError:
    return BookListError(
        f"{_where(path, node)}: {problem}. The book list is a mapping with a `books:` list of "
        f"Project Gutenberg ids or catalog queries, for example:\n{_EXAMPLE}"
    )


def _id_from_scalar(path: Path, node: ScalarNode) -> int:
    value = node.value.strip()
    # Plain digits, or a quoted string of digits ("84"): anything else is rejected, including
    # YAML's other integer spellings (0x54, 1_342, +84) that would surprise a reader.
    if node.tag in (_INT_TAG, _STR_TAG) and _DIGITS.fullmatch(value):
        book_id = int(value)
        if book_id == 0:
            raise _error(path, node, "book id 0 is not a Gutenberg id (ids start at 1)")
        return book_id
    kind = {
        "tag:yaml.org,2002:bool": "a boolean",
        "tag:yaml.org,2002:float": "a decimal number",
        "tag:yaml.org,2002:null": "empty",
        _INT_TAG: "not a positive integer",
    }.get(node.tag, "not a number")
    if "/" in value or "\\" in value or ".." in value or ":" in value:
        kind = "a path or URL, not a Gutenberg id"
    raise _error(path, node, f"entry {value!r} is {kind}; write the bare number, e.g. 1342")


def _keys(path: Path, node: MappingNode) -> dict[str, tuple[Node, Node]]:
    keys: dict[str, tuple[Node, Node]] = {}
    for key_node, value_node in node.value:
        key = key_node.value if isinstance(key_node, ScalarNode) else None
        if not isinstance(key, str):
            raise _error(path, key_node, "a book entry's keys are words such as `id:` or `author:`")
        if key in keys:
            raise _error(path, key_node, f"`{key}:` appears twice in one book entry")
        keys[key] = (key_node, value_node)
    return keys


def _id_entry(path: Path, node: MappingNode, keys: dict[str, tuple[Node, Node]]) -> IdEntry:
    for key, (key_node, _) in keys.items():
        if key in _QUERY_KEYS and key not in _ITEM_KEYS:
            raise _error(
                path, key_node, f"`{key}:` does not go with `id:`: an entry is either one book "
                "(`id:`, with an optional `title:` label) or a query (author/title/subject/bookshelf)"
            )
        if key not in _ITEM_KEYS:
            raise _error(path, key_node, f"unknown key {key!r} in a book entry (allowed: id, title)")
    id_node = keys["id"][1]
    if not isinstance(id_node, ScalarNode):
        raise _error(path, id_node, "`id:` must be a number")
    return IdEntry(node.start_mark.line + 1, _id_from_scalar(path, id_node))


def _scalar_text(path: Path, key: str, node: Node) -> str:
    if not isinstance(node, ScalarNode):
        raise _error(
            path, node, f"`{key}:` takes one text, not a list or mapping (write one entry each)"
        )
    if node.tag == _NULL_TAG or not node.value.strip():
        raise _error(path, node, f"`{key}:` needs a value, e.g. {key}: \"...\"")
    return node.value.strip()


def _query_options(
    path: Path, keys: dict[str, tuple[Node, Node]]
) -> tuple[str | None, int | None, bool]:
    """(language, limit, allow_empty) of a query entry, each checked."""
    language = limit = None
    allow_empty = False
    if "language" in keys:
        node = keys["language"][1]
        value = node.value.strip() if isinstance(node, ScalarNode) else ""
        if not _LANGUAGE.fullmatch(value):  # the text, whatever the tag: `no` is Norwegian
            raise _error(path, node, "`language:` must be one language code such as en, fr or de")
        language = value.lower()
    if "limit" in keys:
        node = keys["limit"][1]
        if not (isinstance(node, ScalarNode) and node.tag == _INT_TAG and _DIGITS.fullmatch(node.value)
                and int(node.value) > 0):
            raise _error(path, node, "`limit:` must be a positive whole number, e.g. limit: 20")
        limit = int(node.value)
    if "allow_empty" in keys:
        node = keys["allow_empty"][1]
        if not (isinstance(node, ScalarNode) and node.tag == _BOOL_TAG):
            raise _error(path, node, "`allow_empty:` must be true or false")
        allow_empty = node.value.lower() in ("true", "yes", "on", "y")
    return language, limit, allow_empty


def _query_entry(path: Path, node: MappingNode, keys: dict[str, tuple[Node, Node]]) -> QueryEntry:
    for key, (key_node, _) in keys.items():
        if key not in _QUERY_KEYS:
            raise _error(
                path, key_node, f"unknown key {key!r} in a book entry (allowed: id, title; or one of "
                f"{', '.join(SELECTORS)} with language, limit, allow_empty)"
            )
    selectors = [key for key in keys if key in SELECTORS]
    if not selectors:
        raise _error(path, node, f"book entry has no `id:` and none of {', '.join(SELECTORS)}")
    if len(selectors) > 1:
        raise _error(
            path, keys[selectors[1]][0], f"one entry takes one of {', '.join(SELECTORS)}; this one "
            f"has `{selectors[0]}:` and `{selectors[1]}:` (write two entries)"
        )
    selector = selectors[0]
    value = _scalar_text(path, selector, keys[selector][1])
    language, limit, allow_empty = _query_options(path, keys)
    try:
        query = CatalogQuery(selector, value, language, limit)
    except ValueError as exc:
        raise _error(path, keys[selector][1], str(exc)) from None
    return QueryEntry(node.start_mark.line + 1, query, allow_empty)


def _entry_from_item(path: Path, node: Node) -> BookEntry:
    if isinstance(node, ScalarNode):
        return IdEntry(node.start_mark.line + 1, _id_from_scalar(path, node))
    if isinstance(node, MappingNode):
        keys = _keys(path, node)
        return _id_entry(path, node, keys) if "id" in keys else _query_entry(path, node, keys)
    raise _error(
        path, node, "a book entry must be an id (`- 1342`), `- id: 1342` or a query, not a list"
    )


def _books_node(path: Path, text: str) -> SequenceNode:
    try:
        documents = list(yaml.compose_all(text, Loader=yaml.SafeLoader))
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{path}, line {mark.line + 1}" if mark is not None else str(path)
        problem = getattr(exc, "problem", None) or str(exc)
        raise BookListError(f"{where}: not valid YAML ({problem}); fix the syntax.") from None
    documents = [d for d in documents if d is not None]
    if not documents:
        raise _error(path, None, "the file is empty")
    if len(documents) > 1:
        raise _error(path, documents[1], "the file holds more than one YAML document")
    root = documents[0]
    if not isinstance(root, MappingNode):
        raise _error(path, root, "the top level must be a mapping with a `books:` key")
    books = None
    for key_node, value_node in root.value:
        key = key_node.value if isinstance(key_node, ScalarNode) else None
        if key != "books":
            raise _error(path, key_node, f"unknown top-level key {key!r} (only `books:` is read)")
        books = value_node
    if books is None:
        raise _error(path, root, "there is no `books:` key")
    if isinstance(books, ScalarNode) and books.tag == "tag:yaml.org,2002:null":
        raise _error(path, books, "`books:` is empty; list at least one book")
    if not isinstance(books, SequenceNode):
        raise _error(path, books, "`books:` must be a list (one `- id` per line)")
    if not books.value:
        raise _error(path, books, "`books:` is empty; list at least one book")
    return books


def load_book_list(path: Path) -> BookList:
    """Parse and validate the book list at ``path``."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise BookListError(
            f"{path}: book list not found. Create it (or set LLM_ASSETS_BOOK_LIST), e.g.:\n{_EXAMPLE}"
        ) from None
    except UnicodeDecodeError as exc:
        raise BookListError(f"{path}: not UTF-8 text ({exc}); save it as UTF-8.") from None
    entries: list[BookEntry] = []
    seen: set[int] = set()
    duplicates: list[int] = []
    for item in _books_node(path, text).value:
        entry = _entry_from_item(path, item)
        entries.append(entry)
        if not isinstance(entry, IdEntry):
            continue
        if entry.book_id in seen:
            if entry.book_id not in duplicates:
                duplicates.append(entry.book_id)
            log.warning(
                "%s: book %d is listed more than once; the repeat is ignored",
                _where(path, item),
                entry.book_id,
            )
        seen.add(entry.book_id)
    return BookList(path=path, entries=tuple(entries), duplicates=tuple(duplicates))
