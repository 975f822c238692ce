"""What training shows in TensorBoard: scalars averaged over a window, and pictures (drawn by
``visualize.py`` and by the mask branch's own ``debug_pictures``)."""
from __future__ import annotations

from collections import defaultdict

import numpy as np
from torch.utils.tensorboard import SummaryWriter

TAG_PREFIX = "train/"  # TensorBoard tags of training scalars and pictures


class TrainingEvents:
    """Process 0's TensorBoard writer. ``add_scalars`` averages each value over ``log_period``
    iterations and writes the means at the window's last iteration; ``flush`` writes a partial
    window (the end of training)."""

    def __init__(self, log_dir: str, log_period: int):
        if log_period < 1:
            raise ValueError(f"SOLVER.LOG_PERIOD must be at least 1, got {log_period}")
        self.writer = SummaryWriter(log_dir)
        self.log_period = log_period
        self.sums: dict[str, float] = defaultdict(float)
        self.count = 0

    def add_scalars(self, iteration: int, scalars: dict[str, float]) -> None:
        for name, value in scalars.items():
            self.sums[name] += value
        self.count += 1
        if iteration % self.log_period == 0:
            self.flush(iteration)

    def flush(self, iteration: int) -> None:
        for name, total in self.sums.items():
            self.writer.add_scalar(TAG_PREFIX + name, total / self.count, iteration)
        self.sums.clear()
        self.count = 0
        self.writer.flush()

    def add_picture(self, name: str, picture: np.ndarray, iteration: int) -> None:
        """``picture``: (H, W, 3) uint8, as ``visualize.py`` draws them."""
        self.writer.add_image(TAG_PREFIX + name, picture, iteration, dataformats="HWC")

    def close(self) -> None:
        self.writer.close()
