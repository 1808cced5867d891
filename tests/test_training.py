"""Training: losses on hand-computed cases, EffOPD's line search, and exact resumption."""

import math

import pandas as pd
import pytest
import torch

from effopd.training.contract import block_parameters, save_steps
from effopd.training.extrapolation import is_power_of_two, line_search
from effopd.training.losses import (
    grpo_advantages,
    opd_advantages,
    ppo_clip_loss,
    token_logprobs,
)
from effopd.training.trainer import Trainer, TrainSpec

# ----------------------------------------------------------------------------- losses


def test_token_logprobs_matches_hand_softmax():
    logits = torch.tensor([[[0.0, math.log(3.0)]]])  # p = (1/4, 3/4)
    assert token_logprobs(logits, torch.tensor([[1]])).item() == pytest.approx(math.log(0.75))


def test_opd_advantage_is_teacher_minus_student_and_constant():
    student = torch.tensor([[-1.0, -2.0]], requires_grad=True)
    advantage = opd_advantages(torch.tensor([[-0.5, -3.0]]), student)
    assert advantage.tolist() == [[0.5, -1.0]] and not advantage.requires_grad


def test_grpo_advantages_hand_computed():
    rewards = torch.tensor([1.0, 0.0, 0.0, 0.0, 1.0, 1.0, 1.0, 1.0])
    advantages = grpo_advantages(rewards, group_size=4)
    std = math.sqrt(((0.75**2) + 3 * (0.25**2)) / 3)  # unbiased std of (1, 0, 0, 0)
    assert advantages[0].item() == pytest.approx(0.75 / (std + 1e-6))
    assert advantages[1].item() == pytest.approx(-0.25 / (std + 1e-6))
    assert advantages[4:].tolist() == [0.0] * 4  # a constant group carries no signal
    with pytest.raises(ValueError, match="groups of 3"):
        grpo_advantages(rewards, group_size=3)


def test_ppo_clip_loss_hand_computed():
    logp = torch.log(torch.tensor([[1.5, 0.5, 1.0]]))
    old = torch.zeros(1, 3)
    advantages = torch.tensor([[1.0, 1.0, -2.0]])
    mask = torch.tensor([[1.0, 1.0, 0.0]])  # the third token is not a response token
    # token 1: r = 1.5 > 1.2, A > 0 -> max(-1.5, -1.2) = -1.2; token 2: r = 0.5 -> max(-0.5, -0.8)
    loss = ppo_clip_loss(logp, old, advantages, mask, 0.2, 0.2)
    assert loss.item() == pytest.approx((-1.2 - 0.5) / 2)
    # clip-higher (DAPO): e_hi = 0.6 lets the ratio 1.5 through
    assert ppo_clip_loss(logp, old, advantages, mask, 0.2, 0.6).item() == pytest.approx(-1.0)


def test_on_policy_gradient_is_reinforce():
    logits = torch.randn(2, 5, requires_grad=True)
    targets = torch.tensor([1, 3])
    logp = token_logprobs(logits.unsqueeze(0), targets.unsqueeze(0))
    advantages = torch.tensor([[0.7, -1.3]])
    ppo_clip_loss(logp, logp.detach(), advantages, torch.ones(1, 2)).backward()
    expected_logits = logits.detach().clone().requires_grad_(True)
    reinforce = -(advantages * token_logprobs(expected_logits.unsqueeze(0),
                                              targets.unsqueeze(0))).mean()
    reinforce.backward()
    assert torch.allclose(logits.grad, expected_logits.grad)

# ------------------------------------------------------------------------ line search


def quadratic_search(peak: float, iterations: int = 5):
    """A 1-D search: theta = 1, anchor = 0, score peaks at ``peak``."""
    params = {"w": torch.tensor([1.0])}
    anchor = {"w": torch.tensor([0.0])}
    return params, line_search(params, anchor, lambda: -abs(params["w"].item() - peak),
                               step=8, max_iterations=iterations)


