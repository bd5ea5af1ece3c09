"""The Gutenberg client and download cache against a local mirror that misbehaves on purpose."""

from __future__ import annotations

import hashlib
import json
import time
from email.utils import format_datetime
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from llm_assets import __version__
from llm_assets.books.cleaning import build_corpus
from llm_assets.books.gutenberg import (
    GUTENBERG_ORG,
    BookUnavailableError,
    GutenbergClient,
    NotABookError,
    download_books,
    parse_retry_after,
)
from llm_assets_tests.gutenberg_server import GutenbergMirror, book_path, make_book, make_books


def _client(mirror: GutenbergMirror, **kwargs) -> GutenbergClient:
    options = {"timeout": 0.5, "max_attempts": 4, "backoff_seconds": 0.01}
    options.update(kwargs)
    return GutenbergClient(mirror.url, **options)


@pytest.fixture
def books(gutenberg_mirror: GutenbergMirror) -> dict:
    generated = make_books([11, 22, 33])
    for book_id, book in generated.items():
        gutenberg_mirror.add_book(book_id, book.raw)
    return generated


# --- politeness --------------------------------------------------------------------------------


def test_user_agent_names_the_project_and_version(gutenberg_mirror, books) -> None:
    _client(gutenberg_mirror).fetch(11)
    agent = gutenberg_mirror.requests[0].headers["User-Agent"]
    assert f"llm-assets/{__version__}" in agent


def test_two_seconds_between_requests_on_gutenberg_org_only() -> None:
    assert GutenbergClient().min_interval == 2.0
    assert GutenbergClient("https://gutenberg.org/").min_interval == 2.0
    assert GutenbergClient("http://127.0.0.1:9").min_interval == 0.0
    assert GutenbergClient("https://mirror.example.org/gutenberg").min_interval == 0.0


def test_urls_follow_the_mirror_layout() -> None:
    assert GutenbergClient("http://m.example/pg/").urls_for(84) == [
        "http://m.example/pg/cache/epub/84/pg84.txt"
    ]
    urls = GutenbergClient(GUTENBERG_ORG).urls_for(84)
    assert urls[0] == f"{GUTENBERG_ORG}/cache/epub/84/pg84.txt" and len(urls) == 3
    for bad in (0, -1, True, "84"):
        with pytest.raises(ValueError):
            GutenbergClient().urls_for(bad)  # type: ignore[arg-type]


def test_min_interval_spaces_requests(gutenberg_mirror, books) -> None:
    client = _client(gutenberg_mirror, min_interval=0.25)
    gutenberg_mirror.fail(22, status=503, times=1)
    for book_id in books:
        client.fetch(book_id)
    times = [r.time for r in gutenberg_mirror.requests]
    assert len(times) == 4  # retries are paced too
    assert min(b - a for a, b in zip(times, times[1:])) >= 0.24


def test_no_pause_on_other_mirrors(gutenberg_mirror, books) -> None:
    client = _client(gutenberg_mirror)
    began = time.monotonic()
    for _ in range(3):
        for book_id in books:
            client.fetch(book_id)
    assert time.monotonic() - began < 1.0


# --- retries -------------------------------------------------------------------------------------


def test_transient_503s_are_retried(gutenberg_mirror, books) -> None:
    gutenberg_mirror.fail(11, status=503, times=2)
    client = _client(gutenberg_mirror)
    body, url = client.fetch(11)
    assert body == books[11].raw and url.endswith(book_path(11))
    assert gutenberg_mirror.count(11) == 3 and client.requests_made == 3


def test_backoff_grows_between_attempts(gutenberg_mirror, books) -> None:
    gutenberg_mirror.fail(11, status=500, times=3)
    began = time.monotonic()
    _client(gutenberg_mirror, backoff_seconds=0.1).fetch(11)
    assert time.monotonic() - began >= 0.1 + 0.2 + 0.4 - 0.02  # 0.1 * 2**n


def test_429_honours_retry_after(gutenberg_mirror, books) -> None:
    gutenberg_mirror.fail(11, status=429, times=1, retry_after="1")
    began = time.monotonic()
    body, _ = _client(gutenberg_mirror).fetch(11)
    assert body == books[11].raw
    assert time.monotonic() - began >= 0.95  # not the 0.01 s backoff
    assert gutenberg_mirror.count(11) == 2


def test_parse_retry_after() -> None:
    assert parse_retry_after("3") == 3.0
    assert parse_retry_after(None) is None and parse_retry_after("soon") is None
    later = format_datetime(datetime.now(timezone.utc) + timedelta(seconds=30), usegmt=True)
    assert 25 <= parse_retry_after(later) <= 31
    assert parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT") == 0.0


