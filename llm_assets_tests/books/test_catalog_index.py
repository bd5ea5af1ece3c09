"""The catalog parsed once per version: the derived index, the file's identity, the resolution cache.

Through the real client against the local test mirror, on the fixture catalog in the real format:
what the sensor reads every 30 s must give exactly what a fresh parse gives, and must notice a
catalog that changed on disk.
"""

from __future__ import annotations

import json
import logging
import os
import time
from pathlib import Path

import pytest

from llm_assets.books.booklist import load_book_list
from llm_assets.books.catalog import Catalog, CatalogQuery, load_catalog
from llm_assets.books.catalog_cache import CATALOG_FILE, CATALOG_META_FILE, cached_catalog, fetch_catalog
from llm_assets.books.catalog_index import (
    HEADER_FILE,
    FileIdentity,
    IndexedCatalog,
    index_dir,
    trusted_identity,
)
from llm_assets.books.catalog_search import SEARCH_COLUMNS
from llm_assets.books.resolution_store import CACHE_FILE
from llm_assets.books.selection import resolve_book_list, resolve_with_catalog
from llm_assets_tests.gutenberg_server import GutenbergMirror, fast_client

FIXTURE = Path(__file__).parent / "fixtures" / "pg_catalog.csv"
CATALOG = FIXTURE.read_bytes()
QUERIES = [  # every selector and the rules' corner cases, as in test_catalog.py
    CatalogQuery("author", "Dickens"), CatalogQuery("author", "Dickens, Charles, 1812-1870", "en", 3),
    CatalogQuery("author", "Rackham, Arthur [Illustrator]"), CatalogQuery("author", "Aesop, 621? BCE-565? BCE"),
    CatalogQuery("author", "Paris Peace Conference"), CatalogQuery("author", "Andrew Lang [Unknown role]"),
    CatalogQuery("author", "Victor Hugo", "fr"), CatalogQuery("author", "Charles Wells"),
    CatalogQuery("title", "Aesop's Fables"), CatalogQuery("title", "christmas carol"),
    CatalogQuery("title", "Icelandic Plays Eyvind"), CatalogQuery("title", "Two Latin Plays", "la"),
    CatalogQuery("subject", "time travel"), CatalogQuery("subject", "Fiction; Time travel"),
    CatalogQuery("bookshelf", "Category: Novels"), CatalogQuery("bookshelf", "Browsing: History - American"),
    CatalogQuery("bookshelf", "Science Fiction", "en", 4), CatalogQuery("bookshelf", "Littérature"),
]


@pytest.fixture
def raw(gutenberg_mirror: GutenbergMirror, tmp_path: Path) -> Path:
    """A raw/ folder where the catalog was just downloaded (the way raw_books does it)."""
    gutenberg_mirror.add_catalog(CATALOG)
    fetch_catalog(tmp_path, fast_client(gutenberg_mirror, max_attempts=3))
    return tmp_path


def _age(path: Path, seconds: float) -> None:
    """Make the file look modified ``seconds`` ago (as a catalog downloaded last week is)."""
    then = time.time() - seconds
    os.utime(path, (then, then))


def test_a_download_writes_the_index_beside_the_catalog_as_json(raw: Path) -> None:
    folder = index_dir(raw)
    assert sorted(p.name for p in folder.iterdir()) == sorted([HEADER_FILE, *(f"{n}.json" for n in SEARCH_COLUMNS)])
    header = json.loads((folder / HEADER_FILE).read_text(encoding="utf-8"))
    meta = json.loads((raw / CATALOG_META_FILE).read_text(encoding="utf-8"))
    assert header["catalog_sha256"] == meta["sha256"] and header["books"] == meta["books"] == 60
    assert header["identity"]["size"] == len(CATALOG)
    for path in folder.iterdir():  # JSON through and through: nothing here is ever unpickled
        assert json.loads(path.read_bytes())["catalog_sha256" if path.name != HEADER_FILE else "format"]


def test_the_index_answers_every_rule_as_a_fresh_parse_does(raw: Path) -> None:
    indexed, parsed = cached_catalog(raw).catalog, load_catalog(FIXTURE)
    assert isinstance(indexed, IndexedCatalog) and len(indexed) == len(parsed) == 60
    for query in QUERIES:
        assert indexed.select(query) == parsed.select(query), query
        assert indexed.explain_no_match(query) == parsed.explain_no_match(query), query
    for book in parsed.books:
        assert indexed.title(book.book_id) == " ".join(book.title.split())
    assert indexed.title(999_999) == ""


