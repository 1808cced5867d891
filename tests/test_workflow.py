"""The real Snakemake DAG: dry runs of every config, lint, and an end-to-end smoke run."""

import json

import pandas as pd
import pytest

from tests.conftest import run_cli, run_smoke_dag


def snakemake(repo, workdir, *args, timeout=900):
    return run_cli("snakemake", "-s", str(repo / "Snakefile"), "--directory", str(workdir),
                   *args, timeout=timeout)


def job_counts(output: str) -> dict[str, int]:
    """Parse the 'Job stats' table of a dry run into {rule: count}."""
    lines = output.split("Job stats:")[1].splitlines()[3:]
    counts = {}
    for line in lines:
        parts = line.split()
        if len(parts) != 2 or not parts[1].isdigit():
            break
        counts[parts[0]] = int(parts[1])
    return counts


def test_default_dag_resolves(repo, tmp_path):
    result = snakemake(repo, tmp_path, "-n", "--cores", "2", "--configfile",
                       str(repo / "config/config.yaml"))
    assert result.returncode == 0, result.stderr
    counts = job_counts(result.stdout)
    assert counts["build_model"] == 2 and counts["tabulate_base_models"] == 1
    assert "fetch_model" not in counts


def test_code_dag_resolves(repo, tmp_path):
    """config/code.yaml: the same DAG on the code task (OPD, RL, EffOPD, analyses, claims,
    speed-up), its benchmarks the code task's splits, its training graded in the sandbox."""
    result = snakemake(repo, tmp_path, "-n", "-p", "--cores", "2", "--configfile",
                       str(repo / "config/code.yaml"))
    assert result.returncode == 0, result.stderr
    counts = job_counts(result.stdout)
    assert counts["build_model"] == 2 and counts["make_task_data"] == 1
    assert counts["train"] == 9 and counts["evaluate_run"] == 9
    assert counts["prepare_benchmark"] == 2 and counts["tabulate_claims"] == 1
    assert counts["plot_speedup"] == 1 and "fetch_model" not in counts
    assert '"kind": "code"' in result.stdout and "results/code/tables/claims.csv" in result.stdout
    trains = [line for line in result.stdout.splitlines() if "effopd train " in line]
    assert len(trains) == 9 and all('"batch_size": 64' in line for line in trains)


def test_lr_baselines_are_trained_evaluated_and_tabulated(repo, tmp_path):
    """training.lr_baselines: OPD at 2x lr is a method of its own (opd-lr2x) on every seed,
    trained by the opd trainer at twice the lr, and enters the speed-up table's inputs."""
    import yaml

    config = yaml.safe_load((repo / "config/config.yaml").read_text())
    config["training"]["lr_baselines"] = {"multipliers": [2], "warmup_steps": 4}
    path = tmp_path / "lr.yaml"
    path.write_text(yaml.safe_dump(config))
    result = snakemake(repo, tmp_path, "-n", "-p", "--cores", "2", "--configfile", str(path))
    assert result.returncode == 0, result.stderr
    counts = job_counts(result.stdout)
    seeds = len(config["seeds"])
    assert counts["train"] == 4 * seeds and counts["evaluate_run"] == 4 * seeds
    commands = [line for line in result.stdout.splitlines()
                if "effopd train" in line and "runs/opd-lr2x/seed" in line]
    assert len(commands) == seeds
    assert all("--method opd " in c and '"lr": 0.0006' in c and '"warmup_steps": 4' in c
               for c in commands)
    (tabulate,) = [line for line in result.stdout.splitlines()
                   if "effopd tabulate-training" in line]
    assert "eval/runs/opd-lr2x/seed0/" in tabulate and "train/opd-lr2x/seed0/" in tabulate


