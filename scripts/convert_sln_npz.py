"""Convert SLN layered annotations (a <stem>.npz beside each image) to the project's amodal COCO JSON.

    python scripts/convert_sln_npz.py --images val2014 --out val.json [--strict]
"""
import sys

from _common import converter_main

if __name__ == "__main__":
    sys.exit(converter_main("SLN", __doc__))
