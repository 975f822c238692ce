"""Small files in the real schemas of the upstream datasets (COCOA, D2SA, KINS, SLN's .npz folders) and
the masks a reader must give for them; shared by the reader, converter and bad-input tests.
"""
import json
import os

import numpy as np

from sln_amodal.data.readers.sln_npz import write_sln_npz
from sln_amodal.structures.masks import decode_rle, encode_mask, segmentation_to_rle

H, W = 24, 32


def rect(x0, y0, x1, y1):
    """A flat polygon [x1, y1, x2, y2, ...] tracing an axis-aligned rectangle."""
    return [x0, y0, x1, y0, x1, y1, x0, y1]


def polygon_mask(polygon):
    return decode_rle(segmentation_to_rle(polygon, H, W))


def write_json(path, data):
    with open(path, "w", encoding="utf-8") as f:
        json.dump(data, f)
    return str(path)


# ------------------------------------------------------------------------------------ COCOA
COCOA_FRONT, COCOA_BACK, COCOA_SIDE = rect(2, 2, 12, 12), rect(8, 8, 20, 20), rect(22, 4, 30, 10)


def write_cocoa(path):
    """Image 1 has two annotator records, image 2 one, image 3 none; one record names image 99."""
    front, back = polygon_mask(COCOA_FRONT), polygon_mask(COCOA_BACK)
    regions = [
        {"segmentation": COCOA_FRONT, "name": "cup", "area": 100.0, "isStuff": 0, "occlude_rate": 0.0, "order": 1},
        # Occluded by the cup: the only region carrying visible_mask / invisible_mask (string counts).
        {"segmentation": COCOA_BACK, "name": "table", "area": 144.0, "isStuff": 1, "order": 3,
         "occlude_rate": float((back & front).sum() / back.sum()),
         "visible_mask": encode_mask(back & ~front), "invisible_mask": encode_mask(back & front)},
        {"segmentation": [1, 1, 3, 3], "name": "speck", "area": 0.0, "isStuff": 0, "occlude_rate": 0.0, "order": 4},
        {"segmentation": COCOA_SIDE, "name": "box", "area": 48.0, "isStuff": False, "occlude_rate": 0.0, "order": 6},
    ]
    data = {
        "images": [{"id": i, "file_name": f"COCO_val2014_{i:012d}.jpg", "height": H, "width": W} for i in (1, 2, 3)],
        "annotations": [
            {"id": 11, "image_id": 1, "author": "ann1", "size": 4, "regions": regions,
             "depth_constraint": "1-2,1-3,2-4,x-y"},
            {"id": 12, "image_id": 2, "author": "ann1", "size": 1, "depth_constraint": "",
             "regions": [{"segmentation": rect(5, 5, 15, 15), "name": "dog", "area": 100.0, "isStuff": 0,
                          "occlude_rate": 0.0, "order": 1}]},
            {"id": 13, "image_id": 1, "author": "ann2", "size": 1,
             "regions": [{"segmentation": rect(0, 0, 10, 10), "name": "mug", "area": 100.0, "isStuff": 0,
                          "occlude_rate": 0.0, "order": 2}]},
            {"id": 14, "image_id": 99, "author": "ann1", "size": 0, "regions": []},
        ],
    }
    return write_json(path, data)


def cocoa_expected_masks():
    """(amodal, visible) of image 1's kept regions, first annotator."""
    front, back, side = (polygon_mask(p) for p in (COCOA_FRONT, COCOA_BACK, COCOA_SIDE))
    return [front, back, side], [front, back & ~front, side]


# ------------------------------------------------------------------------------------- D2SA
D2SA_BACK, D2SA_FRONT = rect(4, 4, 20, 18), rect(14, 2, 26, 12)


