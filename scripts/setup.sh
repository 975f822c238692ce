#!/usr/bin/env bash
# Create .venv in the repository (if missing) and install requirements.txt into it: the package
# itself editable (pyproject.toml), its dependencies and the test tools.
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
want="$(cat "$repo/requirements.txt" "$repo/pyproject.toml" | sha256sum | cut -d' ' -f1)"
# Up to date: same requirements, and this checkout's package is the one installed (editable).
installed_here="import sln_amodal, os, sys; sys.exit(os.path.dirname(os.path.abspath(sln_amodal.__file__)) != os.path.join('$repo', 'sln_amodal'))"
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ] && (cd / && "$venv/bin/python" -c "import torch, torchvision, pycocotools; $installed_here") 2>/dev/null; then
    echo "[setup] .venv is up to date"
    exit 0
fi

echo "[setup] installing requirements (first run takes a few minutes)"
# This machine's pip config names optional local package folders; silence its "ignored" notes.
quiet_pip() { "$venv/bin/python" -m pip "$@" 2> >(grep -v "is ignored: it is neither a file nor a directory" >&2); }
quiet_pip install --quiet --upgrade pip
(cd "$repo" && quiet_pip install --quiet -r requirements.txt)
echo "$want" > "$stamp"
"$venv/bin/python" -c "import torch, torchvision; print(f'[setup] torch {torch.__version__}, torchvision {torchvision.__version__}')"
