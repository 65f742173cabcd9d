#!/usr/bin/env bash
# Install, then run the quickstart on the embedded model (base vs LoRA SFT, measured).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install.sh
. .venv/bin/activate
ftatlas quickstart "$@"
