"""Checkpoints on disk: which are complete, which to resume from, and publishing the final model.

A run can die at any instant (kill -9, power loss, an MPS crash), so nothing here trusts a folder
for existing: a checkpoint counts once the Trainer's last file is readable and every weight and
optimizer file is non-empty, finished checkpoints are fsynced, and the final model reaches
``latest`` through one atomic rename, so a reader never sees half a model.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from filelock import FileLock, Timeout

CHECKPOINT_PREFIX = "checkpoint-"
TRAINER_STATE = "trainer_state.json"
PUBLISHED_DIR = "published"
TRAINING_LOCK = ".training.lock"


@contextmanager
def training_lock(
    checkpoint_dir: Path, on_wait: Callable[[str], None] | None = None, poll_seconds: float = 30.0
) -> Iterator[Path]:
    """Hold ``checkpoint_dir/.training.lock`` while training: one training per checkpoint folder.

    Dagster's pool keeps training runs apart only as well as its instance's storage can: on the
    default SQLite instance two runs that claim the slot in the same instant can both win, and a
    notebook or a hand-started torchrun never asks the pool at all. An OS file lock (flock) has
    neither gap, and the kernel drops it when its holder dies, kill -9 included, so a crash never
    leaves the folder locked. A second training waits here, saying so every ``poll_seconds``.
    """
    checkpoint_dir = Path(checkpoint_dir)
    checkpoint_dir.mkdir(parents=True, exist_ok=True)
    path = checkpoint_dir / TRAINING_LOCK
    lock = FileLock(path)
    timeout = 0.0
    while True:
        try:
            lock.acquire(timeout=timeout)
            break
        except Timeout:
            if on_wait is not None:
                on_wait(f"another training run holds {path}; waiting for it to finish")
            timeout = poll_seconds
    try:
        yield path
    finally:
        lock.release()


def checkpoint_step(path: Path) -> int | None:
    name = Path(path).name
    if not name.startswith(CHECKPOINT_PREFIX):
        return None
    try:
        return int(name[len(CHECKPOINT_PREFIX) :])
    except ValueError:
        return None


def is_complete_checkpoint(path: Path) -> bool:
    """A checkpoint the Trainer finished writing: weights, optimizer and, last, a readable state.

    The Trainer creates ``checkpoint-N/`` first and writes ``trainer_state.json`` last, so a run
    killed mid-save leaves a folder without it (or with a truncated one).
    """
    path = Path(path)
    state_file = path / TRAINER_STATE
    try:
        state = json.loads(state_file.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    if state.get("global_step") != checkpoint_step(path):
        return False
    required = ("model.safetensors", "optimizer.pt", "scheduler.pt")
    return all((path / name).is_file() and (path / name).stat().st_size > 0 for name in required)


def checkpoints_in(run_dir: Path) -> list[Path]:
    """Checkpoint folders of a run, newest (highest step) first."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        return []
    found = [p for p in run_dir.iterdir() if p.is_dir() and checkpoint_step(p) is not None]
    return sorted(found, key=lambda p: checkpoint_step(p) or 0, reverse=True)


def find_resume_checkpoint(run_dir: Path) -> Path | None:
    """The newest complete checkpoint of a run; half-written ones are skipped."""
    return next((p for p in checkpoints_in(run_dir) if is_complete_checkpoint(p)), None)


def discard_incomplete_checkpoints(run_dir: Path) -> list[Path]:
    """Remove half-written checkpoints so the Trainer's rotation never counts them."""
    removed = []
    for path in checkpoints_in(run_dir):
        if not is_complete_checkpoint(path):
            shutil.rmtree(path, ignore_errors=True)
            removed.append(path)
    return removed


def fsync_tree(path: Path) -> None:
    """Flush a finished checkpoint to disk, so a power cut cannot leave a 'complete' but empty one."""
    for file in Path(path).rglob("*"):
        if file.is_file():
            with open(file, "rb") as handle:
                os.fsync(handle.fileno())
    if hasattr(os, "O_DIRECTORY"):
        fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def publish_model(model: Any, tokenizer: Any, checkpoint_dir: Path, keep: int = 2) -> Path:
    """Write model and tokenizer to ``checkpoint_dir/latest`` so that no reader sees half a model.

    The files go to a fresh ``published/<stamp>/`` folder first; ``latest`` is a symbolic link
    swapped to it with one atomic rename. The previous version is kept (a reader may still be
    loading it). Where symlinks are not allowed, ``latest`` is a real folder swapped by renames:
    a reader may then briefly find no model, but never half of one.
    """
    checkpoint_dir = Path(checkpoint_dir)
    published = checkpoint_dir / PUBLISHED_DIR
    published.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y%m%dT%H%M%S") + f"-{os.getpid()}-{time.monotonic_ns() % 1_000_000:06d}"
    staging = published / f".tmp-{stamp}"
    model.save_pretrained(staging)
    tokenizer.save_pretrained(staging)
    fsync_tree(staging)
    target = published / stamp
    os.replace(staging, target)
    latest = checkpoint_dir / "latest"
    if latest.exists() and not latest.is_symlink():
        # A real folder from an earlier layout: move it aside into published/ (kept like a version).
        os.replace(latest, published / f"{stamp}-previous")
    link = checkpoint_dir / f".latest-{stamp}"
    try:
        os.symlink(Path(PUBLISHED_DIR) / stamp, link, target_is_directory=True)
        os.replace(link, latest)
    except OSError:
        # No symlinks here (e.g. Windows without developer mode): fall back to a folder swap.
        if link.is_symlink():
            link.unlink()
        shutil.copytree(target, link)
        if latest.is_symlink() or latest.is_file():
            latest.unlink()
        elif latest.exists():
            shutil.rmtree(latest)
        os.replace(link, latest)
    _prune_published(published, keep_newest=keep, current=target)
    return latest


def _prune_published(published: Path, keep_newest: int, current: Path) -> None:
    versions = sorted(
        (p for p in published.iterdir() if p.is_dir() and not p.name.startswith(".")),
        key=lambda p: p.stat().st_mtime,
        reverse=True,
    )
    keep = {current.resolve(), *(p.resolve() for p in versions[:keep_newest])}
    for path in versions:
        if path.resolve() not in keep:
            shutil.rmtree(path, ignore_errors=True)
    for stale in published.glob(".tmp-*"):
        if stale.resolve() != current.resolve():
            shutil.rmtree(stale, ignore_errors=True)
