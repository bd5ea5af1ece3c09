"""The catalog parsed once per version of the file: a derived index beside it, read column by column.

Parsing the 77,000-row CSV costs seconds of CPU, and the sensor resolves the book list every 30 s.
So the search columns (:mod:`llm_assets.books.catalog_search`) of each catalog version are kept
beside it, in ``data/raw/pg_catalog.index/``: one JSON file per column (never pickle: nothing here
is ever unpickled) and ``catalog.json``, the header that says which catalog they were made from
(its SHA-256) and the file's identity when that hash was checked (size, mtime_ns, inode). A query
loads only the columns it needs; every column file names the catalog hash it was made from, so a
mix of two versions is noticed and read as missing, never used.

The identity lets a reader skip re-hashing an unchanged file. Like git's index, it is trusted only
when it was recorded well after the file's last modification: a file rewritten within the same
coarse clock tick as its recording keeps its mtime, so such a "racily clean" identity is checked
by hash instead (and recorded again once the file is old enough).
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from llm_assets.atomic import atomic_write
from llm_assets.books.catalog_search import RULES_VERSION, SEARCH_COLUMNS, CatalogSearch, forget_repeats

log = logging.getLogger(__name__)

INDEX_DIR = "pg_catalog.index"  # beside pg_catalog.csv
HEADER_FILE = "catalog.json"
FORMAT = 1
RACY_NS = 2_000_000_000  # an identity recorded less than 2 s after the file's mtime is not trusted


class IndexStale(RuntimeError):
    """A column file is missing or was made from another catalog version."""


@dataclass(frozen=True)
class FileIdentity:
    """What changes when a file is rewritten, without reading it."""

    size: int
    mtime_ns: int
    inode: int

    @classmethod
    def of(cls, path: Path) -> FileIdentity:
        stat = os.stat(path)
        return cls(stat.st_size, stat.st_mtime_ns, stat.st_ino)


def index_dir(raw_dir: Path) -> Path:
    return Path(raw_dir) / INDEX_DIR


def _dumps(content: Any) -> str:
    return json.dumps(content, ensure_ascii=False, separators=(",", ":"))


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_bytes())
    except (OSError, ValueError):
        return None


def read_header(folder: Path, sha256: str) -> dict[str, Any] | None:
    """The index header if it describes the catalog with this hash (and these rules), else None."""
    header = _read_json(Path(folder) / HEADER_FILE)
    if not isinstance(header, dict) or header.get("format") != FORMAT or header.get("rules") != RULES_VERSION:
        return None
    return header if header.get("catalog_sha256") == sha256 else None


def trusted_identity(folder: Path, sha256: str, identity: FileIdentity) -> bool:
    """Whether the index recorded ``identity`` for a file with this hash, long enough after its
    last modification to rule out a same-tick rewrite: then the file need not be hashed again."""
    header = read_header(folder, sha256)
    recorded = header.get("identity") if header else None
    return (
        isinstance(recorded, dict)
        and recorded.get("size") == identity.size
        and recorded.get("mtime_ns") == identity.mtime_ns
        and recorded.get("inode") == identity.inode
        and int(header.get("verified_at_ns", 0)) >= identity.mtime_ns + RACY_NS
    )


def _header(sha256: str, identity: FileIdentity, books: int, skipped: Sequence[tuple[int, str]]) -> dict:
    return {
        "format": FORMAT,
        "rules": RULES_VERSION,
        "catalog_sha256": sha256,
        "identity": asdict(identity),
        "verified_at_ns": time.time_ns(),
        "books": books,
        "skipped": [list(s) for s in skipped],
        "columns": sorted(SEARCH_COLUMNS),
    }


def record_identity(folder: Path, sha256: str, identity: FileIdentity) -> None:
    """After hashing the file: remember its identity, so the next reader need not hash it.

    Best effort (a cache): nothing is written when there is no index for this hash yet (it is
    written with the identity when the catalog is first parsed), or when the folder is read-only.
    """
    header = read_header(folder, sha256)
    if header is None:
        return
    fresh = _header(sha256, identity, header["books"], [tuple(s) for s in header["skipped"]])
    if fresh["verified_at_ns"] < identity.mtime_ns + RACY_NS:
        return  # too soon after the file was written to vouch for its mtime
    try:
        atomic_write(Path(folder) / HEADER_FILE, _dumps(fresh))
    except OSError as exc:
        log.debug("catalog index: identity not recorded (%s)", exc)


def write_index(folder: Path, catalog: CatalogSearch, sha256: str, identity: FileIdentity,
                skipped: Sequence[tuple[int, str]] = ()) -> None:
    """Write every search column of ``catalog`` (the file with hash ``sha256``), header last.

    Costs one pass over the rows per column (about a second for the real catalog), once per
    catalog version. A failure to write is logged, not raised: the index only saves time.
    """
    folder = Path(folder)
    try:
        for name in SEARCH_COLUMNS:
            content = {"catalog_sha256": sha256, "rules": RULES_VERSION, "column": name,
                       "values": list(catalog.column(name))}
            atomic_write(folder / f"{name}.json", _dumps(content))
        atomic_write(folder / HEADER_FILE, _dumps(_header(sha256, identity, len(catalog), skipped)))
    except OSError as exc:
        log.warning("catalog index not written to %s (%s); the catalog is parsed again next time", folder, exc)
    finally:
        forget_repeats()


class IndexedCatalog(CatalogSearch):
    """A catalog version read from its index: each column loaded on first use, nothing parsed.

    If a column turns out missing or of another version (a download replaced the index while
    this one was in use), ``fallback`` gives the parsed catalog of the right version instead.
    """

    def __init__(self, folder: Path, sha256: str, source: str, header: dict[str, Any],
                 fallback: Callable[[], CatalogSearch] | None = None) -> None:
        self.folder = Path(folder)
        self.sha256 = sha256
        self.source = source
        self.books = int(header["books"])
        self.skipped = tuple(tuple(s) for s in header["skipped"])
        self._columns: dict[str, Sequence[Any]] = {}
        self._fallback = fallback

    def __len__(self) -> int:
        return self.books

    def column(self, name: str) -> Sequence[Any]:
        if name not in self._columns:
            path = self.folder / f"{name}.json"
            content = _read_json(path)
            if (isinstance(content, dict) and content.get("catalog_sha256") == self.sha256
                    and content.get("rules") == RULES_VERSION and isinstance(content.get("values"), list)):
                self._columns[name] = content["values"]
            elif self._fallback is not None:
                log.warning("%s is missing or belongs to another catalog version; parsing %s", path, self.source)
                self._columns[name] = self._fallback().column(name)
            else:
                raise IndexStale(f"{path} is missing or belongs to another version of {self.source}")
        return self._columns[name]


def open_index(folder: Path, sha256: str, source: str,
               fallback: Callable[[], CatalogSearch] | None = None) -> IndexedCatalog | None:
    """The index of the catalog with this hash, or None when there is none (yet)."""
    header = read_header(folder, sha256)
    return None if header is None else IndexedCatalog(folder, sha256, source, header, fallback)
