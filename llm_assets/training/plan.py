"""The plan: a training configuration resolved against its preset, the dataset and the tokenizer.

Made in seconds and before any model is built, so the asset can make it before launching torchrun
and a wrong key, a dataset from another tokenizer or a context too long for the model costs the
user nothing.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

from llm_assets.text.byte_counts import TargetBytes, validation_target_bytes
from llm_assets.text.dataset import check_dataset
from llm_assets.text.tokenizer import load_tokenizer
from llm_assets.training.config import TrainConfig, resolve_optimizer
from llm_assets.training.presets import ModelPreset, get_preset, padded_vocab_size, resolve_preset
from llm_assets.training.schedule import SETTLE_STEPS, BudgetSchedule, Schedule, warmup_for

# A budgeted run's step count is decided as it runs; the Trainer is given this as its bound.
BUDGET_STEP_BOUND = 1_000_000_000


@dataclass(frozen=True)
class TrainPlan:
    """What will run: every "the preset's value" replaced by the value itself."""

    config: TrainConfig
    preset: ModelPreset
    batch_size: int  # sequences per optimizer step in one process
    gradient_accumulation_steps: int
    learning_rate: float
    context_length: int
    tokenizer_vocab: int
    train_rows: int
    validation_rows: int
    world_size: int
    schedule: Schedule | BudgetSchedule
    optimizer: str  # adamw or muon, resolved for the device
    validation_bytes: TargetBytes  # what eval_bpb divides by

    @property
    def budget_seconds(self) -> float:
        return self.config.time_budget_seconds

    @property
    def micro_batch_size(self) -> int:
        return self.batch_size // self.gradient_accumulation_steps

    @property
    def total_steps(self) -> int:
        """The Trainer's max_steps: the run's length, or with a budget a bound it never reaches."""
        return BUDGET_STEP_BOUND if self.budget_seconds else self.schedule.total_steps

    @property
    def model_vocab(self) -> int:
        return padded_vocab_size(self.tokenizer_vocab)

    @property
    def tokens_per_step(self) -> int:
        """Tokens per optimizer step over all processes."""
        return self.batch_size * self.world_size * self.context_length


def plan_training(
    dataset_dir: Path, tokenizer_dir: Path, config: TrainConfig, *, world_size: int = 1, device: str = "cpu"
) -> TrainPlan:
    """Check the configuration against the preset, the dataset and the tokenizer, and resolve it.

    ``device`` picks the default batch: a CUDA GPU gets a larger one (``ModelPreset.cuda_micro_batch``)."""
    preset = get_preset(resolve_preset(config.preset, device))
    vocab = len(load_tokenizer(tokenizer_dir))
    check = check_dataset(dataset_dir, vocab)
    if check.largest_id >= vocab:
        raise ValueError(
            f"Config key `vocab_size`: the dataset in {dataset_dir} holds token id {check.largest_id} but "
            f"the tokenizer at {tokenizer_dir} has only {vocab} tokens: the dataset was built with another "
            "tokenizer. Re-materialize `tokenized_dataset` after `tokenizer`."
        )
    if check.problems:
        raise ValueError(f"Dataset {dataset_dir}: {'; '.join(check.problems)}. Re-materialize `tokenized_dataset`.")
    (context_length,) = check.block_lengths
    if context_length > preset.n_positions:
        raise ValueError(
            f"Config key `context_length`={context_length} (tokenized_dataset) is longer than the "
            f"{preset.name!r} preset's {preset.n_positions} positions: use context_length <= "
            f"{preset.n_positions} or a larger `preset`."
        )
    accumulation = config.gradient_accumulation_steps or preset.gradient_accumulation_steps
    if config.batch_size:
        batch = config.batch_size
    elif device == "cuda":
        batch = preset.cuda_micro_batch(context_length) * accumulation
    else:
        batch = preset.batch_size
    if batch % accumulation:
        raise ValueError(
            f"Config keys `batch_size`={batch} and `gradient_accumulation_steps`={accumulation}: the batch "
            "is split into that many equal micro-batches, so batch_size must be a multiple of it."
        )
    train_rows = check.rows["train"]
    schedule: Schedule | BudgetSchedule
    if config.time_budget_minutes:
        # The length is unknown: the warm-up Adam needs to settle (or the user's), within the cap.
        warmup = config.warmup_steps if config.warmup_steps >= 0 else min(SETTLE_STEPS, preset.max_warmup_steps)
        schedule = BudgetSchedule(warmup_steps=warmup)
    else:
        if config.max_steps > 0:
            total = config.max_steps
        else:
            steps_per_epoch = max(1, math.ceil(train_rows / world_size) // batch)
            total = max(1, math.ceil(config.num_train_epochs * steps_per_epoch))
        warmup = warmup_for(total, preset.warmup_fraction, preset.max_warmup_steps, config.warmup_steps)
        schedule = Schedule(warmup_steps=warmup, total_steps=total)
    return TrainPlan(
        config=config,
        preset=preset,
        batch_size=batch,
        gradient_accumulation_steps=accumulation,
        learning_rate=config.learning_rate or preset.learning_rate,
        context_length=context_length,
        tokenizer_vocab=vocab,
        train_rows=train_rows,
        validation_rows=check.rows["validation"],
        world_size=world_size,
        schedule=schedule,
        optimizer=resolve_optimizer(config.optimizer, device),
        validation_bytes=validation_target_bytes(dataset_dir, tokenizer_dir),
    )
