"""Everything a user may set for a training run, with its validation, defined once.

The Dagster asset's run configuration derives from this model (so the launchpad shows these
descriptions), torchrun workers receive it as JSON, and a notebook builds it by keyword. A wrong
value fails here, naming its key, before any data is read.
"""

from __future__ import annotations

import math

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from llm_assets.training.presets import get_preset, resolve_preset

PRECISIONS = ("auto", "bf16", "fp16", "fp32")
OPTIMIZERS = ("auto", "adamw", "muon")
# optimizer: auto, per device: the one that reached the lower validation loss at equal wall time
# there (benchmarks/QUALITY.md, "Optimizer"); a device not listed gets AdamW.
OPTIMIZER_BY_DEVICE = {"cpu": "muon", "cuda": "muon", "mps": "muon"}


def resolve_optimizer(name: str, device: str) -> str:
    """``auto`` becomes the device's optimizer; an explicit choice stays."""
    return OPTIMIZER_BY_DEVICE.get(device, "adamw") if name == "auto" else name
DEFAULT_PROMPTS = ["The fog lifted and", "It was a dark and stormy night;", "She opened the letter and read"]


class TrainConfig(BaseModel):
    """A training run's settings. Zeros and -1 mean "the preset's value" where the description says so."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    preset: str = Field(
        default="gpt2-small",
        description="Model size and the optimiser settings that suit it: tiny (a CPU smoke run in "
        "seconds), mini, gpt2-small (the default, ~124M parameters) or gpt2-medium; auto: gpt2-small on "
        "a CUDA GPU, mini elsewhere.",
    )
    max_steps: int = Field(default=-1, description="Optimizer steps to train; -1 trains by epochs (or by the budget).")
    num_train_epochs: float = Field(default=1.0, description="Passes over the training blocks when max_steps is -1.")
    time_budget_minutes: float = Field(
        default=0.0,
        description="Train for this many minutes of wall time (evaluations, checkpoints and the publish "
        "included), repeating the data as needed, with the learning rate at its floor on the last step; "
        "0: off (train by max_steps or epochs). A resumed run counts the time already spent.",
    )
    decay_fraction: float = Field(
        default=0.4,
        description="With a time budget: the share of the budget, at its end, over which the learning "
        "rate decays from the peak to its floor.",
    )
    optimizer: str = Field(
        default="auto",
        description="adamw, or muon (Muon for the hidden matrices, AdamW for embeddings, norms and "
        "biases); auto: the one that wins at equal wall time on the device (muon on cpu, cuda and mps).",
    )
    early_stopping_patience: int = Field(
        default=5,
        description="Stop when the validation loss has not improved for this many evaluations in a "
        "row; 0: never stop early. The published model is always the best evaluated checkpoint.",
    )
    batch_size: int = Field(
        default=0,
        description="Sequences per optimizer step in one process (the batch_size metadata); 0: the preset's.",
    )
    gradient_accumulation_steps: int = Field(
        default=0,
        description="Micro-batches each step's batch_size is split into: less memory, same training; "
        "0: the preset's.",
    )
    learning_rate: float = Field(default=0.0, description="Peak learning rate; 0: the preset's.")
    warmup_steps: int = Field(
        default=-1,
        description="Linear warm-up steps before the cosine decay to a tenth of the peak; -1: the "
        "preset's share of the run (a fraction of it, capped).",
    )
    save_steps: int = Field(default=500, description="Checkpoint interval in optimizer steps.")
    save_total_limit: int = Field(default=3, description="Checkpoints kept per run folder while it trains.")
    keep_run_folders: int = Field(
        default=3,
        description="Run folders kept under checkpoints/runs (this run's included); older ones are removed "
        "when a training ends, and a finished run keeps only its last and its best checkpoint.",
    )
    eval_steps: int = Field(default=0, description="Evaluation interval in steps; 0 evaluates at each checkpoint.")
    logging_steps: int = Field(default=10, description="Progress line interval in steps.")
    precision: str = Field(
        default="auto", description="auto (bf16 where the device has it natively, else fp32), bf16, fp16 or fp32."
    )
    compile: bool = Field(default=False, description="Train under torch.compile.")
    fallback_to_cpu: bool = Field(
        default=True, description="After an MPS runtime error, continue on the CPU from the last checkpoint."
    )
    seed: int = Field(default=42, description="Seed for initialisation and data order.")
    dataloader_workers: int = Field(
        default=0, description="DataLoader worker processes; 0 loads batches in the training process."
    )
    report_to: str = Field(
        default="none",
        description="none; tensorboard (the Trainer's event files go to <run folder>/tensorboard, needs "
        "the tensorboard extra); or any other Trainer integration by name (mlflow, wandb, ...), "
        "comma-separated for several, each with its own package and settings.",
    )
    sample_prompts: list[str] = Field(
        default_factory=lambda: list(DEFAULT_PROMPTS), description="Prompts sampled after training."
    )
    sample_max_new_tokens: int = Field(default=40, description="Tokens generated per sample.")

    @field_validator("preset")
    @classmethod
    def _known_preset(cls, value: str) -> str:
        get_preset(resolve_preset(value, "cpu"))
        return value

    @field_validator("max_steps")
    @classmethod
    def _steps(cls, value: int) -> int:
        if value != -1 and value <= 0:
            raise ValueError("use -1 (train by epochs) or a positive step count")
        return value

    @field_validator("save_steps", "save_total_limit", "logging_steps", "sample_max_new_tokens", "keep_run_folders")
    @classmethod
    def _positive(cls, value: int) -> int:
        if value <= 0:
            raise ValueError("must be positive (save_total_limit: keep at least 1 checkpoint, or a killed run cannot resume)")
        return value

    @field_validator("batch_size", "gradient_accumulation_steps", "eval_steps", "dataloader_workers",
                     "early_stopping_patience")
    @classmethod
    def _zero_or_positive(cls, value: int) -> int:
        if value < 0:
            raise ValueError("use 0 (the default described) or a positive number")
        return value

    @field_validator("warmup_steps")
    @classmethod
    def _warmup(cls, value: int) -> int:
        if value < -1:
            raise ValueError("use -1 (the preset's share of the run), 0 (none) or a step count")
        return value

    @field_validator("learning_rate")
    @classmethod
    def _rate(cls, value: float) -> float:
        if value < 0 or not math.isfinite(value):
            raise ValueError("use 0 (the preset's) or a positive rate")
        return value

    @field_validator("precision")
    @classmethod
    def _precision(cls, value: str) -> str:
        if value not in PRECISIONS:
            raise ValueError(f"use one of {', '.join(PRECISIONS)}")
        return value

    @field_validator("report_to")
    @classmethod
    def _report_to(cls, value: str) -> str:
        if not value.strip() or any(not name.strip() for name in value.split(",")):
            raise ValueError("use none, tensorboard, or Trainer integration names separated by commas")
        return value

    @field_validator("time_budget_minutes")
    @classmethod
    def _budget(cls, value: float) -> float:
        if value < 0 or not math.isfinite(value):
            raise ValueError("use 0 (no budget) or a positive number of minutes")
        return value

    @field_validator("decay_fraction")
    @classmethod
    def _decay_fraction(cls, value: float) -> float:
        if not 0 < value < 1:
            raise ValueError("use a share of the budget between 0 and 1 (exclusive), e.g. 0.4")
        return value

    @field_validator("optimizer")
    @classmethod
    def _optimizer(cls, value: str) -> str:
        if value not in OPTIMIZERS:
            raise ValueError(f"use one of {', '.join(OPTIMIZERS)}")
        return value

    @model_validator(mode="after")
    def _epochs_when_needed(self) -> TrainConfig:
        if self.max_steps == -1 and not self.num_train_epochs > 0:
            raise ValueError("num_train_epochs must be positive when max_steps is -1")
        if self.time_budget_minutes and self.max_steps != -1:
            raise ValueError(
                "time_budget_minutes and max_steps both set: a budget decides the number of steps; "
                "keep one of them (max_steps: -1 with a budget)"
            )
        if self.eval_steps and self.save_steps % self.eval_steps:
            raise ValueError(
                f"save_steps ({self.save_steps}) must be a multiple of eval_steps ({self.eval_steps}): every "
                "checkpoint is evaluated, so the best one can be published"
            )
        return self

    @property
    def time_budget_seconds(self) -> float:
        return self.time_budget_minutes * 60.0

    @property
    def effective_eval_steps(self) -> int:
        return self.eval_steps or self.save_steps