def test_a_query_loads_only_the_columns_it_reads(raw: Path) -> None:
    book_list = raw / "books.yaml"
    book_list.write_text('books:\n  - bookshelf: "Category: Novels"\n    limit: 5\n', encoding="utf-8")
    catalog = cached_catalog(raw).catalog
    resolve_book_list(load_book_list(book_list), catalog)
    assert sorted(catalog._columns) == ["ids", "languages", "shelf_keys", "text", "titles"]


def test_a_file_changed_right_after_its_download_is_still_noticed(raw: Path, caplog) -> None:
    """Same size, same inode, possibly the same coarse mtime: a fresh identity is not trusted."""
    path = raw / CATALOG_FILE
    assert not trusted_identity(index_dir(raw), _sha(raw), FileIdentity.of(path))
    with open(path, "r+b") as handle:  # rewritten in place, same size
        handle.write(CATALOG.replace(b"Dickens", b"Dickenz"))
    with caplog.at_level(logging.WARNING):
        assert cached_catalog(raw) is None
    assert "changed on disk" in caplog.text


def test_an_old_unchanged_file_is_trusted_by_its_identity_and_a_rewrite_is_not(raw: Path, caplog) -> None:
    path = raw / CATALOG_FILE
    _age(path, 3600)
    assert cached_catalog(raw) is not None  # hashed once, and its identity recorded
    assert trusted_identity(index_dir(raw), _sha(raw), FileIdentity.of(path))
    assert cached_catalog(raw).catalog.select(CatalogQuery("author", "Dickens", limit=1)) == (46,)
    path.write_bytes(CATALOG.replace(b"Dickens", b"Dickenz"))  # a new mtime: hashed again, refused
    assert not trusted_identity(index_dir(raw), _sha(raw), FileIdentity.of(path))
    with caplog.at_level(logging.WARNING):
        assert cached_catalog(raw) is None
    assert "SHA-256 differs" in caplog.text


def test_a_missing_index_is_rebuilt_from_the_file_once(raw: Path) -> None:
    for path in index_dir(raw).iterdir():
        path.unlink()
    first = cached_catalog(raw).catalog
    assert isinstance(first, Catalog)  # parsed from the CSV, and indexed for next time
    assert (index_dir(raw) / HEADER_FILE).is_file()
    again = cached_catalog(raw).catalog
    assert isinstance(again, IndexedCatalog)
    assert again.select(CatalogQuery("author", "Wells")) == first.select(CatalogQuery("author", "Wells"))


def test_a_column_of_another_version_is_never_used(raw: Path, caplog) -> None:
    column = index_dir(raw) / "creators.json"
    content = json.loads(column.read_bytes())
    content["catalog_sha256"] = "0" * 64
    content["values"] = [""] * len(content["values"])  # would match nothing
    column.write_text(json.dumps(content), encoding="utf-8")
    catalog = cached_catalog(raw).catalog
    with caplog.at_level(logging.WARNING):
        assert catalog.select(CatalogQuery("author", "Dickens")) == (46, 98, 730, 766, 1023, 1400, 24022)
    assert "creators.json is missing or belongs to another catalog version" in caplog.text


def test_a_resolution_is_cached_per_list_and_catalog_version(raw: Path, gutenberg_mirror: GutenbergMirror) -> None:
    path = raw / "books.yaml"
    path.write_text('books:\n  - author: "Dickens, Charles"\n    limit: 2\n  - 1342\n', encoding="utf-8")
    first, _ = resolve_with_catalog(load_book_list(path), raw, None)
    cache = index_dir(raw) / CACHE_FILE
    assert cache.is_file() and first.ids == (46, 98, 1342)
    again, _ = resolve_with_catalog(load_book_list(path), raw, None)
    assert again == first and again.books[0].title == "A Christmas Carol in Prose; Being a Ghost Story of Christmas"
    path.write_text('books:\n  # a comment is not a change\n  - author: "Dickens, Charles"\n    limit: 3\n  - 1342\n',
                    encoding="utf-8")
    edited, _ = resolve_with_catalog(load_book_list(path), raw, None)
    assert edited.ids == (46, 98, 730, 1342) and edited.entries[0].line == 3
    pickwick = b'580,Text,1996-07-01,The Pickwick Papers,en,"Dickens, Charles, 1812-1870",,,Category: Novels\n'
    gutenberg_mirror.add_catalog(CATALOG + pickwick)  # Gutenberg adds a book; raw_books downloads it
    newer, cached = resolve_with_catalog(load_book_list(path), raw, fast_client(gutenberg_mirror), refresh=True)
    assert cached.downloaded and newer.ids == (46, 98, 580, 1342)
    cache.write_text("{not json", encoding="utf-8")  # a damaged cache is only a miss
    assert resolve_with_catalog(load_book_list(path), raw, None)[0] == newer


def _sha(raw: Path) -> str:
    return json.loads((raw / CATALOG_META_FILE).read_text(encoding="utf-8"))["sha256"]
