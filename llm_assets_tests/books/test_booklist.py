"""The book list parser (ids and catalog queries, every rejection naming the file and line) and
its resolution to ids against the hand-written catalog fixture."""

from __future__ import annotations

import hashlib
import json
import logging
from pathlib import Path

import pytest

from llm_assets.books.booklist import (
    BookListError,
    IdEntry,
    QueryEntry,
    load_book_list,
    needs_catalog,
)
from llm_assets.books.catalog import Catalog, CatalogQuery, load_catalog, parse_catalog
from llm_assets.books.selection import (
    book_list_fingerprint,
    describe_change,
    ids_fingerprint,
    resolve_book_list,
)

REPO_BOOK_LIST = Path(__file__).resolve().parents[2] / "data" / "books.yaml"


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "books.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def test_short_and_long_forms(tmp_path: Path) -> None:
    path = _write(tmp_path, "books:\n  - 1342   # Pride and Prejudice\n  - id: 84\n  - {id: 11, title: Alice}\n  - '76'\n")
    assert load_book_list(path).ids == (1342, 84, 11, 76)


def test_the_repository_book_list_is_valid() -> None:
    book_list = load_book_list(REPO_BOOK_LIST)
    assert book_list.ids and not book_list.duplicates


def test_duplicates_are_dropped_with_a_warning(tmp_path: Path, caplog) -> None:
    path = _write(tmp_path, "books:\n  - 84\n  - 11\n  - id: 84\n  - 11\n  - 84\n")
    with caplog.at_level(logging.WARNING):
        book_list = load_book_list(path)
    assert book_list.ids == (84, 11)
    assert book_list.duplicates == (84, 11)
    assert "line 4" in caplog.text and "84" in caplog.text


@pytest.mark.parametrize(
    ("text", "line", "words"),
    [
        ("books:\n  - 84\n  - ../etc/passwd\n", 3, "path or URL"),
        ("books:\n  - 84\n  - https://evil.example/pg84.txt\n", 3, "path or URL"),
        ("books:\n  - '../x'\n", 2, "path or URL"),
        ("books:\n  - 0\n", 2, "not a Gutenberg id"),
        ("books:\n  - -5\n", 2, "not a positive integer"),
        ("books:\n  - true\n", 2, "boolean"),
        ("books:\n  - 84.0\n", 2, "decimal"),
        ("books:\n  - 0x54\n", 2, "not a positive integer"),
        ("books:\n  - pride\n", 2, "not a number"),
        ("books:\n  -\n  - 84\n", 2, "empty"),
        ("books:\n  - id: 84\n    name: x\n", 3, "unknown key 'name'"),
        ("books:\n  - language: en\n", 2, "no `id:` and none of author, title, subject, bookshelf"),
        ("books:\n  - [84]\n", 2, "not a list"),
        ("books:\n", 1, "empty"),
        ("books: []\n", 1, "empty"),
        ("books: 84\n", 1, "must be a list"),
        ("- 84\n", 1, "top level must be a mapping"),
        ("book:\n  - 84\n", 1, "unknown top-level key 'book'"),
        ("books:\n  - 84\n  - [unclosed\n", 4, "not valid YAML"),
        ("books:\n  - 84\n---\nbooks:\n  - 11\n", 4, "more than one YAML document"),
    ],
)
def test_bad_lists_name_file_and_line(tmp_path: Path, text: str, line: int, words: str) -> None:
    path = _write(tmp_path, text)
    with pytest.raises(BookListError) as caught:
        load_book_list(path)
    message = str(caught.value)
    assert str(path) in message
    assert f"line {line}" in message
    assert words in message


def test_empty_file(tmp_path: Path) -> None:
    with pytest.raises(BookListError, match="books.yaml: the file is empty"):
        load_book_list(_write(tmp_path, "# nothing yet\n"))


def test_missing_file_says_how_to_create_it(tmp_path: Path) -> None:
    with pytest.raises(BookListError, match="not found.*LLM_ASSETS_BOOK_LIST"):
        load_book_list(tmp_path / "nope.yaml")


