#!/usr/bin/env bash
# Install, lint, and run the whole test suite (fast tests + the real-model quickstart test).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install.sh
. .venv/bin/activate
ruff check src tests bench
# Tests in parallel processes (pytest-xdist; a test file stays in one), one per core up to 4, each holding its own
# fixtures' models; tests/conftest.py shares the cores out among them. Add -n 0 to run in one process.
WORKERS=$(( $(nproc) < 4 ? $(nproc) : 4 ))
python -m pytest -q -n "$WORKERS" --dist loadfile "$@"
