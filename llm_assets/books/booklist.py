"""Read and validate the book list (``data/books.yaml``).

The list decides what is downloaded and in which order books enter the corpus, and its ids end up
in file names and URLs. So it is parsed strictly: only positive integers (never a path, a URL or a
quoted string like ``"../x"``), every error names the file and line, and duplicates are dropped
with a warning instead of silently doubling a book's weight in the corpus.
"""

from __future__ import annotations

import hashlib
import logging
import re
from dataclasses import dataclass
from pathlib import Path

import yaml
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

log = logging.getLogger(__name__)

_EXAMPLE = "books:\n  - 1342\n  - id: 84"
_INT_TAG = "tag:yaml.org,2002:int"
_STR_TAG = "tag:yaml.org,2002:str"
_DIGITS = re.compile(r"[0-9]+")
_ITEM_KEYS = ("id", "title")  # long form: `- id: 84` with an optional free-text title


class BookListError(ValueError):
    """The book list cannot be used; the message names the file, the line and the fix."""


@dataclass(frozen=True)
class BookList:
    path: Path
    ids: tuple[int, ...]  # list order, duplicates removed (first occurrence kept)
    duplicates: tuple[int, ...]  # ids that were listed more than once (warned about, dropped)


def _where(path: Path, node: Node | None) -> str:
    return f"{path}, line {node.start_mark.line + 1}" if node is not None else str(path)


def _error(path: Path, node: Node | None, problem: str) -> BookListError:
    return BookListError(
        f"{_where(path, node)}: {problem}. The book list is a mapping with a `books:` list of "
        f"Project Gutenberg ids, for example:\n{_EXAMPLE}"
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


def _id_from_item(path: Path, node: Node) -> int:
    if isinstance(node, ScalarNode):
        return _id_from_scalar(path, node)
    if isinstance(node, MappingNode):
        keys = {}
        for key_node, value_node in node.value:
            key = key_node.value if isinstance(key_node, ScalarNode) else None
            if key not in _ITEM_KEYS:
                raise _error(
                    path, key_node, f"unknown key {key!r} in a book entry (allowed: id, title)"
                )
            keys[key] = value_node
        if "id" not in keys:
            raise _error(path, node, "book entry has no `id:`")
        if not isinstance(keys["id"], ScalarNode):
            raise _error(path, keys["id"], "`id:` must be a number")
        return _id_from_scalar(path, keys["id"])
    raise _error(path, node, "a book entry must be an id (`- 1342`) or `- id: 1342`, not a list")


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
    ids: list[int] = []
    seen: set[int] = set()
    duplicates: list[int] = []
    for item in _books_node(path, text).value:
        book_id = _id_from_item(path, item)
        if book_id in seen:
            if book_id not in duplicates:
                duplicates.append(book_id)
            log.warning(
                "%s: book %d is listed more than once; the repeat is ignored",
                _where(path, item),
                book_id,
            )
            continue
        seen.add(book_id)
        ids.append(book_id)
    return BookList(path=path, ids=tuple(ids), duplicates=tuple(duplicates))


def book_list_fingerprint(path: Path) -> str:
    """SHA-256 of the selected ids in order: comments and formatting are not changes, order is."""
    ids = load_book_list(path).ids
    return hashlib.sha256(",".join(map(str, ids)).encode("ascii")).hexdigest()
