"""The corpus: cleaned books joined in list order, published with their index as one unit, read back."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from llm_assets.books.corpus import (
    INDEX_FILE,
    CorpusError,
    build_corpus,
    check_corpus,
    iter_corpus_books,
    read_corpus_index,
    resolve_corpus,
)
from llm_assets.books.downloads import SelectionError
from llm_assets_tests.gutenberg_server import make_book, write_raw_selection
from llm_assets_tests.text.conftest import read_books, write_corpus

# --- building ------------------------------------------------------------------------------------


def test_build_corpus_orders_books_and_records_byte_offsets(tmp_path: Path) -> None:
    books = [
        make_book(30, "this", language="fr", encoding="latin-1"),
        make_book(10, "modern", language="is"),
        make_book(20, "none", language="nl", newline="\n"),
    ]
    write_raw_selection(tmp_path / "raw", [(b.book_id, b.raw) for b in books])
    seen: list[tuple[int, int, int]] = []
    report = build_corpus(
        tmp_path / "raw", tmp_path / "all_books.txt",
        progress=lambda n, total, book_id: seen.append((n, total, book_id)),
    )  # fmt: skip
    data = (tmp_path / "all_books.txt").read_bytes()
    assert b"\r" not in data and data.endswith(b"\n")
    assert data.decode("utf-8") == "\n\n".join(b.body for b in books) + "\n"
    files = resolve_corpus(tmp_path / "all_books.txt")
    index = json.loads(files.index.read_text())
    assert [b["id"] for b in index["books"]] == [30, 10, 20]
    for entry, book in zip(index["books"], books):
        assert data[entry["start"] : entry["end"]].decode("utf-8") == book.body
    assert report.unmarked == (20,)
    assert [bool(b.warnings) for b in report.books] == [False, False, True]
    assert "kept whole" in report.books[2].warnings[0]
    assert report.total_bytes == len(data)
    assert seen == [(1, 3, 30), (2, 3, 10), (3, 3, 20)]
    assert [b.lines for b in report.books] == [b.body.count("\n") + 1 for b in books]
    assert read_corpus_index(files) == list(report.books)  # warnings included: reused runs show them


def test_text_and_index_are_published_as_one_unit(tmp_path: Path) -> None:
    """A reader that resolved the corpus before a rebuild keeps a matching text and index."""
    raw = tmp_path / "raw"
    write_raw_selection(raw, [(1, make_book(1, "modern").raw), (2, make_book(2, "modern").raw)])
    corpus = tmp_path / "all_books.txt"
    build_corpus(raw, corpus)
    before = resolve_corpus(corpus)
    old_books = [(b.id, text) for b, text in iter_corpus_books(before)]
    write_raw_selection(raw, [(3, make_book(3, "this").raw)])
    build_corpus(raw, corpus)
    after = resolve_corpus(corpus)
    assert corpus.is_symlink() and after.text.parent == after.index.parent != before.text.parent
    assert [(b.id, text) for b, text in iter_corpus_books(before)] == old_books  # the old pair, intact
    assert [b.id for b, _ in iter_corpus_books(after)] == [3]
    assert not (tmp_path / INDEX_FILE).exists()  # no second file that could disagree with the first


def test_build_corpus_without_selection_names_the_fix(tmp_path: Path) -> None:
    with pytest.raises(SelectionError, match="books.json.*raw_books"):
        build_corpus(tmp_path, tmp_path / "c.txt")


def test_build_corpus_rejects_an_altered_raw_file(tmp_path: Path) -> None:
    book = make_book(7, "modern")
    write_raw_selection(tmp_path, [(7, book.raw)])
    (tmp_path / "7.txt").write_bytes(book.raw + b"tampered")
    with pytest.raises(SelectionError, match="book 7.*does not match"):
        build_corpus(tmp_path, tmp_path / "c.txt")
    assert not (tmp_path / "c.txt").exists()  # nothing half-written


def test_a_failed_build_keeps_the_previous_corpus_and_leaves_nothing_behind(tmp_path: Path) -> None:
    write_raw_selection(tmp_path, [(5, make_book(5, "modern").raw)])
    build_corpus(tmp_path, tmp_path / "c.txt")
    before = (tmp_path / "c.txt").read_bytes()
    write_raw_selection(tmp_path, [(8, b"\r\n  \r\n")])
    with pytest.raises(CorpusError, match="book 8"):
        build_corpus(tmp_path, tmp_path / "c.txt")
    assert (tmp_path / "c.txt").read_bytes() == before
    assert [p.name for p in (tmp_path / ".c.txt.versions").iterdir() if p.name.startswith(".tmp")] == []


def test_check_corpus_finds_leaked_boilerplate(tmp_path: Path) -> None:
    clean = write_corpus(tmp_path / "clean", {1: "A story.\nThe end."})
    assert check_corpus(clean.files).passed
    leaky = write_corpus(tmp_path / "leaky", {1: "A story.\n*** END OF THE PROJECT GUTENBERG EBOOK X ***"})
    check = check_corpus(leaky.files)
    assert not check.passed and check.leaked_lines == ("*** END OF THE PROJECT GUTENBERG EBOOK X ***",)


def test_the_corpus_is_the_same_bytes_on_one_worker_or_two(tmp_path: Path, shared_gutenberg: Path) -> None:
    """Books are cleaned in parallel but written in list order: text, index and report agree."""
    files = sorted((shared_gutenberg / "mirror").glob("cache/epub/*/pg*.txt"))
    real = [(int(p.parent.name), p.read_bytes()) for p in files]
    generated = [(90 + i, make_book(90 + i, style).raw) for i, style in enumerate(("wrapped", "none", "this"))]
    books = [real[5], *generated[:2], *real[:5], generated[2], *real[6:]]  # list order, not id order
    write_raw_selection(tmp_path / "raw", books)
    built = {}
    for workers in (1, 2):
        report = build_corpus(tmp_path / "raw", tmp_path / f"w{workers}" / "all_books.txt", workers=workers)
        files = resolve_corpus(tmp_path / f"w{workers}" / "all_books.txt")
        built[workers] = (files.text.read_bytes(), files.index.read_bytes(), report.books, report.unmarked)
    assert built[1] == built[2]
    assert [b.id for b in built[2][2]] == [book_id for book_id, _ in books]
    assert built[2][3] == (91,)  # the generated book without markers, found by a worker


def test_a_worker_s_error_names_the_book_and_publishes_nothing(tmp_path: Path) -> None:
    books = [(i, make_book(i, "modern").raw) for i in range(1, 9)]
    write_raw_selection(tmp_path, books)
    (tmp_path / "6.txt").write_bytes(books[5][1] + b"tampered")
    with pytest.raises(SelectionError, match="book 6.*does not match"):
        build_corpus(tmp_path, tmp_path / "c.txt", workers=2)
    assert not (tmp_path / "c.txt").exists()


# --- reading back --------------------------------------------------------------------------------


def test_iter_corpus_books_yields_each_book_by_its_offsets(tmp_path: Path) -> None:
    corpus = write_corpus(tmp_path, read_books())
    assert [(b.id, text) for b, text in iter_corpus_books(corpus.files)] == list(corpus.books.items())


def test_missing_corpus_says_which_asset_to_materialize(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=r"all_books.txt.*`corpus` asset"):
        resolve_corpus(tmp_path / "all_books.txt")


def test_stale_index_names_the_book(tmp_path: Path) -> None:
    c = write_corpus(tmp_path, {1: "one", 2: "two"})
    index = json.loads(c.index.read_text())
    index["books"][1]["end"] += 100
    c.index.write_text(json.dumps(index))
    with pytest.raises(CorpusError, match=r"Book 2 .*re-materialize the `corpus`"):
        list(iter_corpus_books(c.files))


def test_malformed_index_names_the_file(tmp_path: Path) -> None:
    c = write_corpus(tmp_path, {1: "one"})
    c.index.write_text('{"books": [{"id": 1}]}')
    with pytest.raises(CorpusError, match=r"all_books.index.json is not of the form"):
        list(iter_corpus_books(c.files))


def test_invalid_utf8_names_the_book(tmp_path: Path) -> None:
    c = write_corpus(tmp_path, {1: "one", 7: "sev"})
    data = bytearray(c.corpus.read_bytes())
    data[-2] = 0xFF
    c.corpus.write_bytes(bytes(data))
    with pytest.raises(CorpusError, match=r"Book 7 .*not valid UTF-8"):
        list(iter_corpus_books(c.files))
