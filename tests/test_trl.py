"""EffOPD through TRL: the callback on real TRL trainers with tiny real Qwen3 models, on CPU.

The search is driven by a scripted score (a known sequence per step), so the
accepted multipliers are known in advance and the weights can be checked
against theta_a + m (theta - theta_a); the default scorer (math-verify
accuracy) runs end to end on GRPO and on planted texts.
"""

from __future__ import annotations

import copy
import re
from pathlib import Path

import pandas as pd
import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer, TrainerCallback

from effopd.io import read_jsonl
from effopd.prompts import DEFAULT_INSTRUCTION
from effopd.training.contract import block_parameters

trl = pytest.importorskip("trl")

from effopd.integrations.trl import ANCHOR_FILE, EffOPDCallback, load_anchor  # noqa: E402
from effopd.integrations.trl_engine import conversation  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
ARCH = {"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2,
        "num_attention_heads": 2, "num_key_value_heads": 1, "head_dim": 16}
# per step: the score of theta, then of the candidates m = 3, 5, 7, ...
SCRIPT = {1: [0.1, 0.2, 0.3, 0.25],             # accept 3, 5; reject 7 -> m = 5
          2: [0.5, 0.4],                         # reject 3 -> m = 1
          4: [0.1, 0.2, 0.3, 0.4, 0.5, 0.6]}     # accept 3 ... 11 (5 iterations) -> m = 11
CHOSEN = {1: 5.0, 2: 1.0, 4: 11.0}


@pytest.fixture(scope="module")
def tiny_pair(tmp_path_factory, char_tokenizer):
    """A tiny student and a tiny teacher (same tokenizer, different random weights)."""
    from effopd.models.checkpoint import save_checkpoint
    from effopd.models.tiny import init_tiny_qwen3

    out = tmp_path_factory.mktemp("trl_models")
    for name, seed in (("student", 0), ("teacher", 1)):
        save_checkpoint(init_tiny_qwen3(ARCH, char_tokenizer, seed=seed), char_tokenizer,
                        out / name, {"source": "test"})
    return out / "student", out / "teacher"


@pytest.fixture(scope="module")
def task(tmp_path_factory):
    from effopd.data.arithmetic import ArithmeticSpec, write_splits

    out = tmp_path_factory.mktemp("trl_data")
    write_splits(ArithmeticSpec(n_train=40, n_val=4, n_test=4, seed=3), out)
    train = [{"prompt": conversation(r["question"], DEFAULT_INSTRUCTION), "answer": r["answer"]}
             for r in read_jsonl(out / "train.jsonl")]
    val = [{"prompt": conversation(r["question"], DEFAULT_INSTRUCTION), "answer": r["answer"]}
           for r in read_jsonl(out / "val.jsonl")]
    return train, val


def blocks32(model) -> dict[str, torch.Tensor]:
    return {k: v.detach().float().clone() for k, v in block_parameters(model).items()}


class ScriptedScore:
    """score_fn returning SCRIPT[step] in order; records the block weights it was shown."""

    def __init__(self) -> None:
        self.seen: dict[int, list[dict[str, torch.Tensor]]] = {}

    def __call__(self, model, step: int) -> float:
        calls = self.seen.setdefault(step, [])
        calls.append(blocks32(model))
        return SCRIPT[step][len(calls) - 1]


class Probe(TrainerCallback):
    """Before the search: snapshot non-block weights, block weights and optimizer state."""

    def __init__(self, trainer_ref: dict) -> None:
        self.ref, self.before, self.after = trainer_ref, {}, {}

    def snapshot(self, model) -> dict:
        blocks = set(block_parameters(model))
        optimizer = self.ref["trainer"].optimizer.state_dict()
        return {"other": {k: v.detach().clone() for k, v in model.named_parameters()
                          if k not in blocks},
                "blocks": blocks32(model), "optimizer": copy.deepcopy(optimizer)}


class Before(Probe):
    def on_step_end(self, args, state, control, model=None, **kwargs):
        self.before[state.global_step] = self.snapshot(model)


class After(Probe):
    def __init__(self, before: Before) -> None:
        super().__init__(before.ref)
        self.before_probe = before

    def on_step_end(self, args, state, control, model=None, **kwargs):
        self.after[state.global_step] = self.snapshot(model)


