"""The training tables from metrics written by verl's own logging API (file backend, CPU)."""

import math

import pandas as pd
import pytest

pytest.importorskip("verl", reason="verl environment only (make verl-env; make test runs it)")

from effopd.integrations.verl_metrics import LOG_COLUMNS, write_verl_tables  # noqa: E402
from effopd.reports.training import write_training_tables  # noqa: E402

STEP_S = {"opd": 10.0, "effopd": 12.0, "rl": 8.0}
ACCURACY = {"opd": [0.1, 0.3, 0.4, 0.45, 0.5], "effopd": [0.1, 0.4, 0.5, 0.55, 0.6],
            "rl": [0.1, 0.2, 0.25, 0.3, 0.3]}
BATCH = {"opd": (8, 1), "effopd": (8, 1), "rl": (2, 4)}


def log_with_verl(path, method, monkeypatch):
    """Four training steps (and a step-0 validation line) through verl's Tracking."""
    from verl.utils.tracking import Tracking

    monkeypatch.setenv("VERL_FILE_LOGGER_PATH", str(path))
    tracking = Tracking(project_name="effopd-repro", experiment_name=f"{method}-seed0",
                        default_backend=["file"])
    tracking.log(data={"val-core/val/acc/mean@1": 0.1}, step=0)
    for step in range(1, 5):
        data = {"timing_s/step": STEP_S[method], "actor/loss": 0.5 / step,
                "critic/score/mean": 0.25 * step / 4, "response_length/mean": 100.0 + step,
                "actor/lr": 1e-6, "training/global_step": step}
        if method != "rl":
            data["actor/distillation/loss"] = 0.2 / step
        if method == "effopd" and step in (1, 2, 4):
            data["timing_s/effopd_search"] = 2.0
            data["effopd/val_tokens"] = 300.0
        tracking.log(data=data, step=step)
    tracking.logger["file"].finish()


def test_training_tables_build_from_verl_metrics(tmp_path, monkeypatch):
    evals, logs = [], []
    for method in ("opd", "effopd", "rl"):
        run = tmp_path / method / "seed0"
        run.mkdir(parents=True)
        metrics = run / "verl_metrics.jsonl"
        log_with_verl(metrics, method, monkeypatch)
        index = pd.DataFrame({"step": [2, 4], "path": ["ckpt2", "ckpt4"]})
        prompts, group = BATCH[method]
        log = write_verl_tables(metrics, index, prompts, group, run / "log.csv",
                                run / "checkpoints.csv", run / "effopd_search.csv",
                                method=method, seed=0)
        assert list(log.columns) == LOG_COLUMNS and list(log["step"]) == [1, 2, 3, 4]
        for written in ("log.csv", "checkpoints.csv", "effopd_search.csv"):
            table = pd.read_csv(run / written)
            assert list(table.columns[:2]) == ["method", "seed"]
            assert set(table["method"]) <= {method} and set(table["seed"]) <= {0}
        assert log["wall_s"].tolist() == [STEP_S[method] * k for k in (1, 2, 3, 4)]
        assert log["response_tokens"].iloc[0] == 101.0 * prompts * group
        assert (math.isnan(log["reverse_kl"].iloc[1]) if method == "rl"
                else log["reverse_kl"].iloc[1] == 0.1)
        checkpoints = pd.read_csv(run / "checkpoints.csv")
        assert checkpoints["wall_s"].tolist() == [2 * STEP_S[method], 4 * STEP_S[method]]
        # what evaluate_series writes from that index (step 0 = the base model)
        walls = [0.0, *checkpoints["wall_s"]]
        acc = ACCURACY[method]
        pd.DataFrame({"method": checkpoints["method"].iloc[0],
                      "seed": checkpoints["seed"].iloc[0], "step": [0, 2, 4],
                      "train_wall_s": walls, "benchmark": "b",
                      "avg@n": [acc[0], acc[2], acc[4]], "pass@1": [acc[0], acc[2], acc[4]],
                      "sampling_seed": 42}).to_csv(run / "b.csv", index=False)
        # and its per-problem counts: 20 problems, one sample each, the first 20 x acc right
        pd.DataFrame([{"step": st, "n": 1, **{f"p{i}": int(i < round(20 * acc[st]))
                                              for i in range(20)}} for st in (0, 2, 4)]
                     ).to_csv(run / "b.problems.csv", index=False)
        evals.append(run / "b.csv")
        logs.append(run / "log.csv")
    out = tmp_path / "tables"
    write_training_tables(evals, logs, "b", out / "curves.csv", out / "speedup.csv",
                          out / "compute.csv")
    speedup = pd.read_csv(out / "speedup.csv")
    pair = speedup[(speedup["comparison"] == "effopd_vs_opd") & (speedup["row"] == "pair")]
    # OPD 0.1, 0.4, 0.5 and EffOPD 0.1, 0.5, 0.6 at steps 0, 2, 4: OPD's plateau 0.5, target
    # 0.1 + 0.9 (0.5 - 0.1) = 0.46, reached by OPD at step 3.2 and by EffOPD at 1.8
    assert pair["target_accuracy"].iloc[0] == pytest.approx(0.46)
    assert pair["speedup_steps"].iloc[0] == pytest.approx(3.2 / 1.8)
    assert math.isnan(pair["speedup_cpu_s"].iloc[0])  # verl records wall time only
    compute = pd.read_csv(out / "compute.csv").set_index("method")
    assert compute.loc["rl", "responses_per_step"] == 8
    assert compute.loc["effopd", "search_s_total"] == 6.0
    assert compute.loc["opd", "wall_s_total"] == 40.0
    curves = pd.read_csv(out / "curves.csv")
    opd4 = curves[(curves.method == "opd") & (curves.step == 4)].iloc[0]
    assert opd4["batch_accuracy"] == 0.25 and opd4["reverse_kl"] == pytest.approx(0.05)


def test_unreadable_metrics_line_is_named(tmp_path):
    bad = tmp_path / "m.jsonl"
    bad.write_text('{"step": 1, "data": {"timing_s/step": 1}}\nnot json\n')
    with pytest.raises(ValueError, match=r"m.jsonl:2"):
        write_verl_tables(bad, pd.DataFrame({"step": [], "path": []}), 1, 1, tmp_path / "l",
                          tmp_path / "i", tmp_path / "s", method="opd", seed=0)


def test_a_nan_metric_logged_by_verl_is_read_back_as_nan(tmp_path, monkeypatch):
    """verl's file logger writes NaN as null; float(None) crashed the table."""
    from verl.utils.tracking import Tracking

    path = tmp_path / "verl_metrics.jsonl"
    monkeypatch.setenv("VERL_FILE_LOGGER_PATH", str(path))
    tracking = Tracking(project_name="p", experiment_name="e", default_backend=["file"])
    tracking.log(data={"timing_s/step": 1.0, "actor/loss": math.nan, "critic/score/mean": 0.5,
                       "response_length/mean": 10.0, "actor/distillation/loss": math.nan},
                 step=1)
    tracking.logger["file"].finish()
    assert '"actor/loss":null' in path.read_text()
    log = write_verl_tables(path, pd.DataFrame({"step": [1], "path": ["c"]}), 2, 1,
                            tmp_path / "log.csv", tmp_path / "index.csv", tmp_path / "s.csv",
                            method="opd", seed=0)
    assert math.isnan(log["loss"].iloc[0]) and math.isnan(log["reverse_kl"].iloc[0])
    assert log["batch_accuracy"].iloc[0] == 0.5
