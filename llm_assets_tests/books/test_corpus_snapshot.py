"""One snapshot per build: the corpus is built from the very books.json bytes its key was made from."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from llm_assets.books.corpus import write_corpus
from llm_assets.books.downloads import SELECTION_FILE, SelectionError, snapshot_selection
from llm_assets_tests.gutenberg_server import make_book, write_raw_selection


def test_a_selection_written_after_the_snapshot_changes_neither_the_key_nor_the_build(tmp_path: Path) -> None:
    raw = tmp_path / "raw"
    first, second, third = (make_book(i) for i in (11, 22, 33))
    write_raw_selection(raw, [(11, first.raw), (22, second.raw)])
    keyed_bytes = (raw / SELECTION_FILE).read_bytes()
    snapshot = snapshot_selection(raw)
    # raw_books publishes a longer list while the corpus is being built (it holds another lock)
    write_raw_selection(raw, [(11, first.raw), (22, second.raw), (33, third.raw)])

    (tmp_path / "version").mkdir()
    report = write_corpus(snapshot, raw, tmp_path / "version" / "all_books.txt")
    assert snapshot.digest == hashlib.sha256(keyed_bytes).hexdigest()  # what the stage keys on
    assert [book.id for book in report.books] == [11, 22]  # what it built: the same snapshot


def test_a_book_changed_after_the_snapshot_fails_the_build_naming_it(tmp_path: Path) -> None:
    raw = tmp_path / "raw"
    write_raw_selection(raw, [(11, make_book(11).raw)])
    snapshot = snapshot_selection(raw)
    (raw / "11.txt").write_bytes(make_book(11, title="Another Text").raw)  # not the bytes the key recorded
    (tmp_path / "version").mkdir()
    with pytest.raises(SelectionError, match=r"book 11: .*11\.txt does not match"):
        write_corpus(snapshot, raw, tmp_path / "version" / "all_books.txt")
