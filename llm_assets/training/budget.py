"""A time budget: train for as many steps as fit, and end on time with the rate at its floor.

Why a warm-up / stable / decay schedule decided in wall time rather than a plan of steps made up
front: a step's time is only known once steps run (the first ones are slow, a laptop throttles,
another program takes a core), and a cosine needs its length from the first step. Holding the peak
needs no length; the decay's length is decided when the budget's ``decay_fraction`` is left, from
step times measured on this machine in this run, and corrected while it decays. Decay-at-the-end
schedules match a cosine of the same length (Hägele et al. 2024), and the run can be stopped
honestly at any step before the decay starts.

At the decision the run evaluates and checkpoints (the stable phase's end, a natural point to
continue from), which also measures what the last evaluation, checkpoint and the final publish
will cost, so they fit inside the budget too. The clock starts when ``train_model`` starts and a
resumed run adds the time its checkpoint had already used. Under torchrun rank 0 decides and every
rank applies the same decision at the same step.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from typing import Any

from transformers import TrainerCallback
from transformers.trainer_callback import ExportableState

from llm_assets.training.schedule import BudgetSchedule

# Aim a little short of the budget: a step's time wanders by a few per cent between corrections.
SAFETY_SHARE = 0.01
# Correct the decay's end when the projected finish drifts by more than this share of the budget.
CORRECT_SHARE = 0.01
# The first steps are slow (allocator, caches, lazy initialisation): not used for step times.
SKIP_STEPS = 3
# No corrections in the decay's last steps: a few steps move the end by little, and a decision
# changes the rate from the next-but-one step in the Trainer's own records (its scheduler has set
# the next one already), so the last step's recorded rate is then the floor the schedule reached.
FINAL_STEPS = 5

Agree = Callable[[Any], Any]  # rank 0's value on every rank (distributed.decided_by_main)


class TimeBudget(TrainerCallback, ExportableState):
    """Holds the budget, measures steps, evaluations and checkpoints, and decides the decay.

    ``agree`` sends rank 0's decision to every rank; the other ranks' own measurements are ignored.
    ``check_every`` steps the ranks compare notes (every step alone; every logging interval under
    torchrun, where each check is a collective)."""

    def __init__(
        self,
        budget_seconds: float,
        schedule: BudgetSchedule,
        *,
        started: float,
        spent_before: float = 0.0,
        decay_fraction: float = 0.4,
        final_extra_seconds: float = 0.0,
        check_every: int = 1,
        agree: Agree = lambda value: value,
    ) -> None:
        self.budget_seconds = budget_seconds
        self.schedule = schedule
        self.started = started
        self.spent_before = spent_before
        self.decay_fraction = decay_fraction
        self.final_extra_seconds = final_extra_seconds  # samples and the like, after the last step
        self.check_every = max(1, check_every)
        self.agree = agree
        self.finished = False
        self.pending = False  # the decay is due: evaluating and checkpointing before deciding it
        self.eval_seconds: float | None = None
        self.save_seconds: float | None = None
        self._mark: float | None = None
        self._clean = False  # no evaluation or checkpoint since the last step ended
        self._step_seconds: list[float] = []
        self._decided_at = 0

    # ---- the clock ---------------------------------------------------------------------------

    def elapsed(self) -> float:
        return self.spent_before + time.perf_counter() - self.started

    def seconds_left(self) -> float:
        return max(0.0, self.budget_seconds - self.elapsed())

    def step_seconds(self) -> float | None:
        """Median time of an uninterrupted step since the decay was last decided (or all of them)."""
        recent = self._step_seconds[self._decided_at :] or self._step_seconds
        if not recent:
            return None
        return sorted(recent)[len(recent) // 2]

    def expected_steps(self, steps_done: int) -> int:
        """The run's last step as it looks now: decided, or projected from the time left."""
        if self.schedule.decay_to:
            return self.schedule.decay_to
        per_step = self.step_seconds()
        if not per_step:
            return steps_done + 1
        return steps_done + max(1, int(self.seconds_left() / per_step))

    # ---- the decision ------------------------------------------------------------------------

    def _steps_that_fit(self, steps_done: int, args: Any) -> int:
        """Steps from here that end, with the periodic and final evaluations, checkpoints and the
        publish, a safety share short of the budget."""
        per_step = self.step_seconds() or 0.0
        evaluation, checkpoint = self.eval_seconds or 0.0, self.save_seconds or 0.0
        eval_every = args.eval_steps or args.save_steps
        amortized = per_step + evaluation / max(1, eval_every) + checkpoint / max(1, args.save_steps)
        # After the last step: its evaluation and checkpoint, then the publish (about a checkpoint
        # without the optimizer state) and the samples.
        final = evaluation + checkpoint + checkpoint / 2 + self.final_extra_seconds
        remaining = self.budget_seconds * (1 - SAFETY_SHARE) - self.elapsed() - final
        if amortized <= 0:
            return 1
        return max(1, math.floor(remaining / amortized))

    def _apply(self, decision: dict[str, int] | None, state: Any, optimizer: Any, scheduler: Any) -> None:
        """Every rank: set the decay rank 0 decided and the rate of the coming step to match it."""
        if not decision:
            return
        self.schedule.decay(decision["steps_done"], decision["decay_to"])
        self._decided_at = len(self._step_seconds)
        state.max_steps = self.schedule.decay_to
        if optimizer is not None and scheduler is not None:
            # The scheduler already set the coming step's rate from the schedule as it was.
            for group, base in zip(optimizer.param_groups, scheduler.base_lrs):
                group["lr"] = base * self.schedule.factor(state.global_step)

    # ---- Trainer events ----------------------------------------------------------------------

    def on_train_begin(self, args, state, control, **kwargs):  # noqa: ANN001
        self._mark, self._clean = time.perf_counter(), False
        if self.schedule.decay_to:
            state.max_steps = self.schedule.decay_to  # resumed after the decision

    def on_step_end(self, args, state, control, optimizer=None, lr_scheduler=None, **kwargs):  # noqa: ANN001
        now = time.perf_counter()
        if self._clean and self._mark is not None and state.global_step > SKIP_STEPS:
            self._step_seconds.append(now - self._mark)
        self._mark, self._clean = now, True
        if state.global_step >= state.max_steps:
            self.finished = True
            return control
        if state.global_step % self.check_every:
            return control
        if not self.schedule.decay_to:
            due = self.agree(self.elapsed() >= (1 - self.decay_fraction) * self.budget_seconds)
            if due and not self.pending:
                self.pending = True  # evaluate and checkpoint here, then decide in on_save
                control.should_evaluate = True
                control.should_save = True
        else:
            self._apply(self.agree(self._correction(state.global_step, args)), state, optimizer, lr_scheduler)
        return control

    def _correction(self, steps_done: int, args: Any) -> dict[str, int] | None:
        """A new end for the decay when the projected finish has drifted (rank 0's view)."""
        planned = self.schedule.decay_to - steps_done
        if planned <= FINAL_STEPS:
            return None
        fit = self._steps_that_fit(steps_done, args)
        per_step = self.step_seconds() or 0.0
        if abs(fit - planned) * per_step <= CORRECT_SHARE * self.budget_seconds:
            return None
        return {"steps_done": steps_done, "decay_to": steps_done + fit}

    def on_evaluate(self, args, state, control, **kwargs):  # noqa: ANN001
        now = time.perf_counter()
        if self._mark is not None:
            self.eval_seconds = now - self._mark
        self._mark, self._clean = now, False

    def on_save(self, args, state, control, optimizer=None, lr_scheduler=None, **kwargs):  # noqa: ANN001
        now = time.perf_counter()
        if self._mark is not None:
            self.save_seconds = now - self._mark
        self._mark, self._clean = now, False
        if self.pending:
            self.pending = False
            steps = state.global_step
            decision = self.agree({"steps_done": steps, "decay_to": steps + self._steps_that_fit(steps, args)})
            self._apply(decision, state, optimizer, lr_scheduler)

    # ---- carried in each checkpoint's trainer_state.json -------------------------------------

    def state(self) -> dict[str, Any]:
        return {
            "args": {},
            "attributes": {
                "budget_seconds": self.budget_seconds,
                "spent_seconds": round(self.elapsed(), 3),
                "finished": self.finished,
                "schedule": self.schedule.state(),
            },
        }


def spent_and_schedule(saved: dict[str, Any]) -> tuple[float, dict[str, Any]]:
    """(seconds already used, schedule state) from a checkpoint's saved ``TimeBudget`` state."""
    attributes = saved.get("attributes", {})
    return float(attributes.get("spent_seconds", 0.0)), dict(attributes.get("schedule", {}))
