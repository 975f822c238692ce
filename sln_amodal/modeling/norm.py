"""Normalisation layers of the backbone: frozen batch norm (the default), batch norm, group norm."""
from __future__ import annotations

import torch
from torch import Tensor, nn

NORM_KINDS = ("FrozenBN", "BN", "GN")


class FrozenBatchNorm2d(nn.Module):
    """Batch norm whose statistics and affine parameters are fixed buffers, never trained.

    Detection fine-tunes with one or two images per device, far too few for batch statistics, so
    the pretrained statistics are kept. The buffers carry ``nn.BatchNorm2d``'s names, so batch-norm
    checkpoints load as they are.
    """

    def __init__(self, num_features: int, eps: float):
        super().__init__()
        self.eps = eps
        self.register_buffer("weight", torch.ones(num_features))
        self.register_buffer("bias", torch.zeros(num_features))
        self.register_buffer("running_mean", torch.zeros(num_features))
        self.register_buffer("running_var", torch.ones(num_features))

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        # nn.BatchNorm2d checkpoints carry a step counter that a frozen layer has no use for.
        state_dict.pop(prefix + "num_batches_tracked", None)
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    def forward(self, x: Tensor) -> Tensor:
        scale = self.weight * (self.running_var + self.eps).rsqrt()
        shift = self.bias - self.running_mean * scale
        # In the activations' dtype, so mixed precision does not promote them back to float32.
        return x * scale.reshape(1, -1, 1, 1).to(x.dtype) + shift.reshape(1, -1, 1, 1).to(x.dtype)

    def extra_repr(self) -> str:
        return f"{self.weight.shape[0]}, eps={self.eps}"


def build_norm(kind: str, num_channels: int, eps: float, gn_groups: int) -> nn.Module:
    """A normalisation layer by name (``NORM_KINDS``)."""
    if kind == "FrozenBN":
        return FrozenBatchNorm2d(num_channels, eps=eps)
    if kind == "BN":
        return nn.BatchNorm2d(num_channels, eps=eps)
    if kind == "GN":
        return nn.GroupNorm(gn_groups, num_channels, eps=eps)
    raise ValueError(f"MODEL.BACKBONE.NORM: unknown norm {kind!r}, expected one of {NORM_KINDS}")