def test_fingerprint_ignores_comments_and_form_but_not_order(tmp_path: Path) -> None:
    a = tmp_path / "a.yaml"
    b = tmp_path / "b.yaml"
    c = tmp_path / "c.yaml"
    d = tmp_path / "d.yaml"
    a.write_text("books:\n  - 1342\n  - 84\n")
    b.write_text("# my books\nbooks:\n  - id: 1342   # P&P\n  - 84\n  - 84\n")
    c.write_text("books:\n  - 84\n  - 1342\n")
    d.write_text("books:\n  - 1342\n  - 84\n  - 11\n")
    assert book_list_fingerprint(a) == book_list_fingerprint(b)
    assert book_list_fingerprint(a) != book_list_fingerprint(c)
    assert book_list_fingerprint(a) != book_list_fingerprint(d)
    assert len(book_list_fingerprint(a)) == 64


def test_fingerprint_of_an_invalid_list_raises(tmp_path: Path) -> None:
    with pytest.raises(BookListError):
        book_list_fingerprint(_write(tmp_path, "books:\n  - ../x\n"))


# --- catalog queries: parsing --------------------------------------------------------------------

CATALOG_FIXTURE = Path(__file__).parent / "fixtures" / "pg_catalog.csv"
ISSUE_EXAMPLE = """\
books:
  - 1342
  - author: "Dickens, Charles"      # every text by this author
    language: en
    limit: 20
  - bookshelf: "Science Fiction"     # or subject: ..., title: ...
    language: en
    limit: 50
"""


@pytest.fixture(scope="module")
def catalog() -> Catalog:
    return load_catalog(CATALOG_FIXTURE)


def test_query_entries_beside_ids(tmp_path: Path) -> None:
    path = _write(
        tmp_path,
        ISSUE_EXAMPLE
        + "  - {id: 11, title: Alice}\n  - title: Alice\n  - subject: Time travel\n    allow_empty: true\n"
        + "  - author: Ibsen\n    language: no\n",
    )
    book_list = load_book_list(path)
    assert needs_catalog(book_list)
    assert [type(e).__name__ for e in book_list.entries] == [
        "IdEntry", "QueryEntry", "QueryEntry", "IdEntry", "QueryEntry", "QueryEntry", "QueryEntry"
    ]
    assert [e.line for e in book_list.entries] == [2, 3, 6, 9, 10, 11, 13]
    dickens = book_list.entries[1]
    assert isinstance(dickens, QueryEntry)
    assert dickens.query == CatalogQuery("author", "Dickens, Charles", "en", 20) and not dickens.allow_empty
    assert dickens.describe() == 'author: "Dickens, Charles", language: en, limit: 20'
    assert book_list.entries[3] == IdEntry(9, 11)  # `title:` beside `id:` is a label
    assert book_list.entries[4].query == CatalogQuery("title", "Alice")
    assert book_list.entries[5].allow_empty
    assert book_list.entries[5].describe() == 'subject: "Time travel", allow_empty: true'
    assert book_list.entries[6].query.language == "no"  # YAML 1.1 reads `no` as false: not here


def test_ids_of_a_list_with_queries_must_be_resolved(tmp_path: Path) -> None:
    book_list = load_book_list(_write(tmp_path, ISSUE_EXAMPLE))
    with pytest.raises(BookListError, match=r"books.yaml, line 3: `author: \"Dickens, Charles\"") as caught:
        book_list.ids
    assert "resolve_book_list" in str(caught.value)
    with pytest.raises(BookListError, match="line 3"):
        resolve_book_list(book_list)  # no catalog given
    with pytest.raises(BookListError, match="line 3"):
        book_list_fingerprint(book_list.path)


