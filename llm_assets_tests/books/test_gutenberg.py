"""The Gutenberg client against a local mirror that misbehaves on purpose."""

from __future__ import annotations

import importlib.metadata
import time
from datetime import datetime, timedelta, timezone
from email.utils import format_datetime

import pytest

from llm_assets.books.gutenberg import (
    GUTENBERG_ORG,
    BookUnavailableError,
    GutenbergClient,
    NotABookError,
    parse_retry_after,
)
from llm_assets_tests.gutenberg_server import (
    book_path,
    fast_client,
)

# --- politeness --------------------------------------------------------------------------------


def test_user_agent_names_the_project_and_version(gutenberg_mirror, books) -> None:
    fast_client(gutenberg_mirror).fetch(11)
    agent = gutenberg_mirror.requests[0].headers["User-Agent"]
    assert f"llm-assets/{importlib.metadata.version('llm-assets')}" in agent


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
    client = fast_client(gutenberg_mirror, min_interval=0.25)
    gutenberg_mirror.fail(22, status=503, times=1)
    for book_id in books:
        client.fetch(book_id)
    times = [r.time for r in gutenberg_mirror.requests]
    assert len(times) == 4  # retries are paced too
    # Stamped by the server as it handles each request: a busy machine can delay one stamp and so
    # shorten the next gap a little; unpaced requests would be milliseconds apart.
    assert min(b - a for a, b in zip(times, times[1:])) >= 0.2


def test_no_pause_on_other_mirrors(gutenberg_mirror, books) -> None:
    client = fast_client(gutenberg_mirror)
    began = time.monotonic()
    for _ in range(3):
        for book_id in books:
            client.fetch(book_id)
    assert time.monotonic() - began < 1.0


# --- retries -------------------------------------------------------------------------------------


def test_transient_503s_are_retried(gutenberg_mirror, books) -> None:
    gutenberg_mirror.fail(11, status=503, times=2)
    client = fast_client(gutenberg_mirror)
    body, url = client.fetch(11)
    assert body == books[11].raw and url.endswith(book_path(11))
    assert gutenberg_mirror.count(11) == 3 and client.requests_made == 3


def test_backoff_grows_between_attempts(gutenberg_mirror, books) -> None:
    gutenberg_mirror.fail(11, status=500, times=3)
    began = time.monotonic()
    fast_client(gutenberg_mirror, backoff_seconds=0.1).fetch(11)
    assert time.monotonic() - began >= 0.1 + 0.2 + 0.4 - 0.02  # 0.1 * 2**n


def test_429_honours_retry_after(gutenberg_mirror, books) -> None:
    gutenberg_mirror.fail(11, status=429, times=1, retry_after="1")
    began = time.monotonic()
    body, _ = fast_client(gutenberg_mirror).fetch(11)
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
        fast_client(gutenberg_mirror, max_attempts=3).fetch(11)
    assert gutenberg_mirror.count(11) == 3
    assert "HTTP 503" in str(caught.value) and caught.value.book_id == 11


def test_body_shorter_than_content_length_is_a_failed_attempt(gutenberg_mirror, books) -> None:
    gutenberg_mirror.truncate(22, times=2, keep=0.4)
    body, _ = fast_client(gutenberg_mirror).fetch(22)
    assert body == books[22].raw
    assert gutenberg_mirror.count(22) == 3


def test_slow_response_times_out_and_is_retried(gutenberg_mirror, books) -> None:
    gutenberg_mirror.slow(33, delay=0.8, times=1)
    body, _ = fast_client(gutenberg_mirror, timeout=0.3).fetch(33)
    assert body == books[33].raw
    assert gutenberg_mirror.count(33) == 2


def test_always_slow_gives_up(gutenberg_mirror, books) -> None:
    gutenberg_mirror.slow(33, delay=0.6, times=None)
    with pytest.raises(BookUnavailableError, match="(?i)timeout|timed out"):
        fast_client(gutenberg_mirror, timeout=0.2, max_attempts=2).fetch(33)


def test_dropped_connection_is_retried(gutenberg_mirror, books) -> None:
    gutenberg_mirror.reset(11, times=1)
    assert fast_client(gutenberg_mirror).fetch(11)[0] == books[11].raw
    assert gutenberg_mirror.count(11) == 2


# --- what is not a book --------------------------------------------------------------------------


def test_404_is_not_retried_and_names_id_and_urls(gutenberg_mirror) -> None:
    with pytest.raises(BookUnavailableError) as caught:
        fast_client(gutenberg_mirror).fetch(404)
    error = caught.value
    assert not isinstance(error, NotABookError)
    assert error.book_id == 404
    assert error.urls_tried == (f"{gutenberg_mirror.url}{book_path(404)}",)
    assert "404" in str(error) and error.urls_tried[0] in str(error)
    assert gutenberg_mirror.count() == 1


def test_html_page_with_200_is_not_a_book(gutenberg_mirror, books) -> None:
    gutenberg_mirror.serve_html(11)
    with pytest.raises(NotABookError, match="11.*HTML"):
        fast_client(gutenberg_mirror).fetch(11)
    assert gutenberg_mirror.count(11) == 1


def test_html_served_as_text_plain_is_still_not_a_book(gutenberg_mirror) -> None:
    gutenberg_mirror.add_book(5, b"\n  <!DOCTYPE html><html><body>captcha</body></html>")
    with pytest.raises(NotABookError):
        fast_client(gutenberg_mirror).fetch(5)


def test_empty_body_is_not_a_book(gutenberg_mirror, books) -> None:
    gutenberg_mirror.serve_empty(11)
    with pytest.raises(NotABookError, match="empty"):
        fast_client(gutenberg_mirror).fetch(11)


def test_absurdly_large_body_is_not_a_book(gutenberg_mirror, books) -> None:
    with pytest.raises(NotABookError, match="max_bytes"):
        fast_client(gutenberg_mirror, max_bytes=1000).fetch(11)
