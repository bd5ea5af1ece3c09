"""What a training run tells its caller while it runs: a line every few steps, timed honestly.

The clock counts training steps only: evaluation and checkpointing happen between steps and
restart it, so tokens/s is the speed of training itself. Nothing here touches a tensor: the loss
arrives in ``on_log``, which the Trainer synchronises anyway.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from transformers import TrainerCallback


@dataclass(frozen=True)
class TrainProgress:
    """One report: every ``logging_steps`` ("train"), at evaluations ("eval"), and notices ("notice")."""

    kind: str
    step: int
    max_steps: int
    message: str
    loss: float | None = None
    learning_rate: float | None = None
    tokens_per_second: float | None = None
    eta_seconds: float | None = None
    bpb: float | None = None  # evaluations: the validation loss in bits per byte of text


ProgressFn = Callable[[TrainProgress], None]


class Horizon(Protocol):
    """Where a run whose length is not fixed expects to end (``budget.TimeBudget``)."""

    def expected_steps(self, steps_done: int) -> int: ...

    def seconds_left(self) -> float: ...


class ChartPoints:
    """Which reports become points of a live chart: every evaluation, and training reports spaced so
    that a whole run gives at most ``max_points`` of them (its last step always included)."""

    def __init__(self, max_points: int = 300) -> None:
        self.max_points = max_points
        self.last: int | None = None

    def __call__(self, update: TrainProgress) -> bool:
        if update.kind == "eval":
            return True
        if update.kind != "train":
            return False
        every = max(1, math.ceil(update.max_steps / self.max_points))
        if self.last is not None and update.step - self.last < every and update.step < update.max_steps:
            return False
        self.last = update.step
        return True


class Throttle:
    """Training reports passed on at most once every ``min_seconds``; evaluations, notices and the
    last step always pass. Each report that reaches Dagster is an event or two in its event log
    (about 10 ms of CPU each on a local SQLite instance), so a small model logging every 10 steps
    at 10 steps a second spends a few per cent of its training time on them; the Trainer itself
    still logs every ``logging_steps`` (loss history, TensorBoard)."""

    def __init__(self, min_seconds: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.min_seconds = min_seconds
        self.clock = clock
        self.last: float | None = None

    def __call__(self, update: TrainProgress) -> bool:
        if update.kind != "train" or update.step >= update.max_steps:
            return True
        now = self.clock()
        if self.last is not None and now - self.last < self.min_seconds:
            return False
        self.last = now
        return True


def chart_values(update: TrainProgress) -> dict[str, float]:
    """The numbers of a chart point, named as in the final metadata so the charts continue into it."""
    if update.kind == "eval" and update.loss is not None:
        values = {"eval_loss": round(update.loss, 4), "step": update.step}
        if update.bpb is not None and math.isfinite(update.bpb):
            values["eval_bpb"] = round(update.bpb, 4)
        return values
    values = {"train_loss": update.loss, "learning_rate": update.learning_rate,
              "tokens_per_second": update.tokens_per_second}
    return {**{key: round(value, 6) for key, value in values.items() if value is not None}, "step": update.step}


def notice(step: int, max_steps: int, message: str) -> TrainProgress:
    return TrainProgress(kind="notice", step=step, max_steps=max_steps, message=message)


def perplexity(loss: float) -> float:
    try:
        return math.exp(loss)
    except OverflowError:
        return float("inf")


def format_duration(seconds: float) -> str:
    seconds = int(max(0, seconds))
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}h{minutes:02d}m" if hours else f"{minutes}m{secs:02d}s"


class ProgressCallback(TrainerCallback):
    """Times training steps and turns the Trainer's logs into :class:`TrainProgress` reports."""

    def __init__(
        self,
        tokens_per_step: int,
        flops_per_token: float,
        report: ProgressFn | None,
        bits_per_byte: Callable[[float], float] | None = None,
        horizon: Horizon | None = None,
    ) -> None:
        self.tokens_per_step = tokens_per_step
        self.flops_per_token = flops_per_token
        self.report = report
        self.bits_per_byte = bits_per_byte
        self.horizon = horizon
        self.train_seconds = 0.0
        self._mark = time.perf_counter()
        self._window_seconds = 0.0
        self._window_steps = 0

    def _restart(self) -> None:
        self._mark = time.perf_counter()

    def _last_step(self, state) -> int:  # noqa: ANN001
        """The run's last step: fixed, or as the budget expects it now."""
        if self.horizon is not None:
            return self.horizon.expected_steps(state.global_step)
        return state.max_steps

    def on_train_begin(self, args, state, control, **kwargs):  # noqa: ANN001
        self._restart()

    def on_step_end(self, args, state, control, **kwargs):  # noqa: ANN001
        now = time.perf_counter()
        self.train_seconds += now - self._mark
        self._window_seconds += now - self._mark
        self._window_steps += 1
        self._mark = now
        if state.global_step >= state.max_steps:
            control.should_log = True  # always log the last step: the final training loss
        return control

    def on_evaluate(self, args, state, control, metrics=None, **kwargs):  # noqa: ANN001
        if self.report is not None and metrics and "eval_loss" in metrics:
            loss = float(metrics["eval_loss"])
            bpb = self.bits_per_byte(loss) if self.bits_per_byte else None
            last = self._last_step(state)
            self.report(TrainProgress(
                kind="eval",
                step=state.global_step,
                max_steps=last,
                loss=loss,
                bpb=bpb,
                message=f"eval step {state.global_step}/{last} | val loss {loss:.4f} | "
                f"perplexity {perplexity(loss):.2f}" + (f" | {bpb:.4f} bits/byte" if bpb is not None else ""),
            ))
        self._restart()

    def on_save(self, args, state, control, **kwargs):  # noqa: ANN001
        self._restart()

    def on_log(self, args, state, control, logs=None, **kwargs):  # noqa: ANN001
        if not logs or "loss" not in logs:
            return
        seconds, steps = self._window_seconds, self._window_steps
        self._window_seconds, self._window_steps = 0.0, 0
        if self.report is None:
            return
        rate = self.tokens_per_step * steps / seconds if seconds > 0 and steps else None
        last = self._last_step(state)
        eta = max(0, last - state.global_step) * seconds / steps if steps and seconds > 0 else None
        if self.horizon is not None:
            eta = self.horizon.seconds_left()
        loss, lr = float(logs["loss"]), float(logs.get("learning_rate", 0.0))
        parts = [f"step {state.global_step}/{last}", f"epoch {float(state.epoch or 0):.2f}",
                 f"loss {loss:.4f}", f"lr {lr:.2e}"]
        if rate is not None:
            parts += [f"{rate:,.0f} tok/s", f"{rate * self.flops_per_token / 1e12:.3f} TFLOP/s"]
        if eta is not None:
            parts.append(f"ETA {format_duration(eta)}")
        self.report(TrainProgress(
            kind="train",
            step=state.global_step,
            max_steps=last,
            loss=loss,
            learning_rate=lr,
            tokens_per_second=rate,
            eta_seconds=eta,
            message=" | ".join(parts),
        ))