def distillation_trainer(student_dir, teacher_dir, train, out_dir, max_steps=4):
    tokenizer = AutoTokenizer.from_pretrained(str(student_dir))
    args = trl.DistillationConfig(
        output_dir=str(out_dir), max_steps=max_steps, per_device_train_batch_size=4,
        learning_rate=1e-3, max_completion_length=12, bf16=False, use_cpu=True,
        gradient_checkpointing=False, logging_steps=1, save_steps=2, report_to=[], seed=0,
        lr_scheduler_type="constant", chat_template_kwargs={"enable_thinking": False})
    student = AutoModelForCausalLM.from_pretrained(str(student_dir), dtype=torch.float32)
    teacher = AutoModelForCausalLM.from_pretrained(str(teacher_dir), dtype=torch.float32)
    from datasets import Dataset

    return trl.DistillationTrainer(model=student, teacher_model=teacher, args=args,
                                   train_dataset=Dataset.from_list(train),
                                   processing_class=tokenizer)


def assert_on_ray(weights, anchor, theta, multiplier):
    for name, value in weights.items():
        expected = anchor[name] + multiplier * (theta[name] - anchor[name])
        torch.testing.assert_close(value, expected, rtol=0, atol=1e-6, msg=name)


def test_distillation_trainer_with_callback_follows_spec_and_resumes(tiny_pair, task, tmp_path):
    student_dir, teacher_dir = tiny_pair
    train, _ = task
    trainer = distillation_trainer(student_dir, teacher_dir, train, tmp_path / "run")
    initial = blocks32(trainer.model)
    ref = {"trainer": trainer}
    before = Before(ref)
    trainer.add_callback(before)
    scorer = ScriptedScore()
    callback = EffOPDCallback(score_fn=scorer, output_csv=tmp_path / "search.csv").attach(trainer)
    after = After(before)
    trainer.add_callback(after)
    trainer.train()

    # the search log: steps 1, 2, 4; multipliers 1, 3, 5, ...; acceptance = strict improvement
    log = pd.read_csv(tmp_path / "search.csv")
    assert list(log.columns) == ["method", "seed", "step", "iteration", "multiplier", "score",
                                 "accepted"]
    assert set(log["method"]) == {"effopd"} and set(log["seed"]) == {42}
    assert log["step"].tolist() == [1] * 4 + [2] * 2 + [4] * 6
    assert log["multiplier"].tolist() == [1, 3, 5, 7, 1, 3, 1, 3, 5, 7, 9, 11]
    assert log["accepted"].tolist() == [True, True, True, False, True, False] + [True] * 6
    assert log["score"].tolist() == SCRIPT[1] + SCRIPT[2] + SCRIPT[4]

    # weights: candidates and the chosen point lie on theta_a + m (theta - theta_a)
    anchor = initial
    for step in (1, 2, 4):
        theta = before.before[step]["blocks"]
        assert_on_ray(scorer.seen[step][0], anchor, theta, 1.0)
        multipliers = log[log["step"] == step]["multiplier"].tolist()
        for seen, multiplier in zip(scorer.seen[step][1:], multipliers[1:], strict=True):
            assert_on_ray(seen, anchor, theta, multiplier)
        chosen = after.after[step]["blocks"]
        assert_on_ray(chosen, anchor, theta, CHOSEN[step])
        anchor = chosen
        # non-block weights and every optimizer moment are bit-identical across the search
        for name, value in before.before[step]["other"].items():
            assert torch.equal(value, after.after[step]["other"][name]), name
        moments_before = before.before[step]["optimizer"]["state"]
        moments_after = after.after[step]["optimizer"]["state"]
        assert moments_before.keys() == moments_after.keys() and moments_before
        for index, state in moments_before.items():
            for key, value in state.items():
                assert torch.equal(value, moments_after[index][key]), (index, key)
    assert not torch.equal(after.after[1]["blocks"][next(iter(initial))],
                           before.before[1]["blocks"][next(iter(initial))])
    # the trainer's logger got every candidate
    logged = [h for h in trainer.state.log_history if "effopd/multiplier" in h]
    assert [h["effopd/multiplier"] for h in logged] == log["multiplier"].tolist()
    assert sum("loss" in h for h in trainer.state.log_history) == 4  # the steps' own logs survive

    # the anchor went into the checkpoints: after step 2's search it is the step-2 weights
    saved, state = load_anchor(tmp_path / "run" / "checkpoint-2")
    assert state["step"] == 2 and len(state["search_rows"]) == 6
    for name, value in saved.items():
        assert torch.equal(value, after.after[2]["blocks"][name]), name
    assert (tmp_path / "run" / "checkpoint-4" / ANCHOR_FILE).exists()

    # resume from checkpoint-2: the saved anchor (not the initial weights) is the next ray's origin
    resumed = distillation_trainer(student_dir, teacher_dir, train, tmp_path / "run")
    ref2 = {"trainer": resumed}
    before2 = Before(ref2)
    resumed.add_callback(before2)
    scorer2 = ScriptedScore()
    callback2 = EffOPDCallback(score_fn=scorer2, output_csv=tmp_path / "search2.csv")
    callback2.attach(resumed)
    after2 = After(before2)
    resumed.add_callback(after2)
    resumed.train(resume_from_checkpoint=str(tmp_path / "run" / "checkpoint-2"))
    assert sorted(scorer2.seen) == [4]
    assert_on_ray(after2.after[4]["blocks"], saved, before2.before[4]["blocks"], 11.0)
    with pytest.raises(AssertionError):  # the initial weights are not the anchor any more
        assert_on_ray(after2.after[4]["blocks"], initial, before2.before[4]["blocks"], 11.0)
    resumed_log = pd.read_csv(tmp_path / "search2.csv")
    assert resumed_log["step"].tolist() == [1] * 4 + [2] * 2 + [4] * 6
    assert callback.anchor is not None and callback2.anchor is not None


