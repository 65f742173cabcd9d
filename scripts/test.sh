#!/usr/bin/env bash
# Install, lint, and run the whole test suite (fast tests + the real-model quickstart test).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install.sh
. .venv/bin/activate
ruff check src tests bench
python -m pytest -q "$@"
