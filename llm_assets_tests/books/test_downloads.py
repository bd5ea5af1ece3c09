"""The download cache against a local mirror: each book fetched once, verified, nothing half-written."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from llm_assets.books.corpus import build_corpus
from llm_assets.books.downloads import download_books
from llm_assets.books.gutenberg import (
    BookUnavailableError,
    NotABookError,
)
from llm_assets_tests.gutenberg_server import (
    GutenbergMirror,
    book_path,
    fast_client,
)


def _selection(raw_dir: Path) -> dict:
    return json.loads((raw_dir / "books.json").read_text())


def test_download_writes_bytes_as_served_and_records_them(gutenberg_mirror, books, tmp_path) -> None:
    raw_dir = tmp_path / "raw"
    seen = []
    report = download_books(
        [33, 11, 22], raw_dir, fast_client(gutenberg_mirror),
        progress=lambda n, total, book: seen.append((n, total, book.book_id)),
    )
    assert seen == [(1, 3, 33), (2, 3, 11), (3, 3, 22)]
    assert [b.book_id for b in report.books] == [33, 11, 22]
    assert all(b.fetched for b in report.books)
    assert report.requests == 3
    assert report.bytes_downloaded == sum(len(b.raw) for b in books.values())
    for book_id, book in books.items():
        assert (raw_dir / f"{book_id}.txt").read_bytes() == book.raw
    index = json.loads((raw_dir / "index.json").read_text())["books"]
    assert index["11"]["sha256"] == hashlib.sha256(books[11].raw).hexdigest()
    assert index["11"]["size"] == len(books[11].raw) and index["11"]["fetched_at"]
    assert [b["id"] for b in _selection(raw_dir)["books"]] == [33, 11, 22]
    assert list(raw_dir.glob(".*tmp")) == []


def test_unchanged_rerun_makes_no_request(gutenberg_mirror, books, tmp_path) -> None:
    download_books([11, 22, 33], tmp_path, fast_client(gutenberg_mirror))
    gutenberg_mirror.clear_log()
    report = download_books([11, 22, 33], tmp_path, fast_client(gutenberg_mirror))
    assert gutenberg_mirror.count() == 0 and report.requests == 0
    assert not any(b.fetched for b in report.books)


def test_adding_a_book_fetches_that_book_alone(gutenberg_mirror, books, tmp_path) -> None:
    download_books([11, 22], tmp_path, fast_client(gutenberg_mirror))
    gutenberg_mirror.clear_log()
    report = download_books([11, 22, 33], tmp_path, fast_client(gutenberg_mirror))
    assert [r.path for r in gutenberg_mirror.requests] == [book_path(33)]
    assert [b.fetched for b in report.books] == [False, False, True]


def test_removing_a_book_removes_it_from_the_corpus(gutenberg_mirror, books, tmp_path) -> None:
    raw = tmp_path / "raw"
    download_books([11, 22, 33], raw, fast_client(gutenberg_mirror))
    download_books([11, 33], raw, fast_client(gutenberg_mirror))
    assert [b["id"] for b in _selection(raw)["books"]] == [11, 33]
    report = build_corpus(raw, tmp_path / "all.txt")
    assert [b.id for b in report.books] == [11, 33]
    assert books[22].body not in (tmp_path / "all.txt").read_text()


def test_force_refresh_downloads_again(gutenberg_mirror, books, tmp_path) -> None:
    download_books([11, 22], tmp_path, fast_client(gutenberg_mirror))
    gutenberg_mirror.clear_log()
    report = download_books([11, 22], tmp_path, fast_client(gutenberg_mirror), force_refresh=True)
    assert gutenberg_mirror.count() == 2 and all(b.fetched for b in report.books)


def test_a_changed_file_on_disk_is_fetched_again(gutenberg_mirror, books, tmp_path) -> None:
    download_books([11, 22], tmp_path, fast_client(gutenberg_mirror))
    (tmp_path / "22.txt").write_bytes(books[22].raw[:-1] + b"X")  # same size, other hash
    gutenberg_mirror.clear_log()
    download_books([11, 22], tmp_path, fast_client(gutenberg_mirror))
    assert [r.path for r in gutenberg_mirror.requests] == [book_path(22)]
    assert (tmp_path / "22.txt").read_bytes() == books[22].raw


def test_a_damaged_index_means_downloading_again(gutenberg_mirror, books, tmp_path) -> None:
    download_books([11], tmp_path, fast_client(gutenberg_mirror))
    (tmp_path / "index.json").write_text("{not json")
    report = download_books([11], tmp_path, fast_client(gutenberg_mirror))
    assert report.books[0].fetched


@pytest.mark.parametrize("fault", ["missing", "html", "truncated"])
def test_unavailable_book_fails_the_run_and_loses_nothing(gutenberg_mirror, books, tmp_path, fault) -> None:
    raw = tmp_path / "raw"
    download_books([11], raw, fast_client(gutenberg_mirror))
    before = _selection(raw)
    if fault == "missing":
        bad = 404
    elif fault == "html":
        bad = 22
        gutenberg_mirror.serve_html(22)
    else:
        bad = 22
        gutenberg_mirror.truncate(22, times=None)
    with pytest.raises(BookUnavailableError) as caught:
        download_books([11, bad, 33], raw, fast_client(gutenberg_mirror, max_attempts=2))
    error = caught.value
    assert error.book_id == bad and error.urls_tried
    assert str(bad) in str(error) and error.urls_tried[0] in str(error)
    assert isinstance(error, NotABookError) == (fault == "html")
    # The books before and after the bad one are on disk and recorded; nothing for the bad one.
    index = json.loads((raw / "index.json").read_text())["books"]
    assert set(index) == {"11", "33"}
    assert (raw / "33.txt").read_bytes() == books[33].raw
    assert not (raw / f"{bad}.txt").exists()
    assert list(raw.glob(".*tmp")) == []
    assert _selection(raw) == before  # no partial selection written
    # Fix the list: the books already fetched cost no request.
    gutenberg_mirror.clear_log()
    download_books([11, 33], raw, fast_client(gutenberg_mirror))
    assert gutenberg_mirror.count() == 0


def test_a_run_stopped_mid_list_keeps_what_it_wrote_recorded(gutenberg_mirror, books, tmp_path) -> None:
    """index.json is written every few seconds, not per book; a run stopped mid-list (a Dagster
    step interrupted) still records every book it wrote, so none is fetched again."""
    raw = tmp_path / "raw"

    def stop_after_two(n: int, of: int, book) -> None:
        if n == 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        download_books([11, 22, 33], raw, fast_client(gutenberg_mirror), progress=stop_after_two)
    assert set(json.loads((raw / "index.json").read_text())["books"]) == {"11", "22"}
    gutenberg_mirror.clear_log()
    download_books([11, 22, 33], raw, fast_client(gutenberg_mirror))
    assert gutenberg_mirror.count() == 1  # book 33 only


def test_several_unavailable_books_are_all_named(gutenberg_mirror, books, tmp_path) -> None:
    with pytest.raises(BookUnavailableError, match=r"also unavailable: 405") as caught:
        download_books([404, 11, 405], tmp_path, fast_client(gutenberg_mirror))
    assert caught.value.book_id == 404


def test_skip_unavailable_lists_skipped_books(gutenberg_mirror, books, tmp_path) -> None:
    gutenberg_mirror.serve_html(22)
    report = download_books(
        [11, 22, 404, 33], tmp_path, fast_client(gutenberg_mirror), skip_unavailable=True
    )
    assert [b.book_id for b in report.books] == [11, 33]
    assert [book_id for book_id, _ in report.skipped] == [22, 404]
    selection = _selection(tmp_path)
    assert [b["id"] for b in selection["books"]] == [11, 33]
    assert [s["id"] for s in selection["skipped"]] == [22, 404]
    assert not (tmp_path / "22.txt").exists()


def test_bad_ids_are_rejected_before_any_request(gutenberg_mirror, tmp_path) -> None:
    with pytest.raises(ValueError):
        download_books([11, -3], tmp_path, fast_client(gutenberg_mirror))
    assert gutenberg_mirror.count() == 0


# --- the real books through a misbehaving mirror -------------------------------------------------


def test_shared_books_through_a_faulty_mirror(shared_gutenberg, tmp_path) -> None:
    from llm_assets_tests.books.shared_books import load_manifest, score_lines

    manifest = {b.book_id: b for b in load_manifest(shared_gutenberg)}
    ids = list(manifest)
    with GutenbergMirror(root=shared_gutenberg / "mirror") as mirror:
        mirror.fail(ids[0], status=503, times=2)
        mirror.fail(ids[1], status=429, retry_after="0")
        mirror.truncate(ids[2], times=1)
        mirror.slow(ids[3], delay=0.6, times=1)
        raw = tmp_path / "raw"
        report = download_books(ids, raw, fast_client(mirror, timeout=0.3))
        assert len(report.books) == 18
        for book_id, book in manifest.items():
            assert (raw / f"{book_id}.txt").read_bytes() == book.raw()
        corpus = build_corpus(raw, tmp_path / "all.txt")
        text = (tmp_path / "all.txt").read_bytes()
        for entry in corpus.books:
            kept = text[entry.start : entry.end].decode("utf-8").split("\n")
            score = score_lines(kept, manifest[entry.id].body_lines())
            assert score.recall >= 0.995 and score.precision >= 0.995 and not score.leaked
        assert corpus.unmarked == ()
        mirror.clear_log()
        download_books(ids, raw, fast_client(mirror))
        assert mirror.count() == 0
