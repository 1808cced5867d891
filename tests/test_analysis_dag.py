"""The analysis stage of the real smoke DAG: every table and figure exists and is sane.

Reads the outputs of the session fixture ``smoke_run`` (config/smoke.yaml: one
seed, four training steps, 1-layer student, analysis block at its end).
"""

from __future__ import annotations

import pandas as pd
import pytest
import yaml

from effopd.plots.analysis import FIGURES
from effopd.reports.analysis import TABLES
from tests.conftest import REPO

METHODS = ("opd", "rl", "effopd")
RUN_FILES = ("update_norms", "module_allocation", "spectra", "alignment", "embedding_cosine",
             "embedding_projection", "scaling", "modules", "rank_k")

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def smoke_analysis() -> dict:
    return yaml.safe_load((REPO / "config/smoke.yaml").read_text())["analysis"]


def table(smoke_run, name: str) -> pd.DataFrame:
    return pd.read_csv(smoke_run / f"results/smoke/tables/analysis/{name}.csv")


def test_every_analysis_table_and_figure_exists(smoke_run) -> None:
    for name in TABLES:
        for suffix in ("csv", "md"):
            path = smoke_run / f"results/smoke/tables/analysis/{name}.{suffix}"
            assert path.stat().st_size > 0, path
        assert set(table(smoke_run, name)["method"]) == set(METHODS), name
    for name in FIGURES:
        for suffix in ("png", "pdf"):
            assert (smoke_run / f"paper_figures/smoke/{name}.{suffix}").stat().st_size > 0


def test_per_run_outputs_and_no_leftover_checkpoints(smoke_run) -> None:
    for method in METHODS:
        run = smoke_run / f"results/smoke/analysis/{method}/seed0"
        for name in RUN_FILES:
            assert (run / f"{name}.csv").exists(), (method, name)
        work = smoke_run / f"artifacts/smoke/analysis/{method}/seed0"
        assert not list(work.glob("*/checkpoints")), "built checkpoints were not deleted"
        assert list(work.glob("scaling/samples/*.jsonl"))


def test_update_size_joins_norms_with_accuracy(smoke_run) -> None:
    sizes = table(smoke_run, "update_size_accuracy")
    for _, run in sizes.groupby("method"):
        assert run["step"].tolist()[0] == 0 and run["block_norm_mean"].iloc[0] == 0
        assert run["step"].tolist()[-1] == 4 and run["fraction_mean"].iloc[-1] == 1
        assert (run["block_norm_mean"].iloc[1:] > 0).all()
        assert run["accuracy_mean"].between(0, 1).all()
    evals = pd.read_csv(smoke_run / "results/smoke/eval/runs/opd/seed0/tiny_test.csv")
    opd = sizes[sizes["method"] == "opd"].set_index("step")["accuracy_mean"]
    assert opd.to_dict() == pytest.approx(evals.set_index("step")["avg@n"].to_dict())


def test_module_allocation_shares(smoke_run) -> None:
    modules = table(smoke_run, "module_allocation_modules")
    for _, run in modules.groupby("method"):
        assert run["share_mean"].sum() == pytest.approx(1.0, abs=1e-9)
    assert {"q", "k", "v", "o", "gate", "up", "down", "embed"} <= set(modules["module"])
    layers = table(smoke_run, "module_allocation_layers")
    assert set(layers["layer"]) == {0}  # the smoke student has one layer
    everything = layers[layers["group"] == "all"].set_index("method")["share_mean"]
    parts = layers[layers["group"] != "all"].groupby("method")["share_mean"].sum()
    assert everything.sort_index().to_numpy() == pytest.approx(parts.sort_index().to_numpy())


def test_spectra_and_alignment_are_in_range(smoke_run, smoke_analysis) -> None:
    spectra = table(smoke_run, "update_spectra")
    assert set(spectra["module"]) >= {"q", "down", "all"}
    ks = smoke_analysis["spectra_ks"]
    shares = spectra[[f"energy_share_k{k}_mean" for k in ks]].to_numpy()
    assert ((shares > 0) & (shares <= 1 + 1e-9)).all()
    assert (pd.DataFrame(shares).diff(axis=1).iloc[:, 1:] >= -1e-12).all().all()
    assert spectra["effective_rank_ratio_mean"].between(0, 1).all()
    alignment = table(smoke_run, "subspace_alignment")
    assert set(alignment["k"]) == set(smoke_analysis["alignment_ks"])
    final = alignment[alignment["fraction_mean"] == 1]
    assert final["left_overlap_mean"].to_numpy() == pytest.approx(1.0, abs=1e-6)
    overlaps = alignment[["left_overlap_mean", "right_overlap_mean"]].dropna().to_numpy()
    assert ((overlaps >= 0) & (overlaps <= 1 + 1e-6)).all()
    assert alignment.groupby("method")["early"].any().all()
    top1 = table(smoke_run, "top1_alignment")
    assert top1["top1_left_abs_cos_mean"].dropna().between(0, 1 + 1e-6).all()


def test_embedding_shift(smoke_run) -> None:
    shift = table(smoke_run, "embedding_shift")
    assert shift["mean_cosine_mean"].between(-1, 1 + 1e-9).all()
    assert (shift["n_tokens_mean"] > 0).all()
    projection = table(smoke_run, "embedding_projection")
    assert set(projection["source"]) == {"base", "trained"}


def test_accuracy_analyses(smoke_run, smoke_analysis) -> None:
    scaling = table(smoke_run, "scaling_curves")
    alphas = {"final": sorted(float(a) for a in smoke_analysis["scaling_alphas"]),
              "early": sorted(float(a) for a in smoke_analysis["early_alphas"])}
    for (_, kind), rows in scaling.groupby(["method", "kind"]):
        assert sorted(rows["alpha"]) == alphas[kind]
        assert rows["accuracy_mean"].between(0, 1).all()
    recovery = table(smoke_run, "early_recovery")
    assert (recovery["early_fraction_mean"] < 1).all()
    assert set(recovery["selected_on"]) == {"selection benchmark"}
    utility = table(smoke_run, "module_utility")
    assert set(utility["intervention"]) == {"base", "full", "window_L00-00", "mlp", "attention",
                                            "embedding"}
    rank_k = table(smoke_run, "rank_k_accuracy")
    assert sorted(rank_k["k"].dropna().astype(int).unique()) == smoke_analysis["rank_ks"]
    per_run = pd.read_csv(smoke_run / "results/smoke/analysis/opd/seed0/scaling.csv")
    selection = per_run[per_run["benchmark"] == "tiny_val"]  # the early alphas, all problems
    assert set(selection["kind"]) == {"early"} and (selection["n_problems"] == 8).all()
    per_run = per_run[per_run["benchmark"] == "tiny_test"]
    assert (per_run["n_problems"] == smoke_analysis["eval_limit"]).all()
    assert (per_run["n"] == smoke_analysis["eval_n"]).all()
