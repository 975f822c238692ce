"""The maths core of the Semantics Layering Network: depth order, layering targets, decoding."""
from .decoding import decode_detections, decode_sem_dist, paste_sem_dist, pairwise_order_from_layers
from .depth_relation import (
    depth_ranks_from_order,
    order_from_visible_overlap,
    pairwise_overlap_sums,
    resolve_depth_order,
)
from .targets import (
    NO_LAYER,
    global_layering_map,
    instance_layering_maps,
    occlusion_layers,
    occlusion_rate,
    resolve_dist_saturation,
    roi_grid_pixels,
    roi_layering_targets,
    roi_cover_levels,
    sem_dist_from_layers,
)

__all__ = [
    "NO_LAYER",
    "decode_detections",
    "decode_sem_dist",
    "depth_ranks_from_order",
    "global_layering_map",
    "instance_layering_maps",
    "occlusion_layers",
    "occlusion_rate",
    "order_from_visible_overlap",
    "pairwise_order_from_layers",
    "pairwise_overlap_sums",
    "paste_sem_dist",
    "resolve_depth_order",
    "resolve_dist_saturation",
    "roi_grid_pixels",
    "roi_layering_targets",
    "roi_cover_levels",
    "sem_dist_from_layers",
]
