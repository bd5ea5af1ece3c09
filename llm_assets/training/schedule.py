"""The learning-rate schedule: linear warm-up to the peak, then a cosine down to a tenth of it.

Shaped by the run actually being trained: the warm-up is the preset's share of the planned steps
(capped, so a long run keeps a sensible absolute warm-up), but never shorter than Adam needs to
settle, the peak is reached on the last warm-up step and the floor on the last step of the run,
however short.
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
