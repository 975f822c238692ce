"""Data loaders: an endless, resumable, DDP-aware training stream and a sharded evaluation pass.

The training order depends only on (seed, epoch, rank, world size): each epoch is a fresh
permutation of the dataset drawn from the seed, dealt out to the ranks. Because the order is a pure
function of the position in the stream, a run resumed at iteration k sees exactly the batches the
uninterrupted run saw from iteration k on. Nothing here needs torch.distributed to be initialised:
rank and world size are plain arguments.
"""
from __future__ import annotations

import math
import queue
import threading
from typing import Iterable, Iterator

import numpy as np
import torch
from torch.utils.data import BatchSampler, DataLoader, Dataset, Sampler

SHUFFLE_STREAM = 0  # tags shuffle generators apart from the dataset's item generators (AUGMENT_STREAM)
_READ_AHEAD_POLL_S = 0.1  # how often a reader waiting to hand over a batch checks that it is still wanted


def collate_images_targets(batch: list[tuple]) -> tuple[list, list]:
    """[(image, target), ...] -> ([image, ...], [target, ...]); images keep their own sizes."""
    images, targets = zip(*batch)
    return list(images), list(targets)


def epoch_permutation(seed: int, epoch: int, size: int) -> np.ndarray:
    return np.random.default_rng([seed, SHUFFLE_STREAM, epoch]).permutation(size)


class TrainingSampler(Sampler):
    """Endless stream of ``(epoch, index)`` keys for one rank, starting at position ``start``.

    Every epoch the shuffled order is padded (by wrapping around) to a multiple of ``world_size``
    so all ranks get the same number of items, and rank r takes positions r, r + world_size, ...
    """

    def __init__(self, size: int, seed: int, rank: int = 0, world_size: int = 1, shuffle: bool = True,
                 start: int = 0):
        if size < 1:
            raise ValueError("cannot sample from an empty dataset")
        if not 0 <= rank < world_size:
            raise ValueError(f"rank {rank} is outside world size {world_size}")
        if start < 0:
            raise ValueError(f"start position must be non-negative, got {start}")
        self.size, self.seed, self.rank, self.world_size = size, seed, rank, world_size
        self.shuffle, self.start = shuffle, start

    @property
    def items_per_epoch(self) -> int:
        """Items each rank sees per epoch."""
        return math.ceil(self.size / self.world_size)

    def epoch_indices(self, epoch: int) -> np.ndarray:
        """This rank's dataset indices for ``epoch``, in order."""
        order = epoch_permutation(self.seed, epoch, self.size) if self.shuffle else np.arange(self.size)
        order = np.resize(order, self.items_per_epoch * self.world_size)  # wraps around to pad
        return order[self.rank::self.world_size]

    def __iter__(self) -> Iterator[tuple[int, int]]:
        epoch, offset = divmod(self.start, self.items_per_epoch)
        while True:
            for index in self.epoch_indices(epoch)[offset:]:
                yield epoch, int(index)
            epoch, offset = epoch + 1, 0


class InferenceSampler(Sampler):
    """Each index exactly once, in order; rank r of w takes the r-th of w contiguous, near-equal shards."""

    def __init__(self, size: int, rank: int = 0, world_size: int = 1):
        if not 0 <= rank < world_size:
            raise ValueError(f"rank {rank} is outside world size {world_size}")
        self.begin = size * rank // world_size
        self.end = size * (rank + 1) // world_size

    def __len__(self) -> int:
        return self.end - self.begin

    def __iter__(self) -> Iterator[int]:
        return iter(range(self.begin, self.end))


