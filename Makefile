# The README's two commands:
#   make demo   install everything, then run the offline demo sweep end to end
#   make test   install everything, then lint and run the test suite (what .ci/run calls)
#
# TORCH_SPEC picks the torch build. The default, torch==2.13.0, installs a CPU build on machines with a
# local CPU wheel (pip's find-links) and is otherwise the regular PyPI wheel. On a CPU-only machine
# elsewhere use e.g. TORCH_SPEC="torch --index-url https://download.pytorch.org/whl/cpu"; on a GPU
# machine, the CUDA build you want (README "GPU install"). torch is installed first, so installing
# tlr_ray finds it satisfied and never pulls CUDA wheels by itself.
PYTHON ?= python3
VENV ?= .venv
TORCH_SPEC ?= torch==2.13.0
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: install browser demo lint test test-fast bench clean-demo

install: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -c "import torch" 2>/dev/null || $(BIN)/pip install -q $(TORCH_SPEC)
	$(BIN)/pip install -q -e ".[test]"
	touch $(STAMP)

demo: install
	$(BIN)/python -m tlr_ray.sweep sweeps/demo.yaml

browser:            # Debian's Chromium + ChromeDriver, for the MLflow UI browser test
	command -v chromium >/dev/null && command -v chromedriver >/dev/null || \
	  ($(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq chromium chromium-driver)

lint: install       # ruff, configured in pyproject.toml (rules E, F, I, B, UP)
	$(BIN)/ruff check .

test: install browser lint
	$(BIN)/python -m pytest -q

test-fast: install   # skip the end-to-end Ray runs
	$(BIN)/python -m pytest -q -m "not slow"

bench: install      # our TA loop vs adapters' AdapterTrainer (needs accelerate)
	$(BIN)/pip install -q -e ".[bench]"
	$(BIN)/python benchmarks/train_throughput.py

clean-demo:          # forget the demo's results (not the generated demo world in ~/.cache/tlr_ray)
	rm -rf runs mlflow.db
