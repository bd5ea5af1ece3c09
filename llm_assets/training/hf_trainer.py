"""The Hugging Face pieces: the GPT-2 model, its TrainingArguments and a Trainer with our schedule.

Everything the Trainer does per step is the Trainer's own (mixed precision, accumulation,
clipping, fused AdamW, DDP, checkpoint rotation); what is ours is the model's shape and
initialisation, the learning-rate schedule (``schedule.py``) and how batches are fetched
(``batches.py``).
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch
from transformers import (
    EarlyStoppingCallback,
    GPT2Config,
    GPT2LMHeadModel,
    PrinterCallback,
    Trainer,
    TrainerCallback,
    TrainingArguments,
)

from llm_assets.atomic import fsync_tree
from llm_assets.training.batches import TokenBlocks, collate_blocks
from llm_assets.training.checkpoints import CHECKPOINT_PREFIX
from llm_assets.training.devices import fused_adamw_supported
from llm_assets.training.distributed import backend_for
from llm_assets.training.optimizers import muon_with_adamw
from llm_assets.training.plan import TrainPlan

TENSORBOARD_DIR = "tensorboard"


def build_model(plan: TrainPlan, tokenizer: Any) -> GPT2LMHeadModel:
    """A freshly initialised GPT-2 of the preset's shape, its embedding sized to the tokenizer."""
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
        # GPT-2's tanh GELU as one fused kernel: the same function as "gelu_new", which is five
        # separate elementwise ops (measured 7% of a tiny model's CPU step).
        activation_function="gelu_pytorch_tanh",
        bos_token_id=tokenizer.bos_token_id if tokenizer.bos_token_id is not None else special,
        eos_token_id=special,
        pad_token_id=tokenizer.pad_token_id if tokenizer.pad_token_id is not None else special,
        use_cache=True,  # saved for generation; training passes labels and never asks for the cache
    )
    torch.manual_seed(plan.config.seed)
    model = GPT2LMHeadModel(config)
    model.loss_type = "ForCausalLM"  # what GPT-2 uses anyway; saying so silences a warning
    return model


def load_model(checkpoint: Path) -> GPT2LMHeadModel:
    model = GPT2LMHeadModel.from_pretrained(checkpoint, local_files_only=True)
    model.loss_type = "ForCausalLM"
    return model


def training_arguments(plan: TrainPlan, run_dir: Path, device: str, precision: str) -> TrainingArguments:
    config, preset = plan.config, plan.preset
    integrations = [name for name in report_targets(config.report_to) if name != "tensorboard"]
    return TrainingArguments(
        output_dir=str(run_dir),
        max_steps=plan.total_steps,
        per_device_train_batch_size=plan.micro_batch_size,
        per_device_eval_batch_size=plan.micro_batch_size,
        gradient_accumulation_steps=plan.gradient_accumulation_steps,
        learning_rate=plan.learning_rate,
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
        # The published model is the checkpoint with the lowest validation loss (the rotation never
        # deletes it); on a run that repeats its data that is not always the last one.
        load_best_model_at_end=True,
        metric_for_best_model="eval_loss",
        greater_is_better=False,
        logging_strategy="steps",
        logging_steps=config.logging_steps,
        logging_first_step=True,
        logging_nan_inf_filter=False,  # its isnan() check is a host sync on every step
        prediction_loss_only=True,  # evaluation keeps no logits: batch x context x vocab floats
        include_num_input_tokens_seen="no",
        dataloader_num_workers=config.dataloader_workers,
        dataloader_persistent_workers=config.dataloader_workers > 0,
        dataloader_pin_memory=device == "cuda",
        ddp_backend=backend_for(device) if plan.world_size > 1 else None,
        ddp_find_unused_parameters=False,
        # TensorBoard, when asked for, is added by make_trainer with our folder; any other
        # integration is the Trainer's own (its package and settings are the user's).
        report_to=integrations or "none",
        disable_tqdm=True,
        seed=config.seed,
    )


