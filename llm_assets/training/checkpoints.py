"""Checkpoints on disk: which run folder a run trains in, which checkpoints are whole, where to resume.

A run can die at any instant (kill -9, power loss, an MPS crash), so nothing here trusts a folder
for existing: a checkpoint counts once the Trainer's last file is readable and every weight and
optimizer file is non-empty. The run folder is named by what decides whether a checkpoint can
continue (data, tokenizer, model, optimiser, batch, seed), not by the run's length: a run asked
to train longer continues where the shorter one stopped.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import shutil
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from llm_assets.digests import digest_file, digest_tree
from llm_assets.locks import exclusive
from llm_assets.training.plan import TrainPlan

CHECKPOINT_PREFIX = "checkpoint-"
TRAINER_STATE = "trainer_state.json"
TRAINING_LOCK = ".training.lock"
IDENTITY_VERSION = 3  # 3: the optimizer joined the identity
_REQUIRED_FILES = ("model.safetensors", "optimizer.pt", "scheduler.pt")
# The callbacks whose saved state says a run has ended before its planned last step.
STOP_CALLBACK = "EarlyStopping"
BUDGET_CALLBACK = "TimeBudget"


@contextmanager
def training_lock(
    checkpoint_dir: Path, on_wait: Callable[[str], None] | None = None, poll_seconds: float = 30.0
) -> Iterator[Path]:
    """Hold ``checkpoint_dir/.training.lock``: one training at a time writes into a checkpoint folder."""
    path = Path(checkpoint_dir) / TRAINING_LOCK
    with exclusive(path, f"checkpoints into {checkpoint_dir}", on_wait, poll_seconds) as held:
        yield held


def checkpoint_step(path: Path) -> int | None:
    name = Path(path).name
    if not name.startswith(CHECKPOINT_PREFIX):
        return None
    try:
        return int(name[len(CHECKPOINT_PREFIX) :])
    except ValueError:
        return None


def is_complete_checkpoint(path: Path) -> bool:
    """A checkpoint the Trainer finished: weights, optimizer and, written last, a readable state."""
    path = Path(path)
    try:
        state = json.loads((path / TRAINER_STATE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    if state.get("global_step") != checkpoint_step(path):
        return False
    return all((path / name).is_file() and (path / name).stat().st_size > 0 for name in _REQUIRED_FILES)


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


def run_identity(plan: TrainPlan, dataset_dir: Path, tokenizer_dir: Path) -> dict[str, Any]:
    """What decides whether a checkpoint can continue: data, tokenizer, model, optimiser, batch, seed.

    Left out on purpose: the run's length and warm-up (a longer run continues a shorter one), the
    device and precision (a CPU fallback continues an MPS run), the save/eval/log cadence, compile
    and samples. The batch enters as sequences per optimizer step, so more accumulation after
    running out of memory still resumes.
    """
    preset = plan.preset
    shape = {f.name: getattr(preset, f.name) for f in dataclasses.fields(preset)
             if f.name not in ("batch_size", "gradient_accumulation_steps", "max_warmup_steps",
                               "warmup_fraction", "learning_rate", "description", "cuda_micro_batch_tokens")}
    return {
        "version": IDENTITY_VERSION,
        "dataset": digest_tree(dataset_dir, "*.arrow"),
        "tokenizer": digest_file(Path(tokenizer_dir) / "tokenizer.json"),
        "model": shape,
        "learning_rate": plan.learning_rate,
        "optimizer": plan.optimizer,
        "batch_size": plan.batch_size,
        "world_size": plan.world_size,
        "seed": plan.config.seed,
    }


def run_dir_for(runs_dir: Path, plan: TrainPlan, dataset_dir: Path, tokenizer_dir: Path) -> Path:
    """The run folder for this data and configuration: same identity, same folder."""
    identity = run_identity(plan, dataset_dir, tokenizer_dir)
    digest = hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()[:12]
    return Path(runs_dir) / f"{plan.preset.name}-{digest}"


@dataclass(frozen=True)
class Resume:
    """Rank 0's decision, sent to every rank: where this run trains and from which checkpoint."""

    run_dir: Path
    checkpoint: Path | None  # None: from scratch
    step: int
    planned_steps: int  # the total the checkpoint's run was planned for; 0 when fresh
    finished: bool  # the checkpoint already holds the whole run: evaluate and publish it
    discarded: tuple[str, ...] = ()  # half-written checkpoints removed before deciding
    best_checkpoint: Path | None = None  # the evaluated checkpoint with the lowest validation loss
    saved_callbacks: dict[str, Any] = dataclasses.field(default_factory=dict)  # their state at the checkpoint

    @property
    def model_checkpoint(self) -> Path | None:
        """What a finished run publishes: its best checkpoint if it is still there, else its last."""
        if self.best_checkpoint is not None and is_complete_checkpoint(self.best_checkpoint):
            return self.best_checkpoint
        return self.checkpoint

    def callback_attributes(self, name: str) -> dict[str, Any]:
        saved = self.saved_callbacks.get(name) or {}
        return dict(saved.get("attributes", {})) if isinstance(saved, dict) else {}

    def to_json(self) -> dict[str, Any]:
        return {**dataclasses.asdict(self), "run_dir": str(self.run_dir),
                "checkpoint": str(self.checkpoint) if self.checkpoint else None,
                "best_checkpoint": str(self.best_checkpoint) if self.best_checkpoint else None}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Resume:
        checkpoint, best = data["checkpoint"], data.get("best_checkpoint")
        return cls(**{**data, "run_dir": Path(data["run_dir"]), "discarded": tuple(data["discarded"]),
                      "checkpoint": Path(checkpoint) if checkpoint else None,
                      "best_checkpoint": Path(best) if best else None})


def choose_resume(run_dir: Path, total_steps: int) -> Resume:
    """Resume from the newest complete checkpoint, unless it is already past ``total_steps``.

    A run asked to stop earlier than one already trained goes to a sibling folder named for its
    length rather than silently publishing the longer run. Half-written checkpoints of the folder
    chosen are removed first, so the Trainer's rotation never counts them. Call it on rank 0 only.
    """
    discarded = [p.name for p in discard_incomplete_checkpoints(run_dir)]
    last = find_resume_checkpoint(run_dir)
    if last is not None and (checkpoint_step(last) or 0) > total_steps:
        run_dir = run_dir.with_name(f"{run_dir.name}-{total_steps}steps")
        discarded += [p.name for p in discard_incomplete_checkpoints(run_dir)]
        last = find_resume_checkpoint(run_dir)
    if last is None:
        return Resume(run_dir=run_dir, checkpoint=None, step=0, planned_steps=0, finished=False,
                      discarded=tuple(discarded))
    state = json.loads((last / TRAINER_STATE).read_text(encoding="utf-8"))
    step = int(state["global_step"])
    saved = state.get("stateful_callbacks") or {}
    ended = any(
        isinstance(value, dict) and value.get("attributes", {}).get(flag)
        for value, flag in ((saved.get(STOP_CALLBACK), "stopped"), (saved.get(BUDGET_CALLBACK), "finished"))
    )
    best = state.get("best_model_checkpoint")
    return Resume(
        run_dir=run_dir,
        checkpoint=last,
        step=step,
        planned_steps=int(state.get("max_steps") or 0),
        finished=step >= total_steps or ended,
        discarded=tuple(discarded),
        # The Trainer records an absolute path; the run folder may have moved since.
        best_checkpoint=run_dir / Path(best).name if best else None,
        saved_callbacks=saved,
    )
