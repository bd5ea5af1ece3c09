"""Per-book work on every core: a process pool whose results come back in the order asked.

Cleaning a book is pure Python (decoding, regular expressions, slicing), so threads would take
turns on one core; processes do not. Workers are started with ``spawn``: a fresh interpreter that
imports only the function's module, never a fork of a process that runs threads (a Dagster step
does), which can deadlock. Results are yielded in input order, and at most a few per worker are
ever waiting, so memory stays bounded however long the list.
"""

from __future__ import annotations

import multiprocessing
import os
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ProcessPoolExecutor
from typing import TypeVar

T = TypeVar("T")
R = TypeVar("R")

AHEAD_PER_WORKER = 4  # tasks queued per worker: enough to keep it busy while the caller writes


def available_cpus() -> int:
    """The cores this process may run on (a container's or ``taskset``'s limit, not the machine's)."""
    if hasattr(os, "sched_getaffinity"):
        return max(1, len(os.sched_getaffinity(0)))
    return max(1, os.cpu_count() or 1)


def ordered_map(fn: Callable[[T], R], items: Iterable[T], workers: int | None = None) -> Iterator[R]:
    """``map(fn, items)`` on ``workers`` processes (None: every available core), in input order.

    ``fn`` must be a module-level function and its arguments and results picklable. With one
    worker (or one item) it runs here, in this process, with no pool at all. An exception raised
    by ``fn`` is raised here, at that item, and the remaining work is cancelled.
    """
    items = list(items)
    workers = min(available_cpus() if workers is None else workers, len(items))
    if workers <= 1:
        yield from map(fn, items)
        return
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=workers, mp_context=context) as pool:
        todo = iter(items)
        pending: deque[Future[R]] = deque()
        try:
            for item in todo:
                pending.append(pool.submit(fn, item))
                if len(pending) >= workers * AHEAD_PER_WORKER:
                    break
            while pending:
                result = pending.popleft().result()
                for item in todo:
                    pending.append(pool.submit(fn, item))
                    break
                yield result
        finally:
            for future in pending:
                future.cancel()
