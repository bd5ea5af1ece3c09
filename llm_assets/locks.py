"""OS file locks: one writer per output, and readers that keep the version they use.

Runs overlap (the sensor, the schedule, the UI and the CLI all start them), and Dagster's pools
are only as strict as the instance's storage. A lock file beside the output has no such gap, and
the kernel releases it when its holder dies, kill -9 included, so a crash never leaves it stuck.

Writers take ``exclusive``. Readers of a published version take ``shared`` on that version's hold
file, and pruning deletes a version only after ``exclusive_now`` got its hold file, so a version in
use is never deleted under its reader. Shared locks are ``flock(2)``; where the platform has no
``fcntl`` (Windows) ``shared`` and ``exclusive_now`` hold nothing and say so by their result.
"""

from __future__ import annotations

import errno
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from filelock import FileLock, Timeout

try:
    import fcntl
except ImportError:  # Windows: no shared locks from the standard library
    fcntl = None  # type: ignore[assignment]


@contextmanager
def exclusive(
    path: Path, what: str, on_wait: Callable[[str], None] | None = None, poll_seconds: float = 30.0
) -> Iterator[Path]:
    """Hold the lock file ``path`` for writing ``what``; while another holds it, wait and say so."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    lock = FileLock(path)
    timeout = 0.0
    while True:
        try:
            lock.acquire(timeout=timeout)
            break
        except Timeout:
            if on_wait is not None:
                on_wait(f"another run is writing {what} (it holds {path}); waiting for it to finish")
            timeout = poll_seconds
    try:
        yield path
    finally:
        lock.release()


@contextmanager
def shared(path: Path) -> Iterator[bool]:
    """Hold a shared lock on the lock file ``path`` (created if missing), waiting for an exclusive holder.

    Yields True while held. Yields False when the file was removed while we waited (its exclusive
    holder deleted what it guards, see ``exclusive_now``): the caller must look again. Where no lock
    can be taken (no ``fcntl``; a read-only folder, where nothing can be deleted either) it yields
    True without holding anything.
    """
    if fcntl is None:
        yield True
        return
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
    except FileNotFoundError:
        yield False  # the folder it lives in is gone
        return
    except OSError as error:
        if error.errno not in (errno.EACCES, errno.EPERM, errno.EROFS):
            raise
        yield True  # read-only: no one can delete what it guards
        return
    try:
        fcntl.flock(fd, fcntl.LOCK_SH)
        yield _still_named(path, fd)
    finally:
        os.close(fd)  # releases the lock


def _still_named(path: Path, fd: int) -> bool:
    """Does ``path`` still name the file open as ``fd`` (not removed, nor replaced by a new one)?"""
    try:
        named = os.stat(path)
    except FileNotFoundError:
        return False
    opened = os.fstat(fd)
    return (named.st_dev, named.st_ino) == (opened.st_dev, opened.st_ino)


@contextmanager
def exclusive_now(path: Path) -> Iterator[bool]:
    """Try for the exclusive lock on ``path`` without waiting; yields whether no one else holds it.

    Inside, while it yields True, the caller may delete what the file guards and then the file
    itself: a waiting ``shared`` then learns it is gone. A lock that cannot be tried (a file system
    without ``flock`` for this file) yields False: whoever asks must assume a reader holds it.
    """
    if fcntl is None:
        yield True  # Windows: the OS itself refuses to move a folder with open files
        return
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
    except OSError:
        yield False
        return
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:  # EWOULDBLOCK: held; anything else: cannot tell, so treat as held
            yield False
            return
        yield _still_named(path, fd)
    finally:
        os.close(fd)
