"""Train GPT-2 from scratch, resumably: ``train_model`` is the whole run, start to publish.

A run plans itself (``plan.py``), lets rank 0 choose the run folder and checkpoint
(``checkpoints.py``), trains with the Hugging Face Trainer (``hf_trainer.py``), survives an MPS
crash or reports an out-of-memory with its fix (``failures.py``), then evaluates, samples, plots
and publishes ``checkpoints/latest`` (``publish.py``). ``launch.py`` runs it under torchrun.
"""

from __future__ import annotations

import math
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, nullcontext
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict
from transformers import TrainerCallback, TrainerState

from llm_assets.atomic import hold_version
from llm_assets.text.tokenizer import load_tokenizer
from llm_assets.training.budget import TimeBudget, spent_and_schedule
from llm_assets.training.checkpoints import (
    BUDGET_CALLBACK,
    CHECKPOINT_PREFIX,
    STOP_CALLBACK,
    TRAINER_STATE,
    Resume,
    choose_resume,
    run_dir_for,
    training_lock,
)
from llm_assets.training.config import TrainConfig
from llm_assets.training.devices import choose_precision, prepare_device
from llm_assets.training.distributed import Distributed, decided_by_main, same_on_every_rank
from llm_assets.training.failures import (
    cpu_precision,
    is_mps_error,
    is_out_of_memory,
    out_of_memory_error,
)
from llm_assets.training.generate import generate_text
from llm_assets.training.hf_trainer import (
    EarlyStopping,
    build_model,
    load_model,
    make_trainer,
    report_targets,
    tensorboard_dir,
    training_arguments,
)
from llm_assets.training.host_memory import steady_host_memory
from llm_assets.training.plan import TrainPlan, plan_training
from llm_assets.training.schedule import BudgetSchedule
from llm_assets.training.plots import plot_loss_curve
from llm_assets.training.progress import (
    ProgressCallback,
    ProgressFn,
    format_duration,
    notice,
    perplexity,
)
from llm_assets.training.publish import publish_model
from llm_assets.training.retention import Freed, prune_finished_run, prune_run_folders, tree_bytes

LOSS_CURVE = "loss_curve.png"

Points = tuple[tuple[int, float], ...]


class TrainResult(BaseModel):
    """What a finished run reports; the asset turns it into metadata."""

    model_config = ConfigDict(frozen=True)

    device: str
    precision: str
    preset: str
    parameters: int
    batch_size: int  # sequences per optimizer step in one process
    train_tokens: int  # tokens the final model was trained on, all processes, resumed steps included
    tokens_per_second: float  # tokens trained in this call / seconds in training steps in this call
    train_loss: float  # mean training loss over the last logging window
    eval_loss: float  # of the published model: the best evaluated checkpoint
    perplexity: float
    eval_bpb: float  # eval_loss in bits per UTF-8 byte of the validation text
    best_step: int  # the step the published model was saved at
    stopped_early: bool
    optimizer: str
    epochs: float  # passes over the training blocks
    time_budget_minutes: float  # 0: none
    time_used_seconds: float  # with a budget: all calls, the resumed-from checkpoint's time included
    checkpoints_bytes: int = 0  # the checkpoint folder's size on disk after this run tidied it
    freed_bytes: int = 0  # what this run's tidying removed
    resumed_from_step: int
    world_size: int
    model_dir: Path
    run_dir: Path
    global_step: int
    warmup_steps: int
    schedule_note: str  # how this run's schedule relates to the checkpoint it continued, if any
    wall_seconds: float
    train_seconds: float
    fell_back_to_cpu: bool
    fallback_resumed_from_step: int = -1  # after an MPS failure: the checkpoint step the CPU went on from
    loss_history: Points
    eval_history: Points
    samples: tuple[tuple[str, str], ...]
    loss_curve_png: Path