def test_grpo_trainer_with_callback_and_math_verify_score(tiny_pair, task, tmp_path):
    from datasets import Dataset

    from effopd.integrations.trl_engine import make_math_verify_reward

    student_dir, _ = tiny_pair
    train, val = task
    tokenizer = AutoTokenizer.from_pretrained(str(student_dir))
    args = trl.GRPOConfig(
        output_dir=str(tmp_path / "run"), max_steps=2, per_device_train_batch_size=4,
        num_generations=2, learning_rate=1e-3, max_completion_length=12, bf16=False,
        use_cpu=True, gradient_checkpointing=False, logging_steps=1, save_strategy="no",
        report_to=[], seed=0, beta=0.0, chat_template_kwargs={"enable_thinking": False})
    trainer = trl.GRPOTrainer(
        model=AutoModelForCausalLM.from_pretrained(str(student_dir), dtype=torch.float32),
        reward_funcs=make_math_verify_reward(timeout_s=5, workers=1), args=args,
        train_dataset=Dataset.from_list(train), processing_class=tokenizer)
    callback = EffOPDCallback(val, output_csv=tmp_path / "search.csv", max_new_tokens=12,
                              grading_workers=1).attach(trainer)
    trainer.train()
    log = pd.read_csv(tmp_path / "search.csv")
    assert log["step"].unique().tolist() == [1, 2]
    for _, rows in log.groupby("step"):
        assert rows["multiplier"].tolist()[:2] == [1.0, 3.0]
        assert rows["score"].between(0, 1).all()
        # greedy: accepted exactly while the score strictly improves
        scores, accepted = rows["score"].tolist(), rows["accepted"].tolist()
        for i in range(1, len(scores)):
            assert accepted[i] == (scores[i] > max(s for s, a in zip(scores[:i], accepted[:i],
                                                                     strict=True) if a))
    assert callback.val_tokens > 0
    assert any("reward" in h for h in trainer.state.log_history)


def test_default_score_is_math_verify_accuracy_with_common_random_numbers(tiny_pair, task,
                                                                           tmp_path):
    """Planted texts through the real grader, and the same seed gives the same samples."""
    student_dir, teacher_dir = tiny_pair
    train, val = task
    trainer = distillation_trainer(student_dir, teacher_dir, train, tmp_path / "run")
    rows = [{"prompt": "1+1=", "answer": "2"}, {"prompt": "2+2=", "answer": "4"},
            {"prompt": "3+3=", "answer": "6"}, {"prompt": "4+4=", "answer": "8"}]
    callback = EffOPDCallback(rows, max_new_tokens=8, grading_workers=1).attach(trainer)
    texts = ["so \\boxed{2}", "\\boxed{5}", "6", "first \\boxed{1} then \\boxed{8}"]
    assert callback.grade_accuracy(texts) == pytest.approx(2 / 4)

    callback.val_rows = [dict(r) for r in val]
    first = callback.sample_texts(trainer.model, seed=11)
    again = callback.sample_texts(trainer.model, seed=11)
    other = callback.sample_texts(trainer.model, seed=12)
    assert first == again and first != other
    assert 0.0 <= callback.validation_accuracy(trainer.model, seed=11) <= 1.0


def test_callback_refuses_without_trainer_and_bad_val_rows(tiny_pair, task, tmp_path):
    student_dir, teacher_dir = tiny_pair
    train, _ = task
    with pytest.raises(ValueError, match="lacks \\['answer'\\]"):
        EffOPDCallback([{"prompt": "x"}])
    with pytest.raises(ValueError, match="val_dataset .* or a score_fn"):
        EffOPDCallback()
    trainer = distillation_trainer(student_dir, teacher_dir, train, tmp_path / "run", 1)
    trainer.add_callback(EffOPDCallback(score_fn=lambda model, step: 0.0))
    with pytest.raises(ValueError, match=re.escape("callback.attach(trainer)")):
        trainer.train()


