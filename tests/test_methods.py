"""The method registry (effopd/methods.py): each method declared once, asked by everyone."""

import json
import subprocess
from pathlib import Path

import pytest

from effopd.config import ConfigError, read_yaml, validate_config
from effopd.methods import (
    ALGORITHMS,
    algorithm_lr,
    algorithm_of,
    declare,
    declared_methods,
    lr_baseline_name,
    method_label,
    methods_from_json,
)
from effopd.training.contract import group_size, save_steps

ROOT = Path(__file__).resolve().parents[1]
TRAINING = {"methods": ["opd", "rl", "effopd"], "lr": 3e-4, "warmup_steps": 0,
            "rl": {"lr": 6e-5}, "effopd": {"max_iterations": 5},
            "lr_baselines": {"multipliers": [2, 4, 0.5], "warmup_steps": None}}


def test_config_order_and_roles():
    methods = declared_methods(TRAINING, {"variants": {"small": {"validation_size": 8}}})
    assert list(methods) == ["opd", "rl", "effopd", "opd-lr2x", "opd-lr4x", "opd-lr0.5x",
                             "effopd-small"]
    assert [m.role for m in methods.values()] == ["main"] * 3 + ["lr_baseline"] * 3 + [
        "variant"]
    assert [m.algorithm.name for m in methods.values()] == [
        "opd", "rl", "effopd", "opd", "opd", "opd", "effopd"]
    assert lr_baseline_name(1.5) == "opd-lr1.5x"


def test_baselines_exist_only_beside_opd():
    assert list(declared_methods({**TRAINING, "methods": ["rl", "effopd"]})) == ["rl", "effopd"]


def test_each_method_trains_with_its_own_block():
    methods = declared_methods(TRAINING, {"variants": {"small": {"validation_size": 8}}})
    assert methods["opd"].training(TRAINING) == TRAINING  # as it is
    two = methods["opd-lr2x"].training(TRAINING)
    assert two["lr"] == pytest.approx(6e-4) and two["warmup_steps"] == 0  # null: OPD's own
    assert {k: v for k, v in two.items() if k != "lr"} == {
        k: v for k, v in TRAINING.items() if k != "lr"}
    warm = declared_methods({**TRAINING, "lr_baselines": {"multipliers": [4],
                                                          "warmup_steps": 8}})["opd-lr4x"]
    assert warm.training(TRAINING)["lr"] == pytest.approx(1.2e-3)
    assert warm.training(TRAINING)["warmup_steps"] == 8
    small = methods["effopd-small"].training(TRAINING)
    assert small["effopd"] == {"max_iterations": 5, "validation_size": 8}
    assert TRAINING["effopd"] == {"max_iterations": 5}  # the config is not touched
    # the peak learning rate: RL's own block, else training.lr
    assert [methods[m].peak_lr(TRAINING) for m in ("opd", "rl", "effopd", "opd-lr0.5x")] == [
        pytest.approx(3e-4), pytest.approx(6e-5), pytest.approx(3e-4), pytest.approx(1.5e-4)]
    assert algorithm_lr({"lr": 1e-3, "rl": {"lr": None}}, ALGORITHMS["rl"]) == 1e-3


def test_a_declared_lr_is_the_one_every_engine_reads():
    """RL reads training.rl.lr before training.lr: a declared RL lr sets both."""
    rl = declare({"name": "rl-3e-4", "algorithm": "rl", "lr": 3e-4})
    block = rl.training(TRAINING)
    assert algorithm_lr(block, ALGORITHMS["rl"]) == 3e-4 and block["rl"]["lr"] == 3e-4
    assert TRAINING["rl"]["lr"] == 6e-5  # the config is not touched
    double = declare({"name": "rl-x2", "algorithm": "rl", "lr_multiplier": 2})
    assert double.peak_lr(TRAINING) == pytest.approx(1.2e-4)  # 2 x RL's own lr
    assert "lr" not in declare({"name": "o", "algorithm": "opd", "lr": 1e-5}).training(
        {**TRAINING, "opd": {"prompts_per_step": 4}})["opd"]  # OPD's block has none


def test_a_mapping_declares_a_method_at_its_own_lr():
    method = declare({"name": "effopd-2e-5", "algorithm": "effopd", "lr": 2e-5,
                      "label": "EffOPD lr 2e-5", "effopd": {"max_iterations": 3}})
    block = method.training(TRAINING)
    assert (block["lr"], block["effopd"]["max_iterations"]) == (2e-5, 3)
    assert method.label == "EffOPD lr 2e-5"
    again = methods_from_json(json.loads(json.dumps([method.as_json()])))["effopd-2e-5"]
    assert again == method


