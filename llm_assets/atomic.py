"""Writing files and folders so that no reader, and no crash, ever sees half of one.

A file is written beside its target, fsynced and renamed over it. A folder (or a file with its
companions) is written as a new version under ``.<name>.versions/`` and published by swapping one
symbolic link, the only step a reader can observe; the previous version stays for readers that
already resolved it.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

KEEP_VERSIONS = 2
_STAGING_PREFIX = ".tmp-"


@contextmanager
def atomic_file(path: Path, mode: str = "wb") -> Iterator[IO[Any]]:
    """Open a temporary file beside ``path``; on a clean exit it replaces ``path`` in one rename."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, mode, **({} if "b" in mode else {"encoding": "utf-8"})) as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    _fsync_dir(path.parent)


def atomic_write(path: Path, data: bytes | str) -> None:
    with atomic_file(path, "wb" if isinstance(data, bytes) else "w") as handle:
        handle.write(data)


def atomic_write_json(path: Path, content: Any) -> None:
    atomic_write(path, json.dumps(content, indent=1, sort_keys=True) + "\n")


def fsync_tree(path: Path) -> None:
    """Flush every file under ``path``, then the folders: a power cut cannot empty a finished output."""
    path = Path(path)
    for item in sorted(path.rglob("*"), reverse=True):
        if item.is_file() and not item.is_symlink():
            with open(item, "rb") as handle:
                os.fsync(handle.fileno())
        elif item.is_dir():
            _fsync_dir(item)
    _fsync_dir(path)


def _fsync_dir(path: Path) -> None:
    if hasattr(os, "O_DIRECTORY"):
        fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def remove_stale_temporaries(folder: Path, name: str = "*") -> list[Path]:
    """Delete the temporary files a killed ``atomic_file`` left for ``name`` in ``folder``.

    Call it only while no other writer can be writing there (holding the stage's lock).
    """
    stale = sorted(Path(folder).glob(f".{name}.*.tmp")) if Path(folder).is_dir() else []
    for path in stale:
        path.unlink(missing_ok=True)
    return stale


def versions_dir(target: Path) -> Path:
    """Where the versions behind ``target`` live: ``.<name>.versions`` beside it."""
    target = Path(target)
    return target.parent / f".{target.name}.versions"


def remove_stale_staging(target: Path) -> list[Path]:
    """Delete staging folders a killed run left behind. Call it only while holding the stage's lock."""
    folder = versions_dir(target)
    stale = sorted(folder.glob(f"{_STAGING_PREFIX}*")) if folder.is_dir() else []
    stale += sorted(Path(target).parent.glob(f".{Path(target).name}.link-*"))
    for path in stale:
        if path.is_symlink() or path.is_file():
            path.unlink(missing_ok=True)
        else:
            shutil.rmtree(path, ignore_errors=True)
    return stale


@contextmanager
def new_version(target: Path, member: str | None = None, keep: int = KEEP_VERSIONS) -> Iterator[Path]:
    """Yield an empty folder to fill; on a clean exit it becomes what ``target`` points to.

    ``target`` becomes a symbolic link to the new folder, or to ``member`` inside it when the
    published thing is a file with companions (the corpus and its index). On an exception the
    folder is deleted and ``target`` is untouched.
    """
    target = Path(target)
    folder = versions_dir(target)
    folder.mkdir(parents=True, exist_ok=True)
    name = f"{time.time_ns():020d}-{os.getpid()}"  # sorts by age
    staging = folder / f"{_STAGING_PREFIX}{name}"
    staging.mkdir()
    try:
        yield staging
        fsync_tree(staging)
        version = folder / name
        os.replace(staging, version)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    _point(target, version / member if member else version)
    _prune(folder, keep=keep, current=version)


def _point(target: Path, destination: Path) -> None:
    """Make ``target`` a symbolic link to ``destination`` in one rename (a plain copy without symlinks)."""
    link = target.parent / f".{target.name}.link-{os.getpid()}"
    link.unlink(missing_ok=True)
    if target.exists() and not target.is_symlink():
        # An output from before versioning: keep it as an old version, then link.
        os.replace(target, versions_dir(target) / f"{0:020d}-unversioned")
    try:
        os.symlink(os.path.relpath(destination, target.parent), link)
    except OSError:  # no symbolic links here (Windows without developer mode): copy and rename
        copy = shutil.copytree if destination.is_dir() else shutil.copy2
        copy(destination, link)
        if target.is_symlink() or target.is_file():
            target.unlink()
        elif target.exists():
            shutil.rmtree(target)
    os.replace(link, target)
    _fsync_dir(target.parent)


def _prune(folder: Path, keep: int, current: Path) -> None:
    versions = sorted((p for p in folder.iterdir() if not p.name.startswith(_STAGING_PREFIX)), reverse=True)
    kept = {current, *versions[:keep]}
    for path in versions:
        if path not in kept:
            shutil.rmtree(path, ignore_errors=True) if path.is_dir() else path.unlink(missing_ok=True)
