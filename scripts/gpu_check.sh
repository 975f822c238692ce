#!/usr/bin/env bash
# The GPU check in one command (scripts/gpu_check.py): sets up the environment, then runs every
# section on the GPU and prints one JSON line last. Without a GPU it says so and exits 0;
# --dry-run exercises the whole script on the CPU at tiny sizes.
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bash "$repo/scripts/setup.sh" >&2
exec "$repo/.venv/bin/python" "$repo/scripts/gpu_check.py" "$@"
