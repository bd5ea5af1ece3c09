"""The learning-rate schedules: a run of known length, and a run with a time budget.

A run of known length (``max_steps`` or epochs): linear warm-up to the peak, then a cosine down to
a tenth of it. Shaped by the run actually being trained: the warm-up is the preset's share of the
planned steps (capped, so a long run keeps a sensible absolute warm-up), but never shorter than
Adam needs to settle, the peak is reached on the last warm-up step and the floor on the last step
of the run, however short.

A run with a time budget does not know its length in steps until it has run for a while, so it
warms up, holds the peak ("stable"), and decays linearly to the floor over the last share of the
budget ("warm-up / stable / decay", Hu et al. 2024, Hägele et al. 2024: as good as a cosine of the
same length). ``BudgetSchedule`` holds the decay once it is decided (``budget.py`` decides it from
the measured step time) and can move its end while it runs, continuing from the rate reached.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

FLOOR_RATIO = 0.1  # decay to a tenth of the peak, as nanoGPT and most GPT recipes do

# Adam's second-moment average spans about 1 / (1 - beta2) = 20 steps at beta2 0.95: until it has
# seen a few such spans its steps are large and noisy, so a warm-up shorter than this costs loss.
# Measured (benchmarks/QUALITY.md, mini, 120 steps, both the Trainer and a plain nanoGPT-style
# loop): a 6-step warm-up ends 0.16-0.32 higher than a 50-step one. A short run gives at most
# SHORT_RUN_SHARE of its steps to it, so it still spends most of them at and after the peak.
SETTLE_STEPS = 50
SHORT_RUN_SHARE = 0.4


def warmup_for(total_steps: int, fraction: float, cap: int, requested: int = -1) -> int:
    """Warm-up steps: the user's if given (-1: not given), else ``fraction`` of the run, at most
    ``cap``, and at least SETTLE_STEPS or SHORT_RUN_SHARE of the run, whichever is shorter."""
    if requested >= 0:
        return min(requested, max(0, total_steps - 1))
    if total_steps <= 1:
        return 0
    floor = min(SETTLE_STEPS, round(total_steps * SHORT_RUN_SHARE))
    return max(1, min(cap, max(floor, round(total_steps * fraction))))


@dataclass(frozen=True)
class Schedule:
    """Learning-rate multipliers per optimizer step; ``factor(n)`` is the one step ``n + 1`` trains with."""

    warmup_steps: int
    total_steps: int
    floor_ratio: float = FLOOR_RATIO

    def factor(self, steps_done: int) -> float:
        step = steps_done + 1  # the step about to be taken, counted from 1
        if step <= self.warmup_steps:
            return step / self.warmup_steps
        decay = self.total_steps - self.warmup_steps
        progress = min(1.0, (step - self.warmup_steps) / decay) if decay > 0 else 1.0
        return self.floor_ratio + (1 - self.floor_ratio) * 0.5 * (1 + math.cos(math.pi * progress))


@dataclass
class BudgetSchedule:
    """Warm-up, then the peak until ``decay_to`` is set, then linear from the factor at
    ``anchor_step`` to the floor on step ``decay_to`` (counted from 1, like ``Schedule``).

    Mutable on purpose: the budget's decisions change it between steps; ``state``/``restore``
    carry it through a checkpoint."""

    warmup_steps: int
    floor_ratio: float = FLOOR_RATIO
    anchor_step: int = 0  # steps done when the decay (or its last correction) was decided
    anchor_factor: float = 1.0  # the factor the step after ``anchor_step`` would have had
    decay_to: int = 0  # the last step of the run; 0 while the decay is not decided

    def factor(self, steps_done: int) -> float:
        step = steps_done + 1
        if self.decay_to and step > self.anchor_step:
            span = self.decay_to - self.anchor_step
            progress = min(1.0, (step - self.anchor_step) / span) if span > 0 else 1.0
            return self.anchor_factor + (self.floor_ratio - self.anchor_factor) * progress
        if step <= self.warmup_steps:
            return step / self.warmup_steps
        return 1.0

    def decay(self, steps_done: int, last_step: int) -> None:
        """Decay from here to the floor on ``last_step``; called again, the line bends at this step."""
        self.anchor_factor = self.factor(steps_done - 1) if steps_done else self.factor(0)
        self.anchor_step = steps_done
        self.decay_to = max(last_step, steps_done + 1)

    def state(self) -> dict[str, float]:
        return {"warmup_steps": self.warmup_steps, "anchor_step": self.anchor_step,
                "anchor_factor": self.anchor_factor, "decay_to": self.decay_to}

    def restore(self, state: dict[str, float]) -> None:
        self.warmup_steps = int(state.get("warmup_steps", self.warmup_steps))
        self.anchor_step = int(state.get("anchor_step", 0))
        self.anchor_factor = float(state.get("anchor_factor", 1.0))
        self.decay_to = int(state.get("decay_to", 0))
