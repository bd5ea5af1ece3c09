"""Download Project Gutenberg's catalog rarely, parse it once per version, and never trust a copy that changed on disk.

The catalog is ~20 MB and changes a little every day, while the book list changes rarely: fetching
it on every run would be impolite to a volunteer-run site and would make runs depend on the
network. So it is fetched through the same polite client as the books, kept beside them as
``pg_catalog.csv`` with ``pg_catalog.json`` (URL, size, SHA-256, fetch time), and fetched again
only when the user asks (``refresh=True``), when the copy is older than ``max_age``, or when the
copy no longer has its recorded hash. A download is parsed before it is written, so an error page
or a cut-off file never replaces a good catalog.

Reading the cached copy is cheap, because the sensor does it every 30 s: the file is hashed only
when its identity (size, mtime, inode) is not one the index recorded for that hash, and it is
parsed only when no derived index of this version exists (:mod:`llm_assets.books.catalog_index`,
written at download); a query then loads just the index columns it needs.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta, timezone
from pathlib import Path

from llm_assets.atomic import atomic_write, atomic_write_json
from llm_assets.books.catalog import Catalog, CatalogError, parse_catalog
from llm_assets.books.catalog_index import (
    FileIdentity,
    index_dir,
    open_index,
    record_identity,
    trusted_identity,
    write_index,
)
from llm_assets.books.catalog_search import CatalogSearch
from llm_assets.books.gutenberg import FileUnavailableError, GutenbergClient

log = logging.getLogger(__name__)

CATALOG_URL_PATH = "/cache/epub/feeds/pg_catalog.csv"
CATALOG_FILE = "pg_catalog.csv"
CATALOG_META_FILE = "pg_catalog.json"
CATALOG_LOCK = ".catalog.lock"  # held while the catalog is downloaded or raw/ is tidied
CATALOG_MAX_BYTES = 256 * 2**20  # the real catalog is ~20 MB; books are capped far lower
DEFAULT_MAX_AGE = timedelta(days=7)


class _Once:
    """The catalog of one verified file, made on first use and kept (from the index, or parsed)."""

    def __init__(self, make: Callable[[], CatalogSearch]) -> None:
        self._make = make
        self._value: CatalogSearch | None = None

    def __call__(self) -> CatalogSearch:
        if self._value is None:
            self._value = self._make()
        return self._value


@dataclass(frozen=True)
class CachedCatalog:
    """The catalog in use, where it came from, and why it was (or was not) downloaded."""

    path: Path
    url: str
    size: int
    sha256: str
    fetched_at: datetime  # UTC
    books: int  # rows in the catalog
    downloaded: bool  # True: fetched by this call
    stale: bool  # older than max_age, kept because the refresh failed
    reason: str  # for the log: "refresh requested", "cached copy is 9 days old (max 7 days)", ...
    load: Callable[[], CatalogSearch] = field(repr=False, compare=False)

    @property
    def catalog(self) -> CatalogSearch:
        """The searchable catalog, read on first use (most sensor ticks never need it)."""
        return self.load()

    def age(self, now: datetime | None = None) -> timedelta:
        return (now or datetime.now(timezone.utc)) - self.fetched_at


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _describe_age(age: timedelta) -> str:
    hours = age.total_seconds() / 3600
    return f"{hours:.1f} hours" if hours < 48 else f"{hours / 24:.0f} days"


def _parse_verified(path: Path, sha256: str, identity: FileIdentity) -> Catalog:
    """Parse the file, if it still has the hash it was verified with, and index it for next time."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise CatalogError(f"{path} is unreadable ({exc})") from None
    if _sha256(data) != sha256:
        raise CatalogError(f"{path} changed while it was being read; the next run reads it again.")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise CatalogError(f"{path}: not UTF-8 ({exc}); refresh the catalog to download it again.") from None
    catalog = parse_catalog(text, str(path))
    write_index(index_dir(path.parent), catalog, sha256, identity, catalog.skipped)
    return catalog


def _loader(path: Path, sha256: str, identity: FileIdentity) -> Callable[[], CatalogSearch]:
    parsed = _Once(lambda: _parse_verified(path, sha256, identity))

    def load() -> CatalogSearch:
        indexed = open_index(index_dir(path.parent), sha256, str(path), fallback=parsed)
        return indexed if indexed is not None else parsed()

    return _Once(load)


