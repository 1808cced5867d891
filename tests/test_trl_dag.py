"""The smoke DAG with ``training.engine: trl``: OPD, EffOPD and RL through TRL's trainers,
then the same evaluation, analysis and tables as with the local engine."""

from pathlib import Path

import pandas as pd
import pytest
import yaml

from tests.conftest import REPO, run_smoke_dag

pytest.importorskip("trl")


@pytest.mark.slow
def test_smoke_dag_trains_through_trl(tmp_path):
    # the smoke config with engine trl, less its step-size ablation (engine local only:
    # TRL runs the authors' search, and its engine refuses the variants)
    config = yaml.safe_load((REPO / "config" / "smoke.yaml").read_text())
    config.pop("ablation")
    config["training"]["engine"] = "trl"
    configfile = tmp_path / "smoke_trl.yaml"
    configfile.write_text(yaml.safe_dump(config))
    result = run_smoke_dag(tmp_path, "--cores", "2", timeout=1800, configfile=configfile)
    assert result.returncode == 0, result.stderr[-4000:]
    results = tmp_path / "results/smoke"
    for method in ("opd", "rl", "effopd"):
        log = pd.read_csv(results / f"train/{method}/seed0/log.csv")
        assert list(log["step"]) == [1, 2, 3, 4]
        assert {"wall_s", "search_s", "loss", "lr", "val_tokens", "cpu_s"} <= set(log.columns)
        assert log["wall_s"].is_monotonic_increasing and log["cpu_s"].is_monotonic_increasing
        assert log["loss"].notna().all() and (log["lr"] == 0.001).all()
        index = pd.read_csv(results / f"train/{method}/seed0/checkpoints.csv")
        assert index["step"].iloc[-1] == 4
        for step, path in zip(index["step"], index["path"], strict=True):
            assert Path(path).name == f"checkpoint-{step}"
            assert (Path(path) / "model.safetensors").exists()
        scores = pd.read_csv(results / f"eval/runs/{method}/seed0/tiny_test.csv")
        assert scores["step"].tolist() == [0, *index["step"].tolist()]
    effopd_log = pd.read_csv(results / "train/effopd/seed0/log.csv").set_index("step")
    assert (effopd_log.loc[[1, 2, 4], "val_tokens"] > 0).all()
    assert effopd_log.loc[3, "val_tokens"] == 0 and effopd_log.loc[3, "search_s"] == 0
    assert pd.read_csv(results / "train/rl/seed0/log.csv")["batch_accuracy"].between(0, 1).all()
    search = pd.read_csv(results / "train/effopd/seed0/effopd_search.csv")
    assert sorted(set(search["step"])) == [1, 2, 4]
    assert set(search["multiplier"]) <= {1.0, 3.0, 5.0}
    index = pd.read_csv(results / "train/effopd/seed0/checkpoints.csv")
    assert index["step"].tolist() == [1, 2, 4]
    assert all((Path(p) / "effopd_anchor.safetensors").exists() for p in index["path"])
    assert pd.read_csv(results / "train/opd/seed0/effopd_search.csv").empty
    # the learning-rate baseline of config/smoke.yaml, trained by TRL at twice the lr
    baseline = pd.read_csv(results / "train/opd-lr2x/seed0/log.csv")
    assert list(baseline["step"]) == [1, 2, 3, 4] and (baseline["lr"] == 0.002).all()
    speedup = pd.read_csv(results / "tables/effopd_speedup.csv")
    assert list(zip(speedup["comparison"], speedup["row"], strict=True)) == [
        (c, r) for c in ("effopd_vs_opd", "opd-lr2x_vs_opd", "effopd_vs_best_lr_opd")
        for r in ("pair", "summary")]
    assert (tmp_path / "paper_figures/smoke/training_curves.png").stat().st_size > 0
