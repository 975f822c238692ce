"""One training process per GPU under ``torchrun`` (NCCL), or per CPU worker (gloo).

torchrun describes the job in environment variables (RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR,
MASTER_PORT); a plain ``python`` run has none of them and is a world of one, where every helper
here does nothing.
"""
from __future__ import annotations

import contextlib
import os
from typing import Any, Iterator

import torch
import torch.distributed as dist
from torch import Tensor


def rank_from_env() -> int:
    return int(os.environ.get("RANK", 0))


def world_size_from_env() -> int:
    return int(os.environ.get("WORLD_SIZE", 1))


def get_rank() -> int:
    return dist.get_rank() if dist.is_initialized() else 0


def get_world_size() -> int:
    return dist.get_world_size() if dist.is_initialized() else 1


def is_main_process() -> bool:
    return get_rank() == 0


@contextlib.contextmanager
def process_group(device: str) -> Iterator[str]:
    """Join the process group the environment describes for the block; yields this process's device.

    CUDA processes take the GPU of their LOCAL_RANK (``cuda:LOCAL_RANK``) and talk over NCCL, CPU
    processes over gloo. A group that already exists is used as it is and left open; one created
    here is destroyed on exit.
    """
    if world_size_from_env() == 1 or dist.is_initialized():
        yield device
        return
    if torch.device(device).type == "cuda":
        local_device = torch.device("cuda", int(os.environ["LOCAL_RANK"]))
        torch.cuda.set_device(local_device)
        dist.init_process_group("nccl", device_id=local_device)
        device = str(local_device)
    else:
        dist.init_process_group("gloo")
    try:
        yield device
    finally:
        dist.destroy_process_group()


def synchronize() -> None:
    """Wait until every process gets here."""
    if get_world_size() > 1:
        dist.barrier()


@contextlib.contextmanager
def main_process_first() -> Iterator[None]:
    """Process 0 runs the block alone first (e.g. writing a dataset cache), the others after it.

    Process 0 releases the others even when its block fails, so they fail on their own instead of
    waiting for the collective timeout.
    """
    if is_main_process():
        try:
            yield
        finally:
            synchronize()
    else:
        synchronize()
        yield


def mean_over_processes(values: Tensor) -> Tensor:
    """Element-wise mean of ``values`` over all processes (a copy; the input is left alone)."""
    values = values.detach().clone()
    world_size = get_world_size()
    if world_size > 1:
        dist.all_reduce(values)
        values /= world_size
    return values


def gather_objects(obj: Any) -> list[Any]:
    """Every process's ``obj`` (picklable), in rank order, on every process."""
    world_size = get_world_size()
    if world_size == 1:
        return [obj]
    gathered: list[Any] = [None] * world_size
    dist.all_gather_object(gathered, obj)
    return gathered
