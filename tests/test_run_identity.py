"""Runs carry their identity in their files: the one-off migration of older results, and
readers that join on (method, seed) whatever the directories or the lists' order say."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pandas as pd
import pytest

from effopd.errors import InputError
from effopd.reports.training import compute_table, load_curves

ROOT = Path(__file__).resolve().parents[1]
spec = importlib.util.spec_from_file_location("migrate_run_identity",
                                              ROOT / "tools" / "migrate_run_identity.py")
migrate = importlib.util.module_from_spec(spec)
sys.modules["migrate_run_identity"] = migrate
spec.loader.exec_module(migrate)

OLD_LOG = "step,wall_s,response_tokens,prompts,responses,search_s\r\n1,2.5,100,4,4,0.0\r\n"
OLD_INDEX = "step,path,wall_s\r\n2,artifacts/x/runs/opd-lr2x/seed3/checkpoints/step_2,2.5\r\n"
OLD_EVAL = ("step,train_wall_s,avg@n,benchmark,model,seed,n\n"
            "0,0.0,0.25,b,opd-lr2x/seed3/step_0,42,4\n"
            "2,2.5,0.5,b,opd-lr2x/seed3/step_2,42,4\n")
OLD_NORMS = "checkpoint,step,fraction,block_norm\nstep_2,2,1.0,0.125\n"


def old_results(root: Path) -> dict[str, Path]:
    files = {"log": root / "train/opd-lr2x/seed3/log.csv",
             "index": root / "train/opd-lr2x/seed3/checkpoints.csv",
             "eval": root / "eval/runs/opd-lr2x/seed3/b.csv",
             "problems": root / "eval/runs/opd-lr2x/seed3/b.problems.csv",
             "norms": root / "analysis/opd-lr2x/seed3/update_norms.csv"}
    texts = {"log": OLD_LOG, "index": OLD_INDEX, "eval": OLD_EVAL,
             "problems": "step,n,p0\n0,4,1\n2,4,2\n", "norms": OLD_NORMS}
    for key, path in files.items():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(texts[key].encode())
    return files


def test_migration_prepends_the_identity_and_keeps_every_byte_else(tmp_path):
    files = old_results(tmp_path)
    assert migrate.main([str(tmp_path)]) == 0
    read = {key: path.read_bytes().decode() for key, path in files.items()}
    assert read["log"] == ("method,seed,step,wall_s,response_tokens,prompts,responses,"
                           "search_s\r\nopd-lr2x,3,1,2.5,100,4,4,0.0\r\n")
    assert read["index"] == ("method,seed,step,path,wall_s\r\nopd-lr2x,3,2,"
                             "artifacts/x/runs/opd-lr2x/seed3/checkpoints/step_2,2.5\r\n")
    # the evaluation series' seed was the sampling seed: renamed where it stood
    assert read["eval"] == ("method,seed,step,train_wall_s,avg@n,benchmark,model,"
                            "sampling_seed,n\nopd-lr2x,3,0,0.0,0.25,b,opd-lr2x/seed3/step_0,42,4\n"
                            "opd-lr2x,3,2,2.5,0.5,b,opd-lr2x/seed3/step_2,42,4\n")
    assert read["norms"] == ("method,seed,checkpoint,step,fraction,block_norm\n"
                             "opd-lr2x,3,step_2,2,1.0,0.125\n")
    assert read["problems"] == "step,n,p0\n0,4,1\n2,4,2\n"  # the companion: untouched
    assert migrate.main([str(tmp_path)]) == 0  # again: nothing to do
    assert {key: path.read_bytes().decode() for key, path in files.items()} == read


def test_migration_refuses_a_file_whose_contents_name_another_run(tmp_path):
    files = old_results(tmp_path)
    files["eval"].write_text(OLD_EVAL.replace("opd-lr2x/seed3/step_2", "opd/seed3/step_2"))
    with pytest.raises(SystemExit, match=r"b.csv: model opd/seed3/step_2 is not opd-lr2x/seed3/"):
        migrate.main([str(tmp_path)])
    assert files["log"].read_bytes().decode() == OLD_LOG  # checked first, nothing written


def _run(directory: Path, method: str, seed: int, accuracy: float, tokens: int
         ) -> tuple[Path, Path]:
    directory.mkdir(parents=True)
    pd.DataFrame({"method": method, "seed": seed, "step": [0, 1], "train_wall_s": [0.0, 1.0],
                  "benchmark": "b",
                  "avg@n": [0.25, accuracy], "sampling_seed": 42}).to_csv(
        directory / "b.csv", index=False)
    pd.DataFrame({"method": method, "seed": seed, "step": [1], "response_tokens": [tokens],
                  "prompts": 4, "responses": 4, "search_s": 0.0, "wall_s": 1.0,
                  "batch_accuracy": 0.5, "reverse_kl": 0.1, "loss": 0.1}).to_csv(
        directory / "log.csv", index=False)
    return directory / "b.csv", directory / "log.csv"


def test_curves_join_each_series_with_its_own_log(tmp_path):
    """Directories named after the other run, logs listed in the other order: each
    accuracy still meets its own run's tokens."""
    eval_a, log_a = _run(tmp_path / "rl" / "seed1", "opd", 0, 0.5, 100)
    eval_b, log_b = _run(tmp_path / "opd" / "seed0", "rl", 1, 0.75, 300)
    curves = load_curves([eval_a, eval_b], [log_b, log_a]).set_index(["method", "seed", "step"])
    assert curves.loc[("opd", 0, 1), "avg@n"] == 0.5
    assert curves.loc[("opd", 0, 1), "generated_tokens"] == 100
    assert curves.loc[("rl", 1, 1), "generated_tokens"] == 300
    compute = compute_table([log_b, log_a]).set_index("method")
    assert compute.loc["rl", "train_tokens_total"] == 300
    with pytest.raises(InputError, match=r"rl/seed1/b.csv: run method=opd seed=0 has no file "
                                         r"among the training logs"):
        load_curves([eval_a, eval_b], [log_b])
