"""Resolutions on disk: the record of what a run chose, and the cache that spares the sensor re-resolving.

- The **record** (``data/raw/resolutions/<fingerprint>.json``): every chosen id with the entry and
  line that chose it, each entry's counts, the catalog used. ``raw_books`` writes it beside the
  books and links it from its metadata, which keeps only a summary: a 1,000-book list would
  otherwise put 140 KB into every materialization event. The newest few records are kept.
- The **cache** (``data/raw/pg_catalog.index/resolved.json``): the last resolution, keyed by the
  parsed book list and the catalog's hash. The sensor resolves the same list against the same
  catalog every 30 s; with the cache that costs reading one small file.

Both are JSON, written atomically; neither is trusted beyond its key (a record must carry the
fingerprint asked for, the cache entry the key asked for).
"""

from __future__ import annotations

import hashlib
import json
import logging
from pathlib import Path
from typing import Any

from llm_assets.atomic import atomic_write, atomic_write_json
from llm_assets.books.booklist import BookList
from llm_assets.books.catalog_index import index_dir
from llm_assets.books.catalog_search import RULES_VERSION

log = logging.getLogger(__name__)

RECORDS_DIR = "resolutions"
KEEP_RECORDS = 10
CACHE_FILE = "resolved.json"


def record_path(raw_dir: Path, fingerprint: str) -> Path:
    return Path(raw_dir) / RECORDS_DIR / f"{fingerprint[:16]}.json"


def write_record(raw_dir: Path, record: dict[str, Any]) -> Path:
    """Write a run's full resolution (``record["fingerprint"]`` names it), keep the newest few."""
    path = record_path(raw_dir, record["fingerprint"])
    atomic_write_json(path, record)
    older = sorted((p for p in path.parent.glob("*.json") if p != path), key=lambda p: p.stat().st_mtime_ns)
    for stale in older[: max(0, len(older) - (KEEP_RECORDS - 1))]:
        stale.unlink(missing_ok=True)
    return path


def read_record_ids(path: Path, fingerprint: str) -> list[int] | None:
    """The ids of the record at ``path`` if it is the resolution with this fingerprint, else None."""
    try:
        record = json.loads(Path(path).read_bytes())
    except (OSError, ValueError):
        return None
    if not isinstance(record, dict) or record.get("fingerprint") != fingerprint:
        return None
    ids = record.get("book_ids")
    return [int(i) for i in ids] if isinstance(ids, list) else None


def resolution_key(book_list: BookList, catalog_sha256: str) -> str:
    """What a resolution depends on: the entries as parsed (so comments and layout are not
    changes), where the list is, the catalog's content and the rules' version."""
    entries = [[e.line, type(e).__name__, e.describe()] for e in book_list.entries]
    payload = json.dumps([RULES_VERSION, str(book_list.path), catalog_sha256, entries], ensure_ascii=False)
    return hashlib.sha256(payload.encode("utf-8")).hexdigest()


def cached_resolution(raw_dir: Path, key: str) -> dict[str, Any] | None:
    """The cached resolution (``ResolvedBookList.metadata()``) for ``key``, or None."""
    try:
        cached = json.loads((index_dir(raw_dir) / CACHE_FILE).read_bytes())
    except (OSError, ValueError):
        return None
    if not isinstance(cached, dict) or cached.get("key") != key or not isinstance(cached.get("resolution"), dict):
        return None
    return cached["resolution"]


def remember_resolution(raw_dir: Path, key: str, resolution: dict[str, Any]) -> None:
    """Cache one resolution (best effort: a read-only folder only costs the next tick a resolve)."""
    try:
        atomic_write(index_dir(raw_dir) / CACHE_FILE, json.dumps({"key": key, "resolution": resolution},
                                                                 ensure_ascii=False, separators=(",", ":")))
    except OSError as exc:
        log.debug("resolution not cached (%s)", exc)