def _verified(raw_dir: Path) -> tuple[CachedCatalog | None, str]:
    """The cached catalog if its file still has the recorded size and hash, else why not.

    Hashes the file only when the index has not vouched for its identity; parses nothing.
    """
    path, meta_path = raw_dir / CATALOG_FILE, raw_dir / CATALOG_META_FILE
    if not path.exists():
        return None, "no cached catalog"
    try:
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
        size, sha256, url = int(meta["size"]), str(meta["sha256"]), str(meta["url"])
        fetched_at = datetime.fromisoformat(meta["fetched_at"])
        if fetched_at.tzinfo is None:
            fetched_at = fetched_at.replace(tzinfo=timezone.utc)
        books = int(meta["books"]) if "books" in meta else None
    except (OSError, ValueError, KeyError, TypeError) as exc:
        return None, f"{meta_path} is missing or unreadable ({exc})"
    try:
        identity = FileIdentity.of(path)
        if identity.size != size:
            return None, f"{path} changed on disk (its size differs from {meta_path.name})"
        if not trusted_identity(index_dir(raw_dir), sha256, identity):
            if _sha256(path.read_bytes()) != sha256:
                return None, f"{path} changed on disk (its SHA-256 differs from {meta_path.name})"
            record_identity(index_dir(raw_dir), sha256, identity)
    except OSError as exc:
        return None, f"{path} is unreadable ({exc})"
    load = _loader(path, sha256, identity)
    count = books if books is not None else len(load())
    return CachedCatalog(path, url, size, sha256, fetched_at, count, False, False, "cached", load), "cached"


def cached_catalog(raw_dir: Path) -> CachedCatalog | None:
    """The verified cached catalog, or None; never makes a request (for sensors and dry runs)."""
    cached, why = _verified(Path(raw_dir))
    if cached is None and why != "no cached catalog":
        log.warning("cached catalog not used: %s", why)
    return cached


def _download(raw_dir: Path, client: GutenbergClient, reason: str) -> CachedCatalog:
    body, url = client.fetch_file(CATALOG_URL_PATH, max_bytes=CATALOG_MAX_BYTES)
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise CatalogError(f"{url}: not UTF-8 ({exc}); nothing was cached.") from None
    catalog = parse_catalog(text, url)  # raises before anything is written
    path = raw_dir / CATALOG_FILE
    atomic_write(path, body)
    sha256 = _sha256(body)
    fetched_at = datetime.now(timezone.utc).replace(microsecond=0)
    meta = {"url": url, "size": len(body), "sha256": sha256, "fetched_at": fetched_at.isoformat(),
            "books": len(catalog)}
    atomic_write_json(raw_dir / CATALOG_META_FILE, meta)
    catalog = Catalog(catalog.books, str(path), catalog.skipped)  # errors name the local file
    write_index(index_dir(raw_dir), catalog, sha256, FileIdentity.of(path), catalog.skipped)
    log.info(
        "catalog downloaded from %s (%d books, %d bytes): %s", url, len(catalog), len(body), reason
    )
    return CachedCatalog(path, url, len(body), sha256, fetched_at, len(catalog), True, False, reason,
                         lambda: catalog)


def fetch_catalog(
    raw_dir: Path,
    client: GutenbergClient,
    *,
    refresh: bool = False,
    max_age: timedelta | None = DEFAULT_MAX_AGE,
    now: datetime | None = None,
) -> CachedCatalog:
    """The catalog, downloaded only if there is no good copy, it is older than ``max_age``
    (``None``: never too old) or ``refresh`` is set.

    If a refresh *due to age* fails (mirror down, error page), the old copy is used with a warning
    (``stale=True``): an old catalog is better than no run. A refresh the user asked for, or a
    first download, raises FileUnavailableError / CatalogError instead.
    """
    raw_dir = Path(raw_dir)
    raw_dir.mkdir(parents=True, exist_ok=True)
    now = now or datetime.now(timezone.utc)
    cached, why = _verified(raw_dir)
    if refresh:
        return _download(raw_dir, client, "refresh requested")
    if cached is None:
        if why != "no cached catalog":
            log.warning("downloading the catalog again: %s", why)
        return _download(raw_dir, client, why)
    age = cached.age(now)
    if max_age is None or age <= max_age:
        return replace(cached, reason=f"cached copy is {_describe_age(age)} old")
    reason = f"cached copy is {_describe_age(age)} old (max_age {_describe_age(max_age)})"
    try:
        return _download(raw_dir, client, reason)
    except (FileUnavailableError, CatalogError) as exc:
        log.warning("catalog refresh failed, using the %s old copy: %s", _describe_age(age), exc)
        return replace(cached, stale=True, reason=f"{reason}; refresh failed: {exc}")
