"""Writing files and folders so that no reader, and no crash, ever sees half of one.

A file is written beside its target, fsynced and renamed over it. A folder (or a file with its
companions) is written as a new version under ``.<name>.versions/`` and published by swapping one
symbolic link, the only step a reader can observe. Whatever the writer does before that swap
(checking the new version, recording it) happens before anyone can see it. A reader resolves the
link once and holds the version it got (``hold_version``); old versions are deleted only when no
one holds them. Publishing needs symbolic links: where the file system has none, it refuses
(``require_symlinks``) rather than publish something readers could see half of.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

from llm_assets.locks import exclusive_now, shared

KEEP_VERSIONS = 2
_STAGING_PREFIX = ".tmp-"  # a version being written, or one being deleted (".tmp-pruned-...")
_HOLD_PREFIX = ".hold-"  # ".hold-<version>": the lock file readers of that version hold shared
_HOLD_ATTEMPTS = 20


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
        _delete(path)
    return stale


class NoSymlinksError(RuntimeError):
    """The file system cannot hold the symbolic link an output is published behind."""

    def __init__(self, folder: Path, error: OSError) -> None:
        super().__init__(
            f"{folder} is on a file system without symbolic links ({error.strerror or error}). llm-assets "
            "publishes every output (data/all_books.txt, data/tokenizer/, data/processed_dataset/, "
            "checkpoints/latest/) as a version folder behind one symbolic link, so that no reader and no "
            "crash ever sees half of one, and it publishes nothing where it cannot. Put the data and "
            "checkpoint folders on a file system with symbolic links (a local disk: ext4, XFS, btrfs, "
            "APFS, or NTFS with Windows Developer Mode on; an NFS export; an SMB share mounted with "
            "symlink support, on Linux CIFS's mfsymlinks option) and point LLM_ASSETS_DATA_DIR and "
            "LLM_ASSETS_CHECKPOINT_DIR there."
        )


def require_symlinks(folder: Path) -> None:
    """Refuse a folder whose file system has no symbolic links, before any work is done there.

    ``folder`` need not exist yet: its nearest existing parent is tried (nothing is left behind).
    """
    probe_dir = Path(folder)
    while not probe_dir.exists() and probe_dir != probe_dir.parent:
        probe_dir = probe_dir.parent
    probe = probe_dir / f".symlink-check-{os.getpid()}-{threading.get_ident()}"
    try:
        os.symlink(".", probe)
    except FileExistsError:
        pass  # a probe a killed run left: links work here
    except OSError as error:
        raise NoSymlinksError(Path(folder), error) from None
    probe.unlink(missing_ok=True)


_open_staging: set[str] = set()  # staging folders this process's new_version blocks are filling
_open_staging_guard = threading.Lock()


@contextmanager
def new_version(target: Path, member: str | None = None, keep: int = KEEP_VERSIONS) -> Iterator[Path]:
    """Yield an empty folder to fill; on a clean exit it becomes what ``target`` points to.

    ``target`` becomes a symbolic link to the new folder, or to ``member`` inside it when the
    published thing is a file with companions (the corpus and its index). Everything done inside
    the block, checking the new version and recording it included, happens before any reader can
    see it; an exception inside deletes the folder and leaves ``target`` untouched. Afterwards
    versions beyond the newest ``keep`` are deleted, except those a reader holds (``hold_version``).

    When ``target`` is itself a folder an enclosing ``new_version`` of this process yielded, it is
    yielded as it is and the enclosing block publishes it: a stage function that publishes its
    output can also write into a version its caller checks before publishing.
    """
    target = Path(target)
    with _open_staging_guard:
        nested = os.path.realpath(target) in _open_staging
    if nested:
        yield target
        return
    folder = versions_dir(target)
    folder.mkdir(parents=True, exist_ok=True)
    require_symlinks(folder)
    name = f"{time.time_ns():020d}-{os.getpid()}"  # sorts by age
    staging = folder / f"{_STAGING_PREFIX}{name}"
    staging.mkdir()
    try:
        with _staging_open(staging):
            yield staging
        fsync_tree(staging)
        version = folder / name
        os.replace(staging, version)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    _point(target, version / member if member else version)
    _prune(folder, keep=keep, current=version)


@contextmanager
def _staging_open(staging: Path) -> Iterator[None]:
    key = os.path.realpath(staging)
    with _open_staging_guard:
        _open_staging.add(key)
    try:
        yield
    finally:
        with _open_staging_guard:
            _open_staging.discard(key)


def _point(target: Path, destination: Path) -> None:
    """Make ``target`` a symbolic link to ``destination`` in one rename.

    A real folder or file at ``target`` (written before versioning, or put there by hand) is kept as
    an old version under a name of its own, so no leftover from an earlier migration is in the way.
    """
    link = target.parent / f".{target.name}.link-{os.getpid()}"
    link.unlink(missing_ok=True)
    try:
        os.symlink(os.path.relpath(destination, target.parent), link)
    except OSError as error:
        raise NoSymlinksError(target.parent, error) from None
    if target.exists() and not target.is_symlink():
        os.replace(target, versions_dir(target) / f"{0:020d}-unversioned-{time.time_ns()}")
    os.replace(link, target)
    _fsync_dir(target.parent)


def _versions(folder: Path) -> list[Path]:
    """The published versions in ``folder``, newest first (staging folders and hold files start with '.')."""
    return sorted((p for p in folder.iterdir() if not p.name.startswith(".")), reverse=True)


def _hold_file(version: Path) -> Path:
    return version.parent / f"{_HOLD_PREFIX}{version.name}"


def _prune(folder: Path, keep: int, current: Path) -> None:
    """Delete versions beyond the newest ``keep`` that no reader holds; a held one waits for a later publish."""
    versions = _versions(folder)
    kept = {current, *versions[:keep]}
    for path in versions:
        if path not in kept:
            _delete_unless_held(path)
    for hold in folder.glob(f"{_HOLD_PREFIX}*"):  # of versions already gone
        if not os.path.lexists(folder / hold.name[len(_HOLD_PREFIX):]):
            hold.unlink(missing_ok=True)


def _delete_unless_held(version: Path) -> bool:
    """Delete ``version`` if no reader holds it. It is renamed first, under the exclusive lock, so a
    reader that was waiting for the lock finds it gone rather than half deleted."""
    hold = _hold_file(version)
    doomed = version.parent / f"{_STAGING_PREFIX}pruned-{version.name}"
    with exclusive_now(hold) as free:
        if not free:
            return False
        try:
            os.replace(version, doomed)
        except OSError:  # Windows: a reader still has files open in it
            return False
        hold.unlink(missing_ok=True)
    _delete(doomed)
    return True


def _delete(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)


@contextmanager
def hold_version(link: Path) -> Iterator[Path]:
    """Resolve the published ``link`` once, and keep the version it names on disk until the block exits.

    Yields the absolute path ``link`` resolves to: a version folder (``data/tokenizer``,
    ``data/processed_dataset``, ``checkpoints/latest``) or the member file inside one
    (``data/all_books.txt``). Contract:

    - read everything through the yielded path, never through ``link`` again: another run may
      publish a new version at any moment, and only the yielded one is the one you hold;
    - while the block lasts, that version stays on disk, unchanged, however many versions are
      published meanwhile (pruning skips it; a later publish deletes it once it is let go);
    - the hold belongs to this process and its forked children; a process started inside the block
      (a spawned DataLoader worker, a torchrun rank) may reopen files by the yielded path for as long
      as the block lasts, and needs no hold of its own;
    - the hold is a shared OS lock on ``.hold-<version>`` beside the version, freed by the kernel
      when its holder exits, kill -9 included, so a dead reader never pins a version. Where the
      platform has no ``fcntl`` (Windows) nothing is held. A ``link`` that is a plain folder or
      file (written before versioning) is yielded resolved, unheld: nothing prunes it.

    Raises FileNotFoundError, naming ``link``, when nothing is published there.
    """
    link = Path(link)
    for _ in range(_HOLD_ATTEMPTS):
        resolved = _resolve_published(link)
        version = _version_of(link, resolved)
        if version is None:
            yield resolved
            return
        with shared(_hold_file(version)) as held:
            if held and resolved.exists():
                yield resolved
                return
        if _resolve_published(link) == resolved:  # not pruned under us: the link names nothing
            raise FileNotFoundError(
                f"{link} points to {resolved}, which does not exist: re-materialize the asset that writes {link}."
            )
    raise RuntimeError(f"{link} was published anew {_HOLD_ATTEMPTS} times while this run tried to hold "
                       "one version of it; run again once the runs writing it have finished.")


def _resolve_published(link: Path) -> Path:
    if not os.path.lexists(link):
        raise FileNotFoundError(f"Nothing is published at {link}: materialize the asset that writes it first.")
    resolved = Path(os.path.realpath(link))
    if _version_of(link, resolved) is None and not resolved.exists():
        raise FileNotFoundError(f"{link} points to {resolved}, which does not exist: "
                                f"re-materialize the asset that writes {link}.")
    return resolved


def _version_of(link: Path, resolved: Path) -> Path | None:
    """The version folder under ``link``'s versions folder that ``resolved`` lies in, if any."""
    root = Path(os.path.realpath(versions_dir(link)))
    try:
        parts = resolved.relative_to(root).parts
    except ValueError:
        return None
    return root / parts[0] if parts else None