def test_paper_dag_resolves(repo, tmp_path):
    result = snakemake(repo, tmp_path, "-n", "-p", "--configfile",
                       str(repo / "config/paper.yaml"))
    assert result.returncode == 0, result.stderr
    counts = job_counts(result.stdout)
    assert counts["fetch_model"] == 2
    assert counts["prepare_benchmark"] == 8 and counts["evaluate_model"] == 14  # 5 math + 3 code
    assert counts["train"] == 9 and counts["prepare_train_data"] == 1
    assert "build_model" not in counts and "make_task_data" not in counts
    assert "Qwen/Qwen3-1.7B" in result.stdout and "--backend" not in result.stdout
    code_prompt = '{"enable_thinking": false, "instruction": "Write a complete'
    evaluations = [line for line in result.stdout.splitlines() if "effopd evaluate " in line]
    assert sorted(("humaneval_plus" in line or "mbpp_plus" in line or "lcb_v6" in line)
                  for line in evaluations if code_prompt in line) == [True] * 6


def test_workflow_passes_lint(repo):
    result = run_cli("snakemake", "--lint")
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.slow
def test_smoke_config_runs_end_to_end(repo, smoke_run):
    tmp_path = smoke_run
    table = pd.read_csv(tmp_path / "results/smoke/tables/base_models.csv")
    assert list(table["model"]) == ["teacher", "student"]
    assert set(table["benchmark"]) == {"tiny_test"}
    assert (table["n_problems"] == 8).all() and (table["n"] == 2).all()
    assert table["avg@n"].between(0, 1).all()
    markdown = (tmp_path / "results/smoke/tables/base_models.md").read_text()
    assert markdown.startswith("| model | benchmark | avg@n |")
    samples = (tmp_path / "artifacts/smoke/eval/teacher/tiny_test.samples.jsonl").read_text()
    rows = [json.loads(line) for line in samples.splitlines()]
    assert len(rows) == 16 and {"correct", "status", "response", "gold"} <= set(rows[0])
    for role in ("teacher", "student"):
        manifest = json.loads(
            (tmp_path / f"artifacts/smoke/models/{role}/manifest.json").read_text())
        assert manifest["source"] == "build" and "model.safetensors" in manifest["files"]
        assert (tmp_path / f"results/smoke/train/sft_{role}.csv").exists()
    rerun = run_smoke_dag(tmp_path, "-n")
    assert "Nothing to be done" in rerun.stdout + rerun.stderr


@pytest.mark.slow
def test_a_deleted_evaluation_is_redone_by_a_full_run(smoke_run, tmp_path):
    """Issue 21, finding 2: after a finished run, a deleted evaluation CSV is evaluated
    again (and everything downstream of it redrawn), not "Nothing to be done"."""
    import shutil

    workdir = tmp_path / "run"
    shutil.copytree(smoke_run, workdir, symlinks=True)  # mtimes kept: the run is finished
    assert "Nothing to be done" in run_smoke_dag(workdir, "-n").stdout
    (workdir / "results/smoke/eval/runs/opd/seed0/tiny_test.csv").unlink()
    result = run_smoke_dag(workdir, "-n", "--cores", "2")
    assert result.returncode == 0, result.stderr[-3000:]
    counts = job_counts(result.stdout)
    assert counts["evaluate_run"] == 1 and "train" not in counts, counts
    assert counts["tabulate_training"] == 1 and counts["tabulate_claims"] == 1, counts
    assert "Missing output files: results/smoke/eval/runs/opd/seed0/tiny_test.csv" \
        in result.stdout


@pytest.mark.slow
def test_provenance_ties_outputs_to_config_code_models_and_data(smoke_run):
    from effopd.provenance import config_sha256, sha256_file

    record = json.loads((smoke_run / "results/smoke/provenance.json").read_text())
    assert record["config_sha256"] == config_sha256(record["config"])
    assert len(record["git"]["commit"]) == 40
    assert set(record["models"]) == {"teacher", "student"}
    assert "model.safetensors" in record["models"]["teacher"]["files"]
    assert set(record["data"]) >= {"tiny_test.manifest.json", "tiny_val.manifest.json"}
    for path, digest in record["outputs_sha256"].items():
        if path.endswith(".csv"):
            assert sha256_file(smoke_run / path) == digest, path
    assert "results/smoke/tables/effopd_speedup.csv" in record["outputs_sha256"]