def test_line_search_tries_3_5_7_and_stops_at_first_non_improvement():
    params, (records, anchor) = quadratic_search(peak=5.8)
    assert [r.multiplier for r in records] == [1.0, 3.0, 5.0, 7.0]
    assert [r.accepted for r in records] == [True, True, True, False]
    assert params["w"].item() == 5.0  # the best weights are restored
    assert anchor["w"].item() == 5.0  # and become the new anchor


def test_line_search_caps_iterations_and_rejects_ties():
    params, (records, _) = quadratic_search(peak=100.0, iterations=5)
    assert [r.multiplier for r in records] == [1.0, 3.0, 5.0, 7.0, 9.0, 11.0]
    assert params["w"].item() == 11.0
    flat = {"w": torch.tensor([1.0])}
    records, anchor = line_search(flat, {"w": torch.tensor([0.0])}, lambda: 0.5, step=1)
    assert [r.accepted for r in records] == [True, False]  # equal score is no improvement
    assert flat["w"].item() == 1.0 and anchor["w"].item() == 1.0


def test_line_search_computes_in_float32_for_bf16_weights():
    params = {"w": torch.tensor([1.0 + 2**-7], dtype=torch.bfloat16)}
    anchor = {"w": torch.tensor([1.0])}
    line_search(params, anchor, lambda: params["w"].float().item(), step=1, max_iterations=1)
    assert params["w"].dtype == torch.bfloat16
    assert params["w"].float().item() == pytest.approx(1.0 + 3 * 2**-7, abs=2**-7)


def test_grid_steps_dense_early_for_every_method():
    from effopd.training.schedule import grid_steps

    training = {"steps": 40, "save_every": 16, "save_powers_of_two": True,
                "effopd": {"schedule": "every_k", "search_every": 10}}
    assert grid_steps(training) == [1, 2, 4, 8, 16, 32, 40]
    assert grid_steps({**training, "save_powers_of_two": False}) == [16, 32, 40]
    assert save_steps(training, "opd") == save_steps(training, "rl") == [1, 2, 4, 8, 16, 32, 40]
    assert save_steps(training, "effopd") == [1, 2, 4, 8, 10, 16, 20, 30, 32, 40]


def test_power_of_two_steps_and_save_steps():
    assert [s for s in range(1, 40) if is_power_of_two(s)] == [1, 2, 4, 8, 16, 32]
    training = {"steps": 20, "save_every": 8}
    assert save_steps(training, "opd") == [8, 16, 20]
    assert save_steps(training, "effopd") == [1, 2, 4, 8, 16, 20]

# ---------------------------------------------------------------------- the trainer

TRAINING = {"steps": 4, "save_every": 2, "lr": 1e-3, "betas": [0.9, 0.999],
            "weight_decay": 0.01, "grad_clip": 1.0, "temperature": 1.0, "top_p": 1.0,
            "max_new_tokens": 8, "rollout_batch_size": 64,
            "opd": {"prompts_per_step": 4, "clip_ratio_low": 0.2, "clip_ratio_high": 0.2},
            "rl": {"prompts_per_step": 2, "group_size": 2, "clip_ratio_low": 0.2,
                   "clip_ratio_high": 0.28, "dynamic_sampling": False},
            "effopd": {"max_iterations": 2, "initial_factor": 2.0}}
GRADING = {"timeout_s": 5.0, "workers": 1}
PROMPT = {"instruction": "Please reason step by step, and put your final answer within "
                         "\\boxed{}.", "enable_thinking": False}


@pytest.fixture(scope="module")
def data_files(tmp_path_factory):
    from effopd.data.arithmetic import ArithmeticSpec, write_splits
    from effopd.evaluation import prepare_benchmark

    out = tmp_path_factory.mktemp("data")
    write_splits(ArithmeticSpec(n_train=40, n_val=4, n_test=4, seed=3), out)
    prepare_benchmark({"source": "task", "split": "val"}, out / "val_bench.jsonl",
                      task_file=out / "val.jsonl")
    return out


