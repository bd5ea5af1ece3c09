"""Keep glibc from handing a CPU training step's memory back to the kernel between steps.

A CPU training step allocates and frees the same large tensors every step (activations, logits,
gradients). With glibc's default malloc, blocks above its mmap threshold are mapped fresh and
unmapped again each time, and the top of the heap is trimmed whenever enough of it is free, so
the next step touches new pages and the kernel zero-fills every one: measured on `tiny`, 10-15
thousand page faults per step, about a quarter of the step's time, and the main source of its
run-to-run noise. For the length of a run, ``steady_host_memory`` serves every block from the
heap and stops trimming it (``mallopt``, glibc's public tuning call), so steps after the first
reuse memory that is already mapped. Afterwards it returns to glibc's settled defaults and gives
the free memory back (``malloc_trim``). PyTorch's CPU tuning guide reaches the same end with
jemalloc or tcmalloc; this needs no extra library. Elsewhere (macOS, musl) it does nothing.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import platform
from collections.abc import Iterator
from contextlib import contextmanager
from functools import lru_cache

# mallopt parameters, from glibc's <malloc.h>.
M_TRIM_THRESHOLD = -1
M_MMAP_THRESHOLD = -3
M_MMAP_MAX = -4

STEADY = {M_MMAP_MAX: 0, M_TRIM_THRESHOLD: 2**31 - 1}
"""During a run: no block is mmapped on its own, and the heap is not trimmed below 2 GiB free."""

SETTLED = {M_MMAP_MAX: 65536, M_MMAP_THRESHOLD: 32 * 2**20, M_TRIM_THRESHOLD: 64 * 2**20}
"""After it: glibc's default mmap count, and the thresholds its dynamic tuning grows to (32 MiB,
twice that for trimming); setting any threshold turns that tuning off for the process."""


@lru_cache(maxsize=1)
def _glibc() -> ctypes.CDLL | None:
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return None
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
    except OSError:
        return None
    if not (hasattr(libc, "mallopt") and hasattr(libc, "malloc_trim")):
        return None
    libc.mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    return libc


def supported() -> bool:
    return _glibc() is not None


def _apply(settings: dict[int, int]) -> bool:
    libc = _glibc()
    if libc is None:
        return False
    return all(libc.mallopt(key, value) == 1 for key, value in settings.items())


@contextmanager
def steady_host_memory() -> Iterator[bool]:
    """Hold CPU memory mapped for the duration of the block; yields whether that is in effect."""
    applied = _apply(STEADY)
    try:
        yield applied
    finally:
        if applied:
            _apply(SETTLED)
            _glibc().malloc_trim(0)
