"""Train GPT-2 from scratch with the Hugging Face Trainer: resumable, observable, data-parallel.

Training is where users spend hours, so this module is built around what goes wrong in hours:
invalid settings fail before the first step with the key named; checkpoints land in a folder tied
to the dataset and configuration so a killed run resumes where it stopped (and never from an
incompatible run); an MPS crash continues on the CPU; the finished model is published atomically.

Run it in-process with :func:`train_model`, or as a torchrun job (``python -m
llm_assets.training.train``, built by :func:`torchrun_command`). Multi-node works with torchrun's
usual rendezvous options, provided ``--checkpoint-dir`` is on a filesystem every node shares::

    # on each of 2 nodes (node ranks 0 and 1), 4 processes per node
    python -m torch.distributed.run --nnodes 2 --nproc_per_node 4 \\
        --rdzv_backend c10d --rdzv_endpoint HOST0:29400 --rdzv_id llm-run-1 \\
        -m llm_assets.training.train --dataset-dir data/processed_dataset \\
        --tokenizer-dir data/tokenizer --checkpoint-dir /shared/checkpoints \\
        --config-json '{"preset": "gpt2-small"}' --device cuda --result-json result.json

This module never imports dagster (rule 1). Under Dagster Pipes, :func:`main` sends progress to
the orchestrator through ``dagster_pipes``, imported only when a Pipes context is present.
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import math
import os
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from llm_assets.training.checkpoints import (
    CHECKPOINT_PREFIX,
    TRAINER_STATE,
    checkpoint_step,
    discard_incomplete_checkpoints,
    find_resume_checkpoint,
    fsync_tree,
    publish_model,
)
from llm_assets.training.devices import choose_precision, fused_adamw_supported, prepare_device
from llm_assets.training.presets import ModelPreset, get_preset, padded_vocab_size

DEFAULT_PROMPTS = (
    "The fog lifted and",
    "It was a dark and stormy night;",
    "She opened the letter and read",
)
RUN_INFO = "run.json"
LOSS_CURVE = "loss_curve.png"
RESULT_FILE = "result.json"
FINGERPRINT_VERSION = 1
MPS_ERROR_MARKERS = ("placeholder storage has not been allocated on mps", "mps backend", "mps device", "mpsgraph")

ProgressFn = Callable[["TrainProgress"], None]


# --------------------------------------------------------------------------------------------
# Configuration and results
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class TrainConfig:
    """Everything a user may set for a training run. Zeros mean "the preset's value"."""

    preset: str = "gpt2-small"
    max_steps: int = -1
    num_train_epochs: float = 1.0
    save_steps: int = 500
    save_total_limit: int = 3
    eval_steps: int = 0
    logging_steps: int = 10
    batch_size: int = 0
    gradient_accumulation_steps: int = 0
    learning_rate: float = 0.0
    precision: str = "auto"
    compile: bool = False
    fallback_to_cpu: bool = True
    seed: int = 42
    sample_prompts: tuple[str, ...] = DEFAULT_PROMPTS
    sample_max_new_tokens: int = 40
    dataloader_workers: int = 0

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, s: str) -> TrainConfig:
        """Parse a config; an unknown key is an error naming it (a typo must not be silently ignored)."""
        data = json.loads(s)
        if not isinstance(data, dict):
            raise ValueError(f"Training config must be a JSON object, got {type(data).__name__}.")
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(
                f"Unknown training config key(s) {', '.join(map(repr, unknown))}; known keys: {', '.join(sorted(known))}."
            )
        if "sample_prompts" in data:
            data["sample_prompts"] = tuple(data["sample_prompts"])
        return cls(**data)

    @property
    def effective_eval_steps(self) -> int:
        return self.eval_steps or self.save_steps


@dataclass(frozen=True)
class TrainProgress:
    """One report for the progress callback: every ``logging_steps``, at evaluations, and for notices."""

    kind: str  # "train" | "eval" | "notice"
    step: int
    max_steps: int
    epoch: float
    loss: float | None
    learning_rate: float | None
    tokens_per_second: float | None
    eta_seconds: float | None
    message: str


@dataclass(frozen=True)
class TrainResult:
    """What a finished run reports; the asset turns it into the SPEC's metadata."""

    device: str
    precision: str
    preset: str
    parameters: int
    batch_size: int  # sequences per optimizer step in one process
    train_tokens: int  # tokens the final model was trained on, all processes, resumed steps included
    tokens_per_second: float  # tokens trained in this call / seconds in training steps in this call
    train_loss: float  # mean training loss over the last logging window
    eval_loss: float
    perplexity: float
    resumed_from_step: int
    world_size: int
    model_dir: Path
    run_dir: Path
    global_step: int
    wall_seconds: float
    train_seconds: float
    fell_back_to_cpu: bool
    loss_history: tuple[tuple[int, float], ...]
    eval_history: tuple[tuple[int, float], ...]
    samples: tuple[tuple[str, str], ...]
    loss_curve_png: Path
    fallback_resumed_from_step: int = -1  # after an MPS failure: the checkpoint step the CPU went on from

    def to_json(self) -> str:
        data = dataclasses.asdict(self)
        for key in ("model_dir", "run_dir", "loss_curve_png"):
            data[key] = str(data[key])
        return json.dumps(data, indent=2, allow_nan=True)

    @classmethod
    def from_json(cls, s: str) -> TrainResult:
        data = json.loads(s)
        for key in ("model_dir", "run_dir", "loss_curve_png"):
            data[key] = Path(data[key])
        for key in ("loss_history", "eval_history", "samples"):
            data[key] = tuple(tuple(item) for item in data[key])
        return cls(**data)


