# The README's two commands: `make demo` (main job) and `make test` (what CI runs).
# Each sets itself up on a fresh machine: a virtual environment in .venv with everything installed.

PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
OUT    ?= out

export JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION := 20
export CDK_DISABLE_CLI_TELEMETRY := true
export MPLBACKEND := Agg

.PHONY: setup deps layer realworld demo test lint typecheck pytest bench clean lock

# The runtime pins come from requirements.lock (the same as the Lambda layer's and the image's);
# the second install is constrained to those pins, without hashes (pip would demand hashes for
# every dev tool if the constraints carried them).
$(BIN)/.installed: requirements.txt requirements.lock requirements-dev.txt pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet --require-hashes -r requirements.lock
	sed -n 's/^\([A-Za-z0-9._-]*==[^ ]*\).*/\1/p' requirements.lock > $(VENV)/runtime-pins.txt
	$(BIN)/python -m pip install --quiet -c $(VENV)/runtime-pins.txt -r requirements-dev.txt -e .
	touch $@

# Tools the tests run outside the venv: Checkov in its own venv (its pins clash with ours) and
# the pinned CDK CLI (package-lock.json) that `npx cdk synth` uses.
CHECKOV := .cache/checkov-venv/bin/checkov
$(CHECKOV): requirements-checkov.txt
	$(PYTHON) -m venv .cache/checkov-venv
	.cache/checkov-venv/bin/python -m pip install --quiet -r requirements-checkov.txt
	touch $@

node_modules/.installed: package.json package-lock.json
	npm ci --no-audit --no-fund
	touch $@

setup: $(BIN)/.installed

## Main job: one clip at the monitoring defaults, one with shorter thresholds (--set), then the
## local A/B of both architectures on generated 720p25 and 1080p30 clips with
## injected defects. 20 s clips and no variant runs keep it to minutes on 2 cores; per-hour figures
## do not depend on the clip length (benchmarks/bench_cost.py); `vqa experiment` runs 60 s clips.
demo: setup
	$(BIN)/vqa corpus $(OUT)/sample-corpus
	$(BIN)/vqa analyze $(OUT)/sample-corpus/monitor.mp4
	$(BIN)/vqa analyze $(OUT)/sample-corpus/multi.mp4 --set black.min_duration=0.5 \
		--set freeze.min_duration=1 --set silence.min_duration=0.5
	$(BIN)/vqa experiment --profile-seconds 20 --no-variants --out $(OUT)/experiment

## Everything the tests fetch, fetched concurrently (it is mostly download time): the venv,
## Checkov's venv, the CDK CLI, the Lambda layer that synth bundles and the real-footage set.
deps: $(BIN)/.installed $(CHECKOV) node_modules/.installed layer realworld

# The layer for cdk.json's Lambda architecture, cached by the lock (stacks/constructs/packaging.py).
layer: setup
	$(BIN)/python -m stacks.constructs.packaging --architecture \
		$$($(BIN)/python -c 'import json; print(json.load(open("cdk.json"))["context"]["vqa"]["lambda_architecture"])')

# The real-footage set (tests/realworld.py); without a registry its tests skip, naming why.
realworld: setup
	$(BIN)/python -m tests.realworld

## All tests: lint, format, types, Dockerfile lint, then pytest (synth with the pinned CDK CLI,
## cfn-lint, cdk-nag and Checkov included). Type checking (a cold mypy spends most of its 100 s
## in aws_cdk's modules, on one core) runs while the rest of the dependencies download.
test:
	$(MAKE) --no-print-directory -j4 deps typecheck
	$(MAKE) --no-print-directory lint pytest

lint: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/hadolint containers/Dockerfile

typecheck: setup
	$(BIN)/mypy vqa stacks lambdas benchmarks app.py

pytest: setup $(CHECKOV) node_modules/.installed
	@$(BIN)/python -m pytest -q -n 2 --dist loadfile; rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "pytest collected no tests: that is a failure here" >&2; exit 1; fi; \
	exit $$rc

bench: setup
	$(BIN)/python -m benchmarks.bench_analyze

clean:
	rm -rf $(VENV) cdk.out .cache $(OUT) .pytest_cache .mypy_cache .ruff_cache

## Re-resolve requirements.lock from requirements.txt (keeping its pins unless UPGRADE=1): Python
## 3.12 wheels for the Lambda layer and the image, checked to resolve alike on arm64 and on 3.11.
UV_VERSION := 0.13.8
UV := .cache/uv/bin/uv
LOCK_ARGS = requirements.txt --generate-hashes --only-binary :all: --no-python-downloads \
	--custom-compile-command "make lock"
lock:
	test -x $(UV) || { $(PYTHON) -m venv .cache/uv && .cache/uv/bin/pip install -q uv==$(UV_VERSION); }
	$(UV) pip compile $(LOCK_ARGS) $(if $(UPGRADE),--upgrade) --python-version 3.12 \
		--python-platform x86_64-manylinux_2_28 --quiet -o requirements.lock
	for target in aarch64-manylinux_2_28:3.12 x86_64-manylinux_2_28:3.11; do \
		cp requirements.lock .cache/uv/lock-check.txt && \
		$(UV) pip compile $(LOCK_ARGS) --python-platform $${target%:*} \
			--python-version $${target#*:} --quiet -o .cache/uv/lock-check.txt && \
		cmp requirements.lock .cache/uv/lock-check.txt || \
		{ echo "requirements.lock: pins differ for $$target" >&2; exit 1; }; \
	done