@pytest.mark.parametrize("entry, words", [
    ("ppo", "algorithm 'ppo' is not one of opd, rl, effopd"),
    ({"name": "x", "algorithm": "opd", "lr": 1e-5, "lr_multiplier": 2}, "not both"),
    ({"name": "x", "algorithm": "opd", "effopd": {"max_iterations": 2}}, "runs no line search"),
    ({"name": "x"}, "needs name and algorithm"),
])
def test_bad_declarations_are_refused_naming_the_entry(entry, words):
    with pytest.raises(ValueError, match=words):
        declare(entry)


def smoke_with(**training):
    config = read_yaml(ROOT / "config" / "smoke.yaml")
    config["training"].update(training)
    return config


def test_the_config_refuses_an_unknown_algorithm_and_a_name_given_twice():
    validate_config(smoke_with(methods=["opd", {"name": "opd-2e-5", "algorithm": "opd",
                                                "lr": 2e-5}]), source="t.yaml")
    with pytest.raises(ConfigError, match="training/methods.*'ppo'"):
        validate_config(smoke_with(methods=["opd", "ppo"]), source="t.yaml")
    with pytest.raises(ConfigError, match="'opd-lr2x' is declared twice"):
        validate_config(smoke_with(methods=["opd", {"name": "opd-lr2x", "algorithm": "opd"}],
                                   lr_baselines={"multipliers": [2]}), source="t.yaml")


def test_engines_read_the_algorithm_not_the_name():
    block = {"steps": 8, "save_every": 4, "effopd": {"schedule": "powers_of_two"},
             "rl": {"group_size": 6}}
    assert group_size(block, "rl") == 6 and group_size(block, ALGORITHMS["effopd"]) == 1
    assert save_steps(block, "opd") == [4, 8]
    assert save_steps(block, "effopd") == [1, 2, 4, 8]  # the search steps too
    declared = declared_methods({"methods": [{"name": "mine", "algorithm": "rl"}], "lr": 1.0})
    assert algorithm_of("mine", declared).name == "rl" and algorithm_of("unknown") is None
    assert method_label("mine", declared) == "mine" and method_label("rl") == "RL (GRPO)"


def test_no_method_name_is_compared_outside_the_registry():
    """Nothing outside effopd/methods.py compares a string to an algorithm's name."""
    out = subprocess.run(
        ["grep", "-rnE",
         r"""(==|!=|\bin) *\(?["'](opd|rl|effopd)["']|["'](opd|rl|effopd)["'] *(==|!=)""",
         "effopd", "workflow", "Snakefile", "--include=*.py", "--include=*.smk",
         "--include=Snakefile"], capture_output=True, text=True, cwd=ROOT)
    hits = [line for line in out.stdout.splitlines() if not line.startswith("effopd/methods.py")]
    assert hits == [], hits


@pytest.mark.parametrize("engine, flags, refused", [
    ("verl", ["--stop-after", "1"], "training engine verl: --stop-after not supported"),
    ("verl", ["--fresh"], "training engine verl: --fresh not supported"),
    ("trl", ["--fresh"], "training engine trl: --fresh not supported"),
])
def test_an_engine_refuses_what_it_cannot_honour_in_one_line(tmp_path, caplog, engine, flags,
                                                             refused):
    """The command line dispatches every engine through one RunRequest; an option the
    engine cannot honour is refused before anything is read or written."""
    from effopd.cli.main import main

    training = json.dumps({"engine": engine, "steps": 2, "save_every": 1})
    code = main(["train", "--method", "opd", "--seed", "0", "--training", training,
                 "--grading", "{}", "--prompt", "{}", "--student", str(tmp_path / "s"),
                 "--train", str(tmp_path / "t.jsonl"), "--run-dir", str(tmp_path / "run"),
                 "--log-csv", str(tmp_path / "log.csv"), "--search-csv",
                 str(tmp_path / "search.csv"), "--index-csv", str(tmp_path / "index.csv"),
                 *flags])
    assert code == 1
    errors = [r.getMessage() for r in caplog.records if r.levelname == "ERROR"]
    assert len(errors) == 1 and refused in errors[0] and "\n" not in errors[0]
    assert sorted(p.name for p in tmp_path.iterdir()) == []
