"""VRSP-Net's shape prior (Xiao et al., AAAI 2021): an auto-encoder on M x M amodal masks and a
per-class codebook of its embeddings, built by k-means, from which the nearest shapes of a mask are
retrieved and decoded.

The codebook is saved as one file per dataset (``shape_prior_file_content``) holding the
auto-encoder's weights, the per-class codes and the categories they were built for;
``ShapePrior.load_file`` reads it into a model. ``engine/shape_codebook.py`` trains the
auto-encoder and builds the codebook.
"""
from __future__ import annotations

import math
from typing import Optional

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ...torch_files import UntrustedCheckpointError, read_torch_file
from .roi_masks import UPSAMPLE_FACTOR

SHAPE_PRIOR_FORMAT = "sln_amodal.shape_prior/1"
# Rows of points compared with all centres at once in k-means (bounds the (rows, k) distance matrix).
KMEANS_CHUNK = 8192


class ShapePriorError(ValueError):
    """A shape-prior file that does not fit the model; the message names the file and the field."""


class ShapeAutoEncoder(nn.Module):
    """(N, M, M) masks in [0, 1] -> (N, E) embeddings -> (N, M, M) reconstruction logits.

    The encoder is ``num_convs`` x (3x3 stride-2 convolution + ReLU) with ``channels`` channels
    (28 -> 14 -> 7 -> 4 for three), so E = channels x 4 x 4 = 128 for VRSP-Net's 28 x 28 masks and
    8 channels. The decoder retraces the encoder's sizes: bilinear upsampling to each, a 3x3
    convolution + ReLU after each, and a last 3x3 convolution to one logit map.
    """

    def __init__(self, mask_size: int, channels: int, num_convs: int):
        super().__init__()
        self.mask_size = mask_size
        self.channels = channels
        sizes = [mask_size]
        for _ in range(num_convs):
            sizes.append((sizes[-1] + 1) // 2)  # a 3x3 stride-2 convolution with padding 1 halves, rounding up
        self.code_size = sizes[-1]
        self.embedding_dim = channels * self.code_size**2
        self.decoder_sizes = sizes[-2::-1]
        self.encoder = nn.ModuleList(
            nn.Conv2d(1 if i == 0 else channels, channels, 3, stride=2, padding=1) for i in range(num_convs)
        )
        self.decoder = nn.ModuleList(nn.Conv2d(channels, channels, 3, padding=1) for _ in range(num_convs))
        self.output = nn.Conv2d(channels, 1, 3, padding=1)

    def encode(self, masks: Tensor) -> Tensor:
        x = masks[:, None]
        for conv in self.encoder:
            x = F.relu(conv(x))
        return x.flatten(1)

    def decode_logits(self, embeddings: Tensor) -> Tensor:
        x = embeddings.reshape(-1, self.channels, self.code_size, self.code_size)
        for size, conv in zip(self.decoder_sizes, self.decoder):
            x = F.relu(conv(F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False)))
        return self.output(x)[:, 0]

    def decode(self, embeddings: Tensor) -> Tensor:
        """(..., E) embeddings -> (..., M, M) mask probabilities."""
        lead = embeddings.shape[:-1]
        decoded = self.decode_logits(embeddings.reshape(-1, self.embedding_dim)).sigmoid()
        return decoded.reshape(*lead, self.mask_size, self.mask_size)

    def forward(self, masks: Tensor) -> Tensor:
        return self.decode_logits(self.encode(masks))


def reconstruction_loss(autoencoder: ShapeAutoEncoder, masks: Tensor) -> Tensor:
    """BCE of the auto-encoder's reconstruction of (N, M, M) masks in [0, 1]."""
    return F.binary_cross_entropy_with_logits(autoencoder(masks), masks)


def dihedral_augment(masks: Tensor) -> Tensor:
    """(N, M, M) -> (8N, M, M): each mask under the 4 rotations by 90 degrees, each also mirrored."""
    rotations = [torch.rot90(masks, quarter, dims=(-2, -1)) for quarter in range(4)]
    return torch.cat(rotations + [r.flip(-1) for r in rotations])


