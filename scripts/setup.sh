#!/usr/bin/env bash
# Create .venv in the repository (if missing) and install requirements.txt into it.
# Safe to run any number of times: a stamp file skips pip when requirements are unchanged.
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="$repo/.venv"
python_bin="${PYTHON:-python3}"

if [ ! -x "$venv/bin/python" ]; then
    echo "[setup] creating $venv"
    "$python_bin" -m venv "$venv"
fi

stamp="$venv/.requirements.sha256"
want="$(sha256sum "$repo/requirements.txt" | cut -d' ' -f1)"
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ] && "$venv/bin/python" -c "import torch, torchvision, pycocotools" 2>/dev/null; then
    echo "[setup] .venv is up to date"
    exit 0
fi

echo "[setup] installing requirements (first run takes a few minutes)"
# This machine's pip config names optional local package folders; silence its "ignored" notes.
quiet_pip() { "$venv/bin/python" -m pip "$@" 2> >(grep -v "is ignored: it is neither a file nor a directory" >&2); }
quiet_pip install --quiet --upgrade pip
quiet_pip install --quiet -r "$repo/requirements.txt"
echo "$want" > "$stamp"
"$venv/bin/python" -c "import torch, torchvision; print(f'[setup] torch {torch.__version__}, torchvision {torchvision.__version__}')"
