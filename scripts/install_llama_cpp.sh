#!/usr/bin/env bash
# Build llama-cpp-python from its PyPI sdist for the active Python, with AMX off, and keep llama.cpp's own
# converters (convert_hf_to_gguf.py, convert_lora_to_gguf.py, gguf-py) under <sys.prefix>/share/llama.cpp,
# where `ftatlas export --to gguf` looks for them.
#
# Why from source with these flags: a default (GGML_NATIVE) build compiles ggml's AMX kernels on AMX CPUs
# and has crashed there. Here GGML_NATIVE is off, AVX2/FMA/F16C are on (any x86-64 of the last decade),
# AVX512 (F/VNNI/BF16/VBMI) is switched on only when this CPU has it, and AMX is always off.
# The built wheel is cached (by version + flags), so a second run installs in seconds.
#
# usage: PYTHON=.venv/bin/python bash scripts/install_llama_cpp.sh [--wheel-only]
#   --wheel-only: build (or find) the cached wheel and stop, installing nothing.
set -euo pipefail
PY=${PYTHON:-python3}
VERSION=${LLAMA_CPP_PYTHON_VERSION:-0.3.36}
CACHE=${FTATLAS_WHEEL_CACHE:-$HOME/.cache/ftatlas/llama-cpp-wheels}

flags=(-DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON
       -DGGML_AMX_TILE=OFF -DGGML_AMX_INT8=OFF -DGGML_AMX_BF16=OFF
       -DLLAVA_BUILD=OFF -DGGML_CCACHE=OFF)
cpu=$(grep -m1 '^flags' /proc/cpuinfo 2>/dev/null || true)
has() { [[ " $cpu " == *" $1 "* ]]; }
if [ "$(uname -m)" != x86_64 ]; then
  flags=(-DGGML_NATIVE=OFF -DLLAVA_BUILD=OFF -DGGML_CCACHE=OFF)  # non-x86: ggml's portable defaults
elif has avx512f && has avx512bw && has avx512vl && has avx512dq; then
  flags+=(-DGGML_AVX512=ON)
  has avx512_vnni && flags+=(-DGGML_AVX512_VNNI=ON)
  has avx512_bf16 && flags+=(-DGGML_AVX512_BF16=ON)
  has avx512vbmi && flags+=(-DGGML_AVX512_VBMI=ON)
fi
key=$(echo "$VERSION ${flags[*]}" | sha1sum | cut -c1-12)
mkdir -p "$CACHE/$key"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

sdist="$CACHE/llama_cpp_python-$VERSION.tar.gz"  # kept: the converters come from it on every run
[ -f "$sdist" ] || "$PY" -m pip download -q --no-deps --no-binary :all: "llama-cpp-python==$VERSION" -d "$CACHE"
tar xzf "$sdist" -C "$work"
src="$work/llama_cpp_python-$VERSION"

if ! ls "$CACHE/$key"/llama_cpp_python-*.whl >/dev/null 2>&1; then
  echo "building llama-cpp-python $VERSION with: ${flags[*]}" >&2
  start=$(date +%s)
  CMAKE_ARGS="${flags[*]}" CMAKE_BUILD_PARALLEL_LEVEL=$(nproc) \
    "$PY" -m pip wheel -q --no-deps "$src" -w "$CACHE/$key"
  echo "built in $(( $(date +%s) - start )) s (cached in $CACHE/$key)" >&2
fi
[ "${1:-}" = --wheel-only ] && { ls "$CACHE/$key"/llama_cpp_python-*.whl; exit 0; }
"$PY" -m pip install -q "$CACHE/$key"/llama_cpp_python-*.whl

# llama.cpp's converters, exactly as shipped in the same sdist (they match the library that reads their output).
share=$("$PY" -c 'import sys; print(sys.prefix)')/share/llama.cpp
rm -rf "$share"
mkdir -p "$share"
vendor="$src/vendor/llama.cpp"
cp "$vendor"/convert_hf_to_gguf.py "$vendor"/convert_lora_to_gguf.py "$share"/
cp -r "$vendor"/gguf-py "$share"/gguf-py
[ -d "$vendor/conversion" ] && cp -r "$vendor"/conversion "$share"/conversion
echo "$VERSION" > "$share/VERSION"
"$PY" -c 'import llama_cpp; print("llama-cpp-python", llama_cpp.__version__, "ok")'
echo "converters: $share" >&2
