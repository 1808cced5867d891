#!/usr/bin/env bash
# Installs the GPU stack of engine verl into the active Python (conda environment or
# venv): requirements-gpu.lock (verl 0.9.1, vLLM 0.24.0, torch 2.11.0, ...), then
# flash-attn built against that torch (requirements-gpu-build.lock), then this package
# without dependencies. Run by Snakemake after it creates workflow/envs/verl-gpu.yaml,
# and by `make gpu-env` (PYTHON=.venv-gpu/bin/python).
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
py="${PYTHON:-python}"
"$py" -m pip install --prefer-binary -r "$root/requirements-gpu.lock"
"$py" -m pip install --no-build-isolation -r "$root/requirements-gpu-build.lock"
"$py" -m pip install --no-deps -e "$root"
