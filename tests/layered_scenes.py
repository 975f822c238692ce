"""Random layered scenes: ellipses and rectangles in a random global depth order, with exact visible
masks; shared by the layering-target and decoding tests.
"""
import torch


def random_scene(generator: torch.Generator, side: int, num_objects: int):
    """Random ellipses and rectangles in a random global depth order, on a side x side image.

    Visible masks come from painting back to front, so they are exact. Returns amodal and visible
    (N, side, side) bool and depth_rank (N,) int64 (1 = front-most).
    """
    coords = torch.arange(side) + 0.5
    ys, xs = coords[:, None], coords[None, :]
    centres = torch.rand((num_objects, 2), generator=generator) * side
    radii = side * (0.15 + 0.3 * torch.rand((num_objects, 2), generator=generator))
    cy, cx = centres[:, 0, None, None], centres[:, 1, None, None]
    ry, rx = radii[:, 0, None, None], radii[:, 1, None, None]
    ellipses = ((ys - cy) / ry) ** 2 + ((xs - cx) / rx) ** 2 <= 1
    rectangles = ((ys - cy).abs() <= ry) & ((xs - cx).abs() <= rx)
    is_ellipse = torch.rand(num_objects, generator=generator)[:, None, None] < 0.5
    amodal = torch.where(is_ellipse, ellipses, rectangles)

    depth_rank = torch.randperm(num_objects, generator=generator) + 1
    front_first = torch.argsort(depth_rank)
    painted = amodal[front_first].int()
    covered_in_front = painted.cumsum(dim=0) - painted
    visible = torch.empty_like(amodal)
    visible[front_first] = amodal[front_first] & (covered_in_front == 0)
    return amodal, visible, depth_rank
