"""Sample a fixed-size mini-batch of positives and negatives per image for a loss."""
from __future__ import annotations

import torch
from torch import Tensor


class BalancedPositiveNegativeSampler:
    """Up to ``batch_size_per_image * positive_fraction`` random positives, negatives fill the rest.

    Labels per image: -1 ignored, 0 negative, >= 1 positive. Draws with ``torch.randperm``
    (positives, then negatives, image by image), so a fixed seed gives a fixed sample.
    """

    def __init__(self, batch_size_per_image: int, positive_fraction: float):
        self.batch_size_per_image = batch_size_per_image
        self.positive_fraction = positive_fraction

    def __call__(self, labels: list[Tensor]) -> tuple[list[Tensor], list[Tensor]]:
        """Per image (R_i,) labels -> per image boolean masks (R_i,) of sampled positives, negatives."""
        positive_masks, negative_masks = [], []
        for labels_per_image in labels:
            positive = torch.where(labels_per_image >= 1)[0]
            negative = torch.where(labels_per_image == 0)[0]
            num_pos = min(positive.numel(), int(self.batch_size_per_image * self.positive_fraction))
            num_neg = min(negative.numel(), self.batch_size_per_image - num_pos)
            chosen_pos = positive[torch.randperm(positive.numel(), device=positive.device)[:num_pos]]
            chosen_neg = negative[torch.randperm(negative.numel(), device=negative.device)[:num_neg]]
            positive_mask = torch.zeros_like(labels_per_image, dtype=torch.bool)
            negative_mask = torch.zeros_like(labels_per_image, dtype=torch.bool)
            positive_mask[chosen_pos] = True
            negative_mask[chosen_neg] = True
            positive_masks.append(positive_mask)
            negative_masks.append(negative_mask)
        return positive_masks, negative_masks
