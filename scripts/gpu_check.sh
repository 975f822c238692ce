#!/usr/bin/env bash
# The GPU check in one command (scripts/gpu_check.py): runs every section on the GPU and prints one
# JSON line last. Without a GPU it says so and exits 0; --dry-run exercises the whole script on the
# CPU at tiny sizes.
#
# Interpreter: a python3 that already holds the packages (a GPU machine's image), else the one of
# .venv/ (scripts/setup.sh). A GPU image without network that lacks some of them (pycocotools)
# takes wheels from .whl/ in the repository (pip download them where pip works, carry the folder).
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
needed="import torch, torchvision, pycocotools, skimage, yaml, tqdm, tensorboard, matplotlib"
if [ -d "$repo/.whl" ] && ! python3 -c "$needed" 2>/dev/null; then
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
        --target /tmp/sln_amodal_site "$repo"/.whl/*.whl >&2
    export PYTHONPATH="/tmp/sln_amodal_site${PYTHONPATH:+:$PYTHONPATH}"
fi
if python3 -c "$needed" 2>/dev/null; then
    python=python3
    export PYTHONPATH="$repo${PYTHONPATH:+:$PYTHONPATH}"  # the package, not installed in that image
else
    bash "$repo/scripts/setup.sh" >&2
    python="$repo/.venv/bin/python"
fi
exec "$python" "$repo/scripts/gpu_check.py" "$@"
