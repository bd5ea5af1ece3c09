"""The book list parser: both SPEC forms, every rejection naming the file and line."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from llm_assets.books.booklist import BookListError, book_list_fingerprint, load_book_list

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
        ("books:\n  - title: Alice\n", 2, "no `id:`"),
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
