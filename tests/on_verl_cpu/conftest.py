"""verl end to end on the CPU (make test-verl-cpu, in .venv-verl-cpu): shared fixtures.

Collected only where verl and vLLM import (the main suite's venv has neither); there a
missing piece is an error, not a skip. One verl run at a time: each holds up to about
13 GB of the machine's 24 (Ray, FSDP worker, two vLLM servers), see README.md here.
"""

from __future__ import annotations

import importlib.util
import subprocess
from pathlib import Path

import pytest
from verl_cpu_helpers import EXPERIMENT, cpu_env, snakemake_args, stop_ray

if importlib.util.find_spec("verl") is None or importlib.util.find_spec("vllm") is None:
    collect_ignore_glob = ["test_*.py"]


@pytest.fixture(scope="session")
def verl_dag(tmp_path_factory) -> Path:
    """A DAG work folder with the tiny student, teacher and data of verl_cpu.yaml built."""
    workdir = tmp_path_factory.mktemp("verl-cpu-dag")
    art = f"artifacts/{EXPERIMENT}"
    result = subprocess.run(snakemake_args(workdir, f"{art}/models/student",
                                           f"{art}/models/teacher", f"{art}/data/train.jsonl"),
                            capture_output=True, text=True, env=cpu_env(), timeout=900)
    assert result.returncode == 0, result.stderr[-3000:]
    yield workdir
    stop_ray(workdir)