class TrainingOutOfMemoryError(RuntimeError):
    """The device ran out of memory; the message says what to change. Checkpoints are kept."""


@dataclass(frozen=True)
class TrainPlan:
    """The configuration resolved against the preset, the data and the tokenizer: what will run."""

    config: TrainConfig
    preset: ModelPreset
    batch_size: int
    gradient_accumulation_steps: int
    learning_rate: float
    context_length: int
    tokenizer_vocab: int
    model_vocab: int
    train_rows: int
    validation_rows: int
    world_size: int
    total_steps: int
    warmup_steps: int

    @property
    def sequences_per_step(self) -> int:
        """Sequences per optimizer step over all processes."""
        return self.batch_size * self.gradient_accumulation_steps * self.world_size

    @property
    def tokens_per_step(self) -> int:
        return self.sequences_per_step * self.context_length


@dataclass(frozen=True)
class Distributed:
    """This process's place in a torchrun job (rank 0 of 1 when run alone)."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @classmethod
    def from_env(cls) -> Distributed:
        env = os.environ
        return cls(
            rank=int(env.get("RANK", "0")),
            world_size=int(env.get("WORLD_SIZE", "1")),
            local_rank=int(env.get("LOCAL_RANK", "0")),
        )


# --------------------------------------------------------------------------------------------
# Validation: every mistake we can see before training, reported with the key at fault
# --------------------------------------------------------------------------------------------


def _check_config_values(config: TrainConfig) -> ModelPreset:
    preset = get_preset(config.preset)

    def need(ok: bool, key: str, what: str) -> None:
        if not ok:
            raise ValueError(f"Config key `{key}`={getattr(config, key)!r}: {what}.")

    need(config.max_steps == -1 or config.max_steps > 0, "max_steps", "use -1 (train by epochs) or a positive step count")
    need(config.max_steps > 0 or config.num_train_epochs > 0, "num_train_epochs", "must be positive when max_steps is -1")
    need(config.save_steps > 0, "save_steps", "must be a positive number of optimizer steps")
    need(config.save_total_limit > 0, "save_total_limit", "keep at least 1 checkpoint, or a killed run cannot resume")
    need(config.eval_steps >= 0, "eval_steps", "use 0 (evaluate at every save) or a positive step count")
    need(config.logging_steps > 0, "logging_steps", "must be positive")
    need(config.batch_size >= 0, "batch_size", "use 0 (the preset's) or a positive batch size")
    need(config.gradient_accumulation_steps >= 0, "gradient_accumulation_steps", "use 0 (the preset's) or a positive count")
    need(config.learning_rate >= 0 and math.isfinite(config.learning_rate), "learning_rate", "use 0 (the preset's) or a positive rate")
    need(config.sample_max_new_tokens > 0, "sample_max_new_tokens", "must be positive")
    need(config.dataloader_workers >= 0, "dataloader_workers", "must be 0 (load in the training process) or more")
    need(all(isinstance(p, str) for p in config.sample_prompts), "sample_prompts", "must be a list of strings")
    return preset


def _load_splits(dataset_dir: Path) -> Any:
    from datasets import DatasetDict, load_from_disk

    dataset_dir = Path(dataset_dir)
    if not dataset_dir.exists():
        raise FileNotFoundError(
            f"Tokenized dataset not found at {dataset_dir}: materialize `tokenized_dataset` first."
        )
    splits = load_from_disk(str(dataset_dir))
    if not isinstance(splits, DatasetDict):
        raise ValueError(f"{dataset_dir} holds a single Dataset; `tokenized_dataset` must save a DatasetDict.")
    for name in ("train", "validation"):
        if name not in splits:
            raise ValueError(
                f"Tokenized dataset {dataset_dir} has no {name!r} split (it has {sorted(splits)}); "
                "re-materialize `tokenized_dataset`."
            )
        if "input_ids" not in splits[name].column_names:
            raise ValueError(f"Split {name!r} of {dataset_dir} has no `input_ids` column; re-materialize `tokenized_dataset`.")
        if len(splits[name]) == 0:
            raise ValueError(
                f"Split {name!r} of {dataset_dir} is empty: add books or lower `context_length` in "
                "`tokenized_dataset`."
            )
    return splits


def _token_stats(split: Any) -> tuple[int, int, int]:
    """(shortest row, longest row, largest token id) of a split, read straight from Arrow."""
    import pyarrow.compute as pc

    column = split.data.column("input_ids")
    lengths = pc.list_value_length(column)
    flat = pc.list_flatten(column)
    return int(pc.min(lengths).as_py()), int(pc.max(lengths).as_py()), int(pc.max(flat).as_py())


def validate_config(
    dataset_dir: Path, tokenizer_dir: Path, config: TrainConfig, *, world_size: int | None = None
) -> TrainPlan:
    """Check the configuration against the preset, the dataset and the tokenizer; resolve it.

    Runs in seconds and before any model is built, so the asset can call it before launching
    torchrun and a wrong key costs the user nothing.
    """
    from transformers import AutoTokenizer

    preset = _check_config_values(config)
    world = world_size if world_size is not None else Distributed.from_env().world_size
    tokenizer_dir = Path(tokenizer_dir)
    if not (tokenizer_dir / "tokenizer.json").is_file():
        raise FileNotFoundError(f"No tokenizer at {tokenizer_dir} (tokenizer.json missing): materialize `tokenizer` first.")
    tokenizer = AutoTokenizer.from_pretrained(tokenizer_dir)
    vocab = len(tokenizer)
    splits = _load_splits(dataset_dir)
    lengths: set[int] = set()
    for name in ("train", "validation"):
        shortest, longest, top_id = _token_stats(splits[name])
        if shortest != longest:
            raise ValueError(
                f"Split {name!r} of {dataset_dir} has rows of {shortest} to {longest} tokens; every row "
                "must be exactly `context_length` tokens. Re-materialize `tokenized_dataset`."
            )
        lengths.add(longest)
        if top_id >= vocab:
            raise ValueError(
                f"Config key `vocab_size`: split {name!r} of {dataset_dir} holds token id {top_id} but the "
                f"tokenizer at {tokenizer_dir} has only {vocab} tokens: the dataset was built with another "
                "tokenizer. Re-materialize `tokenized_dataset` after `tokenizer`."
            )
    if len(lengths) != 1:
        raise ValueError(f"Splits of {dataset_dir} have different row lengths {sorted(lengths)}; re-materialize `tokenized_dataset`.")
    context_length = lengths.pop()
    if context_length > preset.n_positions:
        raise ValueError(
            f"Config key `context_length`={context_length} (tokenized_dataset) is longer than the "
            f"{preset.name!r} preset's {preset.n_positions} positions: use context_length <= "
            f"{preset.n_positions} or a larger `preset`."
        )
    batch = config.batch_size or preset.batch_size
    accumulation = config.gradient_accumulation_steps or preset.gradient_accumulation_steps
    train_rows = len(splits["train"])
    if config.max_steps > 0:
        total = config.max_steps
    else:
        batches_per_process = math.ceil(math.ceil(train_rows / world) / batch)
        total = max(1, math.ceil(config.num_train_epochs * max(1, batches_per_process // accumulation)))
    return TrainPlan(
        config=config,
        preset=preset,
        batch_size=batch,
        gradient_accumulation_steps=accumulation,
        learning_rate=config.learning_rate or preset.learning_rate,
        context_length=context_length,
        tokenizer_vocab=vocab,
        model_vocab=padded_vocab_size(vocab),
        train_rows=train_rows,
        validation_rows=len(splits["validation"]),
        world_size=world,
        total_steps=total,
        # Warm-up is at most a tenth of the run, so a short run still reaches its learning rate.
        warmup_steps=min(preset.warmup_steps, max(1, total // 10)),
    )


# --------------------------------------------------------------------------------------------
# Run folders and checkpoints
# --------------------------------------------------------------------------------------------


def _hash_files(paths: Sequence[Path], root: Path) -> str:
    digest = hashlib.blake2b(digest_size=16)
    for path in paths:
        digest.update(str(path.relative_to(root)).encode())
        with open(path, "rb") as handle:
            for chunk in iter(lambda: handle.read(1 << 20), b""):
                digest.update(chunk)
    return digest.hexdigest()


def dataset_fingerprint(dataset_dir: Path) -> str:
    """Hash of the dataset's Arrow data: the same tokens give the same hash however often rebuilt."""
    root = Path(dataset_dir)
    files = sorted(root.rglob("*.arrow"))
    if not files:
        raise FileNotFoundError(f"No Arrow files under {root}: materialize `tokenized_dataset` first.")
    return _hash_files(files, root)


