"""Content digests: how a stage knows that what it would reuse is what it once wrote.

SHA-256, streamed, so a multi-GB corpus costs no memory. A folder's digest covers the relative
names and bytes of the files it selects, so two folders with the same content agree wherever
they live.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from pathlib import Path

_CHUNK = 4 << 20


def _update(digest: "hashlib._Hash", path: Path) -> None:
    with open(path, "rb") as handle:
        while chunk := handle.read(_CHUNK):
            digest.update(chunk)


def digest_file(path: Path) -> str:
    digest = hashlib.sha256()
    _update(digest, Path(path))
    return digest.hexdigest()


def digest_files(root: Path, files: Iterable[Path]) -> str:
    """One digest over ``files`` (paths under ``root``), in name order."""
    root = Path(root)
    digest = hashlib.sha256()
    for path in sorted(Path(f) for f in files):
        digest.update(str(path.relative_to(root)).encode() + b"\0")
        _update(digest, path)
    return digest.hexdigest()


def digest_tree(root: Path, pattern: str = "*") -> str:
    """Digest of every file under ``root`` (symbolic links followed) whose name matches ``pattern``."""
    root = Path(root).resolve()
    files = [p for p in root.rglob(pattern) if p.is_file()]
    if not files:
        raise FileNotFoundError(f"No files matching {pattern!r} under {root}.")
    return digest_files(root, files)
