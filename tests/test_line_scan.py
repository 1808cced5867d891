"""The line scan (effopd/training/line_scan.py): the anchor and the endpoint of the line are
the run's own weights, so m = 0 and m = 1 reproduce what the run scores there."""

import json

import pandas as pd
import pytest

from effopd.training.line_scan import COLUMNS, scan_steps
from effopd.training.trainer import Trainer, TrainSpec

TRAINING = {"steps": 4, "save_every": 4, "save_powers_of_two": True, "lr": 1e-2,
            "betas": [0.9, 0.999], "weight_decay": 0.01, "grad_clip": 1.0,
            "temperature": 1.0, "top_p": 1.0, "max_new_tokens": 8, "rollout_batch_size": 64,
            "opd": {"prompts_per_step": 4, "clip_ratio_low": 0.2, "clip_ratio_high": 0.2}}
GRADING = {"timeout_s": 5.0, "workers": 1}
PROMPT = {"instruction": "Please reason step by step, and put your final answer within "
                         "\\boxed{}.", "enable_thinking": False}


def test_scan_steps_pair_each_search_step_with_the_previous_one():
    assert scan_steps([1, 2, 4, 8, 16, 24, 32]) == [(0, 1), (1, 2), (2, 4), (4, 8), (8, 16),
                                                    (16, 32)]
    assert scan_steps([2, 4, 6]) == [(0, 2), (2, 4)]  # step 1 not saved: 2 from the base
    assert scan_steps([3, 5]) == []


@pytest.fixture(scope="module")
def opd_run(tmp_path_factory, tiny_checkpoint):
    from effopd.data.arithmetic import ArithmeticSpec, write_splits
    from effopd.evaluation import prepare_benchmark

    root = tmp_path_factory.mktemp("scan")
    write_splits(ArithmeticSpec(n_train=40, n_val=8, n_test=4, seed=3), root)
    prepare_benchmark({"source": "task", "split": "val"}, root / "val.bench.jsonl",
                      task_file=root / "val.jsonl")
    # the student's own copy as teacher: step 1 moves it away, so the KL grows with m
    trainer = make_trainer(root, tiny_checkpoint, root / "run")
    trainer.run(root / "log.csv", root / "search.csv", root / "index.csv")
    return root


def make_trainer(root, checkpoint, run_dir):
    return Trainer(TrainSpec.from_config(TRAINING, "opd", GRADING), 0, checkpoint, checkpoint,
                   root / "train.jsonl", root / "val.bench.jsonl", PROMPT, run_dir)


def test_the_line_runs_from_the_anchor_through_the_run_and_beyond(opd_run, tiny_checkpoint):
    from effopd.cli.main import main
    from effopd.training.contract import search_seed

    out = opd_run / "scan.csv"
    assert main(["line-scan", "--index", str(opd_run / "index.csv"), "--training",
                 json.dumps(TRAINING), "--grading", json.dumps(GRADING), "--prompt",
                 json.dumps(PROMPT), "--student", str(tiny_checkpoint), "--teacher",
                 str(tiny_checkpoint), "--train", str(opd_run / "train.jsonl"), "--val",
                 str(opd_run / "val.bench.jsonl"), "--multipliers", "0", "1", "3",
                 "--out", str(out)]) == 0
    scan = pd.read_csv(out)
    assert list(scan.columns) == COLUMNS
    assert list(zip(scan["anchor_step"], scan["step"], strict=True)) == \
        [(0, 1)] * 3 + [(1, 2)] * 3 + [(2, 4)] * 3
    assert set(scan["method"]) == {"opd"} and set(scan["lr"]) == {1e-2}
    at = scan.set_index(["step", "multiplier"])
    # m = 1 is the run's own checkpoint; m = 0 is the anchor's block weights inside the
    # checkpoint (EffOPD moves the blocks only): both scored exactly as the scan did
    from transformers import AutoModelForCausalLM

    from effopd.training.contract import block_parameters

    index = pd.read_csv(opd_run / "index.csv").set_index("step")["path"]
    probe = make_trainer(opd_run, tiny_checkpoint, opd_run / "probe")

    def weights(path, blocks_from=None):
        state = AutoModelForCausalLM.from_pretrained(str(path)).state_dict()
        if blocks_from is not None:
            anchor = AutoModelForCausalLM.from_pretrained(str(blocks_from))
            state.update({k: v for k, v in anchor.state_dict().items()
                          if k in block_parameters(anchor)})
        return state

    for step, multiplier, state in ((1, 1.0, weights(index[1])), (4, 1.0, weights(index[4])),
                                    (1, 0.0, weights(index[1], tiny_checkpoint)),
                                    (4, 0.0, weights(index[4], index[2]))):
        probe.policy.load_state_dict(state)
        assert at.loc[(step, multiplier), "val_acc"] == probe.validation_score(
            search_seed(0, step))
        assert at.loc[(step, multiplier), "reverse_kl"] == pytest.approx(
            probe.batch_reverse_kl(step + 1), rel=1e-6, abs=1e-6)
    # further along the line, further from the teacher (the base student's own copy)
    assert at.loc[(1, 3.0), "reverse_kl"] > at.loc[(1, 1.0), "reverse_kl"]

    from effopd.plots.line_scan import plot_line_scan
    from effopd.reports.line_scan import best_multipliers, write_line_scan

    table = write_line_scan([out], opd_run / "tables" / "line_scan.csv")
    best = best_multipliers(table)
    assert list(best["step"]) == [1, 2, 4]
    assert set(best["best_m_reverse_kl"]) <= {0.0, 1.0, 3.0}
    assert list(best["val_acc_m1"]) == list(at.xs(1.0, level="multiplier")["val_acc"])
    plot_line_scan(table, opd_run / "line_scan.png")
    assert (opd_run / "line_scan.pdf").exists()


def test_the_config_names_an_opd_run_with_the_search_steps_saved():
    from effopd.config import ConfigError, load_config, validate_config

    config = load_config("config/stepsize.yaml")
    assert config["line_scan"]["methods"] == ["opd", "opd-lr1e-4", "opd-lr5e-5", "opd-lr2e-5"]
    for change, words in ((("line_scan", "methods", ["effopd"]), "'effopd' is not a declared "
                           "method of algorithm opd"),
                          (("training", "save_powers_of_two", False), "save_powers_of_two")):
        block, key, value = change
        bad = json.loads(json.dumps(config))
        bad[block][key] = value
        with pytest.raises(ConfigError, match=words):
            validate_config(bad, source="stepsize.yaml")
