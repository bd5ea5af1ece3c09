"""Content digests: how a stage knows that what it would reuse is what it once wrote.

SHA-256, streamed, so a multi-GB corpus costs no memory. A folder's digest covers the relative
names and bytes of the files it selects, so two folders with the same content agree wherever
they live.

Hashing every output in full on every run costs seconds per gigabyte for nothing when nothing
changed, so a ``DigestCache`` remembers each digest under the identity of the files it covers:
device, inode, size, and modification and change times in nanoseconds. Asked again about files
whose identity is unchanged, it answers without reading them. A write changes the modification
time, a replaced file has another inode, and a modification time set back by hand (``touch -d``,
``os.utime``) still moves the change time, which no one can set; so a changed file is hashed again.
A digest is remembered only for files whose times were at least ``racy_ns`` old when it was
computed: a file written within one timestamp tick of being hashed could be written again within
that same tick, keeping its identity (git's "racily clean" rule); such a file is hashed again next
time, when it is old enough. The identity is taken from the open file before and after reading it,
so a file replaced or written while it was being hashed is not remembered either.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from collections.abc import Iterable
from pathlib import Path
from typing import BinaryIO

from llm_assets.atomic import atomic_write_json

_CHUNK = 4 << 20
# Coarser than any file system's timestamps that we publish on (HFS+: 1 s; ext4, XFS, APFS, NTFS:
# finer), so a write after the digest always shows in the identity.
RACY_NS = 1_000_000_000
_VERSION = 1

Identity = tuple[int, int, int, int, int]


def identity(st: os.stat_result) -> Identity:
    """What changes whenever a file's content can have changed."""
    return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)


def _update(digest: "hashlib._Hash", handle: BinaryIO) -> int:
    read = 0
    while chunk := handle.read(_CHUNK):
        digest.update(chunk)
        read += len(chunk)
    return read


class DigestCache:
    """Digests of files and file sets, remembered under the files' identities.

    ``path``: the JSON file the remembered digests persist in (None: this object only). ``save``
    writes back only the digests asked for since it was loaded, so the file holds what one stage
    run digests and never grows with old versions. Counters say what the cache saved:
    ``bytes_read`` and ``files_read`` (hashed), ``files_known`` (answered without reading).
    """

    def __init__(self, path: Path | None = None, racy_ns: int = RACY_NS) -> None:
        self.path = Path(path) if path is not None else None
        self.racy_ns = racy_ns
        self._loaded = self._load()
        self._used: dict[str, str] = {}
        self.bytes_read = 0
        self.files_read = 0
        self.files_known = 0

    def _load(self) -> dict[str, str]:
        if self.path is None:
            return {}
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return {}  # no cache, or a damaged one: everything is hashed again, nothing is wrong
        digests = data.get("digests") if isinstance(data, dict) and data.get("version") == _VERSION else None
        return {k: v for k, v in digests.items() if isinstance(v, str)} if isinstance(digests, dict) else {}

    def digest_file(self, path: Path) -> str:
        """SHA-256 of one file's bytes."""
        return self._digest(Path(path).parent, [Path(path)], named=False)

    def digest_files(self, root: Path, files: Iterable[Path]) -> str:
        """One digest over ``files`` (paths under ``root``), in name order: names and bytes."""
        return self._digest(Path(root), sorted(Path(f) for f in files), named=True)

    def digest_tree(self, root: Path, pattern: str = "*") -> str:
        """Digest of every file under ``root`` (symbolic links followed) whose name matches ``pattern``."""
        root = Path(root).resolve()
        files = [p for p in root.rglob(pattern) if p.is_file()]
        if not files:
            raise FileNotFoundError(f"No files matching {pattern!r} under {root}.")
        return self.digest_files(root, files)

    def _digest(self, root: Path, paths: list[Path], named: bool) -> str:
        names = [str(p.relative_to(root)) for p in paths] if named else [""]
        key = _key(names, [identity(os.stat(p)) for p in paths])
        known = self._used.get(key) or self._loaded.get(key)
        if known is not None:
            self._used[key] = known
            self.files_known += len(paths)
            return known
        started = time.time_ns()
        digest = hashlib.sha256()
        read: list[Identity] = []
        stable = True
        for name, path in zip(names, paths):
            if named:
                digest.update(name.encode() + b"\0")
            with open(path, "rb") as handle:
                before = identity(os.fstat(handle.fileno()))
                self.bytes_read += _update(digest, handle)
                stable = stable and identity(os.fstat(handle.fileno())) == before
            read.append(before)
            self.files_read += 1
        result = digest.hexdigest()
        settled = all(max(i[3], i[4]) < started - self.racy_ns for i in read)
        if stable and settled:
            self._used[_key(names, read)] = result
        return result

    def save(self) -> None:
        """Write the digests used since loading, if they differ from what the file held."""
        if self.path is not None and self._used != self._loaded:
            atomic_write_json(self.path, {"version": _VERSION, "digests": self._used})
            self._loaded = dict(self._used)

    def summary(self) -> str:
        """One line for a stage's log: what was hashed, and what was known unchanged."""
        return (f"{self.files_known} file(s) known unchanged (not read), {self.files_read} hashed "
                f"({self.bytes_read / 1e6:,.1f} MB read)")


def _key(names: list[str], identities: list[Identity]) -> str:
    blob = json.dumps([[n, *i] for n, i in zip(names, identities)]).encode()
    return hashlib.sha256(blob).hexdigest()[:40]


def digest_file(path: Path) -> str:
    return DigestCache().digest_file(path)


def digest_files(root: Path, files: Iterable[Path]) -> str:
    """One digest over ``files`` (paths under ``root``), in name order."""
    return DigestCache().digest_files(root, files)


def digest_tree(root: Path, pattern: str = "*") -> str:
    """Digest of every file under ``root`` (symbolic links followed) whose name matches ``pattern``."""
    return DigestCache().digest_tree(root, pattern)