def tokenizer_fingerprint(tokenizer_dir: Path) -> str:
    root = Path(tokenizer_dir)
    return _hash_files([root / "tokenizer.json"], root)


def _fingerprint_inputs(
    dataset_dir: Path, tokenizer_dir: Path, config: TrainConfig, world_size: int
) -> dict[str, Any]:
    """What decides whether a checkpoint can continue: data, tokenizer, model and optimisation.

    Left out on purpose: the device and precision (a CPU fallback continues an MPS run), the
    save/eval/log cadence, compile, samples. The batch enters as sequences per optimizer step, so
    halving ``batch_size`` and doubling ``gradient_accumulation_steps`` after running out of
    memory still resumes.
    """
    preset = get_preset(config.preset)
    batch = config.batch_size or preset.batch_size
    accumulation = config.gradient_accumulation_steps or preset.gradient_accumulation_steps
    return {
        "version": FINGERPRINT_VERSION,
        "dataset": dataset_fingerprint(dataset_dir),
        "tokenizer": tokenizer_fingerprint(tokenizer_dir),
        "model": dataclasses.asdict(preset),
        "learning_rate": config.learning_rate or preset.learning_rate,
        "sequences_per_process_step": batch * accumulation,
        "world_size": world_size,
        "max_steps": config.max_steps,
        "num_train_epochs": config.num_train_epochs if config.max_steps == -1 else None,
        "seed": config.seed,
    }