def test_a_list_of_ids_needs_no_catalog(tmp_path: Path) -> None:
    book_list = load_book_list(_write(tmp_path, "books:\n  - 1342\n  - id: 84\n  - 1342\n"))
    assert not needs_catalog(book_list) and book_list.ids == (1342, 84)
    resolved = resolve_book_list(book_list)
    assert resolved.ids == (1342, 84) and resolved.duplicates == (1342,)
    assert [(b.book_id, b.line, b.entry, b.title) for b in resolved.books] == [
        (1342, 2, "1342", ""), (84, 3, "84", "")
    ]
    assert not needs_catalog(load_book_list(REPO_BOOK_LIST))


@pytest.mark.parametrize(
    ("entry", "line", "words"),
    [
        ('author: Dickens\n    title: "Carol"', 4, "has `author:` and `title:` (write two entries)"),
        ("author: Dickens\n    year: 1843", 4, "unknown key 'year'"),
        ("author: Dickens\n    limit: 0", 4, "`limit:` must be a positive whole number"),
        ("author: Dickens\n    limit: -3", 4, "`limit:` must be a positive whole number"),
        ("author: Dickens\n    limit: 2.5", 4, "`limit:` must be a positive whole number"),
        ("author: Dickens\n    limit: '20'", 4, "`limit:` must be a positive whole number"),
        ("author: Dickens\n    limit: true", 4, "`limit:` must be a positive whole number"),
        ("author: Dickens\n    language: English", 4, "`language:` must be one language code"),
        ("author: Dickens\n    language: [en, fr]", 4, "`language:` must be one language code"),
        ("author: Dickens\n    allow_empty: maybe", 4, "`allow_empty:` must be true or false"),
        ("author:", 3, "`author:` needs a value"),
        ("author: '  '", 3, "`author:` needs a value"),
        ("author: [Dickens, Wells]", 3, "takes one text, not a list"),
        ('author: "1812-1870"', 3, "holds no name"),
        ("id: 84\n    language: en", 4, "`language:` does not go with `id:`"),
        ("id: 84\n    author: Shelley", 4, "`author:` does not go with `id:`"),
        ("author: Dickens\n    author: Wells", 4, "`author:` appears twice"),
    ],
)
def test_bad_query_entries_name_file_and_line(tmp_path: Path, entry: str, line: int, words: str) -> None:
    path = _write(tmp_path, f"books:\n  - 84\n  - {entry}\n")
    with pytest.raises(BookListError) as caught:
        load_book_list(path)
    message = str(caught.value)
    assert f"{path}, line {line}:" in message and words in message
    assert 'author: "Dickens, Charles"' in message  # the example shows the query form


# --- catalog queries: resolution -----------------------------------------------------------------


def test_the_issue_example_resolves_in_list_order(tmp_path: Path, catalog: Catalog) -> None:
    resolved = resolve_book_list(load_book_list(_write(tmp_path, ISSUE_EXAMPLE)), catalog)
    dickens = [46, 98, 730, 766, 1023, 1400, 24022]  # ascending; not the Sound row 20795
    science_fiction = [32, 35, 36, 62, 84, 159, 164, 1013, 1951, 5230]
    assert list(resolved.ids) == [1342, *dickens, *science_fiction]
    by_id = {b.book_id: b for b in resolved.books}
    assert (by_id[1342].line, by_id[1342].entry, by_id[1342].title) == (2, "1342", "Pride and Prejudice")
    assert (by_id[98].line, by_id[98].entry) == (3, 'author: "Dickens, Charles", language: en, limit: 20')
    assert (by_id[84].line, by_id[84].entry) == (6, 'bookshelf: "Science Fiction", language: en, limit: 50')
    assert by_id[84].title == "Frankenstein; Or, The Modern Prometheus"
    assert [(e.line, e.matched, len(e.chosen), len(e.new)) for e in resolved.entries] == [
        (2, 1, 1, 1), (3, 7, 7, 7), (6, 10, 10, 10)
    ]
    metadata = json.loads(json.dumps(resolved.metadata()))
    assert metadata["book_ids"] == list(resolved.ids) and metadata["fingerprint"] == resolved.fingerprint
    assert metadata["chosen_by"][1] == {
        "id": 46, "line": 3, "entry": 'author: "Dickens, Charles", language: en, limit: 20',
        "title": "A Christmas Carol in Prose; Being a Ghost Story of Christmas",
    }