def test_retries_are_bounded(gutenberg_mirror, books) -> None:
    gutenberg_mirror.fail(11, status=503, times=None)
    with pytest.raises(BookUnavailableError) as caught:
        _client(gutenberg_mirror, max_attempts=3).fetch(11)
    assert gutenberg_mirror.count(11) == 3
    assert "HTTP 503" in str(caught.value) and caught.value.book_id == 11


def test_body_shorter_than_content_length_is_a_failed_attempt(gutenberg_mirror, books) -> None:
    gutenberg_mirror.truncate(22, times=2, keep=0.4)
    body, _ = _client(gutenberg_mirror).fetch(22)
    assert body == books[22].raw
    assert gutenberg_mirror.count(22) == 3


def test_slow_response_times_out_and_is_retried(gutenberg_mirror, books) -> None:
    gutenberg_mirror.slow(33, delay=0.8, times=1)
    body, _ = _client(gutenberg_mirror, timeout=0.3).fetch(33)
    assert body == books[33].raw
    assert gutenberg_mirror.count(33) == 2


def test_always_slow_gives_up(gutenberg_mirror, books) -> None:
    gutenberg_mirror.slow(33, delay=0.6, times=None)
    with pytest.raises(BookUnavailableError, match="(?i)timeout|timed out"):
        _client(gutenberg_mirror, timeout=0.2, max_attempts=2).fetch(33)


def test_dropped_connection_is_retried(gutenberg_mirror, books) -> None:
    gutenberg_mirror.reset(11, times=1)
    assert _client(gutenberg_mirror).fetch(11)[0] == books[11].raw
    assert gutenberg_mirror.count(11) == 2


# --- what is not a book --------------------------------------------------------------------------


def test_404_is_not_retried_and_names_id_and_urls(gutenberg_mirror) -> None:
    with pytest.raises(BookUnavailableError) as caught:
        _client(gutenberg_mirror).fetch(404)
    error = caught.value
    assert not isinstance(error, NotABookError)
    assert error.book_id == 404
    assert error.urls_tried == (f"{gutenberg_mirror.url}{book_path(404)}",)
    assert "404" in str(error) and error.urls_tried[0] in str(error)
    assert gutenberg_mirror.count() == 1


def test_html_page_with_200_is_not_a_book(gutenberg_mirror, books) -> None:
    gutenberg_mirror.serve_html(11)
    with pytest.raises(NotABookError, match="11.*HTML"):
        _client(gutenberg_mirror).fetch(11)
    assert gutenberg_mirror.count(11) == 1


def test_html_served_as_text_plain_is_still_not_a_book(gutenberg_mirror) -> None:
    gutenberg_mirror.add_book(5, b"\n  <!DOCTYPE html><html><body>captcha</body></html>")
    with pytest.raises(NotABookError):
        _client(gutenberg_mirror).fetch(5)


def test_empty_body_is_not_a_book(gutenberg_mirror, books) -> None:
    gutenberg_mirror.serve_empty(11)
    with pytest.raises(NotABookError, match="empty"):
        _client(gutenberg_mirror).fetch(11)


def test_absurdly_large_body_is_not_a_book(gutenberg_mirror, books) -> None:
    with pytest.raises(NotABookError, match="max_bytes"):
        _client(gutenberg_mirror, max_bytes=1000).fetch(11)


# --- the download cache --------------------------------------------------------------------------


def _selection(raw_dir: Path) -> dict:
    return json.loads((raw_dir / "books.json").read_text())