def make_trainer(method, run_dir, tiny_checkpoint, data_files):
    spec = TrainSpec.from_config(TRAINING, method, GRADING)
    return Trainer(spec, seed=0, student_dir=tiny_checkpoint, teacher_dir=tiny_checkpoint,
                   train_file=data_files / "train.jsonl", val_file=data_files / "val_bench.jsonl",
                   prompt=PROMPT, run_dir=run_dir)


def run_files(base):
    return base / "log.csv", base / "search.csv", base / "index.csv"


@pytest.mark.parametrize("method", ["effopd", "rl"])
def test_resume_equals_uninterrupted(tmp_path, tiny_checkpoint, data_files, method):
    whole = make_trainer(method, tmp_path / "whole", tiny_checkpoint, data_files)
    whole.run(*run_files(tmp_path / "whole"))
    first = make_trainer(method, tmp_path / "split", tiny_checkpoint, data_files)
    first.run(*run_files(tmp_path / "split"), stop_after=3)  # dies after step 3 ...
    assert first.step == 3
    resumed = make_trainer(method, tmp_path / "split", tiny_checkpoint, data_files)
    resumed.run(*run_files(tmp_path / "split"),  # ... and restarts from step 2's checkpoint
                run_name=f"{method}-named")
    assert resumed.step == 4
    for name, tensor in whole.policy.state_dict().items():
        assert torch.equal(tensor, resumed.policy.state_dict()[name]), name
    timing = ["wall_s", "search_s", "cpu_s"]  # measurements, not results
    whole_log = pd.read_csv(tmp_path / "whole" / "log.csv").drop(columns=[*timing, "method"])
    split_log = pd.read_csv(tmp_path / "split" / "log.csv").drop(columns=[*timing, "method"])
    pd.testing.assert_frame_equal(whole_log, split_log)
    index = pd.read_csv(tmp_path / "split" / "index.csv")
    expected_steps = [1, 2, 4] if method == "effopd" else [2, 4]
    assert list(index["step"]) == expected_steps
    if method == "effopd":
        search = pd.read_csv(tmp_path / "split" / "search.csv")
        assert sorted(set(search["step"])) == [1, 2, 4]
    # every row names its run: the run name given (default: the method) and the seed
    for written, name in ((tmp_path / "whole", method), (tmp_path / "split", f"{method}-named")):
        for table in map(pd.read_csv, run_files(written)):
            assert list(table.columns[:2]) == ["method", "seed"]
            assert set(table["method"]) <= {name} and set(table["seed"]) <= {0}


def test_search_moves_only_block_weights_and_keeps_optimizer_state(
        tmp_path, tiny_checkpoint, data_files):
    trainer = make_trainer("effopd", tmp_path, tiny_checkpoint, data_files)
    trainer.train_step()
    before = {n: p.detach().clone() for n, p in trainer.policy.named_parameters()}
    moments = {id(p): {k: v.clone() for k, v in s.items()}
               for p, s in trainer.optimizer.state.items()}
    scores = iter([0.1, 0.2, 0.15])  # accept multiplier 3, reject 5
    trainer.validation_score = lambda seed: next(scores)
    trainer.search()
    blocks = set(block_parameters(trainer.policy))
    assert blocks and all(".layers." in n for n in blocks)
    for name, param in trainer.policy.named_parameters():
        moved = not torch.equal(param, before[name])
        assert moved == (name in blocks and not torch.equal(before[name],
                                                            trainer.anchor[name])), name
    for param, state in trainer.optimizer.state.items():
        for key, value in state.items():
            assert torch.equal(value, moments[id(param)][key])
    assert [r["multiplier"] for r in trainer.search_rows] == [1.0, 3.0, 5.0]
    assert trainer.anchor.keys() == blocks


