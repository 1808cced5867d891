"""Paper-scale plumbing without GPUs: DeepMath filtering, verl's parquet and command line."""

import json
from pathlib import Path

import pandas as pd
import pytest

from effopd.config import load_config
from effopd.data.train_data import prepare_train_data
from effopd.integrations.verl_engine import verl_command, write_verl_parquet
from effopd.integrations.verl_reward import BatchGrader, compute_score
from effopd.io import read_jsonl


@pytest.fixture
def deepmath_like(tmp_path):
    rows = [{"question": f"q{i}", "final_answer": str(i), "difficulty": d}
            for i, d in enumerate([5.0, 6.0, 7.5, 3.0, 6.5])]
    path = tmp_path / "deepmath.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_prepare_train_data_keeps_difficulty_at_least_six(tmp_path, deepmath_like):
    spec = {"source": "jsonl", "path": str(deepmath_like), "problem_key": "question",
            "answer_key": "final_answer", "difficulty_key": "difficulty", "min_difficulty": 6}
    out = tmp_path / "train.jsonl"
    assert prepare_train_data(spec, out) == 3
    assert [r["answer"] for r in read_jsonl(out)] == ["1", "2", "4"]
    manifest = json.loads((tmp_path / "train.manifest.json").read_text())
    assert manifest["n_rows_in"] == 5 and manifest["n_rows_kept"] == 3


def test_prepare_train_data_names_missing_column(tmp_path, deepmath_like):
    spec = {"source": "jsonl", "path": str(deepmath_like), "problem_key": "problem",
            "answer_key": "final_answer", "difficulty_key": None, "min_difficulty": None}
    with pytest.raises(ValueError, match="deepmath.jsonl: row 0 has no 'problem'"):
        prepare_train_data(spec, tmp_path / "x.jsonl")


def test_verl_parquet_layout(tmp_path):
    src = tmp_path / "p.jsonl"
    src.write_text(json.dumps({"id": "a", "question": "1+1?", "answer": "2"}) + "\n")
    assert write_verl_parquet(src, tmp_path / "t.parquet", "Think.", "train") == 1
    row = pd.read_parquet(tmp_path / "t.parquet").iloc[0]
    assert list(row["prompt"]) == [{"role": "user", "content": "1+1?\nThink."}]
    assert row["reward_model"]["ground_truth"] == "2"


@pytest.fixture(scope="module")
def paper(repo):
    return load_config(repo / "config/paper.yaml")


def overrides(command):
    return dict(arg.split("=", 1) for arg in command[3:])


def test_verl_command_grpo_baseline(paper):
    command = verl_command("rl", 1, paper["training"], paper["prompt"], "student", None,
                          "t.parquet", None, "run")
    assert command[1:3] == ["-m", "verl.trainer.main_ppo"]
    o = overrides(command)
    assert o["algorithm.adv_estimator"] == "grpo" and o["actor_rollout_ref.rollout.n"] == "8"
    assert o["data.train_batch_size"] == "128" == o["actor_rollout_ref.actor.ppo_mini_batch_size"]
    assert o["actor_rollout_ref.actor.use_kl_loss"] == "False"
    assert o["actor_rollout_ref.actor.loss_agg_mode"] == "token-mean"
    assert o["actor_rollout_ref.actor.optim.lr"] == "1e-06"
    assert o["data.max_response_length"] == "16384"
    assert "+actor_rollout_ref.ref.model.path" not in o


def test_verl_command_effopd_is_native_distillation_plus_trainer_mode(paper):
    command = verl_command("effopd", 0, paper["training"], paper["prompt"], "student",
                           "teacher", "t.parquet", "v.parquet", "run")
    o = overrides(command)
    assert o["distillation.enabled"] == "True"
    # absolute: Ray workers do not share the launch directory
    teacher = o["distillation.teacher_models.teacher_model.model_path"]
    assert teacher == str(Path("teacher").resolve())
    assert o["actor_rollout_ref.actor.optim.clip_grad"] == "1.0"  # what verl's engine reads
    assert "actor_rollout_ref.actor.grad_clip" not in o
    assert o["distillation.distillation_loss.loss_mode"] == "k1"
    assert o["distillation.distillation_loss.use_policy_gradient"] == "True"
    assert o["distillation.distillation_loss.use_task_rewards"] == "False"
    assert o["actor_rollout_ref.rollout.n"] == "1" and o["data.train_batch_size"] == "1024"
    assert o["trainer.v1.trainer_mode"] == "effopd"
    assert not any("only_reverse_kl" in key or "iterative_test" in key for key in o)
    with pytest.raises(ValueError, match="validation"):
        verl_command("effopd", 0, paper["training"], paper["prompt"], "s", "t", "t.parquet",
                     None, "run")


