"""metrics.json and the printed tables."""
from __future__ import annotations

import json

from ..fileio import atomic_write
from .metrics import UNDEFINED

SPLIT_LABELS = {"amodal": "both", "amodal_things": "things", "amodal_stuff": "stuff"}
NOT_DEFINED = "n/a"


def write_metrics(metrics: dict, path: str) -> None:
    """Write atomically (``fileio.atomic_write``) so a crash never leaves half a file."""
    atomic_write(path, lambda f: json.dump(metrics, f, indent=2))


def format_report(metrics: dict) -> str:
    columns = list(metrics["amodal"]["all"])
    header = f"{'split':<8}{'bucket':<9}" + "".join(f"{c:>8}" for c in columns)
    lines = ["Amodal masks (AP: mean over IoU .50:.95 and categories; ARn: recall at n detections per image "
             "and category)", header]
    for family, label in SPLIT_LABELS.items():
        for n, (bucket, summary) in enumerate(metrics[family].items()):
            lines.append(_row(label if n == 0 else "", bucket, summary, columns))
    lines += ["", "Visible masks", header, _row("both", "all", metrics["visible"], columns), ""]
    occluded = metrics["occluded"]
    lines += [
        "Occluded objects (AP over IoU .50:.95)",
        f"  mAP(Occluded), VRSP-Net definition   {_number(occluded['vrsp_AP'])}",
        f"  ground-truth occluded subset         {_number(occluded['gt_subset_AP'])}",
        "",
    ]
    depth = metrics["depth_order"]
    lines.append(f"Depth order: accuracy {_number(depth['accuracy'])} on {depth['matched_pairs']} matched pairs "
                 f"of {depth['pairs']} overlapping, ordered ground-truth pairs")
    if "per_class" in metrics:
        width = max(len(name) for name in metrics["per_class"])
        lines += ["", "Per-class amodal AP (all objects)"]
        lines += [f"  {name:<{width}}  {_number(ap)}" for name, ap in metrics["per_class"].items()]
    lines += ["", f"{NOT_DEFINED}: undefined, no ground truth in that subset (e.g. no stuff in the dataset); "
                  f"{UNDEFINED:g} in metrics.json"]
    return "\n".join(lines)


def _row(label: str, bucket: str, summary: dict, columns: list[str]) -> str:
    return f"{label:<8}{bucket:<9}" + "".join(f"{_number(summary[c]):>8}" for c in columns)


def _number(value: float) -> str:
    return NOT_DEFINED if value == UNDEFINED else f"{value:.3f}"
