"""RoIAlign that spreads its RoIs over torch's CPU threads.

torchvision's CPU kernels for RoIAlign and its gradient loop over the RoIs on one thread; in a
training step of Mask R-CNN they take about a fifth of the time while the other cores wait. Here
the RoIs are cut into one chunk per torch thread and the same kernels run on the chunks at once
(they release the GIL). Forward outputs of different RoIs are disjoint, so the result is exactly
torchvision's; the gradient is the sum of the chunks' gradients, equal to torchvision's up to the
order of float additions. On other devices, with one thread, or with too few RoIs to split, this
is ``torchvision.ops.roi_align`` itself.
"""
from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from typing import Sequence

import torch
from torch import Tensor
from torchvision.ops import roi_align as torchvision_roi_align

# sampling_ratio <= 0: as many sampling points per bin side as the bin is pixels long (rounded up).
ADAPTIVE_SAMPLING = -1

_pools: dict[int, ThreadPoolExecutor] = {}  # by number of workers


def _thread_pool(workers: int) -> ThreadPoolExecutor:
    if workers not in _pools:
        _pools[workers] = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="roi_align")
    return _pools[workers]


# A forked process inherits the pools but not their threads.
os.register_at_fork(after_in_child=_pools.clear)


def _run_chunks(kernel, *chunked: Sequence[Tensor]) -> list[Tensor]:
    """``kernel(a[i], b[i], ...)`` for the i-th chunk of each argument, all chunks at once, in order."""
    return list(_thread_pool(len(chunked[0])).map(kernel, *chunked))


class _ChunkedRoIAlign(torch.autograd.Function):
    @staticmethod
    def forward(ctx, features, rois, output_size, spatial_scale, sampling_ratio, aligned, num_chunks):
        ctx.save_for_backward(rois)
        ctx.arguments = (output_size, spatial_scale, sampling_ratio, aligned, num_chunks, features.shape)

        def pool(chunk: Tensor) -> Tensor:
            return torch.ops.torchvision.roi_align(
                features, chunk, spatial_scale, output_size[0], output_size[1], sampling_ratio, aligned
            )

        return torch.cat(_run_chunks(pool, rois.chunk(num_chunks)))  # (R, C, Ph, Pw)

    @staticmethod
    def backward(ctx, grad_output):
        (rois,) = ctx.saved_tensors
        (pooled_h, pooled_w), spatial_scale, sampling_ratio, aligned, num_chunks, features_shape = ctx.arguments

        def gradient(chunk: Tensor, grad_chunk: Tensor) -> Tensor:
            # (N, C, H, W), zero away from this chunk's RoIs
            return torch.ops.torchvision._roi_align_backward(
                grad_chunk.contiguous(), chunk, spatial_scale, pooled_h, pooled_w, *features_shape,
                sampling_ratio, aligned,
            )

        partial = _run_chunks(gradient, rois.chunk(num_chunks), grad_output.chunk(num_chunks))
        total = partial[0]
        for other in partial[1:]:
            total += other
        return total, None, None, None, None, None, None


def roi_align(
    features: Tensor,
    rois: Tensor,
    output_size: tuple[int, int],
    spatial_scale: float,
    sampling_ratio: int,
    aligned: bool,
) -> Tensor:
    """``torchvision.ops.roi_align`` on (N, C, H, W) features and (R, 5) rois (image index, xyxy)
    -> (R, C, Ph, Pw), with the RoIs spread over torch's CPU threads."""
    num_chunks = min(torch.get_num_threads(), len(rois))
    if features.device.type != "cpu" or num_chunks < 2 or torch.is_autocast_enabled("cpu"):
        return torchvision_roi_align(features, rois, output_size, spatial_scale, sampling_ratio, aligned)
    return _ChunkedRoIAlign.apply(
        features, rois, tuple(output_size), spatial_scale, sampling_ratio, aligned, num_chunks
    )