def _read_ahead(batches: Iterable) -> Iterator:
    """``batches`` in order, each read on a helper thread while the caller works on the one before.

    For loaders without worker processes: reading a batch (image decoding, mask decoding) mostly
    runs outside the GIL, so it overlaps the training step instead of following it. An exception
    from the reader is raised here, at the batch it failed on.
    """
    ready: queue.Queue = queue.Queue(maxsize=1)
    stop = threading.Event()

    def hand_over(item: tuple) -> bool:
        """Queue ``item`` for the consumer; False once the consumer is gone."""
        while not stop.is_set():
            try:
                ready.put(item, timeout=_READ_AHEAD_POLL_S)
                return True
            except queue.Full:
                continue
        return False

    def read() -> None:
        try:
            for batch in batches:
                if not hand_over((batch, None)):
                    return
        except BaseException as error:  # handed to the consumer, which raises it
            hand_over((None, error))

    reader = threading.Thread(target=read, name="read_ahead", daemon=True)
    reader.start()
    try:
        while True:
            batch, error = ready.get()
            if error is not None:
                raise error
            yield batch
    finally:
        stop.set()
        # Joined, not left to die as a daemon: a reader still inside a batch when the interpreter
        # exits aborts the process ("terminate called without an active exception").
        reader.join()


class TrainLoader:
    """Endless training batches ``(list[image], list[target])`` whose position can be saved and restored.

    ``iteration`` counts the batches handed out; ``state_dict()`` saved with a checkpoint and
    ``load_state_dict()`` on resume continue the stream exactly where it stopped. Iterating again
    restarts from the current ``iteration``. Without worker processes the next batch is read on a
    thread while the caller uses the current one (``_read_ahead``).
    """

    def __init__(self, dataset: Dataset, batch_size: int, num_workers: int, seed: int, rank: int = 0,
                 world_size: int = 1, start_iter: int = 0, pin_memory: bool = False):
        self.dataset, self.batch_size, self.num_workers = dataset, batch_size, num_workers
        self.pin_memory = pin_memory
        self.seed, self.rank, self.world_size = seed, rank, world_size
        self.iteration = start_iter

    def __iter__(self) -> Iterator[tuple[list, list]]:
        sampler = TrainingSampler(len(self.dataset), self.seed, self.rank, self.world_size,
                                  start=self.iteration * self.batch_size)
        loader = DataLoader(
            self.dataset, batch_sampler=BatchSampler(sampler, self.batch_size, drop_last=True),
            num_workers=self.num_workers, collate_fn=collate_images_targets, pin_memory=self.pin_memory,
            generator=torch.Generator().manual_seed(self.seed),  # seeds the workers' torch generators
        )
        batches = iter(loader) if self.num_workers else _read_ahead(loader)
        for batch in batches:
            self.iteration += 1
            yield batch

    def state_dict(self) -> dict:
        return {"seed": self.seed, "batch_size": self.batch_size, "world_size": self.world_size,
                "iteration": self.iteration}

    def load_state_dict(self, state: dict) -> None:
        """Resume at ``state["iteration"]``; the order only repeats under the same seed, batch and world size."""
        for key in ("seed", "batch_size", "world_size"):
            if state[key] != getattr(self, key):
                raise ValueError(f"cannot resume the data order: saved {key} {state[key]}, "
                                 f"this run has {getattr(self, key)}")
        self.iteration = int(state["iteration"])


def build_train_loader(dataset: Dataset, batch_size: int, num_workers: int, seed: int, rank: int = 0,
                       world_size: int = 1, start_iter: int = 0, pin_memory: bool = False) -> TrainLoader:
    """``batch_size`` is per rank (per GPU); ``pin_memory`` (for a CUDA device) makes the trainer's
    ``non_blocking`` copies asynchronous."""
    return TrainLoader(dataset, batch_size, num_workers, seed, rank, world_size, start_iter, pin_memory)


def build_eval_loader(dataset: Dataset, batch_size: int, num_workers: int, rank: int = 0,
                      world_size: int = 1, pin_memory: bool = False) -> DataLoader:
    return DataLoader(
        dataset, batch_size=batch_size, sampler=InferenceSampler(len(dataset), rank, world_size),
        num_workers=num_workers, collate_fn=collate_images_targets, pin_memory=pin_memory,
    )