def train_model(
    dataset_dir: Path,
    tokenizer_dir: Path,
    checkpoint_dir: Path,
    config: TrainConfig,
    *,
    device: str,
    progress: ProgressFn | None = None,
    callbacks: Sequence[TrainerCallback] = (),
    lock: bool = True,
) -> TrainResult:
    """Train (or resume) GPT-2 on the tokenized dataset and publish it to ``checkpoint_dir/latest``.

    ``device`` is concrete (``cpu``, ``cuda`` or ``mps``; see ``devices.resolve_device``). Extra
    ``callbacks`` go to the Trainer (the tests inject real faults with them). Under torchrun every
    rank calls this; rank 0 alone decides, reports and publishes. ``lock`` holds the checkpoint
    folder's training lock for the run (the asset holds it itself and passes False).
    """
    dist = Distributed.from_env()
    # One version of the data for the whole run, however many are published meanwhile: resolved
    # once and held (a version folder passed in, as torchrun's ranks get, is used as it is).
    with hold_version(Path(dataset_dir)) as dataset, hold_version(Path(tokenizer_dir)) as tokenizer:
        plan = plan_training(dataset, tokenizer, config, world_size=dist.world_size, device=device)
        report = progress if dist.is_main else None
        on_wait = None if report is None else (lambda message: report(notice(0, plan.total_steps, message)))
        held = training_lock(checkpoint_dir, on_wait=on_wait) if lock and dist.is_main else nullcontext()
        memory = steady_host_memory() if device == "cpu" else nullcontext()
        with held, _quiet_transformers(), memory:
            run = _Run(plan, dataset, tokenizer, Path(checkpoint_dir), dist, report, callbacks)
            return run.train(device, choose_precision(device, config.precision))


