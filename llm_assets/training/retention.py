"""What the checkpoint folder keeps, so that a laptop's disk does not fill with old runs.

Every change of the books or of a stage's configuration trains in a new run folder, and a
gpt2-small checkpoint with its optimizer state is about 1.5 GB. So:

- a finished run keeps what continuing or re-publishing it needs: its last checkpoint (to train on
  from) and its best one (what ``latest`` publishes), nothing else;
- beyond ``keep`` run folders, the least recently trained are removed, oldest first.

Both run on rank 0 at the end of a training, while it holds the checkpoint folder's training lock:
no other training can be writing to (or resuming from) a run folder then, and the folder the run
just trained in is never removed. Each removal is reported with the bytes it freed.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

from llm_assets.training.checkpoints import checkpoints_in


@dataclass(frozen=True)
class Freed:
    path: Path
    bytes: int


def tree_bytes(path: Path) -> int:
    """Bytes of the files under ``path`` (links not followed, so ``latest`` counts once)."""
    path = Path(path)
    if path.is_symlink() or path.is_file():
        return path.lstat().st_size
    if not path.is_dir():
        return 0
    return sum(p.lstat().st_size for p in path.rglob("*") if p.is_file() and not p.is_symlink())


def _remove(path: Path) -> Freed:
    size = tree_bytes(path)
    shutil.rmtree(path, ignore_errors=True)
    return Freed(path, size)


def prune_finished_run(run_dir: Path, keep: set[Path]) -> list[Freed]:
    """Remove a finished run's checkpoints other than ``keep`` (its last and its best)."""
    kept = {Path(p).resolve() for p in keep if p is not None}
    return [_remove(p) for p in checkpoints_in(run_dir) if p.resolve() not in kept]


def run_folders(runs_dir: Path) -> list[Path]:
    """Run folders, most recently trained first (a folder's newest checkpoint or its own time)."""
    runs_dir = Path(runs_dir)
    if not runs_dir.is_dir():
        return []

    def trained_at(folder: Path) -> float:
        times = [p.stat().st_mtime for p in checkpoints_in(folder)]
        return max(times, default=folder.stat().st_mtime)

    return sorted((p for p in runs_dir.iterdir() if p.is_dir() and not p.is_symlink()), key=trained_at, reverse=True)


def prune_run_folders(runs_dir: Path, keep: int, current: Path) -> list[Freed]:
    """Remove the run folders beyond the ``keep`` most recently trained; never ``current``."""
    current = Path(current).resolve()
    others = [p for p in run_folders(runs_dir) if p.resolve() != current]
    return [_remove(p) for p in others[max(0, keep - 1) :]]