def test_opd_rejects_teacher_with_other_vocabulary(tmp_path, tiny_checkpoint, data_files):
    from effopd.models.checkpoint import save_checkpoint
    from effopd.models.tiny import init_tiny_qwen3
    from effopd.models.tokenizer import build_char_tokenizer
    from tests.conftest import TINY_ARCH

    other = build_char_tokenizer(["another phrase"])
    save_checkpoint(init_tiny_qwen3(TINY_ARCH, other, 0), other, tmp_path / "t", {})
    with pytest.raises(ValueError, match="different vocabularies"):
        Trainer(TrainSpec.from_config(TRAINING, "opd", GRADING), 0, tiny_checkpoint,
                tmp_path / "t", data_files / "train.jsonl", None, PROMPT, tmp_path / "run")


def test_search_schedules_and_their_checkpoints():
    from effopd.training.contract import save_steps
    from effopd.training.extrapolation import is_search_step, require_authors_search

    assert [s for s in range(1, 20) if is_search_step(s)] == [1, 2, 4, 8, 16]
    assert [s for s in range(1, 20) if is_search_step(s, "every_k", 5)] == [5, 10, 15]
    training = {"steps": 12, "save_every": 6,
                "effopd": {"schedule": "every_k", "search_every": 4}}
    assert save_steps(training, "effopd") == [4, 6, 8, 12]
    assert save_steps(training, "opd") == [6, 12]
    assert save_steps({**training, "effopd": {}}, "effopd") == [1, 2, 4, 6, 8, 12]
    require_authors_search({"schedule": "powers_of_two", "validation_size": None}, "verl")
    with pytest.raises(ValueError, match="engine trl runs the authors' search"):
        require_authors_search({"validation_size": 16}, "trl")


def test_warm_up_is_linear_then_constant_and_rl_has_its_own_lr(tmp_path, tiny_checkpoint,
                                                                data_files):
    from effopd.methods import ALGORITHMS, algorithm_lr
    from effopd.training.trainer import lr_at_step

    with_rl = {"lr": 1e-3, "rl": {"lr": 5e-4}}
    assert [algorithm_lr(with_rl, ALGORITHMS[m]) for m in ("opd", "effopd", "rl")] == [
        1e-3, 1e-3, 5e-4]
    assert algorithm_lr({"lr": 1e-3, "rl": {"lr": None}}, ALGORITHMS["rl"]) == 1e-3

    assert [lr_at_step(1e-3, s, 4) for s in range(1, 6)] == pytest.approx(
        [2.5e-4, 5e-4, 7.5e-4, 1e-3, 1e-3])
    assert lr_at_step(1e-3, 1, 0) == 1e-3
    training = {**TRAINING, "warmup_steps": 2, "rl": {**TRAINING["rl"], "lr": 5e-4}}
    for method, peak in (("opd", TRAINING["lr"]), ("rl", 5e-4)):
        spec = TrainSpec.from_config(training, method, GRADING)
        trainer = Trainer(spec, seed=0, student_dir=tiny_checkpoint, teacher_dir=tiny_checkpoint,
                          train_file=data_files / "train.jsonl", val_file=None, prompt=PROMPT,
                          run_dir=tmp_path / method)
        trainer.run(*run_files(tmp_path / method))
        logged = pd.read_csv(tmp_path / method / "log.csv")["lr"].tolist()
        assert logged == pytest.approx([peak / 2, peak, peak, peak])
        assert trainer.optimizer.param_groups[0]["lr"] == pytest.approx(peak)