def write_d2sa(path):
    """Image 10: two objects (and three bad ones); image 11: no annotations; image 12: one object
    ranked by ``amodal_region.order`` and one whose box lies outside the image."""
    back, front = polygon_mask(D2SA_BACK), polygon_mask(D2SA_FRONT)
    images = [{"id": i, "file_name": f"D2S_{i:06d}.jpg", "height": H, "width": W} for i in (10, 11, 12)]
    annotations = [
        {"id": 1, "image_id": 10, "category_id": 7, "segmentation": [D2SA_BACK], "bbox": [4, 4, 16, 14],
         "visible_mask": encode_mask(back & ~front), "invisible_mask": encode_mask(back & front),
         "occlude_rate": float((back & front).sum() / back.sum()), "occl_depth": 2, "iscrowd": False,
         "area": float(back.sum())},
        {"id": 2, "image_id": 10, "category_id": 60, "segmentation": encode_mask(front), "bbox": [14, 2, 12, 10],
         "visible_mask": [D2SA_FRONT], "occlude_rate": 0.0, "occl_depth": 0, "iscrowd": True,
         "area": float(front.sum())},
        {"id": 3, "image_id": 10, "category_id": 61, "segmentation": [D2SA_FRONT], "visible_mask": [D2SA_FRONT]},
        {"id": 4, "image_id": 10, "category_id": 5, "segmentation": [D2SA_FRONT],
         "invisible_mask": encode_mask(front & back)},
        {"id": 5, "image_id": 12, "category_id": 3, "segmentation": [D2SA_FRONT], "bbox": [100, 100, 5, 5],
         "visible_mask": [D2SA_FRONT], "occl_depth": 0, "iscrowd": False},
        {"id": 6, "image_id": 12, "category_id": 3, "segmentation": [D2SA_BACK], "bbox": [4, 4, 16, 14],
         "visible_mask": [D2SA_BACK], "iscrowd": False, "amodal_region": {"order": 1, "isStuff": 0}},
    ]
    categories = [{"id": i, "name": f"product_{i}", "supercategory": "d2s"} for i in range(1, 61)]
    return write_json(path, {"images": images, "annotations": annotations, "categories": categories})


def d2sa_expected_masks():
    """(amodal, visible) of image 10's kept objects."""
    back, front = polygon_mask(D2SA_BACK), polygon_mask(D2SA_FRONT)
    return [back, front], [back & ~front, front]


# ------------------------------------------------------------------------------------- KINS
KINS_CATEGORIES = [{"id": i, "name": n} for i, n in enumerate(
    ["cyclist", "pedestrian", "rider", "car", "tram", "truck", "van", "misc"], start=1)]


KINS_SHAPES = [rect(2, 2, 14, 14), rect(10, 6, 22, 18), rect(18, 2, 30, 12), rect(0, 16, 8, 23)]


def write_kins(path, schema):
    """Four objects in one image: three in occlusion cluster 1 (in-cluster orders 2, 1, 3) and one
    alone in cluster 2; plus a degenerate polygon and an object of the unused category 3."""
    amodal_key, visible_key, box_key = {
        "2020": ("a_segm", "i_segm", "a_bbox"), "instances": ("segmentation", "inmodal_seg", "bbox")}[schema]
    annotations = []
    clusters, orders, categories = [1, 1, 1, 2], [2, 1, 3], [1, 4, 8, 2]
    for i, (shape, category) in enumerate(zip(KINS_SHAPES, categories)):
        x0, y0 = shape[0], shape[1]
        ann = {"id": i + 1, "image_id": 7, "category_id": category, amodal_key: [shape],
               visible_key: [rect(x0, y0, x0 + 4, y0 + 4)], box_key: [x0, y0, shape[2] - x0, shape[5] - y0],
               "iscrowd": 0}
        if schema == "2020":
            ann.update(oco_id=clusters[i], ico_id=orders[i] if i < 3 else 1, i_bbox=[x0, y0, 4, 4])
        else:
            ann["inmodal_bbox"] = [x0, y0, 4, 4]
        annotations.append(ann)
    annotations.append({**annotations[0], "id": 5, amodal_key: [[1, 1, 2, 2]]})
    annotations.append({**annotations[0], "id": 6, "category_id": 3})
    images = [{"id": 7, "file_name": "000007.png", "height": H, "width": W}]
    return write_json(path, {"images": images, "annotations": annotations, "categories": KINS_CATEGORIES})


# -------------------------------------------------------------------------------------- SLN
def sln_masks():
    """Three objects front-first: 0 covers part of 1; 2 stands apart."""
    amodal = np.stack([polygon_mask(rect(2, 2, 12, 12)), polygon_mask(rect(8, 8, 20, 20)),
                       polygon_mask(rect(22, 2, 30, 10))])
    visible = amodal.copy()
    visible[1] &= ~amodal[0]
    return amodal, visible


def write_sln_folder(folder):
    """a.jpg: the three objects; b.jpg: the middle object empty; c.jpg: no .npz; d.jpg: corrupt .npz."""
    os.makedirs(folder, exist_ok=True)
    amodal, visible = sln_masks()
    write_sln_npz(os.path.join(folder, "a.npz"), visible, amodal)
    empty_middle = amodal.copy()
    empty_middle[1] = False
    write_sln_npz(os.path.join(folder, "b.npz"), visible & empty_middle, empty_middle)
    with open(os.path.join(folder, "d.npz"), "wb") as f:
        f.write(b"not an archive")
    for name in ("a.jpg", "b.jpg", "c.jpg", "d.jpg"):
        with open(os.path.join(folder, name), "wb") as f:
            f.write(b"")
    return str(folder)
