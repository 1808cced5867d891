"""benchmarks/stage_table.py: planted benchmark files and log, then a real smoke DAG run."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "benchmarks" / "stage_table.py"
HEADER = "s\th:m:s\tmax_rss\tmax_vms\tmax_uss\tmax_pss\tio_in\tio_out\tmean_load\tcpu_time\n"

# Every rule the smoke DAG runs (all but fetch_model and prepare_train_data, which
# serve Hub models and data sets), with its number of jobs (train and evaluate_run: OPD,
# RL, EffOPD, the ablation variant and the lr baseline opd-lr2x).
SMOKE_RULES = {
    "make_task_data": 1, "build_tokenizer": 1, "prepare_benchmark": 2, "build_model": 2,
    "evaluate_model": 2, "train": 5, "evaluate_run": 5, "analyze_run": 3,
    "evaluate_interventions": 3,
    "tabulate_base_models": 1, "tabulate_training": 1, "plot_training_curves": 1,
    "tabulate_analysis": 1, "plot_analysis": 1, "tabulate_claims": 1, "tabulate_ablation": 1,
    "record_provenance": 1, "tabulate_stepsize_map": 1, "plot_stepsize_map": 1,
}


@pytest.fixture(scope="module")
def stage_table():
    sys.path.insert(0, str(SCRIPT.parent))
    try:
        import stage_table
    finally:
        sys.path.remove(str(SCRIPT.parent))
    return stage_table


def plant(root: Path, name: str, wall: float, cpu: str, rss: str, end: float) -> None:
    path = root / f"{name}.tsv"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(HEADER + f"{wall}\t0:00:00\t{rss}\t1\t1\t1\t0\t0\t50\t{cpu}\n")
    os.utime(path, (end, end))


LOG = """\
[Mon Nov 23 10:00:00 2026]
localrule build_model:
    output: artifacts/x/models/teacher
    jobid: 2
    wildcards: built_role=teacher
[Mon Nov 23 10:00:00 2026]
localrule build_model:
    jobid: 1
    wildcards: built_role=student
[Mon Nov 23 10:01:40 2026]
Finished jobid: 1 (Rule: build_model)
[Mon Nov 23 10:01:40 2026]
localrule train:
    jobid: 3
[Mon Nov 23 10:05:00 2026]
Finished jobid: 2 (Rule: build_model)
[Mon Nov 23 10:06:00 2026]
Finished jobid: 3 (Rule: train)
[Mon Nov 23 10:06:00 2026]
localrule all:
    jobid: 0
[Mon Nov 23 10:06:00 2026]
Finished jobid: 0 (Rule: all)
"""


def test_planted_stages_from_mtimes(tmp_path, stage_table) -> None:
    plant(tmp_path, "build_model/teacher", 300, "290", "500", end=1300)
    plant(tmp_path, "build_model/student", 100, "95", "300", end=1100)
    plant(tmp_path, "train/opd/seed0", 260, "250.5", "700", end=1360)
    plant(tmp_path, "make_task_data", 0.5, "NA", "NA", end=1000.5)
    rows = {r["stage"]: r for r in stage_table.stage_rows(stage_table.read_benchmarks(tmp_path))}
    assert set(rows) == {"build_model", "train", "make_task_data"}
    model = rows["build_model"]
    assert (model["jobs"], model["wall_s"], model["cpu_s"], model["longest_s"]) == \
        (2, 400, 385, 300)
    assert model["max_rss_mb"] == 500
    assert model["share"] == pytest.approx(400 / 660.5)
    # The run starts with make_task_data at 1000 and ends with train at 1360.
    assert (model["from_s"], model["to_s"]) == (0, 300)
    assert (rows["train"]["from_s"], rows["train"]["to_s"]) == (100, 360)
    assert rows["make_task_data"]["cpu_s"] == 0  # NA: too short to sample
    text = stage_table.report(stage_table.read_benchmarks(tmp_path), "mtimes")
    assert "Run wall time (first start to last end, mtimes): 360 s" in text
    assert "mean parallelism 1.83 jobs" in text  # 660.5 / 360


def test_planted_log_times(tmp_path, stage_table) -> None:
    plant(tmp_path, "build_model/teacher", 300, "290", "500", end=0)
    plant(tmp_path, "build_model/student", 100, "95", "300", end=0)
    plant(tmp_path, "train/opd/seed0", 260, "250", "700", end=0)
    (tmp_path / "run.log").write_text(LOG)
    spans = stage_table.parse_snakemake_log(tmp_path / "run.log")
    assert {rule: [e - s for s, e in v] for rule, v in spans.items()} == \
        {"build_model": [100, 300], "train": [260], "all": [0]}
    jobs = stage_table.read_benchmarks(tmp_path, use_mtimes=False)
    assert stage_table.run_span(jobs) is None
    stage_table.attach_log_times(jobs, spans)
    assert stage_table.run_span(jobs)[1] - stage_table.run_span(jobs)[0] == 360
    rows = {r["stage"]: r for r in stage_table.stage_rows(jobs)}
    assert (rows["train"]["from_s"], rows["train"]["to_s"]) == (100, 360)


def test_mismatched_log_names_the_rule(tmp_path, stage_table) -> None:
    plant(tmp_path, "train/opd/seed0", 260, "250", "700", end=0)
    plant(tmp_path, "train/rl/seed0", 200, "190", "700", end=0)
    (tmp_path / "run.log").write_text(LOG)
    jobs = stage_table.read_benchmarks(tmp_path)
    with pytest.raises(ValueError, match="rule train: 2 benchmark files but 1 finished"):
        stage_table.attach_log_times(jobs, stage_table.parse_snakemake_log(tmp_path / "run.log"))


def test_not_a_benchmark_file(tmp_path, stage_table) -> None:
    (tmp_path / "x.tsv").write_text("a\tb\n1\t2\n")
    with pytest.raises(ValueError, match="x.tsv: not a Snakemake benchmark file"):
        stage_table.read_benchmarks(tmp_path)


@pytest.mark.slow
def test_stage_table_of_the_smoke_dag(smoke_run) -> None:
    """Every rule of a real smoke run leaves one benchmark file per job, and the table,
    timed from the run's Snakemake log, lists each with its number of jobs."""
    root = smoke_run / "results" / "smoke" / "benchmarks"
    # the fixture's own run: the first log (other tests run Snakemake there again later,
    # e.g. --report, and those logs hold no jobs)
    log = sorted((smoke_run / ".snakemake" / "log").glob("*.snakemake.log"))[0]
    result = subprocess.run([sys.executable, str(SCRIPT), str(root), "--snakemake-log",
                             str(log)], capture_output=True, text=True, check=True)
    rows = {}
    for line in result.stdout.split("## The")[0].splitlines():
        cells = [c.strip() for c in line.strip("|").split("|")]
        if len(cells) == 9 and cells[1].isdigit():
            rows[cells[0]] = cells
    assert {rule: int(cells[1]) for rule, cells in rows.items()} == \
        {**SMOKE_RULES, "**total**": sum(SMOKE_RULES.values())}
    assert float(rows["train"][3]) > 0  # CPU seconds were sampled for a training job
    assert "Run wall time (first start to last end, times from the Snakemake log" \
        in result.stdout
