"""steady_host_memory: a CPU step's large blocks stay mapped from one step to the next.

Each measurement runs in a fresh interpreter: glibc's heap is process-wide state, and whatever
earlier tests allocated would decide what this one sees.
"""

import subprocess
import sys

import pytest

from llm_assets.training import host_memory

pytestmark = pytest.mark.skipif(not host_memory.supported(), reason="glibc only (Linux)")

STEPS = """
import resource, sys, torch
from llm_assets.training.host_memory import steady_host_memory

BLOCK = 64 * 2**20 // 4  # float32 elements: 64 MiB, above glibc's largest mmap threshold (32 MiB)

def faults(steps=4, warmup=8):
    # A 'step' allocates, writes and frees a large tensor, as a training step does with its
    # activations; the first steps grow the heap, then it holds.
    for _ in range(warmup):
        torch.empty(BLOCK).fill_(1.0)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    for _ in range(steps):
        torch.empty(BLOCK).fill_(1.0)
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before

if sys.argv[1] == "steady":
    with steady_host_memory() as applied:
        assert applied
        print(faults())
else:
    print(faults())
"""


def _faults(mode: str) -> int:
    done = subprocess.run([sys.executable, "-c", STEPS, mode], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return int(done.stdout.strip().splitlines()[-1])


def test_large_blocks_stay_mapped_between_steps() -> None:
    default = _faults("default")
    if default < 4 * 1000:
        pytest.skip(f"only {default} page faults without it (transparent huge pages?): nothing to measure")
    # glibc maps each 64 MiB block afresh: a fault per 4 KiB page, ~16k a step, every step.
    assert default > 4 * 8000, default
    # Held in the heap: at most an occasional block while the heap settles (usually none).
    assert _faults("steady") <= default / 3, default

