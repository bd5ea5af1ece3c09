"""The corpus metadata a user reads in the UI: which books the cleaner was unsure of, and why."""

import json

from llm_assets.books.corpus import build_corpus
from llm_assets.orchestration import metadata as md
from llm_assets_tests.gutenberg_server import make_book, write_raw_selection


def test_corpus_metadata_names_books_kept_whole_and_why(tmp_path) -> None:
    books = [make_book(5, "modern"), make_book(9, "none", newline="\n")]
    raw = tmp_path / "raw"
    write_raw_selection(raw, [(b.book_id, b.raw) for b in books])

    report = md.corpus_report(build_corpus(raw, tmp_path / "all.txt"))
    # The report round-trips through JSON: a reused run shows the same metadata as the first.
    meta = md.corpus(json.loads(json.dumps(report, default=str)))

    assert meta["unmarked_books"] == [9]
    assert meta["books_with_warnings"] == [9]
    table = meta["per_book"].value
    row = next(line for line in table.splitlines() if line.startswith("| 9 "))
    assert "kept whole" in row and "no Project Gutenberg markers recognised" in row
    assert "| 5 " in table


def test_corpus_metadata_stays_small_however_long_the_list(tmp_path) -> None:
    """A thousand-book corpus would put a thousand rows in every record the UI loads: the table
    shows SHOWN books, those the cleaner was unsure of first, and says where the rest are."""
    books = [make_book(i, "none" if i in (30, 40) else "modern", newline="\n" if i in (30, 40) else "\r\n")
             for i in range(1, 41)]
    raw = tmp_path / "raw"
    write_raw_selection(raw, [(b.book_id, b.raw) for b in books])
    meta = md.corpus(md.corpus_report(build_corpus(raw, tmp_path / "all.txt")))
    rows = [line for line in meta["per_book"].value.splitlines() if line.startswith("| ") and "book id" not in line]
    assert len(rows) == md.SHOWN and meta["books"] == 40
    assert rows[0].startswith("| 30 ") and rows[1].startswith("| 40 ") and rows[2].startswith("| 1 ")
    assert f"and {40 - md.SHOWN} more books" in meta["per_book"].value
    assert "all_books.index.json" in meta["per_book"].value
