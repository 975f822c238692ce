"""The optimizer of a training run (SOLVER.OPTIMIZER) and the param-group values the config sets.

SGD with momentum is the Mask R-CNN recipe; AdamW is the option for models trained from scratch on
small budgets (the quickstart). A resumed run puts ``optimizer_hyperparameters`` back into the
restored param groups, so a config change takes effect on resume.
"""
from __future__ import annotations

import torch
from torch import nn

from ..config.config import CfgNode

# SOLVER.OPTIMIZER -> (class, its implementation options, the param-group values the config sets
# besides the learning rate). Both update each tensor in one fused kernel (one pass over weight,
# gradient and state) instead of one kernel per arithmetic operation: in a quickstart training step
# AdamW took 12 ms this way against 41 ms with one kernel per operation over all tensors (foreach),
# and SGD 3.9 ms against 10 to 11 ms. The updates equal the per-operation ones up to float rounding.
_OPTIMIZERS = {
    "SGD": (torch.optim.SGD, {"fused": True},
            lambda solver: {"momentum": solver.MOMENTUM, "weight_decay": solver.WEIGHT_DECAY}),
    "AdamW": (torch.optim.AdamW, {"fused": True},
              lambda solver: {"betas": tuple(solver.ADAM_BETAS), "weight_decay": solver.WEIGHT_DECAY}),
}
OPTIMIZERS = tuple(_OPTIMIZERS)


def build_optimizer(model: nn.Module, solver: CfgNode, learning_rate: float) -> torch.optim.Optimizer:
    """SOLVER.OPTIMIZER over the trainable parameters (``learning_rate``: see ``trainer.scaled_learning_rate``)."""
    parameters = [p for p in model.parameters() if p.requires_grad]
    optimizer_class, options, _ = _OPTIMIZERS[solver.OPTIMIZER]
    return optimizer_class(parameters, lr=learning_rate, **options, **optimizer_hyperparameters(solver))


def optimizer_hyperparameters(solver: CfgNode) -> dict:
    """The param-group values of SOLVER.OPTIMIZER that the config sets, besides the learning rate."""
    _, _, hyperparameters = _OPTIMIZERS[solver.OPTIMIZER]
    return hyperparameters(solver)