def nearest_rows(points: Tensor, centres: Tensor) -> Tensor:
    """(N,) index of the nearest centre (squared Euclidean distance) of each of the (N, E) points."""
    return torch.cat([torch.cdist(chunk, centres).argmin(dim=1) for chunk in points.split(KMEANS_CHUNK)])


def kmeans(points: Tensor, num_clusters: int, iterations: int, generator: torch.Generator) -> Tensor:
    """(k, E) centres of the (N, E) points: k-means++ seeding, then Lloyd iterations.

    With no more points than clusters the points themselves are the centres. A cluster that loses
    all its points keeps its centre.
    """
    if len(points) <= num_clusters:
        return points.clone()
    # the draws come from ``generator`` on its own device (the CPU), then move to the points'
    centres = points[torch.randint(len(points), (1,), generator=generator, device=generator.device).to(points.device)]
    closest = torch.cdist(points, centres).square()[:, 0]
    for _ in range(1, num_clusters):
        weights = closest / closest.sum() if closest.sum() > 0 else torch.ones_like(closest)
        pick = torch.multinomial(weights.to(generator.device), 1, generator=generator).to(points.device)
        centres = torch.cat([centres, points[pick]])
        closest = torch.minimum(closest, (points - points[pick]).square().sum(dim=1))
    for _ in range(iterations):
        assignment = nearest_rows(points, centres)
        sums = torch.zeros_like(centres).index_add_(0, assignment, points)
        counts = torch.bincount(assignment, minlength=num_clusters)
        filled = counts > 0
        moved = torch.where(filled[:, None], sums / counts.clamp(min=1)[:, None].to(points.dtype), centres)
        if torch.equal(moved, centres):
            break
        centres = moved
    return centres


