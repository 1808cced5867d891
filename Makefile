# Two commands do all the set-up on a fresh machine (see README.md):
#   make run    create .venv if missing, then run the tiny default DAG
#   make study  the same DAG on config/study.yaml (sized to decide the claims)
#   make test   create .venv if missing, then run the test suite
# The venv takes the CPU build of torch 2.13.0 first (no multi-GB CUDA download),
# then the project with the exact versions of requirements.lock.
# `make test` also builds .venv-verl (verl 0.9.1, its own lock requirements-verl.lock:
# verl pins transformers<5.11) and runs tests/on_verl there.

PYTHON ?= python3
VENV := .venv
STAMP := $(VENV)/.installed-stamp
VENV_VERL := .venv-verl
STAMP_VERL := $(VENV_VERL)/.installed-stamp
CORES ?= all
SNAKEMAKE_ARGS ?=
export PATH := $(CURDIR)/$(VENV)/bin:$(PATH)

.PHONY: run study test test-verl verl-env lint figures report clean-venv

$(STAMP): pyproject.toml requirements.lock
	test -x $(VENV)/bin/python || $(PYTHON) -m venv $(VENV)
	$(VENV)/bin/python -m pip install --quiet --upgrade pip
	$(VENV)/bin/python -m pip install --quiet torch==2.13.0
	$(VENV)/bin/python -m pip install --quiet -c requirements.lock -e '.[dev]'
	touch $(STAMP)

# The paper-scale environment: upstream verl 0.9.1 (CPU torch; GPUs bring their own).
$(STAMP_VERL): pyproject.toml requirements-verl.lock
	test -x $(VENV_VERL)/bin/python || $(PYTHON) -m venv $(VENV_VERL)
	$(VENV_VERL)/bin/python -m pip install --quiet --upgrade pip
	$(VENV_VERL)/bin/python -m pip install --quiet torch==2.13.0
	$(VENV_VERL)/bin/python -m pip install --quiet -c requirements-verl.lock -e '.[verl]'
	touch $(STAMP_VERL)

verl-env: $(STAMP_VERL)

run: $(STAMP)
	snakemake --cores $(CORES) $(SNAKEMAKE_ARGS)

# The study that decides the claims (config/study.yaml): under 2 hours on 2 CPU cores;
# resumable: run it again after an interruption (a killed job's outputs are redone, its
# training run resumes from its newest checkpoint).
study: $(STAMP)
	snakemake --cores $(CORES) --configfile config/study.yaml --rerun-incomplete $(SNAKEMAKE_ARGS)

test: $(STAMP) $(STAMP_VERL)
	python -m pytest $(PYTEST_ARGS)
	$(MAKE) test-verl

# The tests that need verl importable (no GPU), in the verl environment.
test-verl: $(STAMP_VERL)
	$(VENV_VERL)/bin/python -m pytest tests/on_verl $(PYTEST_VERL_ARGS)

# Reviewers: redraw every table and figure from the committed results (no training),
# of the tiny default and, where its results are committed, of the study.
figures: $(STAMP)
	snakemake figures --cores 2 --forceall --config review=True
	if [ -f results/study/tables/claims.csv ]; then snakemake figures --cores 2 --forceall \
		--configfile config/study.yaml --config review=True; fi

lint: $(STAMP)
	ruff check effopd tests benchmarks pilots
	snakemake --lint

clean-venv:
	rm -rf $(VENV) $(VENV_VERL)
