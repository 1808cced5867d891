"""A code benchmark (the tiny code task's problems: hidden tests, graded in the sandbox)
scored through ``score_model`` with the vllm backend, against the transformers backend.

Greedy decoding (temperature 0) takes the random streams out: both backends then decode
the same tokens from the same float32 weights, up to near-ties that their kernels round
differently; so the responses (code formatting, stop ids and length included) and their
sandbox verdicts must agree on at least 90 % of the problems. One engine start.
"""

from __future__ import annotations

import json

import pytest

from effopd.data.code_task import CodeTaskSpec, generate_splits
from effopd.evaluation import prepare_benchmark, score_model

INSTRUCTION = ("Write a Python function f(x) that does this. Reason step by step in comments, "
               "then return one expression.")  # config/code.yaml's prompt.instruction


@pytest.fixture(scope="module")
def code_scores(vllm_dag, tmp_path_factory):
    folder = tmp_path_factory.mktemp("code")
    rows = generate_splits(CodeTaskSpec(n_train=1, n_val=1, n_test=32))["test"]
    (folder / "test.jsonl").write_text("".join(json.dumps(row) + "\n" for row in rows))
    benchmark = folder / "code_test.jsonl"
    prepare_benchmark({"source": "task", "split": "test"}, benchmark, folder / "test.jsonl")
    student = vllm_dag / "artifacts/smoke/models/student"
    grading = {"timeout_s": 5, "workers": 1, "batch_size": 1}
    return {backend: score_model(student, benchmark, "student", {"instruction": INSTRUCTION},
                                 {"backend": backend, "n": 1, "temperature": 0.0,
                                  "max_new_tokens": 48}, grading, [1])
            for backend in ("vllm", "transformers")}


def test_code_benchmark_is_sampled_and_graded_through_vllm(code_scores):
    metrics, graded = code_scores["vllm"]
    assert metrics["backend"] == "vllm" and metrics["n_problems"] == 32
    assert len(graded) == 32 and all("status" in row and "code" in row for row in graded)
    reference, _ = code_scores["transformers"]
    assert sorted(metrics) == sorted(reference)


def test_greedy_code_responses_agree_with_the_transformers_backend(code_scores):
    vllm = {row["problem_id"]: row for row in code_scores["vllm"][1]}
    hf = {row["problem_id"]: row for row in code_scores["transformers"][1]}
    same = [vllm[i]["response"] == hf[i]["response"] for i in hf]
    assert sum(same) >= 0.9 * len(same), sum(same)
    assert len({row["response"] for row in hf.values()}) > 1  # prompt-dependent responses
    verdicts = [vllm[i]["status"] == hf[i]["status"] for i in hf]
    assert sum(verdicts) >= 0.9 * len(verdicts)
    print(f"greedy responses equal on {sum(same)} of {len(same)} code problems")