class ShapePrior(nn.Module):
    """The auto-encoder plus the codebook: ``codes`` (C + 1, K, E) with ``sizes`` (C + 1,) valid
    rows per class label (row 0, background, stays empty). They are buffers left out of the state
    dict: the codebook always comes from its file (MODEL.VRSP.SHAPE_PRIOR.FILE), so a model whose
    auto-encoder was trained jointly takes the codebook built after its training.

    Args:
        num_classes: foreground classes C.
        mask_size, channels, num_convs: of the auto-encoder.
        num_clusters: K, the codes kept per class (VRSP-Net: 1024).
    """

    def __init__(self, num_classes: int, mask_size: int, channels: int, num_convs: int, num_clusters: int):
        super().__init__()
        self.autoencoder = ShapeAutoEncoder(mask_size, channels, num_convs)
        self.num_clusters = num_clusters
        embedding_dim = self.autoencoder.embedding_dim
        self.register_buffer("codes", torch.zeros(num_classes + 1, num_clusters, embedding_dim), persistent=False)
        self.register_buffer("sizes", torch.zeros(num_classes + 1, dtype=torch.int64), persistent=False)
        self.file: Optional[str] = None  # the codebook file read by load_file, and its categories
        self.file_categories: Optional[list[dict]] = None

    def check_categories(self, categories: list[dict]) -> None:
        """Raise unless the loaded codebook file was built for ``categories`` (the model's dataset's)."""
        if self.file_categories is not None and self.file_categories != categories:
            built_for = [c.get("name") for c in self.file_categories]
            raise ShapePriorError(f"{self.file}: categories: built for {built_for}, "
                                  f"the model has {[c.get('name') for c in categories]}")

    @property
    def has_codebook(self) -> bool:
        return bool(self.sizes.any())

    def set_codebook(self, per_class: list[Optional[Tensor]]) -> None:
        """Store the codes of each class label (index 0 = background, None or (n, E) with n <= K)."""
        self.codes.zero_()
        self.sizes.zero_()
        for label, codes in enumerate(per_class):
            if codes is not None and len(codes):
                if len(codes) > self.num_clusters:
                    raise ValueError(f"class {label}: {len(codes)} codes, the codebook holds {self.num_clusters}")
                self.codes[label, : len(codes)] = codes.to(self.codes)
                self.sizes[label] = len(codes)

    def retrieve(self, embeddings: Tensor, labels: Tensor, k: int) -> Tensor:
        """(R, k, E): the k codes of each RoI's class nearest to its (R, E) embedding. Slots the class
        cannot fill (fewer than k codes, or none) take the query embedding itself, as VRSP-Net does."""
        codes = self.codes[labels]  # (R, K, E)
        distances = torch.cdist(embeddings[:, None], codes)[:, 0]  # (R, K)
        valid = torch.arange(self.num_clusters, device=labels.device) < self.sizes[labels][:, None]
        distances = distances.masked_fill(~valid, math.inf)
        nearest = distances.topk(k, dim=1, largest=False)
        picked = codes.gather(1, nearest.indices[..., None].expand(-1, -1, codes.shape[-1]))
        return torch.where(nearest.values.isfinite()[..., None], picked, embeddings[:, None].expand_as(picked))

    def nearest_shapes(self, masks: Tensor, labels: Tensor, k: int) -> Tensor:
        """(R, k, M, M) probabilities: the decoded k nearest codes of (R, M, M) masks of classes ``labels``."""
        return self.autoencoder.decode(self.retrieve(self.autoencoder.encode(masks), labels, k))

    def load_file(self, path: str, categories: Optional[list[dict]] = None) -> None:
        """Read a ``save_shape_prior`` file; ``categories`` (the model's) must be the file's if given."""
        try:
            content = read_torch_file(path)
        except UntrustedCheckpointError as err:
            # A shape-prior file of this project holds tensors and plain values only, and is never
            # unpickled fully (no command line offers it), so the read error's opt-in does not apply.
            raise ShapePriorError(f"{path}: holds objects other than tensors, plain values and arrays, "
                                  f"which a shape-prior file of this project never does; rebuild it with "
                                  f"scripts/build_shape_codebook.py") from err
        if not isinstance(content, dict) or content.get("format") != SHAPE_PRIOR_FORMAT:
            raise ShapePriorError(f"{path}: format: not a shape-prior file of this project "
                                  f"(expected {SHAPE_PRIOR_FORMAT!r})")
        self.file, self.file_categories = path, content["categories"]
        if categories is not None:
            self.check_categories(categories)
        try:
            self.autoencoder.load_state_dict(content["autoencoder"])
        except RuntimeError as err:
            raise ShapePriorError(f"{path}: autoencoder: does not fit MODEL.VRSP.SHAPE_PRIOR ({err})") from err
        codes, sizes = content["codes"], content["sizes"]
        if codes.shape[0] != self.codes.shape[0] or codes.shape[-1] != self.codes.shape[-1]:
            raise ShapePriorError(f"{path}: codes: shape {tuple(codes.shape)}, the model needs "
                                  f"({self.codes.shape[0]}, <= {self.num_clusters}, {self.codes.shape[-1]})")
        self.set_codebook([codes[label, : int(size)] for label, size in enumerate(sizes)])


def shape_prior_file_content(prior: ShapePrior, categories: list[dict]) -> dict:
    """What ``save_shape_prior`` writes: a self-describing dict, read back by ``ShapePrior.load_file``."""
    return {
        "format": SHAPE_PRIOR_FORMAT,
        "categories": categories,
        "autoencoder": {k: v.detach().cpu() for k, v in prior.autoencoder.state_dict().items()},
        "codes": prior.codes.detach().cpu(),
        "sizes": prior.sizes.detach().cpu(),
    }


def shape_prior_from_config(cfg) -> ShapePrior:
    """The shape prior of ``cfg`` (MODEL.VRSP.SHAPE_PRIOR) with the codebook of its FILE, if named."""
    prior_cfg = cfg.MODEL.VRSP.SHAPE_PRIOR
    mask_size = cfg.MODEL.ROI_MASK_HEAD.POOLER_RESOLUTION * UPSAMPLE_FACTOR
    prior = ShapePrior(cfg.MODEL.NUM_CLASSES, mask_size, prior_cfg.CHANNELS, prior_cfg.NUM_CONVS,
                       prior_cfg.NUM_CLUSTERS)
    if prior_cfg.FILE:
        prior.load_file(prior_cfg.FILE)
    return prior