class ScheduledTrainer(Trainer):
    """The Trainer with the plan's learning-rate schedule (warm-up and decay fitted to the run) and,
    with ``optimizer: muon``, Muon for the hidden matrices (``optimizers.py``)."""

    def __init__(self, *args: Any, plan: TrainPlan, device: str = "cpu", **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.plan = plan
        self.device_type = device

    def create_optimizer(self, model: Any = None) -> torch.optim.Optimizer:
        if self.optimizer is None and self.plan.optimizer == "muon":
            preset = self.plan.preset
            self.optimizer = muon_with_adamw(
                model if model is not None else self.model, lr=self.plan.learning_rate, weight_decay=preset.weight_decay,
                betas=(preset.adam_beta1, preset.adam_beta2), device=self.device_type,
                fused_adamw=fused_adamw_supported(self.device_type),
            )
        return super().create_optimizer(model)

    def create_scheduler(self, num_training_steps: int, optimizer: torch.optim.Optimizer | None = None):
        if self.lr_scheduler is None:
            self.lr_scheduler = torch.optim.lr_scheduler.LambdaLR(
                optimizer or self.optimizer, self.plan.schedule.factor
            )
        return self.lr_scheduler


class EarlyStopping(EarlyStoppingCallback):
    """The Trainer's patience rule on the validation loss, plus what a user and a re-run need: the
    stop is said, checkpointed at that step, and remembered there, so materializing again publishes
    the run instead of training on. Saved as ``EarlyStopping`` in each checkpoint's state."""

    def __init__(self, patience: int, say: Callable[[str, int], None], counter: int = 0) -> None:
        super().__init__(early_stopping_patience=patience)
        self.early_stopping_patience_counter = counter
        self.say = say
        self.stopped = False

    def on_evaluate(self, args, state, control, metrics, **kwargs):  # noqa: ANN001
        super().on_evaluate(args, state, control, metrics, **kwargs)
        if self.early_stopping_patience_counter >= self.early_stopping_patience and not self.stopped:
            self.stopped = True
            control.should_training_stop = True
            control.should_save = True
            self.say(
                f"stopping early at step {state.global_step}: the validation loss has not improved for "
                f"{self.early_stopping_patience} evaluations (best {state.best_metric:.4f} at step "
                f"{state.best_global_step}); early_stopping_patience: 0 turns this off",
                state.global_step,
            )

    def state(self) -> dict[str, Any]:
        saved = super().state()
        saved["attributes"]["stopped"] = self.stopped
        return saved


class DurableCheckpoints(TrainerCallback):
    """Flush each checkpoint to disk once saved: a power cut cannot leave a 'complete' empty one."""

    def on_save(self, args, state, control, **kwargs):  # noqa: ANN001
        checkpoint = Path(args.output_dir) / f"{CHECKPOINT_PREFIX}{state.global_step}"
        if state.is_world_process_zero and checkpoint.is_dir():
            fsync_tree(checkpoint)


def make_trainer(
    plan: TrainPlan,
    model: GPT2LMHeadModel,
    tokenizer: Any,
    dataset_dir: Path,
    args: TrainingArguments,
    callbacks: Sequence[TrainerCallback],
    is_main: bool = True,
    device: str = "cpu",
) -> ScheduledTrainer:
    if args.n_gpu > 1:
        # One process drives one GPU: more GPUs are used through nproc_per_node (DDP), never through
        # the Trainer's implicit DataParallel, which would silently multiply the batch.
        raise ValueError(
            f"{args.n_gpu} GPUs are visible to one training process: set `nproc_per_node` to "
            f"{args.n_gpu} to train on all of them, or CUDA_VISIBLE_DEVICES to pick one."
        )
    try:
        trainer = _trainer(plan, model, tokenizer, dataset_dir, args, callbacks, is_main, device)
    except (ValueError, ImportError, RuntimeError) as error:
        # The Trainer checks each integration (known name, package installed) as it starts.
        named = [name for name in report_targets(plan.config.report_to) if name.lower() in str(error).lower()]
        if not named or "tensorboard" in named:
            raise
        raise ValueError(
            f"Config key `report_to`={plan.config.report_to!r}: {error} Install the integration's package "
            "or set report_to: none."
        ) from error
    trainer.remove_callback(PrinterCallback)  # it prints every log dict; our progress line replaces it
    return trainer


def _trainer(
    plan: TrainPlan, model: GPT2LMHeadModel, tokenizer: Any, dataset_dir: Path, args: TrainingArguments,
    callbacks: Sequence[TrainerCallback], is_main: bool, device: str,
) -> ScheduledTrainer:
    return ScheduledTrainer(
        model=loss_only_with_labels(model),
        args=args,
        plan=plan,
        device=device,
        train_dataset=TokenBlocks(dataset_dir, "train"),
        eval_dataset=TokenBlocks(dataset_dir, "validation"),
        data_collator=collate_blocks,
        processing_class=tokenizer,
        callbacks=[DurableCheckpoints(), *callbacks, *_reporting(plan, Path(args.output_dir), is_main)],
    )


def loss_only_with_labels(model: GPT2LMHeadModel) -> GPT2LMHeadModel:
    """Make ``model(..., labels=...)`` return the loss without the logits, for this instance only.

    Training and evaluation read only the loss, but a forward that returns the logits (batch x
    context x vocabulary) makes them an output of the compiled graph: on an H100, gpt2-small at
    64 x 1024 under torch.compile then holds 17 GB more and runs ~6% slower. Calls without labels
    (generation) are untouched, and the class, weights and saved files stay plain GPT-2.
    """
    full = model.forward

    @functools.wraps(full)  # the Trainer reads forward's signature (loss kwargs, input columns)
    def forward(*args: Any, **kwargs: Any) -> Any:
        outputs = full(*args, **kwargs)
        if kwargs.get("labels") is None:
            return outputs
        return type(outputs)(loss=outputs.loss)

    model.forward = forward
    return model


def _reporting(plan: TrainPlan, run_dir: Path, is_main: bool) -> list[TrainerCallback]:
    """TensorBoard event files in ``<run folder>/tensorboard``, written by rank 0 only."""
    if "tensorboard" not in report_targets(plan.config.report_to) or not is_main:
        return []
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError as error:
        raise ValueError(
            "Config key `report_to`: tensorboard needs the tensorboard package: "
            'pip install -e ".[tensorboard]" (or set report_to: none).'
        ) from error
    from transformers.integrations import TensorBoardCallback

    return [TensorBoardCallback(tb_writer=SummaryWriter(log_dir=str(tensorboard_dir(run_dir))))]


def report_targets(report_to: str) -> list[str]:
    """``report_to``'s integration names; ``none`` is none."""
    return [name.strip() for name in report_to.split(",") if name.strip() not in ("", "none")]


def tensorboard_dir(run_dir: Path) -> Path:
    return Path(run_dir) / TENSORBOARD_DIR
