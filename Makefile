# Two commands set everything up on a fresh machine: `make demo` and `make test`.
# Both first check the system packages they need (scripts/system-packages.sh: installed with apt
# when run as root, otherwise the one command to run is printed before any long step), then create
# .venv (Python 3.11 or 3.12) and install the pinned packages when it is missing or pyproject.toml changed.
PYTHON ?= $(shell command -v python3.11 || command -v python3.12 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
PYTEST_ARGS ?=
# Two pytest processes, whole test files each, the slowest file first (tests/conftest.py): the end-to-end
# batch grades on one while the other runs the rest. PYTEST_XDIST= runs them in one process.
PYTEST_XDIST ?= -n 2 --dist loadfile --no-loadscope-reorder

export TF_CPP_MIN_LOG_LEVEL := 3
export TF_ENABLE_ONEDNN_OPTS := 0
export PYTHONHASHSEED := 0

.PHONY: demo test lint check build examples grade bench clean system-demo system-test

system-demo:
	@bash scripts/system-packages.sh demo

system-test:
	@bash scripts/system-packages.sh test

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

## demo: grade the bundled example submissions and print the table (./demo-output)
demo: system-demo $(STAMP)
	$(BIN)/course demo

## test: lint, then the whole test suite (real kernels, real models; about 15 minutes on 2 cores, plus the venv)
test: system-test $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/python -m pytest -q $(PYTEST_XDIST) $(PYTEST_ARGS)

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

## check: validate course.yml, the source notebooks, release/solutions sync and leaks
check: $(STAMP)
	$(BIN)/course check

## build: regenerate release/, solutions/ and cnnvis/settings.json (ASSIGNMENT=id for one)
build: $(STAMP)
	$(BIN)/course build $(if $(ASSIGNMENT),--assignment $(ASSIGNMENT))

## examples: regenerate examples/submissions from release/, source/ and examples/mistakes
examples: $(STAMP)
	$(BIN)/python -m autograder.examples

## grade: make grade SUBMISSIONS=path/to/submissions [OUT=grading-output]
grade: system-demo $(STAMP)
	test -n "$(SUBMISSIONS)" || (echo "usage: make grade SUBMISSIONS=DIR [OUT=DIR]"; exit 2)
	$(BIN)/course grade $(SUBMISSIONS) --out $(or $(OUT),grading-output)

bench: $(STAMP)
	$(BIN)/python benchmarks/heatmaps.py
	$(BIN)/python benchmarks/grading.py

clean:
	rm -rf $(VENV) .pytest_cache build *.egg-info demo-output grading-output