class _Run:
    """One call of ``train_model``: the plan, where it trains, and what each attempt left."""

    def __init__(
        self,
        plan: TrainPlan,
        dataset_dir: Path,
        tokenizer_dir: Path,
        checkpoint_dir: Path,
        dist: Distributed,
        report: ProgressFn | None,
        callbacks: Sequence[TrainerCallback],
    ) -> None:
        self.plan, self.dataset_dir, self.checkpoint_dir = plan, dataset_dir, checkpoint_dir
        self.dist, self.report, self.callbacks = dist, report, callbacks
        self.started = time.perf_counter()
        self.tokenizer = load_tokenizer(tokenizer_dir)
        self.base_dir = run_dir_for(checkpoint_dir / "runs", plan, dataset_dir, tokenizer_dir) if dist.is_main else None
        self.trainer: Any = None
        self.clock: ProgressCallback | None = None
        self.budget: TimeBudget | None = None
        self.stopper: EarlyStopping | None = None
        self.spent_before = 0.0  # budget seconds the first checkpoint continued from had used

    def say(self, message: str, step: int = 0) -> None:
        if self.report is not None:
            self.report(notice(step, self.plan.total_steps, message))

    def resume_point(self, device: str) -> Resume:
        """Rank 0 tidies the run folder and decides where to resume; every rank gets its decision."""
        decision = None
        if self.dist.is_main:
            resume = choose_resume(self.base_dir, self.plan.total_steps)
            for name in resume.discarded:
                self.say(f"ignored half-written checkpoint {name} (removed it)")
            decision = resume.to_json()
        return Resume.from_json(decided_by_main(self.dist, device, decision))

    def train(self, device: str, precision: str) -> TrainResult:
        plan = self.plan
        first = self.resume_point(device)
        self.spent_before = spent_and_schedule(first.saved_callbacks.get(BUDGET_CALLBACK) or {})[0]
        parameters = plan.preset.parameter_count(plan.tokenizer_vocab)
        self.say(
            f"training {plan.preset.name} ({parameters / 1e6:.1f}M parameters) on {device} in {precision}, "
            f"{_length(plan)} of {plan.batch_size * plan.world_size} x {plan.context_length} tokens "
            f"(warm-up {plan.schedule.warmup_steps}) with {plan.optimizer}, world size {plan.world_size}; "
            f"run folder {first.run_dir}"
        )
        note = _schedule_note(first, plan)
        if note:
            self.say(note, first.step)
        if "tensorboard" in report_targets(plan.config.report_to):
            self.say(f"TensorBoard: tensorboard --logdir {tensorboard_dir(first.run_dir)}")
        fell_back, resume = False, first
        while True:
            try:
                steps, mean_loss = self.attempt(device, precision, resume)
                break
            except RuntimeError as exc:
                if is_out_of_memory(exc):
                    raise out_of_memory_error(exc, plan, device, resume.run_dir) from exc
                if fell_back or not plan.config.fallback_to_cpu or not is_mps_error(exc):
                    raise
                fell_back = True
                resume = self.resume_point("cpu")
                message = (
                    f"{device} failed with an MPS runtime error ({str(exc).splitlines()[0][:200]}); continuing on "
                    f"cpu from {f'checkpoint step {resume.step}' if resume.checkpoint else 'the start'} "
                    "(fallback_to_cpu is on)"
                )
                print(message, file=sys.stderr, flush=True)
                self.say(message, resume.step)
                device, precision = "cpu", cpu_precision(plan.config.precision)
        return self.finish(first, resume, device, precision, fell_back, steps, mean_loss, note)

    def attempt(self, device: str, precision: str, resume: Resume) -> tuple[int, float]:
        """Build a Trainer for ``device`` and train from ``resume``: (steps trained, mean loss)."""
        prepare_device(device)
        plan = self.plan
        args = training_arguments(plan, resume.run_dir, device, precision)
        model = load_model(resume.model_checkpoint) if resume.finished else build_model(plan, self.tokenizer)
        ours = self.run_callbacks(resume, device)
        self.clock = ProgressCallback(
            plan.tokens_per_step,
            plan.preset.flops_per_token(plan.context_length, plan.tokenizer_vocab),
            self.report,
            bits_per_byte=plan.validation_bytes.bits_per_byte,
            horizon=self.budget,
        )
        self.trainer = make_trainer(plan, model, self.tokenizer, self.dataset_dir, args,
                                    [self.clock, *ours, *self.callbacks], is_main=self.dist.is_main, device=device)
        if resume.checkpoint is not None:
            what = "run already finished; evaluating its final checkpoint" if resume.finished else "resuming"
            self.say(f"{what} from {resume.checkpoint} (step {resume.step}) on {device}", resume.step)
        if resume.finished:
            self.trainer.state = TrainerState.load_from_json(str(resume.checkpoint / TRAINER_STATE))
            return 0, math.nan
        output = self.trainer.train(resume_from_checkpoint=str(resume.checkpoint) if resume.checkpoint else None)
        return output.global_step - resume.step, output.training_loss

    def run_callbacks(self, resume: Resume, device: str) -> list[TrainerCallback]:
        """The time budget and early stopping, carried on from the checkpoint being resumed."""
        plan, config = self.plan, self.plan.config
        ours: list[TrainerCallback] = []
        self.budget = None
        if isinstance(plan.schedule, BudgetSchedule):
            plan.schedule.restore(spent_and_schedule(resume.saved_callbacks.get(BUDGET_CALLBACK) or {})[1])
            samples = len(config.sample_prompts) * config.sample_max_new_tokens
            self.budget = TimeBudget(
                plan.budget_seconds, plan.schedule, started=self.started, spent_before=self.spent_before,
                decay_fraction=config.decay_fraction,
                # Sampling after the last step: a forward per token, roughly 2 FLOPs a parameter.
                final_extra_seconds=samples * (0.002 + 2 * plan.preset.parameter_count(plan.tokenizer_vocab) / 2e10),
                check_every=1 if self.dist.world_size == 1 else config.logging_steps,
                agree=lambda value: decided_by_main(self.dist, device, value),
            )
            ours.append(self.budget)
        self.stopper = None
        if config.early_stopping_patience:
            counter = resume.callback_attributes(STOP_CALLBACK).get("early_stopping_patience_counter", 0)
            self.stopper = EarlyStopping(config.early_stopping_patience, lambda text, step: self.say(text, step),
                                         counter=int(counter))
            ours.append(self.stopper)
        return ours

    def tidy(self, run_dir: Path, state: TrainerState) -> list[Freed]:
        """Rank 0, the run published: keep the run's last and best checkpoints, and the newest run
        folders (``retention.py``); say what was freed."""
        best = state.best_model_checkpoint
        keep = {run_dir / f"{CHECKPOINT_PREFIX}{state.global_step}", *([run_dir / Path(best).name] if best else [])}
        freed = prune_finished_run(run_dir, keep)
        freed += prune_run_folders(self.checkpoint_dir / "runs", self.plan.config.keep_run_folders, run_dir)
        for item in freed:
            self.say(f"removed {item.path} ({item.bytes / 1e6:,.1f} MB freed)", int(state.global_step))
        return freed

    def check_ranks_agree(self, model: Any, device: str, step: int) -> None:
        """Data-parallel ranks must end with the same weights (the same updates, step for step);
        a difference means a rank trained on something else, and the model is not published."""
        if self.dist.world_size == 1:
            return
        checksum = float(sum(float(p.detach().double().abs().sum()) for p in model.parameters()))
        if not same_on_every_rank(self.dist, device, checksum):
            raise RuntimeError(f"the {self.dist.world_size} ranks hold different weights at step {step}: "
                               "their updates diverged; the model is not published.")
        self.say(f"all {self.dist.world_size} ranks hold the same weights at step {step}", step)

    def finish(
        self, first: Resume, last: Resume, device: str, precision: str, fell_back: bool,
        steps: int, mean_loss: float, note: str,
    ) -> TrainResult:
        """Final evaluation, samples, loss curve and the atomic publish; then the result."""
        plan, trainer, config = self.plan, self.trainer, self.plan.config
        state = trainer.state
        eval_history = _history(state.log_history, "eval_loss")
        if not eval_history or eval_history[-1][0] != state.global_step:
            # The Trainer evaluates at its last step; only a finished run loaded back needs this.
            eval_history = (*eval_history, (int(state.global_step), float(trainer.evaluate()["eval_loss"])))
        loss_history = _history(state.log_history, "loss")
        model = trainer.accelerator.unwrap_model(trainer.model)
        self.check_ranks_agree(model, device, int(state.global_step))
        latest, samples, curve, freed = self.checkpoint_dir / "latest", (), last.run_dir / LOSS_CURVE, []
        if self.dist.is_main:
            model.eval()
            samples = tuple(
                (prompt, generate_text(model, self.tokenizer, prompt, max_new_tokens=config.sample_max_new_tokens,
                                       seed=config.seed))
                for prompt in config.sample_prompts
            )
            plot_loss_curve(loss_history, eval_history, curve)
            latest = publish_model(model, self.tokenizer, self.checkpoint_dir)
            self.say(f"published the model to {latest}", int(state.global_step))
            freed = self.tidy(last.run_dir, state)
        if self.dist.world_size > 1:
            trainer.accelerator.wait_for_everyone()  # no rank exits while rank 0 still publishes
        seconds = self.clock.train_seconds
        best_step = int(state.best_global_step or 0)
        eval_loss = float(state.best_metric) if state.best_metric is not None and best_step else eval_history[-1][1]
        if not best_step or not (last.run_dir / f"checkpoint-{best_step}").is_dir():
            best_step = eval_history[-1][0]
        stopped = bool(self.stopper and self.stopper.stopped) or bool(
            last.finished and last.callback_attributes(STOP_CALLBACK).get("stopped"))
        wall = time.perf_counter() - self.started
        on_disk = tree_bytes(self.checkpoint_dir) if self.dist.is_main else 0
        return TrainResult(
            checkpoints_bytes=on_disk,
            freed_bytes=sum(f.bytes for f in freed),
            device=device,
            precision=precision,
            preset=plan.preset.name,
            parameters=sum(p.numel() for p in model.parameters()),
            batch_size=plan.batch_size,
            train_tokens=int(state.global_step) * plan.tokens_per_step,
            tokens_per_second=steps * plan.tokens_per_step / seconds if seconds > 0 else 0.0,
            train_loss=loss_history[-1][1] if loss_history else mean_loss,
            eval_loss=eval_loss,
            perplexity=perplexity(eval_loss),
            eval_bpb=plan.validation_bytes.bits_per_byte(eval_loss),
            best_step=best_step,
            stopped_early=stopped,
            optimizer=plan.optimizer,
            epochs=float(state.epoch or 0.0),
            time_budget_minutes=config.time_budget_minutes,
            time_used_seconds=self.spent_before + wall if config.time_budget_minutes else wall,
            resumed_from_step=first.step,
            world_size=self.dist.world_size,
            model_dir=latest,
            run_dir=last.run_dir,
            global_step=int(state.global_step),
            warmup_steps=plan.schedule.warmup_steps,
            schedule_note=note,
            wall_seconds=wall,
            train_seconds=seconds,
            fell_back_to_cpu=fell_back,
            fallback_resumed_from_step=last.step if fell_back else -1,
            loss_history=loss_history,
            eval_history=eval_history,
            samples=samples,
            loss_curve_png=curve,
        )


def _length(plan: TrainPlan) -> str:
    if plan.budget_seconds:
        return f"as many steps as fit in {format_duration(plan.budget_seconds)}"
    return f"{plan.total_steps} steps"


def _schedule_note(resume: Resume, plan: TrainPlan) -> str:
    """Say so when a checkpoint planned for another length is continued with this run's schedule."""
    if resume.checkpoint is None or resume.finished or resume.planned_steps in (0, plan.total_steps):
        return ""
    if plan.budget_seconds:
        return ""  # a budget decides its own length; the time already used counts
    return (
        f"continuing a run planned for {resume.planned_steps} steps from step {resume.step} to "
        f"{plan.total_steps} steps: the learning rate now follows this run's schedule (warm-up "
        f"{plan.schedule.warmup_steps}, cosine to a tenth at step {plan.total_steps})"
    )


def _history(log_history: Sequence[dict[str, Any]], key: str) -> Points:
    """(step, value) pairs of one logged quantity, one per step (a resumed run may log a step twice)."""
    by_step = {int(entry["step"]): float(entry[key]) for entry in log_history if key in entry}
    return tuple(sorted(by_step.items()))


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