@pytest.mark.slow
def test_smoke_training_outputs(smoke_run):
    results = smoke_run / "results/smoke"
    for method in ("opd", "rl", "effopd"):
        log = pd.read_csv(results / f"train/{method}/seed0/log.csv")
        assert list(log["step"]) == [1, 2, 3, 4]
        scores = pd.read_csv(results / f"eval/runs/{method}/seed0/tiny_test.csv")
        assert scores["step"].iloc[0] == 0 and scores["step"].iloc[-1] == 4
    search = pd.read_csv(results / "train/effopd/seed0/effopd_search.csv")
    assert sorted(set(search["step"])) == [1, 2, 4]
    assert set(search["multiplier"]) <= {1.0, 3.0, 5.0}
    effopd_log = pd.read_csv(results / "train/effopd/seed0/log.csv").set_index("step")
    # validation rollouts at the search steps only (8 val problems, one sample each)
    assert list(effopd_log["val_responses"] > 0) == [True, True, False, True]
    assert (effopd_log["val_responses"] % 8 == 0).all()
    assert effopd_log["cpu_s"].is_monotonic_increasing
    problems = pd.read_csv(results / "eval/runs/effopd/seed0/tiny_test.problems.csv")
    assert list(problems["step"]) == list(scores["step"]) and problems.shape[1] == 2 + 8
    assert (problems.drop(columns=["step", "n"]).to_numpy() <= 2).all()  # n = 2 samples
    baseline = pd.read_csv(results / "train/opd-lr2x/seed0/log.csv")
    assert list(baseline["step"]) == [1, 2, 3, 4] and (baseline["lr"] == 0.002).all()
    speedup = pd.read_csv(results / "tables/effopd_speedup.csv")
    comparisons = [(c, r) for c in ("effopd_vs_opd", "opd-lr2x_vs_opd", "effopd_vs_best_lr_opd")
                   for r in ("pair", "summary")]  # one seed: no null control
    assert list(zip(speedup["comparison"], speedup["row"], strict=True)) == comparisons
    best = speedup[speedup["comparison"] == "effopd_vs_best_lr_opd"]
    assert set(best["reference"]) <= {"opd", "opd-lr2x"} and set(best["treatment"]) == {"effopd"}
    assert speedup.loc[1, "grid"] == "0 2 4"  # EffOPD's step-1 checkpoint is not a look
    compute = pd.read_csv(results / "tables/training_compute.csv").set_index("method")
    assert compute.loc["rl", "responses_per_step"] == 8 == compute.loc["opd",
                                                                        "responses_per_step"]
    for suffix in ("png", "pdf"):
        assert (smoke_run / f"paper_figures/smoke/training_curves.{suffix}").stat().st_size > 0


def rule_conda_env(repo, workdir, configfile, rule):
    """The conda environment Snakemake parsed for ``rule`` under ``configfile``."""
    from snakemake.api import SnakemakeApi
    from snakemake.settings.types import (
        ConfigSettings,
        OutputSettings,
        ResourceSettings,
        StorageSettings,
    )

    with SnakemakeApi(OutputSettings()) as api:
        workflow = api.workflow(resource_settings=ResourceSettings(),
                                config_settings=ConfigSettings(configfiles=[configfile]),
                                storage_settings=StorageSettings(),
                                snakefile=repo / "Snakefile", workdir=workdir)
        return workflow._workflow.get_rule(rule).conda_env


def test_train_rule_environment_holds_what_its_engine_imports(repo, tmp_path):
    """--use-conda: engine verl trains in the GPU stack's environment (verl, vLLM,
    flash-attn from requirements-gpu.lock), the local engine in environment.yml."""
    paper = rule_conda_env(repo, tmp_path, repo / "config/paper.yaml", "train")
    assert (repo / "workflow/rules" / paper).resolve() == repo / "workflow/envs/verl-gpu.yaml"
    tiny = rule_conda_env(repo, tmp_path, repo / "config/config.yaml", "train")
    assert (repo / "workflow/rules" / tiny).resolve() == repo / "environment.yml"
    deploy = (repo / "workflow/envs/verl-gpu.post-deploy.sh").read_text()
    assert "requirements-gpu.lock" in deploy
    lock = (repo / "requirements-gpu.lock").read_text()
    assert all(f"\n{dist}==" in lock for dist in ("verl", "vllm", "ray", "hydra-core"))
