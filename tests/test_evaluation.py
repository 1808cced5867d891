"""Checkpoint-series evaluation: the base model's own scores stand in for step 0."""

import json
from pathlib import Path

import pandas as pd
import pytest

from effopd.errors import InputError
from effopd.evaluation import evaluate_model, evaluate_series

GENERATION = {"max_new_tokens": 6, "n": 2, "seed": 3, "batch_size": 4}
GRADING = {"workers": 1}


@pytest.fixture(scope="module")
def bench(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("bench") / "bench.jsonl"
    path.write_text("".join(json.dumps({"id": f"p{i}", "problem": f"Compute {i}+1.",
                                        "answer": str(i + 1)}) + "\n" for i in range(5)))
    return path


def _series(tiny_checkpoint: Path, bench: Path, out: Path, generation=GENERATION,
            base_scores=None) -> tuple[pd.DataFrame, pd.DataFrame]:
    index = out / "checkpoints.csv"
    index.parent.mkdir(parents=True, exist_ok=True)
    index.write_text(f"method,seed,step,path,wall_s\neffopd,2,5,{tiny_checkpoint},1.0\n")
    table = evaluate_series(index, tiny_checkpoint, bench, "run", {}, generation, GRADING,
                            [1, 2], out / "scores.csv", out / "samples",
                            base_scores=base_scores)
    return table, pd.read_csv(out / "scores.problems.csv")


def test_base_scores_stand_in_for_step_zero(tiny_checkpoint, bench, tmp_path):
    samples, metrics = tmp_path / "base.samples.jsonl", tmp_path / "base.json"
    evaluate_model(tiny_checkpoint, bench, "student", {}, GENERATION, GRADING, [1, 2],
                   samples, metrics)
    scored, scored_problems = _series(tiny_checkpoint, bench, tmp_path / "scored")
    reused, reused_problems = _series(tiny_checkpoint, bench, tmp_path / "reused",
                                      base_scores=(samples, metrics))
    columns = ["method", "seed", "step", "avg@n", "pass@1", "pass@2", "n_problems", "model",
               "sampling_seed"]
    pd.testing.assert_frame_equal(reused[columns], scored[columns])
    # the run's identity from the index, the sampling seed named as such
    assert set(scored["method"]) == {"effopd"} and set(scored["seed"]) == {2}
    assert set(scored["sampling_seed"]) == {GENERATION["seed"]}
    assert "seed" not in pd.read_csv(tmp_path / "scored" / "scores.problems.csv")
    pd.testing.assert_frame_equal(reused_problems, scored_problems)
    assert (tmp_path / "reused" / "samples" / "step_000000.jsonl").read_text() == \
        (tmp_path / "scored" / "samples" / "step_000000.jsonl").read_text()


def test_base_scores_sampled_otherwise_are_refused(tiny_checkpoint, bench, tmp_path):
    samples, metrics = tmp_path / "base.samples.jsonl", tmp_path / "base.json"
    evaluate_model(tiny_checkpoint, bench, "student", {}, GENERATION, GRADING, [1],
                   samples, metrics)
    with pytest.raises(InputError, match=r"base\.json: seed = 3, but this evaluation uses 4"):
        _series(tiny_checkpoint, bench, tmp_path / "other", {**GENERATION, "seed": 4},
                base_scores=(samples, metrics))


def test_steps_scores_only_the_grid(tiny_checkpoint, bench, tmp_path):
    index = tmp_path / "checkpoints.csv"
    index.write_text("method,seed,step,path,wall_s\n" + "".join(
        f"opd,0,{s},{tiny_checkpoint},{s}\n" for s in (1, 2, 4, 6, 8, 12, 13)))
    table = evaluate_series(index, tiny_checkpoint, bench, "run", {},
                            {**GENERATION, "n": 1}, GRADING, [1], tmp_path / "s.csv",
                            tmp_path / "samples", steps=[6, 12, 13])
    assert table["step"].tolist() == [0, 6, 12, 13]
    with pytest.raises(ValueError, match=r"no checkpoint at grid step\(s\) \[5\]"):
        evaluate_series(index, tiny_checkpoint, bench, "run", {}, {**GENERATION, "n": 1},
                        GRADING, [1], tmp_path / "s.csv", tmp_path / "samples",
                        steps=[5, 6])
