"""Small building blocks shared by the heads."""
from __future__ import annotations

from typing import Sequence

from torch import nn


def conv_stack(
    in_channels: int, conv_dims: Sequence[int], dilations: Sequence[int] = ()
) -> tuple[nn.Sequential, int]:
    """3x3 convolutions with ReLU (dilated as ``dilations`` says, one entry per convolution; empty
    means none), size-preserving; returns the stack and its output channels."""
    if dilations and len(dilations) != len(conv_dims):
        raise ValueError(f"need one dilation per convolution ({len(conv_dims)}), got {list(dilations)}")
    layers = []
    for out_channels, dilation in zip(conv_dims, dilations or [1] * len(conv_dims)):
        layers += [nn.Conv2d(in_channels, out_channels, 3, padding=dilation, dilation=dilation), nn.ReLU(inplace=True)]
        in_channels = out_channels
    return nn.Sequential(*layers), in_channels


# Predictors start near zero so the first losses are those of uniform classes / a flat map,
# not of the large random logits a ReLU-scaled initialisation gives a layer without a ReLU after it.
PREDICTOR_INIT_STD = 0.001


def init_trunk(*modules: nn.Module) -> None:
    for module in modules:
        for layer in module.modules():
            if isinstance(layer, (nn.Conv2d, nn.ConvTranspose2d)):
                nn.init.kaiming_normal_(layer.weight, mode="fan_out", nonlinearity="relu")
                nn.init.zeros_(layer.bias)


def init_predictor(*layers: nn.Conv2d) -> None:
    for layer in layers:
        nn.init.normal_(layer.weight, std=PREDICTOR_INIT_STD)
        nn.init.zeros_(layer.bias)
