# The README's two commands: `make demo` (main job) and `make test` (what CI runs).
# Each sets itself up on a fresh machine: a virtual environment in .venv with everything installed.

PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
OUT    ?= out

export JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION := 20
export CDK_DISABLE_CLI_TELEMETRY := true
export MPLBACKEND := Agg

.PHONY: setup demo test lint typecheck pytest bench clean

$(BIN)/.installed: requirements.txt requirements-dev.txt pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -r requirements-dev.txt -e .
	touch $@

setup: $(BIN)/.installed

## Main job: the local A/B of both architectures on a generated sample clip with injected defects.
demo: setup
	$(BIN)/vqa corpus $(OUT)/sample-corpus
	$(BIN)/vqa analyze $(OUT)/sample-corpus/multi.mp4
	$(BIN)/vqa experiment --out $(OUT)/experiment

## All tests: lint, format, types, Dockerfile lint, then pytest (synth, cfn-lint, cdk-nag included).
test: setup lint typecheck pytest

lint: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/hadolint containers/Dockerfile

typecheck: setup
	$(BIN)/mypy vqa stacks lambdas benchmarks app.py

pytest: setup
	@$(BIN)/python -m pytest -q -n 2 --dist loadfile; rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "pytest collected no tests: that is a failure here" >&2; exit 1; fi; \
	exit $$rc

bench: setup
	$(BIN)/python -m benchmarks.bench_analyze

clean:
	rm -rf $(VENV) cdk.out .cache $(OUT) .pytest_cache .mypy_cache .ruff_cache