def test_pilot_trainers_take_one_step(tmp_path, tiny_checkpoint, data_files, repo):
    """The pilots' two extra kinds (pilots/opd_pilots.py): off-policy SFT on teacher samples
    and the exact per-position reverse KL; a student equal to its teacher has KL 0."""
    import importlib.util

    spec_ = importlib.util.spec_from_file_location("opd_pilots", repo / "pilots" / "opd_pilots.py")
    pilots = importlib.util.module_from_spec(spec_)
    spec_.loader.exec_module(pilots)
    assert pilots.deep_merge({"a": {"b": 1, "c": 2}}, {"a": {"c": 3}}) == {"a": {"b": 1, "c": 3}}
    for kind in ("offpolicy_sft", "opd_fullkl"):
        spec = TrainSpec.from_config({**TRAINING, "steps": 1}, "opd", GRADING)
        trainer = pilots._PilotTrainer.make(kind)(
            spec, seed=0, student_dir=tiny_checkpoint, teacher_dir=tiny_checkpoint,
            train_file=data_files / "train.jsonl", val_file=None, prompt=PROMPT,
            run_dir=tmp_path / kind)
        row = trainer.train_step()
        assert row["step"] == 1 and row["responses"] == TRAINING["opd"]["prompts_per_step"]
        assert row["reverse_kl"] == pytest.approx(0.0, abs=1e-5)  # same model: no divergence
        assert math.isfinite(row["loss"])


def test_engine_knobs_left_out_take_the_schemas_defaults() -> None:
    """A training block without group_size or search_every gets the schema's values
    (rl.group_size 4, effopd.search_every 8), as validation would fill them; OPD and
    EffOPD sample one response per prompt."""
    from effopd.config import schema_default
    from effopd.training.contract import group_size, save_steps

    assert schema_default("training", "rl")["group_size"] == 4
    assert schema_default("training", "effopd")["search_every"] == 8
    training = {"steps": 24, "save_every": 12, "rl": {"prompts_per_step": 8},
                "effopd": {"schedule": "every_k"}}
    assert group_size(training, "rl") == 4
    assert group_size({**training, "rl": {"group_size": 6}}, "rl") == 6
    assert group_size(training, "opd") == group_size(training, "effopd") == 1
    # grid 12, 24 plus the searches after steps 8, 16, 24 (every 8, not every step)
    assert save_steps(training, "effopd") == [8, 12, 16, 24]
    assert save_steps(training, "opd") == [12, 24]


def test_full_reverse_kl_has_the_closed_form():
    from effopd.training.losses import full_reverse_kl

    # student uniform over two tokens, teacher (3/4, 1/4): KL = 0.5 ln(4/3) at each position
    student = torch.zeros(1, 3, 2)
    teacher = torch.tensor([[[math.log(3.0), 0.0]] * 3])
    mask = torch.tensor([[1.0, 1.0, 0.0]])
    assert float(full_reverse_kl(student, teacher, mask)) == pytest.approx(0.5 * math.log(4 / 3))
    assert float(full_reverse_kl(teacher, teacher, mask)) == pytest.approx(0.0, abs=1e-7)


def test_the_full_kl_objective_is_a_declared_method_that_trains(tmp_path, tiny_checkpoint,
                                                                  data_files):
    """The pilots' per-position objective, declared once (effopd/methods.py): the local
    engine trains it, logging its loss as the batch's reverse KL (teacher = student: 0)."""
    from effopd.methods import declare

    method = declare({"name": "opd-fullkl", "algorithm": "opd_fullkl"})
    trainer = make_trainer(method.algorithm.name, tmp_path, tiny_checkpoint, data_files)
    trainer.run(*run_files(tmp_path), run_name=method.name)
    log = pd.read_csv(tmp_path / "log.csv")
    assert list(log["step"]) == [1, 2, 3, 4] and set(log["method"]) == {"opd-fullkl"}
    assert log["loss"].tolist() == pytest.approx(log["reverse_kl"].tolist())
    assert log["reverse_kl"].iloc[0] == pytest.approx(0.0, abs=1e-6)  # its own teacher
    assert log["reverse_kl"].iloc[-1] > 0  # the student moved away from its frozen copy
