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
    lines += ["", "Visible masks", header, _row("both", "all", metrics["visible"], columns)]
    lines += ["", "Invisible masks (hidden parts, amodal minus visible; occluded ground truth only)", header,
              _row("both", "all", metrics["invisible"], columns), ""]
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
    hidden = metrics["hidden_pixels"]
    lines.append(f"Hidden pixels of the {hidden['matched_objects']} matched objects: "
                 f"recall {_number(hidden['recall'])} of {hidden['gt_hidden']} ground-truth hidden, "
                 f"precision {_number(hidden['precision'])} of {hidden['predicted_hidden']} predicted hidden "
                 f"inside the ground-truth amodal masks")
    overlap = metrics["overlap_visible"]
    lines.append(f"Overlap of the {overlap['pairs']} matched pairs ({overlap['overlap_pixels']} pixels) called "
                 f"visible: front {_number(overlap['front'])} (ideal 1), back {_number(overlap['back'])} (ideal 0)")
    if "per_class" in metrics:
        width = max(len(name) for name in metrics["per_class"])
        lines += ["", "Per-class amodal AP (all objects)"]
        lines += [f"  {name:<{width}}  {_number(ap)}" for name, ap in metrics["per_class"].items()]
    lines += ["", f"{NOT_DEFINED}: undefined, no ground truth in that subset (e.g. no stuff in the dataset) "
                  f"or nothing to divide by; {UNDEFINED:g} in metrics.json"]
    return "\n".join(lines)


def _row(label: str, bucket: str, summary: dict, columns: list[str]) -> str:
    return f"{label:<8}{bucket:<9}" + "".join(f"{_number(summary[c]):>8}" for c in columns)


def _number(value: float) -> str:
    return NOT_DEFINED if value == UNDEFINED else f"{value:.3f}"
