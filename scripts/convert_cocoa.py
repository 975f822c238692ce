r"""Convert COCOA (amodalAPI JSON) to the project's amodal COCO JSON.

    python scripts/convert_cocoa.py --ann COCO_amodal_val2014.json [--images val2014] --out val.json \
        [--annotator N] [--strict]
"""
import sys

from _common import converter_main

if __name__ == "__main__":
    sys.exit(converter_main("COCOA", __doc__))
