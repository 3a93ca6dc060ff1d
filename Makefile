# The two commands of the README: `make demo` and `make test`. Both install into .venv first.
# `make demo` searches MNIST-1D with 2 local trainers (a few minutes on 2 cores).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install demo test lint bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

demo: install
	rm -rf runs/demo
	$(BIN)/engine run --run runs/demo --config examples/mnist1d.toml --trainers 2 --trials 12

test: install
	$(BIN)/ruff check engine trainers blocks replay tests benchmarks
	$(BIN)/lint-imports
	$(BIN)/python -m pytest -q

bench: install
	$(BIN)/python -m pip install --quiet -e '.[dev,bench]'
	$(BIN)/python benchmarks/nb201_search.py
	$(BIN)/python benchmarks/throughput.py
	$(BIN)/python benchmarks/hostile.py
	$(BIN)/python benchmarks/report.py

clean:
	rm -rf $(VENV) runs *.egg-info
