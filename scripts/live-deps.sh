#!/usr/bin/env bash
# Live-model dependencies for `make live` and CI: llama-cpp-python's OpenAI-compatible server and the
# SmolLM2 weights (the smoke test's model). PyPI ships llama-cpp-python as source only, so the wheel is
# built once with portable CPU flags (~5 min on 2 cores) and cached in $FLOWFRONT_WHEELS; every later
# run installs the cached wheel in seconds. A failed build never fails the caller: the live tests then
# skip and say why.
set -uo pipefail
cd "$(dirname "$0")/.."
BIN=.venv/bin
WHEELS=${FLOWFRONT_WHEELS:-$HOME/.cache/flowfront/wheels}
VERSION=0.3.36
mkdir -p "$WHEELS"
wheel=$(ls "$WHEELS"/llama_cpp_python-$VERSION-*.whl 2>/dev/null | head -n 1)
if [ -z "$wheel" ]; then
  echo "live: building llama-cpp-python $VERSION once (portable AVX2 flags; cached in $WHEELS)"
  if ! CMAKE_BUILD_PARALLEL_LEVEL=2 CMAKE_ARGS="-DGGML_NATIVE=OFF -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON" \
      "$BIN/pip" wheel --quiet --no-deps "llama-cpp-python==$VERSION" -w "$WHEELS" > "$WHEELS/build.log" 2>&1; then
    echo "live: the llama-cpp-python build failed (see $WHEELS/build.log); live tests will be skipped"
    exit 0
  fi
  wheel=$(ls "$WHEELS"/llama_cpp_python-$VERSION-*.whl | head -n 1)
fi
"$BIN/pip" install --quiet "${wheel}[server]" || { echo "live: installing $wheel failed; live tests will be skipped"; exit 0; }
"$BIN/pip" install --quiet -e '.[live]' || { echo "live: installing the [live] extra failed"; exit 0; }
for model in ${FLOWFRONT_LIVE_MODELS:-smollm2-135m-instruct}; do
  "$BIN/flowfront" models install "$model" || echo "live: could not install $model; live tests will be skipped"
done
