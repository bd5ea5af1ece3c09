"""One writer per output: an OS file lock held while a stage builds and publishes.

Runs overlap (the sensor, the schedule, the UI and the CLI all start them), and Dagster's pools
are only as strict as the instance's storage. A lock file beside the output has no such gap, and
the kernel releases it when its holder dies, kill -9 included, so a crash never leaves it stuck.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from filelock import FileLock, Timeout


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