def test_verl_reward_is_math_verify():
    assert compute_score("train", "so \\boxed{\\frac{1}{2}}", "0.5") == 1.0
    assert compute_score("train", "so \\boxed{3}", "0.5") == 0.0


def test_verl_reward_grades_concurrent_calls_in_batches_with_hard_timeout():
    from concurrent.futures import ThreadPoolExecutor

    grader = BatchGrader(timeout_s=4.0, workers=3, linger_s=0.2)  # ample for a loaded CPU
    items = [("0.5", "so \\boxed{\\frac{1}{2}}"), ("1", "\\boxed{10^{10^{10^{10}}}}"),
             ("3", "\\boxed{3}"), ("3", "\\boxed{4}"), ("7", "no box")] * 2
    with ThreadPoolExecutor(len(items)) as pool:  # as verl's reward loop: one thread per call
        results = list(pool.map(lambda item: grader.grade(*item), items))
    assert [r["correct"] for r in results] == [True, False, True, False, False] * 2
    assert [r["status"] for r in results] == ["ok", "timeout", "ok", "ok", "no_answer"] * 2
    assert sum(grader.batches) == len(items) and len(grader.batches) < len(items)


def test_a_resumed_verl_run_keeps_every_attempt_and_the_rerun_steps(tmp_path):
    import json as _json

    from effopd.integrations.verl_engine import metrics_parts
    from effopd.integrations.verl_metrics import log_from_verl_metrics

    def line(step, wall):
        return _json.dumps({"step": step, "data": {
            "timing_s/step": wall, "critic/score/mean": 0.5, "response_length/mean": 10.0,
            "actor/loss": 0.1}}) + "\n"

    last = tmp_path / "verl_metrics.jsonl"
    (tmp_path / "verl_metrics.part0.jsonl").write_text(line(1, 1.0) + line(2, 1.0) + line(3, 9.0))
    last.write_text(line(3, 2.0) + line(4, 2.0))  # resumed from the step-2 checkpoint
    parts = metrics_parts(last)
    assert [p.name for p in parts] == ["verl_metrics.part0.jsonl", "verl_metrics.jsonl"]
    log = log_from_verl_metrics(parts, prompts_per_step=4, group_size=1)
    assert log["wall_s"].tolist() == [1.0, 2.0, 4.0, 6.0]


def test_cpu_platform_counts_rays_declared_gpus(monkeypatch):
    """On verl's CPU platform (the CPU tests) the pools are checked against the GPUs Ray
    declares (+ray_kwargs.ray_init.num_gpus), and flash-attn is not asked for."""
    import importlib.util

    from effopd.integrations import verl_engine

    training = {"verl": {"common_overrides": ["trainer.device=cpu",
                                              "+ray_kwargs.ray_init.num_gpus=2"]}}
    assert verl_engine.declared_ray_gpus(training) == 2
    with pytest.raises(ValueError, match="num_gpus"):
        verl_engine.declared_ray_gpus({"verl": {"common_overrides": []}})
    found = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "flash_attn" else object())
    monkeypatch.setenv("VERL_PLATFORM", "cpu")
    assert verl_engine.on_cpu_platform()
    verl_engine.require_engine_modules()  # no flash_attn needed
    monkeypatch.delenv("VERL_PLATFORM")
    with pytest.raises(ModuleNotFoundError, match="flash_attn"):
        verl_engine.require_engine_modules()
    monkeypatch.setattr(importlib.util, "find_spec", found)
