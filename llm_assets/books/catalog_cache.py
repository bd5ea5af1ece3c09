"""Download Project Gutenberg's catalog rarely, and never trust a copy that changed on disk.

The catalog is ~15 MB and changes a little every day, while the book list changes rarely: fetching
it on every run would be impolite to a volunteer-run site and would make runs depend on the
network. So it is fetched through the same polite client as the books, kept beside them as
``pg_catalog.csv`` with ``pg_catalog.json`` (URL, size, SHA-256, fetch time), and fetched again
only when the user asks (``refresh=True``), when the copy is older than ``max_age``, or when the
copy no longer has its recorded hash. A download is parsed before it is written, so an error page
or a cut-off file never replaces a good catalog.
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import dataclass, replace
from datetime import datetime, timedelta, timezone
from pathlib import Path

from llm_assets.atomic import atomic_write, atomic_write_json
from llm_assets.books.catalog import Catalog, CatalogError, load_catalog, parse_catalog
from llm_assets.books.gutenberg import FileUnavailableError, GutenbergClient

log = logging.getLogger(__name__)

CATALOG_URL_PATH = "/cache/epub/feeds/pg_catalog.csv"
CATALOG_FILE = "pg_catalog.csv"
CATALOG_META_FILE = "pg_catalog.json"
CATALOG_LOCK = ".catalog.lock"  # held while the catalog is downloaded or raw/ is tidied
CATALOG_MAX_BYTES = 256 * 2**20  # the real catalog is ~15 MB; books are capped far lower
DEFAULT_MAX_AGE = timedelta(days=7)


@dataclass(frozen=True)
class CachedCatalog:
    """The catalog in use, where it came from, and why it was (or was not) downloaded."""

    catalog: Catalog
    path: Path
    url: str
    size: int
    sha256: str
    fetched_at: datetime  # UTC
    downloaded: bool  # True: fetched by this call
    stale: bool  # older than max_age, kept because the refresh failed
    reason: str  # for the log: "refresh requested", "cached copy is 9 days old (max 7 days)", ...

    def age(self, now: datetime | None = None) -> timedelta:
        return (now or datetime.now(timezone.utc)) - self.fetched_at


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _describe_age(age: timedelta) -> str:
    hours = age.total_seconds() / 3600
    return f"{hours:.1f} hours" if hours < 48 else f"{hours / 24:.0f} days"


def _verified(raw_dir: Path) -> tuple[CachedCatalog | None, str]:
    """The cached catalog if its file still has the recorded size and hash, else why not."""
    path, meta_path = raw_dir / CATALOG_FILE, raw_dir / CATALOG_META_FILE
    if not path.exists():
        return None, "no cached catalog"
    try:
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
        size, sha256, url = int(meta["size"]), str(meta["sha256"]), str(meta["url"])
        fetched_at = datetime.fromisoformat(meta["fetched_at"])
        if fetched_at.tzinfo is None:
            fetched_at = fetched_at.replace(tzinfo=timezone.utc)
    except (OSError, ValueError, KeyError, TypeError) as exc:
        return None, f"{meta_path} is missing or unreadable ({exc})"
    try:
        data = path.read_bytes()
    except OSError as exc:
        return None, f"{path} is unreadable ({exc})"
    if len(data) != size or _sha256(data) != sha256:
        return None, f"{path} changed on disk (its size or SHA-256 differs from {meta_path.name})"
    try:
        catalog = load_catalog(path)
    except CatalogError as exc:
        return None, str(exc)
    cached = CachedCatalog(catalog, path, url, size, sha256, fetched_at, False, False, "cached")
    return cached, "cached"


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
    fetched_at = datetime.now(timezone.utc).replace(microsecond=0)
    meta = {
        "url": url,
        "size": len(body),
        "sha256": _sha256(body),
        "fetched_at": fetched_at.isoformat(),
        "books": len(catalog),
    }
    atomic_write_json(raw_dir / CATALOG_META_FILE, meta)
    catalog = Catalog(catalog.books, str(path), catalog.skipped)  # errors name the local file
    log.info(
        "catalog downloaded from %s (%d books, %d bytes): %s", url, len(catalog), len(body), reason
    )
    return CachedCatalog(catalog, path, url, len(body), meta["sha256"], fetched_at, True, False, reason)


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