def test_download_writes_bytes_as_served_and_records_them(gutenberg_mirror, books, tmp_path) -> None:
    raw_dir = tmp_path / "raw"
    seen = []
    report = download_books(
        [33, 11, 22], raw_dir, _client(gutenberg_mirror),
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
    download_books([11, 22, 33], tmp_path, _client(gutenberg_mirror))
    gutenberg_mirror.clear_log()
    report = download_books([11, 22, 33], tmp_path, _client(gutenberg_mirror))
    assert gutenberg_mirror.count() == 0 and report.requests == 0
    assert not any(b.fetched for b in report.books)


def test_adding_a_book_fetches_that_book_alone(gutenberg_mirror, books, tmp_path) -> None:
    download_books([11, 22], tmp_path, _client(gutenberg_mirror))
    gutenberg_mirror.clear_log()
    report = download_books([11, 22, 33], tmp_path, _client(gutenberg_mirror))
    assert [r.path for r in gutenberg_mirror.requests] == [book_path(33)]
    assert [b.fetched for b in report.books] == [False, False, True]


def test_removing_a_book_removes_it_from_the_corpus(gutenberg_mirror, books, tmp_path) -> None:
    raw = tmp_path / "raw"
    download_books([11, 22, 33], raw, _client(gutenberg_mirror))
    download_books([11, 33], raw, _client(gutenberg_mirror))
    assert [b["id"] for b in _selection(raw)["books"]] == [11, 33]
    report = build_corpus(raw, tmp_path / "all.txt", tmp_path / "all.json")
    assert [b.book_id for b in report.books] == [11, 33]
    assert books[22].body not in (tmp_path / "all.txt").read_text()


def test_force_refresh_downloads_again(gutenberg_mirror, books, tmp_path) -> None:
    download_books([11, 22], tmp_path, _client(gutenberg_mirror))
    gutenberg_mirror.clear_log()
    report = download_books([11, 22], tmp_path, _client(gutenberg_mirror), force_refresh=True)
    assert gutenberg_mirror.count() == 2 and all(b.fetched for b in report.books)


def test_a_changed_file_on_disk_is_fetched_again(gutenberg_mirror, books, tmp_path) -> None:
    download_books([11, 22], tmp_path, _client(gutenberg_mirror))
    (tmp_path / "22.txt").write_bytes(books[22].raw[:-1] + b"X")  # same size, other hash
    gutenberg_mirror.clear_log()
    download_books([11, 22], tmp_path, _client(gutenberg_mirror))
    assert [r.path for r in gutenberg_mirror.requests] == [book_path(22)]
    assert (tmp_path / "22.txt").read_bytes() == books[22].raw


def test_a_damaged_index_means_downloading_again(gutenberg_mirror, books, tmp_path) -> None:
    download_books([11], tmp_path, _client(gutenberg_mirror))
    (tmp_path / "index.json").write_text("{not json")
    report = download_books([11], tmp_path, _client(gutenberg_mirror))
    assert report.books[0].fetched


@pytest.mark.parametrize("fault", ["missing", "html", "truncated"])
def test_unavailable_book_fails_the_run_and_loses_nothing(gutenberg_mirror, books, tmp_path, fault) -> None:
    raw = tmp_path / "raw"
    download_books([11], raw, _client(gutenberg_mirror))
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
        download_books([11, bad, 33], raw, _client(gutenberg_mirror, max_attempts=2))
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
    download_books([11, 33], raw, _client(gutenberg_mirror))
    assert gutenberg_mirror.count() == 0


def test_several_unavailable_books_are_all_named(gutenberg_mirror, books, tmp_path) -> None:
    with pytest.raises(BookUnavailableError, match=r"also unavailable: 405") as caught:
        download_books([404, 11, 405], tmp_path, _client(gutenberg_mirror))
    assert caught.value.book_id == 404


def test_skip_unavailable_lists_skipped_books(gutenberg_mirror, books, tmp_path) -> None:
    gutenberg_mirror.serve_html(22)
    report = download_books(
        [11, 22, 404, 33], tmp_path, _client(gutenberg_mirror), skip_unavailable=True
    )
    assert [b.book_id for b in report.books] == [11, 33]
    assert [book_id for book_id, _ in report.skipped] == [22, 404]
    selection = _selection(tmp_path)
    assert [b["id"] for b in selection["books"]] == [11, 33]
    assert [s["id"] for s in selection["skipped"]] == [22, 404]
    assert not (tmp_path / "22.txt").exists()


def test_bad_ids_are_rejected_before_any_request(gutenberg_mirror, tmp_path) -> None:
    with pytest.raises(ValueError):
        download_books([11, -3], tmp_path, _client(gutenberg_mirror))
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
        report = download_books(ids, raw, _client(mirror, timeout=0.3))
        assert len(report.books) == 18
        for book_id, book in manifest.items():
            assert (raw / f"{book_id}.txt").read_bytes() == book.raw()
        corpus = build_corpus(raw, tmp_path / "all.txt", tmp_path / "all.json")
        text = (tmp_path / "all.txt").read_bytes()
        for entry in corpus.books:
            kept = text[entry.start : entry.end].decode("utf-8").split("\n")
            score = score_lines(kept, manifest[entry.book_id].body_lines())
            assert score.recall >= 0.995 and score.precision >= 0.995 and not score.leaked
        assert corpus.unmarked == ()
        mirror.clear_log()
        download_books(ids, raw, _client(mirror))
        assert mirror.count() == 0