def test_callback_under_ddp_scores_on_main_and_keeps_ranks_identical(tiny_pair, task, tmp_path):
    """torchrun, 2 CPU processes: rank 0 alone scores, both ranks follow its decisions."""
    import json
    import os
    import subprocess
    import sys

    student_dir, teacher_dir = tiny_pair
    train, _ = task
    (tmp_path / "train.json").write_text(json.dumps(train))
    env = {**os.environ, "OMP_NUM_THREADS": "1",
           "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    result = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2",
         "--master_port", "29531", str(REPO / "tests" / "trl_ddp_script.py"), str(student_dir),
         str(teacher_dir), str(tmp_path / "train.json"), str(tmp_path / "out")],
        capture_output=True, text=True, env=env, timeout=600)
    assert result.returncode == 0, result.stderr[-4000:]
    ranks = [torch.load(tmp_path / "out" / f"rank{r}.pt", weights_only=False) for r in (0, 1)]
    assert ranks[0]["processes"] == 2
    assert ranks[0]["calls"] == {1: 3, 2: 2} and ranks[1]["calls"] == {}
    for name, value in ranks[0]["final"].items():
        assert torch.equal(value, ranks[1]["final"][name]), name
    log = pd.read_csv(tmp_path / "out" / "search.csv")
    assert log["multiplier"].tolist() == [1, 3, 5, 1, 3]
    assert log["accepted"].tolist() == [True, True, False, True, False]
    initial = blocks32(AutoModelForCausalLM.from_pretrained(str(student_dir)))
    seen = ranks[0]["seen"][1]
    assert_on_ray(seen[1], initial, seen[0], 3.0)
    assert_on_ray(seen[2], initial, seen[0], 5.0)


def test_trl_engine_resumes_a_stopped_run_with_the_local_engines_outputs(tiny_pair, tmp_path):
    """``effopd train`` with engine trl, stopped after step 2 and rerun: the logs continue."""
    import json

    from effopd.config import load_config
    from effopd.data.arithmetic import ArithmeticSpec, write_splits
    from effopd.evaluation import prepare_benchmark
    from tests.conftest import run_cli

    student_dir, teacher_dir = tiny_pair
    write_splits(ArithmeticSpec(n_train=40, n_val=3, n_test=2, seed=3), tmp_path / "data")
    prepare_benchmark({"source": "task", "split": "val"}, tmp_path / "val.jsonl",
                      task_file=tmp_path / "data" / "val.jsonl")
    config = load_config(REPO / "config" / "smoke.yaml")
    training = {**config["training"], "engine": "trl", "max_new_tokens": 8, "save_every": 3,
                "opd": {**config["training"]["opd"], "prompts_per_step": 4}}
    out = tmp_path / "out"
    argv = ["effopd", "train", "--method", "effopd", "--seed", "0",
            "--training", json.dumps(training), "--grading", json.dumps(config["grading"]),
            "--prompt", json.dumps(config["prompt"]), "--student", str(student_dir),
            "--teacher", str(teacher_dir), "--train", str(tmp_path / "data" / "train.jsonl"),
            "--val", str(tmp_path / "val.jsonl"), "--run-dir", str(out / "run"),
            "--log-csv", str(out / "log.csv"), "--search-csv", str(out / "search.csv"),
            "--index-csv", str(out / "checkpoints.csv"), "--threads", "1"]
    first = run_cli(*argv, "--stop-after", "2")
    assert first.returncode == 0, first.stderr[-3000:]
    assert pd.read_csv(out / "log.csv")["step"].tolist() == [1, 2]
    assert not (out / "checkpoints.csv").exists()
    second = run_cli(*argv)
    assert second.returncode == 0, second.stderr[-3000:]
    assert "resuming" in second.stderr
    log = pd.read_csv(out / "log.csv")
    assert log["step"].tolist() == [1, 2, 3, 4] and log["wall_s"].is_monotonic_increasing
    assert set(log.columns) >= {"val_tokens", "cpu_s", "search_s", "loss", "reverse_kl"}
    search = pd.read_csv(out / "search.csv")
    assert search.groupby("step")["iteration"].first().index.tolist() == [1, 2, 4]
    assert (search["iteration"] == 0).sum() == 3  # step 1 and 2 were not searched twice
    index = pd.read_csv(out / "checkpoints.csv")
    assert index["step"].tolist() == [1, 2, 3, 4]  # save_every 3, the last step, powers of two
    assert index["wall_s"].tolist() == log.set_index("step").loc[[1, 2, 3, 4], "wall_s"].tolist()
