"""Reviewer mode and the HTML report, on the outputs of a real smoke run."""

import shutil

import pandas as pd
import pytest

from tests.conftest import run_smoke_dag

TABLES = ["base_models", "effopd_speedup", "training_compute"]


@pytest.fixture(scope="module")
def reviewer_copy(smoke_run, tmp_path_factory):
    """A fresh directory holding only what is committed: results/ and paper_figures/."""
    workdir = tmp_path_factory.mktemp("review")
    for folder in ("results", "paper_figures"):
        shutil.copytree(smoke_run / folder, workdir / folder)
    for table in TABLES:  # the reviewer regenerates these from the per-run results
        (workdir / f"results/smoke/tables/{table}.csv").unlink()
    shutil.rmtree(workdir / "paper_figures")
    return workdir


@pytest.mark.slow
def test_reviewer_mode_redraws_everything_without_training(reviewer_copy, smoke_run):
    result = run_smoke_dag(reviewer_copy, "figures", "--cores", "2", "--forceall",
                           "--config", "review=True")
    assert result.returncode == 0, result.stderr[-3000:]
    ran = {line.split("rule ")[1].rstrip(":") for line in result.stderr.splitlines()
           if line.startswith("rule ") or line.startswith("localrule ")}
    assert ran and all(r.startswith(("tabulate_", "plot_", "figures")) for r in ran), ran
    assert not (reviewer_copy / "artifacts").exists()
    for table in TABLES:
        regenerated = pd.read_csv(reviewer_copy / f"results/smoke/tables/{table}.csv")
        original = pd.read_csv(smoke_run / f"results/smoke/tables/{table}.csv")
        pd.testing.assert_frame_equal(regenerated, original)
    figures = sorted(p.name for p in (reviewer_copy / "paper_figures/smoke").iterdir())
    assert figures == sorted(p.name for p in (smoke_run / "paper_figures/smoke").iterdir())


@pytest.mark.slow
def test_html_report_contains_every_figure(smoke_run, tmp_path):
    report = tmp_path / "report.html"
    result = run_smoke_dag(smoke_run, "--report", str(report))
    assert result.returncode == 0, result.stderr[-3000:]
    html = report.read_text(errors="replace")
    for figure in (smoke_run / "paper_figures/smoke").glob("*.png"):
        assert figure.name in html, figure.name