def run_dir_for(
    runs_dir: Path, dataset_dir: Path, tokenizer_dir: Path, config: TrainConfig, *, world_size: int | None = None
) -> Path:
    """The folder for this dataset, tokenizer and training configuration: same inputs, same folder.

    ``world_size`` defaults to this process's (WORLD_SIZE); pass ``nproc_per_node * nnodes`` when
    asking from outside the torchrun job.
    """
    world = world_size if world_size is not None else Distributed.from_env().world_size
    inputs = _fingerprint_inputs(dataset_dir, tokenizer_dir, config, world)
    digest = hashlib.sha256(json.dumps(inputs, sort_keys=True).encode()).hexdigest()[:12]
    return Path(runs_dir) / f"{config.preset}-{digest}"


# --------------------------------------------------------------------------------------------
# Progress, timing and the Trainer
# --------------------------------------------------------------------------------------------


def _format_duration(seconds: float) -> str:
    seconds = int(max(0, seconds))
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}h{minutes:02d}m" if hours else f"{minutes}m{secs:02d}s"


def _collate_blocks(features: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
    """Stack fixed-length rows and widen to int64 once per batch; labels are the inputs (GPT-2 shifts)."""
    ids = torch.from_numpy(np.stack([f["input_ids"] for f in features]).astype(np.int64, copy=False))
    return {"input_ids": ids, "labels": ids}


def _make_callbacks(plan: TrainPlan, dist: Distributed, progress: ProgressFn | None) -> Any:
    """Build the Trainer callback lazily so importing this module stays cheap."""
    from transformers import TrainerCallback

    tokens_per_step = plan.tokens_per_step
    flops_per_token = plan.preset.flops_per_token(plan.context_length, plan.tokenizer_vocab)

    class ProgressAndClock(TrainerCallback):
        """Times training steps (evaluation and saving excluded) and reports progress.

        The clock runs from one step's end to the next; evaluation and saving happen in between
        and restart it when they finish, so their time never counts as training. Nothing here
        touches a tensor: the loss arrives in ``on_log``, which the Trainer syncs anyway.
        """

        def __init__(self) -> None:
            self.train_seconds = 0.0
            self.steps = 0
            self.start_step = 0
            self._mark = time.perf_counter()
            self._window_seconds = 0.0
            self._window_steps = 0

        def _restart(self) -> None:
            self._mark = time.perf_counter()

        def on_train_begin(self, args, state, control, **kwargs):  # noqa: ANN001
            self.start_step = state.global_step
            self._restart()

        def on_step_end(self, args, state, control, **kwargs):  # noqa: ANN001
            now = time.perf_counter()
            self.train_seconds += now - self._mark
            self._window_seconds += now - self._mark
            self._window_steps += 1
            self.steps += 1
            self._mark = now
            if state.global_step >= state.max_steps:
                control.should_log = True  # always log the last step: the final training loss
            return control

        def on_evaluate(self, args, state, control, metrics=None, **kwargs):  # noqa: ANN001
            if progress is not None and dist.is_main and metrics and "eval_loss" in metrics:
                loss = float(metrics["eval_loss"])
                progress(
                    TrainProgress(
                        kind="eval",
                        step=state.global_step,
                        max_steps=state.max_steps,
                        epoch=float(state.epoch or 0.0),
                        loss=loss,
                        learning_rate=None,
                        tokens_per_second=None,
                        eta_seconds=None,
                        message=f"eval step {state.global_step}/{state.max_steps} | val loss {loss:.4f} | "
                        f"perplexity {_perplexity(loss):.2f}",
                    )
                )
            self._restart()

        def on_save(self, args, state, control, **kwargs):  # noqa: ANN001
            if dist.is_main:
                checkpoint = Path(args.output_dir) / f"{CHECKPOINT_PREFIX}{state.global_step}"
                if checkpoint.is_dir():
                    fsync_tree(checkpoint)
            self._restart()

        def on_log(self, args, state, control, logs=None, **kwargs):  # noqa: ANN001
            if not logs or "loss" not in logs:
                return
            seconds, steps = self._window_seconds, self._window_steps
            self._window_seconds, self._window_steps = 0.0, 0
            if progress is None or not dist.is_main:
                return
            rate = tokens_per_step * steps / seconds if seconds > 0 and steps else None
            remaining = max(0, state.max_steps - state.global_step)
            eta = remaining * seconds / steps if steps and seconds > 0 else None
            loss = float(logs["loss"])
            lr = float(logs.get("learning_rate", 0.0))
            parts = [
                f"step {state.global_step}/{state.max_steps}",
                f"epoch {float(state.epoch or 0):.2f}",
                f"loss {loss:.4f}",
                f"lr {lr:.2e}",
            ]
            if rate is not None:
                parts += [f"{rate:,.0f} tok/s", f"{rate * flops_per_token / 1e12:.3f} TFLOP/s"]
            if eta is not None:
                parts.append(f"ETA {_format_duration(eta)}")
            progress(
                TrainProgress(
                    kind="train",
                    step=state.global_step,
                    max_steps=state.max_steps,
                    epoch=float(state.epoch or 0.0),
                    loss=loss,
                    learning_rate=lr,
                    tokens_per_second=rate,
                    eta_seconds=eta,
                    message=" | ".join(parts),
                )
            )

    return ProgressAndClock()


def _history(log_history: Sequence[dict[str, Any]], key: str) -> tuple[tuple[int, float], ...]:
    """(step, value) pairs of one logged quantity, one per step (a resumed run may log a step twice)."""
    by_step = {int(entry["step"]): float(entry[key]) for entry in log_history if key in entry}
    return tuple(sorted(by_step.items()))


def _perplexity(loss: float) -> float:
    try:
        return math.exp(loss)
    except OverflowError:
        return float("inf")


def _build_model(plan: TrainPlan, tokenizer: Any) -> Any:
    from transformers import GPT2Config, GPT2LMHeadModel

    preset = plan.preset
    special = tokenizer.eos_token_id if tokenizer.eos_token_id is not None else 0
    config = GPT2Config(
        vocab_size=plan.model_vocab,
        n_positions=preset.n_positions,
        n_embd=preset.n_embd,
        n_layer=preset.n_layer,
        n_head=preset.n_head,
        resid_pdrop=preset.dropout,
        embd_pdrop=preset.dropout,
        attn_pdrop=preset.dropout,
        bos_token_id=tokenizer.bos_token_id if tokenizer.bos_token_id is not None else special,
        eos_token_id=special,
        pad_token_id=tokenizer.pad_token_id if tokenizer.pad_token_id is not None else special,
        use_cache=False,
    )
    torch.manual_seed(plan.config.seed)
    model = GPT2LMHeadModel(config)
    model.config.use_cache = True  # saved for generation; training never asks for the cache
    model.loss_type = "ForCausalLM"  # what GPT-2 uses anyway; saying so silences a warning
    return model


def _training_arguments(plan: TrainPlan, run_dir: Path, device: str, precision: str) -> Any:
    from transformers import TrainingArguments

    config, preset = plan.config, plan.preset
    return TrainingArguments(
        output_dir=str(run_dir),
        max_steps=config.max_steps,
        num_train_epochs=config.num_train_epochs,
        per_device_train_batch_size=plan.batch_size,
        per_device_eval_batch_size=plan.batch_size,
        gradient_accumulation_steps=plan.gradient_accumulation_steps,
        learning_rate=plan.learning_rate,
        lr_scheduler_type="cosine_with_min_lr",
        lr_scheduler_kwargs={"min_lr_rate": 0.1},  # decay to a tenth, as nanoGPT does
        warmup_steps=plan.warmup_steps,
        weight_decay=preset.weight_decay,  # the Trainer exempts biases and LayerNorm weights
        adam_beta1=preset.adam_beta1,
        adam_beta2=preset.adam_beta2,
        max_grad_norm=preset.max_grad_norm,
        optim="adamw_torch_fused" if fused_adamw_supported(device) else "adamw_torch",
        bf16=precision == "bf16",
        fp16=precision == "fp16",
        use_cpu=device == "cpu",
        torch_compile=config.compile,
        eval_strategy="steps",
        eval_steps=config.effective_eval_steps,
        save_strategy="steps",
        save_steps=config.save_steps,
        save_total_limit=config.save_total_limit,
        logging_strategy="steps",
        logging_steps=config.logging_steps,
        logging_first_step=True,
        logging_nan_inf_filter=False,  # its isnan() check is a host sync on every step
        prediction_loss_only=True,  # evaluation keeps no logits: batch x context x vocab floats
        include_num_input_tokens_seen="no",
        dataloader_num_workers=config.dataloader_workers,
        dataloader_persistent_workers=config.dataloader_workers > 0,
        dataloader_pin_memory=device == "cuda",
        ddp_backend=("nccl" if device == "cuda" else "gloo") if plan.world_size > 1 else None,
        ddp_find_unused_parameters=False,
        report_to="none",
        disable_tqdm=True,
        seed=config.seed,
    )


def _is_mps_error(exc: BaseException) -> bool:
    text = str(exc).lower()
    return isinstance(exc, RuntimeError) and any(marker in text for marker in MPS_ERROR_MARKERS)


def _is_out_of_memory(exc: BaseException) -> bool:
    if isinstance(exc, torch.OutOfMemoryError):
        return True
    return isinstance(exc, RuntimeError) and "out of memory" in str(exc).lower()


def _out_of_memory_error(exc: BaseException, plan: TrainPlan, device: str, run_dir: Path) -> TrainingOutOfMemoryError:
    last = find_resume_checkpoint(run_dir)
    kept = f"checkpoints are kept in {run_dir} (latest: step {checkpoint_step(last)})" if last else f"no checkpoint was written yet ({run_dir})"
    half = max(1, plan.batch_size // 2)
    more = plan.gradient_accumulation_steps * plan.batch_size // half
    return TrainingOutOfMemoryError(
        f"Out of memory on {device} with `batch_size`={plan.batch_size} sequences of {plan.context_length} "
        f"tokens ({plan.preset.name!r} preset). Set `batch_size`: {half} and "
        f"`gradient_accumulation_steps`: {more} (same sequences per step, so the run resumes from its "
        f"checkpoint), or choose a smaller `preset` or `context_length`. {kept}. Cause: {exc}"
    )


@contextmanager
def _quiet_transformers() -> Iterator[None]:
    """The Trainer's info chatter and per-file progress bars would drown our one-line progress."""
    from transformers.utils import logging as hf_logging

    previous = hf_logging.get_verbosity()
    bars = hf_logging.is_progress_bar_enabled()
    hf_logging.set_verbosity_warning()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        hf_logging.set_verbosity(previous)
        if bars:
            hf_logging.enable_progress_bar()


@dataclass
class _Attempt:
    """What one Trainer run (one device) leaves behind."""

    trainer: Any
    clock: Any
    resumed_from_step: int
    start_step: int
    steps_trained: int = 0
    train_seconds: float = 0.0
    extra: dict[str, Any] = field(default_factory=dict)


def _run_trainer(
    plan: TrainPlan,
    splits: Any,
    tokenizer: Any,
    run_dir: Path,
    device: str,
    precision: str,
    dist: Distributed,
    progress: ProgressFn | None,
    callbacks: Sequence[Any],
) -> _Attempt:
    """Build a Trainer for ``device`` and train, resuming from the run's newest complete checkpoint."""
    from transformers import GPT2LMHeadModel, PrinterCallback, Trainer, TrainerState

    prepare_device(device)
    args = _training_arguments(plan, run_dir, device, precision)
    if device == "cuda" and dist.world_size == 1 and args.n_gpu > 1:
        # One process drives one GPU: more GPUs are used through nproc_per_node (DDP), never through
        # the Trainer's implicit DataParallel, which would silently multiply the batch.
        args._n_gpu = 1
    resume = find_resume_checkpoint(run_dir)
    finished = False
    if resume is not None:
        state = json.loads((resume / TRAINER_STATE).read_text(encoding="utf-8"))
        finished = state["global_step"] >= state.get("max_steps", plan.total_steps) > 0
    resumed_step = (checkpoint_step(resume) or 0) if resume else 0
    if finished:
        # Continuing a finished run would take one extra step; its final weights are all we need.
        model = GPT2LMHeadModel.from_pretrained(resume)
        model.loss_type = "ForCausalLM"
    else:
        model = _build_model(plan, tokenizer)
    clock = _make_callbacks(plan, dist, progress)
    trainer = Trainer(
        model=model,
        args=args,
        train_dataset=splits["train"],
        eval_dataset=splits["validation"],
        data_collator=_collate_blocks,
        processing_class=tokenizer,
        callbacks=[clock, *callbacks],
    )
    trainer.remove_callback(PrinterCallback)  # it prints every log dict; our progress line replaces it
    if resume is not None and progress is not None and dist.is_main:
        what = "run already finished; evaluating its final checkpoint" if finished else "resuming"
        _notice(progress, resumed_step, plan.total_steps, f"{what} from {resume} (step {resumed_step}) on {device}")
    attempt = _Attempt(trainer=trainer, clock=clock, resumed_from_step=resumed_step, start_step=resumed_step)
    if finished:
        trainer.state = TrainerState.load_from_json(str(resume / TRAINER_STATE))
        return attempt
    output = trainer.train(resume_from_checkpoint=str(resume) if resume else None)
    attempt.steps_trained = output.global_step - resumed_step
    attempt.train_seconds = clock.train_seconds
    attempt.extra["mean_train_loss"] = output.training_loss
    return attempt


def _notice(progress: ProgressFn, step: int, max_steps: int, message: str) -> None:
    progress(
        TrainProgress(
            kind="notice",
            step=step,
            max_steps=max_steps,
            epoch=0.0,
            loss=None,
            learning_rate=None,
            tokens_per_second=None,
            eta_seconds=None,
            message=message,
        )
    )


# --------------------------------------------------------------------------------------------
# Publishing
# --------------------------------------------------------------------------------------------



# --------------------------------------------------------------------------------------------
# The whole run
# --------------------------------------------------------------------------------------------


def train_model(
    dataset_dir: Path,
    tokenizer_dir: Path,
    checkpoint_dir: Path,
    config: TrainConfig,
    *,
    device: str,
    progress: ProgressFn | None = None,
    callbacks: Sequence[Any] = (),
) -> TrainResult:
    """Train (or resume) GPT-2 on the tokenized dataset and publish it to ``checkpoint_dir/latest``.

    ``device`` is concrete (``cpu``, ``cuda`` or ``mps``; see :func:`devices.resolve_device`).
    ``callbacks`` are extra ``transformers.TrainerCallback`` objects; the tests use one to inject
    a real MPS RuntimeError into a CPU run, which is how the CPU fallback is exercised.
    Inside a torchrun job every rank calls this; only rank 0 reports, publishes and samples.
    """
    from transformers import AutoTokenizer

    wall_start = time.perf_counter()
    dist = Distributed.from_env()
    plan = validate_config(dataset_dir, tokenizer_dir, config, world_size=dist.world_size)
    precision = choose_precision(device, config.precision)
    checkpoint_dir = Path(checkpoint_dir)
    run_dir = run_dir_for(checkpoint_dir / "runs", dataset_dir, tokenizer_dir, config, world_size=dist.world_size)
    report = progress if dist.is_main else None
    if dist.is_main:
        _prepare_run_dir(run_dir, dataset_dir, tokenizer_dir, plan, report)
    tokenizer = AutoTokenizer.from_pretrained(tokenizer_dir)
    splits = _load_splits(dataset_dir).with_format("numpy", columns=["input_ids"])
    if report is not None:
        parameters = plan.preset.parameter_count(plan.tokenizer_vocab)
        _notice(
            report,
            0,
            plan.total_steps,
            f"training {plan.preset.name} ({parameters / 1e6:.1f}M parameters) on {device} in {precision}, "
            f"{plan.total_steps} steps of {plan.sequences_per_step} x {plan.context_length} tokens, "
            f"world size {plan.world_size}; run folder {run_dir}",
        )
    first_resume = find_resume_checkpoint(run_dir)
    with _quiet_transformers():
        outcome = _train_with_fallback(plan, splits, tokenizer, run_dir, device, precision, dist, progress, callbacks)
        return _finish(plan, outcome, tokenizer, checkpoint_dir, run_dir, dist, report, wall_start, first_resume)


@dataclass
class _Outcome:
    attempt: _Attempt
    device: str
    precision: str
    fell_back: bool
    steps_trained: int
    train_seconds: float


def _prepare_run_dir(
    run_dir: Path, dataset_dir: Path, tokenizer_dir: Path, plan: TrainPlan, report: ProgressFn | None
) -> None:
    """Rank 0 tidies the run folder before anyone reads it: half-written checkpoints go."""
    run_dir.mkdir(parents=True, exist_ok=True)
    for path in discard_incomplete_checkpoints(run_dir):
        if report is not None:
            _notice(report, 0, plan.total_steps, f"ignored half-written checkpoint {path.name} (removed it)")
    inputs = _fingerprint_inputs(dataset_dir, tokenizer_dir, plan.config, plan.world_size)
    info = {"config": json.loads(plan.config.to_json()), "fingerprint": inputs}
    (run_dir / RUN_INFO).write_text(json.dumps(info, indent=2, sort_keys=True), encoding="utf-8")


def _train_with_fallback(
    plan: TrainPlan,
    splits: Any,
    tokenizer: Any,
    run_dir: Path,
    device: str,
    precision: str,
    dist: Distributed,
    progress: ProgressFn | None,
    callbacks: Sequence[Any],
) -> _Outcome:
    """Train on ``device``; after an MPS runtime error, once, continue on the CPU from the last checkpoint."""
    fell_back = False
    while True:
        try:
            attempt = _run_trainer(plan, splits, tokenizer, run_dir, device, precision, dist, progress, callbacks)
        except RuntimeError as exc:
            if _is_out_of_memory(exc):
                raise _out_of_memory_error(exc, plan, device, run_dir) from exc
            if fell_back or not plan.config.fallback_to_cpu or not _is_mps_error(exc):
                raise
            fell_back = True
            if dist.is_main:
                discard_incomplete_checkpoints(run_dir)
            last = find_resume_checkpoint(run_dir)
            step = (checkpoint_step(last) or 0) if last else 0
            message = (
                f"{device} failed with an MPS runtime error ({str(exc).splitlines()[0][:200]}); continuing on "
                f"cpu from {f'checkpoint step {step}' if last else 'the start'} (fallback_to_cpu is on)"
            )
            print(message, file=sys.stderr, flush=True)
            if progress is not None and dist.is_main:
                _notice(progress, step, plan.total_steps, message)
            device = "cpu"
            try:
                precision = choose_precision("cpu", plan.config.precision)
            except ValueError:
                precision = "fp32"  # e.g. fp16 asked for MPS: the CPU has no fp16 autocast
            continue
        return _Outcome(
            attempt=attempt,
            device=device,
            precision=precision,
            fell_back=fell_back,
            steps_trained=attempt.steps_trained,
            train_seconds=attempt.train_seconds,
        )


def _finish(
    plan: TrainPlan,
    outcome: _Outcome,
    tokenizer: Any,
    checkpoint_dir: Path,
    run_dir: Path,
    dist: Distributed,
    report: ProgressFn | None,
    wall_start: float,
    first_resume: Path | None,
) -> TrainResult:
    """Final evaluation, samples, loss curve and the atomic publish; then the result."""
    from llm_assets.training.generate import generate_text
    from llm_assets.training.plots import plot_loss_curve

    config = plan.config
    trainer = outcome.attempt.trainer
    state = trainer.state
    eval_history = _history(state.log_history, "eval_loss")
    if not eval_history or eval_history[-1][0] != state.global_step:
        # The Trainer evaluates at its last step; only a finished run loaded back needs this.
        eval_history = (*eval_history, (int(state.global_step), float(trainer.evaluate()["eval_loss"])))
    eval_loss = eval_history[-1][1]
    loss_history = _history(state.log_history, "loss")
    train_loss = loss_history[-1][1] if loss_history else float(outcome.attempt.extra.get("mean_train_loss", math.nan))

    model = trainer.accelerator.unwrap_model(trainer.model)
    latest = checkpoint_dir / "latest"
    samples: tuple[tuple[str, str], ...] = ()
    loss_curve = run_dir / LOSS_CURVE
    if dist.is_main:
        model.eval()
        samples = tuple(
            (prompt, generate_text(model, tokenizer, prompt, max_new_tokens=config.sample_max_new_tokens, seed=config.seed))
            for prompt in config.sample_prompts
        )
        plot_loss_curve(loss_history, eval_history, loss_curve)
        latest = publish_model(model, tokenizer, checkpoint_dir)
        if report is not None:
            _notice(report, state.global_step, state.max_steps, f"published the model to {latest}")
    if dist.world_size > 1:
        trainer.accelerator.wait_for_everyone()  # no rank exits while rank 0 still publishes

    seconds = outcome.train_seconds
    result = TrainResult(
        device=outcome.device,
        precision=outcome.precision,
        preset=plan.preset.name,
        parameters=sum(p.numel() for p in model.parameters()),
        batch_size=plan.batch_size * plan.gradient_accumulation_steps,
        train_tokens=int(state.global_step) * plan.tokens_per_step,
        tokens_per_second=outcome.steps_trained * plan.tokens_per_step / seconds if seconds > 0 else 0.0,
        train_loss=train_loss,
        eval_loss=eval_loss,
        perplexity=_perplexity(eval_loss),
        resumed_from_step=(checkpoint_step(first_resume) or 0) if first_resume else 0,
        world_size=dist.world_size,
        model_dir=latest,
        run_dir=run_dir,
        global_step=int(state.global_step),
        wall_seconds=time.perf_counter() - wall_start,
        train_seconds=seconds,
        fell_back_to_cpu=outcome.fell_back,
        loss_history=loss_history,
        eval_history=eval_history,
        samples=samples,
        loss_curve_png=loss_curve,
        fallback_resumed_from_step=outcome.attempt.resumed_from_step if outcome.fell_back else -1,
    )
    if dist.is_main:
        (run_dir / RESULT_FILE).write_text(result.to_json(), encoding="utf-8")
    return result


# --------------------------------------------------------------------------------------------
# torchrun entry point
# --------------------------------------------------------------------------------------------

_STANDALONE_CONFLICTS = ("--nnodes", "--rdzv", "--master", "--node_rank", "--node-rank", "--standalone")


def torchrun_command(
    nproc_per_node: int,
    dataset_dir: Path,
    tokenizer_dir: Path,
    checkpoint_dir: Path,
    config: TrainConfig,
    device: str,
    result_path: Path,
    extra_torchrun_args: Sequence[str] = (),
) -> list[str]:
    """The command line that trains with ``nproc_per_node`` processes under torchrun.

    Single node by default (``--standalone``); pass rendezvous options (``--nnodes``,
    ``--rdzv_backend``, ``--rdzv_endpoint``, ``--rdzv_id``) in ``extra_torchrun_args`` for
    multi-node, and ``--standalone`` is left out.
    """
    if nproc_per_node < 1:
        raise ValueError(f"Config key `nproc_per_node`={nproc_per_node}: must be at least 1.")
    extra = list(extra_torchrun_args)
    standalone = [] if any(a.startswith(_STANDALONE_CONFLICTS) for a in extra) else ["--standalone"]
    return [
        sys.executable,
        "-m",
        "torch.distributed.run",
        *standalone,
        "--nproc_per_node",
        str(nproc_per_node),
        *extra,
        "-m",
        "llm_assets.training.train",
        "--dataset-dir",
        str(dataset_dir),
        "--tokenizer-dir",
        str(tokenizer_dir),
        "--checkpoint-dir",
        str(checkpoint_dir),
        "--device",
        device,
        "--config-json",
        config.to_json(),
        "--result-json",
        str(result_path),
    ]


def _parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m llm_assets.training.train",
        description="Train GPT-2 on a tokenized dataset (one process, or each rank of a torchrun job).",
    )
    parser.add_argument("--dataset-dir", type=Path, required=True)
    parser.add_argument("--tokenizer-dir", type=Path, required=True)
    parser.add_argument("--checkpoint-dir", type=Path, required=True)
    parser.add_argument("--device", default="cpu", help="a concrete device: cpu, cuda or mps")
    parser.add_argument("--config-json", default="{}", help="TrainConfig as JSON (keys as in the Dagster config)")
    parser.add_argument("--result-json", type=Path, help="where rank 0 writes the TrainResult as JSON")
    return parser.parse_args(argv)


def _write_atomically(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def _print_progress(update: TrainProgress) -> None:
    print(update.message, flush=True)


def main(argv: Sequence[str] | None = None) -> int:
    """Train from the command line; rank 0 writes the result JSON and reports progress.

    Under Dagster Pipes (DAGSTER_PIPES_CONTEXT set by ``PipesSubprocessClient``), rank 0 sends its
    progress lines to ``pipes.log``; the asset reads the result JSON and reports the
    materialization itself.
    """
    args = _parse_args(argv)
    config = TrainConfig.from_json(args.config_json)
    dist = Distributed.from_env()
    if dist.is_main and os.environ.get("DAGSTER_PIPES_CONTEXT"):
        from dagster_pipes import open_dagster_pipes

        with open_dagster_pipes() as pipes:
            result = train_model(
                args.dataset_dir,
                args.tokenizer_dir,
                args.checkpoint_dir,
                config,
                device=args.device,
                progress=lambda update: pipes.log.info(update.message),
            )
    else:
        result = train_model(
            args.dataset_dir,
            args.tokenizer_dir,
            args.checkpoint_dir,
            config,
            device=args.device,
            progress=_print_progress if dist.is_main else None,
        )
    if dist.is_main and args.result_json is not None:
        _write_atomically(args.result_json, result.to_json())
    return 0


if __name__ == "__main__":
    sys.exit(main())
