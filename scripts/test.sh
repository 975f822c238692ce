#!/usr/bin/env bash
# Set up the environment (idempotent), lint (ruff, settings in pyproject.toml), then run the whole
# test suite on the CPU.
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bash "$repo/scripts/setup.sh"
cd "$repo"
"$repo/.venv/bin/ruff" check .
exec "$repo/.venv/bin/python" -m pytest -q "$@" tests
