#!/usr/bin/env bash
# Set up the environment (idempotent), then run the whole test suite on the CPU.
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bash "$repo/scripts/setup.sh"
cd "$repo"
exec "$repo/.venv/bin/python" -m pytest -q "$@" tests
