"""Running independent single-threaded CPU kernels on torch's CPU threads at once.

Some torchvision CPU kernels (RoIAlign and its gradient, NMS) run on one thread while the other
cores wait. Their calls on independent inputs (chunks of RoIs, images of a batch) can run side by
side on Python threads, because the kernels release the GIL; each call computes exactly what it
would alone.
"""
from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from typing import Callable, Iterable, TypeVar

import torch

Result = TypeVar("Result")

_pools: dict[int, ThreadPoolExecutor] = {}  # by number of workers


def _thread_pool(workers: int) -> ThreadPoolExecutor:
    if workers not in _pools:
        _pools[workers] = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="sln_cpu")
    return _pools[workers]


# A forked process inherits the pools but not their threads.
os.register_at_fork(after_in_child=_pools.clear)


def parallel_workers(device: torch.device, num_tasks: int) -> int:
    """How many threads to spread ``num_tasks`` independent calls over: torch's CPU threads on the
    CPU (at most one per task), 1 (run them in turn) elsewhere."""
    if device.type != "cpu":
        return 1
    return max(1, min(torch.get_num_threads(), num_tasks))


def map_in_threads(function: Callable[..., Result], *arguments: Iterable, workers: int) -> list[Result]:
    """``[function(a, b, ...) for a, b, ... in zip(*arguments)]`` on ``workers`` threads, in order.

    ``function`` must not call this itself: the pools are shared, and waiting workers would block."""
    if workers <= 1:
        return list(map(function, *arguments))
    return list(_thread_pool(workers).map(function, *arguments))
