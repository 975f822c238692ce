"""Convert KINS annotations (instances_*.json or update_*_2020.json) to the project's amodal COCO JSON.

    python scripts/convert_kins.py --ann instances_val.json [--images testing/image_2] --out val.json [--strict]
"""
import sys

from _common import converter_main

if __name__ == "__main__":
    sys.exit(converter_main("KINS", __doc__))
