"""Downloading and caching the catalog through the real client against the local test mirror."""

from __future__ import annotations

import hashlib
import importlib.metadata
import json
import logging
from datetime import datetime, timedelta
from pathlib import Path

import pytest

from llm_assets.books.catalog import CatalogError
from llm_assets.books.catalog_cache import (
    CATALOG_FILE,
    CATALOG_META_FILE,
    cached_catalog,
    fetch_catalog,
)
from llm_assets.books.gutenberg import FileUnavailableError
from llm_assets_tests.gutenberg_server import CATALOG_PATH, GutenbergMirror, fast_client

FIXTURE = Path(__file__).parent / "fixtures" / "pg_catalog.csv"
CATALOG = FIXTURE.read_bytes()
ROWS = 60



@pytest.fixture
def mirror(gutenberg_mirror: GutenbergMirror) -> GutenbergMirror:
    gutenberg_mirror.add_catalog(CATALOG)
    return gutenberg_mirror


def test_first_call_downloads_and_records_the_file(mirror, tmp_path) -> None:
    got = fetch_catalog(tmp_path, fast_client(mirror, max_attempts=3))
    assert mirror.count(CATALOG_PATH) == 1 and got.downloaded and not got.stale
    assert got.reason == "no cached catalog"
    assert f"llm-assets/{importlib.metadata.version('llm-assets')}" in mirror.requests[0].headers["User-Agent"]
    assert (tmp_path / CATALOG_FILE).read_bytes() == CATALOG
    meta = json.loads((tmp_path / CATALOG_META_FILE).read_text())
    assert meta["sha256"] == hashlib.sha256(CATALOG).hexdigest() == got.sha256
    assert meta["size"] == len(CATALOG) and meta["books"] == ROWS
    assert meta["url"] == f"{mirror.url}{CATALOG_PATH}" == got.url
    assert len(got.catalog) == ROWS and got.catalog.source == str(tmp_path / CATALOG_FILE)
    assert list(tmp_path.glob(".*tmp")) == []


def test_second_call_makes_no_request(mirror, tmp_path) -> None:
    first = fetch_catalog(tmp_path, fast_client(mirror, max_attempts=3))
    mirror.clear_log()
    again = fetch_catalog(tmp_path, fast_client(mirror, max_attempts=3))
    assert mirror.count() == 0 and not again.downloaded
    assert again.sha256 == first.sha256 and again.fetched_at == first.fetched_at
    assert again.reason.startswith("cached copy is") and len(again.catalog) == ROWS
    assert cached_catalog(tmp_path).sha256 == first.sha256 and mirror.count() == 0


def test_refresh_downloads_again(mirror, tmp_path) -> None:
    fetch_catalog(tmp_path, fast_client(mirror, max_attempts=3))
    mirror.add_catalog(CATALOG.replace(b"Ontboezemingen", b"Ontboezemingen (2nd ed.)"))
    got = fetch_catalog(tmp_path, fast_client(mirror, max_attempts=3), refresh=True)
    assert mirror.count(CATALOG_PATH) == 2 and got.downloaded and got.reason == "refresh requested"
    assert got.catalog.title(24675) == "Ontboezemingen (2nd ed.)"


def test_only_an_expired_copy_is_downloaded_again(mirror, tmp_path) -> None:
    first = fetch_catalog(tmp_path, fast_client(mirror, max_attempts=3))
    week = timedelta(days=7)
    kept = fetch_catalog(tmp_path, fast_client(mirror, max_attempts=3), max_age=week, now=first.fetched_at + timedelta(days=6))
    assert not kept.downloaded and kept.reason == "cached copy is 6 days old"
    never = fetch_catalog(tmp_path, fast_client(mirror, max_attempts=3), max_age=None, now=first.fetched_at + timedelta(days=999))
    assert not never.downloaded and mirror.count(CATALOG_PATH) == 1
    old = fetch_catalog(tmp_path, fast_client(mirror, max_attempts=3), max_age=week, now=first.fetched_at + timedelta(days=8))
    assert old.downloaded and mirror.count(CATALOG_PATH) == 2
    assert old.reason == "cached copy is 8 days old (max_age 7 days)"