def test_titles_in_metadata_are_one_line(tmp_path: Path, catalog: Catalog) -> None:
    resolved = resolve_book_list(load_book_list(_write(tmp_path, "books:\n  - 21937\n  - 999999\n")), catalog)
    assert [b.title for b in resolved.books] == ["Modern Icelandic Plays Eyvind of the Hills; The Hraun Farm", ""]
    assert resolved.ids == (21937, 999999)  # an id missing from the catalog is still downloaded


def test_duplicates_first_occurrence_wins_and_limit_counts_before_them(tmp_path: Path, catalog: Catalog) -> None:
    text = (
        "books:\n  - 98\n  - author: Dickens\n    limit: 3\n  - title: Christmas Carol\n"
        "  - author: H. G. Wells\n    limit: 2\n  - bookshelf: Science Fiction\n    limit: 3\n  - 46\n"
    )
    resolved = resolve_book_list(load_book_list(_write(tmp_path, text)), catalog)
    # Dickens, limit 3: 46, 98, 730 (98 already chosen: the entry adds two, not three)
    assert resolved.ids == (98, 46, 730, 24022, 35, 36, 32)
    assert [e.chosen for e in resolved.entries] == [(98,), (46, 98, 730), (46, 24022), (35, 36), (32, 35, 36), (46,)]
    assert [e.new for e in resolved.entries] == [(98,), (46, 730), (24022,), (35, 36), (32,), ()]
    assert resolved.duplicates == (98, 46, 35, 36)
    assert {b.book_id: b.line for b in resolved.books}[46] == 3


def test_an_entry_matching_nothing_names_file_line_and_entry(tmp_path: Path, catalog: Catalog) -> None:
    text = (
        "books:\n  - 84\n  - author: Charles Dikkens\n  - author: Victor Hugo\n    language: de\n"
        "  - author: Arthur Rackham\n"
    )
    path = _write(tmp_path, text)
    with pytest.raises(BookListError) as caught:
        resolve_book_list(load_book_list(path), catalog)
    message = str(caught.value)
    assert f'{path}, line 3: `author: "Charles Dikkens"` matches no book in the catalog' in message
    assert f'{path}, line 4: `author: "Victor Hugo", language: de` matches no book' in message
    assert "it matches books in en, fr but not in de" in message
    assert f"{path}, line 6: " in message and '[Illustrator]' in message
    assert "allow_empty: true" in message and str(CATALOG_FIXTURE) in message


def test_allow_empty_lets_an_entry_match_nothing(tmp_path: Path, catalog: Catalog, caplog) -> None:
    text = "books:\n  - 84\n  - title: Necronomicon\n    allow_empty: true\n"
    with caplog.at_level(logging.WARNING):
        resolved = resolve_book_list(load_book_list(_write(tmp_path, text)), catalog)
    assert resolved.ids == (84,)
    assert resolved.entries[1].matched == 0 and resolved.entries[1].chosen == ()
    assert "line 3" in caplog.text and "allow_empty" in caplog.text
    only_empty = _write(tmp_path, "books:\n  - title: Necronomicon\n    allow_empty: true\n")
    with pytest.raises(BookListError, match="selects no book"):
        resolve_book_list(load_book_list(only_empty), catalog)


def test_fingerprint_of_ids_is_unchanged_by_the_feature(tmp_path: Path) -> None:
    path = _write(tmp_path, "books:\n  - 1342\n  - 84\n")
    expected = hashlib.sha256(b"1342,84").hexdigest()  # the hash before catalog queries existed
    assert book_list_fingerprint(path) == expected == ids_fingerprint([1342, 84])
    assert resolve_book_list(load_book_list(path)).fingerprint == expected


