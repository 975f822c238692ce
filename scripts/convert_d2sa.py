"""Convert D2S amodal (D2SA) annotations to the project's amodal COCO JSON.

    python scripts/convert_d2sa.py --ann D2S_amodal_validation.json [--images images] --out val.json [--strict]
"""
import sys

from _common import converter_main

if __name__ == "__main__":
    sys.exit(converter_main("D2SA", __doc__))