@pytest.mark.parametrize("damage", ["same size", "shorter", "no metadata", "bad metadata"])
def test_a_damaged_copy_is_downloaded_again(mirror, tmp_path, caplog, damage: str) -> None:
    fetch_catalog(tmp_path, fast_client(mirror, max_attempts=3))
    path, meta = tmp_path / CATALOG_FILE, tmp_path / CATALOG_META_FILE
    if damage == "same size":
        path.write_bytes(CATALOG.replace(b"Dickens", b"Dickenz"))
    elif damage == "shorter":
        path.write_bytes(CATALOG[: len(CATALOG) // 2])
    elif damage == "no metadata":
        meta.unlink()
    else:
        meta.write_text("{not json")
    assert cached_catalog(tmp_path) is None
    with caplog.at_level(logging.WARNING):
        got = fetch_catalog(tmp_path, fast_client(mirror, max_attempts=3))
    assert got.downloaded and mirror.count(CATALOG_PATH) == 2
    assert "downloading the catalog again" in caplog.text
    assert path.read_bytes() == CATALOG and cached_catalog(tmp_path) is not None


@pytest.mark.parametrize("page", ["text/html", "html as text/csv"])
def test_an_html_error_page_is_refused_and_nothing_cached(gutenberg_mirror, tmp_path, page: str) -> None:
    if page == "text/html":
        gutenberg_mirror.add_catalog(CATALOG)
        gutenberg_mirror.serve_html(CATALOG_PATH)
    else:
        gutenberg_mirror.add_catalog(b"\n<!DOCTYPE html><html><body>Are you a robot?</body></html>\n")
    with pytest.raises(FileUnavailableError, match="HTML") as caught:
        fetch_catalog(tmp_path, fast_client(gutenberg_mirror, max_attempts=3))
    assert caught.value.url.endswith(CATALOG_PATH)
    assert gutenberg_mirror.count(CATALOG_PATH) == 1  # not retried: it will not get better
    assert not (tmp_path / CATALOG_FILE).exists() and not (tmp_path / CATALOG_META_FILE).exists()


def test_text_that_is_not_the_catalog_is_refused(gutenberg_mirror, tmp_path) -> None:
    gutenberg_mirror.add_catalog(b"Service temporarily unavailable, please try again later.\n")
    with pytest.raises(CatalogError, match=r"pg_catalog.csv, line 1: not Project Gutenberg's catalog"):
        fetch_catalog(tmp_path, fast_client(gutenberg_mirror, max_attempts=3))
    assert not (tmp_path / CATALOG_FILE).exists()


def test_missing_catalog_names_the_url(gutenberg_mirror, tmp_path) -> None:
    with pytest.raises(FileUnavailableError, match=r"pg_catalog.csv is unavailable: HTTP 404"):
        fetch_catalog(tmp_path, fast_client(gutenberg_mirror, max_attempts=3))
    assert gutenberg_mirror.count() == 1


def test_transient_failures_are_retried_by_the_client(mirror, tmp_path) -> None:
    mirror.fail(CATALOG_PATH, status=503, times=1)
    mirror.truncate(CATALOG_PATH, times=1)
    got = fetch_catalog(tmp_path, fast_client(mirror, max_attempts=3))
    assert got.downloaded and mirror.count(CATALOG_PATH) == 3
    assert (tmp_path / CATALOG_FILE).read_bytes() == CATALOG


def test_the_catalog_may_be_larger_than_any_book(mirror, tmp_path) -> None:
    client = fast_client(mirror, max_attempts=3, max_bytes=1000)  # books capped at 1 kB; the catalog is ~17 kB
    assert len(fetch_catalog(tmp_path, client).catalog) == ROWS


def test_a_failed_refresh_by_age_keeps_the_old_copy(mirror, tmp_path, caplog) -> None:
    first = fetch_catalog(tmp_path, fast_client(mirror, max_attempts=3))
    mirror.fail(CATALOG_PATH, status=503, times=None)
    later = first.fetched_at + timedelta(days=30)
    with caplog.at_level(logging.WARNING):
        got = fetch_catalog(tmp_path, fast_client(mirror, max_attempts=3), now=later)
    assert got.stale and not got.downloaded and got.sha256 == first.sha256
    assert "refresh failed" in got.reason and "HTTP 503" in got.reason
    assert "catalog refresh failed, using the 30 days old copy" in caplog.text
    with pytest.raises(FileUnavailableError, match="HTTP 503"):
        fetch_catalog(tmp_path, fast_client(mirror, max_attempts=3), refresh=True)  # asked for: no silent fallback
    assert (tmp_path / CATALOG_FILE).read_bytes() == CATALOG


def test_fetched_at_is_utc_and_recent(mirror, tmp_path) -> None:
    got = fetch_catalog(tmp_path, fast_client(mirror, max_attempts=3))
    assert got.fetched_at.utcoffset() == timedelta(0)
    assert abs(got.age(datetime.now(got.fetched_at.tzinfo))) < timedelta(minutes=1)


def test_a_refresh_to_the_2025_shelf_names_keeps_what_a_shelf_entry_selects(gutenberg_mirror, tmp_path) -> None:
    """A catalog from before the rename (`Browsing: ...`) refreshed to today's (`Category: ...`):
    an entry written either way, or without the prefix, selects the same books from both."""
    from llm_assets.books.booklist import load_book_list
    from llm_assets.books.selection import resolve_with_catalog

    old = CATALOG.decode("utf-8").replace("Category: ", "Browsing: ").encode("utf-8")
    gutenberg_mirror.add_catalog(old)
    lists = {shelf: tmp_path / f"list-{n}.yaml" for n, shelf in enumerate(
        ("Category: Novels", "Browsing: Novels", "Novels", "Crime, Thrillers and Mystery"))}
    for shelf, path in lists.items():
        path.write_text(f'books:\n  - bookshelf: "{shelf}"\n    language: en\n', encoding="utf-8")
    client = fast_client(gutenberg_mirror, max_attempts=3)
    before = {shelf: resolve_with_catalog(load_book_list(p), tmp_path, client)[0].ids for shelf, p in lists.items()}
    assert b"Category: " not in (tmp_path / CATALOG_FILE).read_bytes()
    gutenberg_mirror.add_catalog(CATALOG)
    after = {shelf: resolve_with_catalog(load_book_list(p), tmp_path, client, refresh=True)[0].ids
             for shelf, p in lists.items()}
    assert b"Browsing: Novels" not in (tmp_path / CATALOG_FILE).read_bytes()
    assert after == before and len(set(after.values())) == 2  # Novels three ways; the crime shelf
    assert after["Crime, Thrillers and Mystery"] == (1661,)
