"""Learning-rate schedule: linear warm-up, then step decay (the Mask R-CNN recipe)."""
from __future__ import annotations

from bisect import bisect_right
from typing import Sequence


class WarmupStepSchedule:
    """Multiplier of the base learning rate at an iteration; picklable, so it checkpoints with LambdaLR."""

    def __init__(self, warmup_iters: int, warmup_factor: float, steps: Sequence[int], gamma: float):
        if list(steps) != sorted(steps):
            raise ValueError(f"SOLVER.STEPS must be increasing, got {list(steps)}")
        self.warmup_iters = warmup_iters
        self.warmup_factor = warmup_factor
        self.steps = tuple(steps)
        self.gamma = gamma

    def __call__(self, iteration: int) -> float:
        decay = self.gamma ** bisect_right(self.steps, iteration)
        if iteration >= self.warmup_iters:
            return decay
        alpha = iteration / self.warmup_iters
        return decay * (self.warmup_factor * (1 - alpha) + alpha)
