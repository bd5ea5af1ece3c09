"""The corpus metadata a user reads in the UI: which books the cleaner was unsure of, and why."""

import json

from llm_assets.books.cleaning import build_corpus
from llm_assets.orchestration import metadata as md
from llm_assets_tests.gutenberg_server import make_book


def test_corpus_metadata_names_books_kept_whole_and_why(tmp_path) -> None:
    import hashlib

    books = [make_book(5, "modern"), make_book(9, "none", newline="\n")]
    raw = tmp_path / "raw"
    raw.mkdir()
    entries = []
    for book in books:
        (raw / f"{book.book_id}.txt").write_bytes(book.raw)
        entries.append({"id": book.book_id, "sha256": hashlib.sha256(book.raw).hexdigest()})
    (raw / "books.json").write_text(json.dumps({"books": entries, "skipped": []}))

    report = md.corpus_report(build_corpus(raw, tmp_path / "all.txt", tmp_path / "all.json"))
    # The report round-trips through JSON: a reused run shows the same metadata as the first.
    meta = md.corpus(json.loads(json.dumps(report, default=str)))

    assert meta["unmarked_books"] == [9]
    assert meta["books_with_warnings"] == [9]
    table = meta["per_book"].value
    row = next(line for line in table.splitlines() if line.startswith("| 9 "))
    assert "kept whole" in row and "no Project Gutenberg markers recognised" in row
    assert "| 5 " in table
