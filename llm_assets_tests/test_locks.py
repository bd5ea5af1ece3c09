"""Stage, training and version locks: a second writer waits for the first, a reader keeps out the
pruner, and a killed holder frees what it held."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

from llm_assets.locks import exclusive, exclusive_now, shared

from llm_assets.training.checkpoints import TRAINING_LOCK, training_lock

HOLD = """
import sys, time
from llm_assets.training.checkpoints import training_lock
with training_lock(sys.argv[1]):
    print("held", flush=True)
    time.sleep(float(sys.argv[2]))
"""


def _holder(checkpoint_dir: Path, seconds: float) -> subprocess.Popen[str]:
    """Another process (as another Dagster run would be) holding the lock for ``seconds``."""
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLD, str(checkpoint_dir), str(seconds)], stdout=subprocess.PIPE, text=True
    )
    assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
    return holder


def test_a_second_training_waits_for_the_first_and_says_so(tmp_path: Path) -> None:
    holder = _holder(tmp_path, 1.5)
    held_since = time.monotonic()
    said: list[str] = []
    with training_lock(tmp_path, on_wait=said.append, poll_seconds=0.2) as lock:
        assert time.monotonic() - held_since >= 1.4  # in only once the holder's 1.5 s were over
    holder.wait()
    assert lock == tmp_path / TRAINING_LOCK
    assert said and all(str(lock) in line and "waiting" in line for line in said)


def test_a_holder_killed_with_sigkill_leaves_the_lock_free(tmp_path: Path) -> None:
    holder = _holder(tmp_path, 600)
    os.kill(holder.pid, signal.SIGKILL)
    holder.wait()
    said: list[str] = []
    began = time.monotonic()
    with training_lock(tmp_path, on_wait=said.append, poll_seconds=0.2):
        pass
    assert said == [] and time.monotonic() - began < 5


def test_an_unheld_lock_is_taken_at_once_and_released_after(tmp_path: Path) -> None:
    folder = tmp_path / "new" / "checkpoints"  # created on demand
    with training_lock(folder) as lock:
        assert lock.parent == folder
    said: list[str] = []
    with training_lock(folder, on_wait=said.append):
        pass
    assert said == []


def test_a_stage_lock_says_what_is_being_written(tmp_path: Path) -> None:
    entered: list[str] = []
    said: list[str] = []

    def second_writer() -> None:
        with exclusive(tmp_path / "tokenizer.lock", "the tokenizer output", said.append, poll_seconds=0.1):
            entered.append("second")

    with exclusive(tmp_path / "tokenizer.lock", "the tokenizer output"):
        waiter = threading.Thread(target=second_writer)
        waiter.start()
        waiter.join(0.5)
        assert waiter.is_alive() and not entered  # held off while the first writes
    waiter.join(5)
    assert entered == ["second"] and "another run is writing the tokenizer output" in said[0]


SHARE = """
import sys, time
from pathlib import Path
from llm_assets.locks import shared
with shared(Path(sys.argv[1])) as held:
    print("held" if held else "gone", flush=True)
    time.sleep(float(sys.argv[2]))
"""


def _sharer(path: Path, seconds: float) -> subprocess.Popen[str]:
    sharer = subprocess.Popen([sys.executable, "-c", SHARE, str(path), str(seconds)], stdout=subprocess.PIPE, text=True)
    assert sharer.stdout is not None and sharer.stdout.readline().strip() == "held"
    return sharer


def test_a_shared_holder_in_another_process_keeps_out_the_exclusive_try_until_it_dies(tmp_path: Path) -> None:
    hold = tmp_path / ".hold-v1"
    sharer = _sharer(hold, 600)
    with shared(hold) as held:  # readers share
        assert held
    with exclusive_now(hold) as free:
        assert not free
    os.kill(sharer.pid, signal.SIGKILL)
    sharer.wait()
    with exclusive_now(hold) as free:
        assert free


def test_a_reader_waiting_for_a_deleted_version_learns_it_is_gone(tmp_path: Path) -> None:
    hold = tmp_path / ".hold-v1"
    result: list[bool] = []

    def reader() -> None:
        with shared(hold) as held:
            result.append(held)

    with exclusive_now(hold) as free:
        assert free
        waiter = threading.Thread(target=reader)
        waiter.start()
        waiter.join(0.3)
        assert waiter.is_alive()  # waits while the pruner holds the file
        hold.unlink()  # what pruning does once the version itself is gone
    waiter.join(5)
    assert result == [False]
