# Two commands do all the set-up on a fresh machine (see README.md):
#   make run    create .venv if missing, then run the tiny default DAG
#   make test   create .venv if missing, then run the test suite
# The venv takes the CPU build of torch 2.13.0 first (no multi-GB CUDA download),
# then the project with the exact versions of requirements.lock.

PYTHON ?= python3
VENV := .venv
STAMP := $(VENV)/.installed-stamp
CORES ?= all
SNAKEMAKE_ARGS ?=
export PATH := $(CURDIR)/$(VENV)/bin:$(PATH)

.PHONY: run test lint figures report clean-venv

$(STAMP): pyproject.toml requirements.lock
	test -x $(VENV)/bin/python || $(PYTHON) -m venv $(VENV)
	$(VENV)/bin/python -m pip install --quiet --upgrade pip
	$(VENV)/bin/python -m pip install --quiet torch==2.13.0
	$(VENV)/bin/python -m pip install --quiet -c requirements.lock -e '.[dev]'
	touch $(STAMP)

run: $(STAMP)
	snakemake --cores $(CORES) $(SNAKEMAKE_ARGS)

test: $(STAMP)
	python -m pytest $(PYTEST_ARGS)

# Reviewers: redraw every table and figure from the committed results (no training).
figures: $(STAMP)
	snakemake figures --cores 2 --forceall --config review=True

lint: $(STAMP)
	ruff check effopd tests benchmarks
	snakemake --lint

clean-venv:
	rm -rf $(VENV)