def test_fingerprint_is_over_the_resolved_ids(tmp_path: Path, catalog: Catalog) -> None:
    query = _write(tmp_path, "books:\n  - author: Wells\n    limit: 2\n")
    same_ids = tmp_path / "ids.yaml"
    same_ids.write_text("books:\n  - 35   # The Time Machine\n  - 36\n")
    assert book_list_fingerprint(query, catalog) == book_list_fingerprint(same_ids)
    edited = _write(tmp_path, "books:\n  - author: Wells\n    limit: 3\n")
    assert book_list_fingerprint(edited, catalog) != book_list_fingerprint(same_ids)


def test_a_catalog_refresh_changes_the_fingerprint_only_when_the_resolution_changes(
    tmp_path: Path, catalog: Catalog
) -> None:
    path = _write(tmp_path, "books:\n  - author: Wells\n  - 1342\n")
    before = resolve_book_list(load_book_list(path), catalog)
    text = CATALOG_FIXTURE.read_text(encoding="utf-8")
    unrelated = parse_catalog(text + "70000,Text,2023-01-01,A New Book,en,\"Nobody, Ann\",,,\n")
    assert resolve_book_list(load_book_list(path), unrelated).fingerprint == before.fingerprint
    wells_row = '775,Text,1996-12-01,When the Sleeper Wakes,en,"Wells, H. G. (Herbert George), 1866-1946",,,\n'
    refreshed = parse_catalog(text + wells_row)
    after = resolve_book_list(load_book_list(path), refreshed)
    assert after.fingerprint != before.fingerprint
    assert after.ids == (35, 36, 159, 775, 1013, 5230, 1342)
    assert describe_change(before.ids, after.ids) == "books 1 added (775)"


def test_a_shelf_list_picks_the_same_books_from_an_old_and_a_new_catalog(tmp_path: Path, catalog: Catalog) -> None:
    """`bookshelf: "Category: Novels"` (the 2025 name), `"Browsing: Novels"` (the name before) and
    `"Novels"` resolve alike against the current file and one written before the rename."""
    old = parse_catalog(CATALOG_FIXTURE.read_text(encoding="utf-8").replace("Category: ", "Browsing: "), "old.csv")
    resolved = set()
    for shelf in ("Category: Novels", "Browsing: Novels", "Novels"):
        path = _write(tmp_path, f'books:\n  - bookshelf: "{shelf}"\n    language: en\n    limit: 1000\n')
        for version in (catalog, old):
            resolved.add(resolve_book_list(load_book_list(path), version).ids)
    (ids,) = resolved
    assert ids[:5] == (11, 32, 35, 36, 46) and len(ids) == 29
    assert 6838 not in ids and 76921 not in ids  # French; the newest book has no shelf yet


def test_the_readme_example_resolves(tmp_path: Path, catalog: Catalog) -> None:
    readme = (REPO_BOOK_LIST.parents[1] / "README.md").read_text(encoding="utf-8")
    example = readme.split("### The book list", 1)[1].split("```yaml\n", 1)[1].split("```", 1)[0]
    resolved = resolve_book_list(load_book_list(_write(tmp_path, example)), catalog)
    assert resolved.ids[:2] == (1342, 84)
    assert {b.entry for b in resolved.books} >= {'bookshelf: "Category: Science-Fiction & Fantasy", language: en, limit: 50',
                                                'title: "Aesop\'s Fables"'}
    assert 21 in resolved.ids and 1661 in resolved.ids  # typed with ', published with ’; a renamed shelf


def test_describe_change() -> None:
    assert describe_change([1, 2], [1, 2]) == "unchanged"
    assert describe_change([1, 2], [2, 1]) == "the same books in a new order"
    assert describe_change([1, 2, 3], [3, 4]) == "books 1 added (4); 2 removed (1, 2)"
    assert describe_change([], list(range(12))).endswith("(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, ...)")
