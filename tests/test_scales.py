"""The model-scale sweep (config/scales.yaml): the per-scale configs, the cross-scale table
on synthetic per-scale tables with known values, the real DAG's dry run (one teacher
build), and reviewer mode redrawing the committed sweep byte for byte."""

import copy
import hashlib
import re
import shutil

import pandas as pd
import pytest

from effopd.config import ConfigError, load_config, scale_configs
from effopd.errors import InputError
from effopd.reports.scales import ScaleTables, cross_scale_markdown, cross_scale_table
from tests.conftest import run_cli
from tests.test_workflow import job_counts

# Student t quantile t_{0.975, 2} * 0.1 / sqrt(3): the half-width of the 95% interval of
# three seeds at 0.4, 0.5, 0.6 (sample sd 0.1).
HALF = 4.302652729749462 * 0.1 / 3 ** 0.5


def scale_tables(scale, student_parameters, teacher_parameters, teacher_sha="abc",
                 opd=(0.4, 0.5, 0.6), lr=3e-4, rl_lr=6e-5):
    """Synthetic tables of one scale; a second benchmark and extra rows that the table
    must ignore."""
    base_models = pd.DataFrame({
        "model": ["teacher", "student", "teacher", "student"],
        "benchmark": ["t", "t", "other", "other"],
        "avg@n": [0.8, 0.3, 0.1, 0.1], "n_problems": 4, "n": 1})
    curves = []
    for method, finals in (("opd", opd), ("rl", (0.35, 0.35, 0.35)), ("effopd", opd)):
        for seed, final in enumerate(finals):
            curves += [{"method": method, "seed": seed, "step": 0, "benchmark": "t",
                        "avg@n": 0.3},
                       {"method": method, "seed": seed, "step": 32, "benchmark": "t",
                        "avg@n": final},
                       {"method": method, "seed": seed, "step": 32, "benchmark": "other",
                        "avg@n": 0.0}]
    claims = pd.DataFrame([
        {"claim": "0a", "estimate": 0.2, "ci95_low": 0.1, "ci95_high": 0.3,
         "verdict": "holds", "gap_closed": 0.4, "gap_closed_low": 0.2,
         "gap_closed_high": 0.6},
        {"claim": "1", "estimate": 9.0, "ci95_low": 8.0, "ci95_high": 10.0,
         "verdict": "holds"},
        {"claim": "4", "estimate": -0.001, "ci95_low": -0.002, "ci95_high": 0.0005,
         "verdict": "inconclusive"}])
    speedup = []
    for comparison, value in (("effopd_vs_opd", 2.0), ("null_opd_vs_opd", 1.0)):
        row = {"comparison": comparison, "row": "summary", "reached": "3/3",
               "timescale_steps": value * 1.5, "timescale_steps_ci95_low": value,
               "timescale_steps_ci95_high": value * 2}
        for unit in ("steps", "tokens", "cpu_s"):
            row |= {f"speedup_{unit}": value, f"speedup_{unit}_ci95_low": value / 2,
                    f"speedup_{unit}_ci95_high": value * 3,
                    f"speedup_{unit}_censored": None}
        speedup += [row, {**row, "row": "pair", "speedup_steps": 99.0}]
    embedding = pd.DataFrame({"method": ["opd", "rl"], "mean_cosine_mean": [0.999, 0.99],
                              "mean_cosine_ci95_low": [0.998, 0.98],
                              "mean_cosine_ci95_high": [0.9995, 0.995]})
    teacher = {"files": {"model.safetensors": teacher_sha}}
    if teacher_parameters is not None:
        teacher["n_parameters"] = teacher_parameters
    provenance = {"models": {"student": {"n_parameters": student_parameters},
                             "teacher": teacher},
                  "config": {"training": {"lr": lr, "rl": {"lr": rl_lr}, "effopd": {}}}}
    return ScaleTables(scale, base_models, pd.DataFrame(curves), claims,
                       pd.DataFrame(speedup), embedding, provenance)


def test_cross_scale_table_known_values():
    table = cross_scale_table([scale_tables("1x", 1000, 5000),
                               scale_tables("4x", 4000, None, opd=(0.5, 0.6, 0.7),
                                            lr=7.5e-5, rl_lr=1.5e-5)], "t")
    assert list(table["scale"]) == ["1x", "4x"]
    assert list(table["student_parameters"]) == [1000, 4000]
    assert list(table["parameter_ratio"]) == [1.0, 4.0]
    assert list(table["teacher_parameters"]) == [5000, 5000]  # the copy takes the builder's
    first, second = table.iloc[0], table.iloc[1]
    assert (first["teacher_accuracy"], first["student_base_accuracy"]) == (0.8, 0.3)
    assert first["opd_final_accuracy"] == pytest.approx(0.5, abs=1e-15)
    assert first["opd_final_accuracy_ci95_low"] == pytest.approx(0.5 - HALF, rel=1e-12)
    assert first["opd_final_accuracy_ci95_high"] == pytest.approx(0.5 + HALF, rel=1e-12)
    assert second["opd_final_accuracy"] == pytest.approx(0.6, abs=1e-15)
    assert first["rl_final_accuracy"] == pytest.approx(0.35, abs=1e-15)
    assert first["rl_final_accuracy_ci95_low"] == pytest.approx(0.35, abs=1e-15)
    assert first["n_seeds"] == 3
    assert (first["opd_gain"], first["opd_gain_ci95_low"], first["opd_gain_ci95_high"],
            first["opd_gain_verdict"]) == (0.2, 0.1, 0.3, "holds")
    assert (first["opd_gap_closed"], first["opd_gap_closed_ci95_low"]) == (0.4, 0.2)
    assert (first["opd_embedding_cosine"], first["rl_embedding_cosine"]) == (0.999, 0.99)
    assert first["rl_embedding_cosine_ci95_low"] == 0.98
    assert (first["embedding_shift_diff"], first["embedding_shift_diff_ci95_high"],
            first["embedding_shift_verdict"]) == (-0.001, 0.0005, "inconclusive")
    assert (first["effopd_speedup_steps"], first["effopd_speedup_steps_ci95_low"],
            first["effopd_speedup_cpu_s_ci95_high"]) == (2.0, 1.0, 6.0)  # summary, not pair
    assert (first["effopd_timescale_steps"], first["null_timescale_steps"],
            first["null_timescale_steps_ci95_high"]) == (3.0, 1.5, 2.0)
    assert first["effopd_reached"] == "3/3"
    # each method's lr as the scale trained it: OPD and EffOPD at training.lr, RL at its own
    assert (first["opd_lr"], first["rl_lr"], first["effopd_lr"]) == (3e-4, 6e-5, 3e-4)
    assert (second["opd_lr"], second["rl_lr"], second["effopd_lr"]) == (7.5e-5, 1.5e-5, 7.5e-5)
    # a method declared with its own lr is read as declared, not as its algorithm's default
    declared = scale_tables("1x", 1000, 5000)
    declared.provenance["config"]["training"]["methods"] = [
        "opd", "rl", {"name": "effopd", "algorithm": "effopd", "lr": 2e-5}]
    assert cross_scale_table([declared], "t").iloc[0]["effopd_lr"] == 2e-5

    markdown = cross_scale_markdown(table).iloc[0]
    assert markdown["OPD final %"] == "50.0 [25.2, 74.8]"
    assert markdown["OPD gain, points"] == "20.0 [10.0, 30.0] (holds)"
    assert markdown["EffOPD speed-up, steps"] == "2 [1, 6]"
    assert markdown["student params (x 1st)"] == "1,000 (1.00x)"
    assert cross_scale_markdown(table).iloc[1]["lr OPD / RL"] == "7.5e-05 / 1.5e-05"
    assert markdown["embedding cosine RL"] == "0.990000 [0.980000, 0.995000]"


def test_cross_scale_table_refuses_different_teachers():
    with pytest.raises(InputError, match="teachers differ"):
        cross_scale_table([scale_tables("1x", 1000, 5000),
                           scale_tables("2x", 2000, 5000, teacher_sha="other")], "t")


def test_scale_configs(repo):
    config = load_config(repo / "config/scales.yaml")
    scales = scale_configs(config)
    assert list(scales) == ["1x", "2x", "4x"]
    assert [s["experiment"] for s in scales.values()] == ["scales/1x", "scales/2x", "scales/4x"]
    assert scales["1x"]["models"] == {k: v for k, v in config["models"].items()}
    assert scales["4x"]["models"]["student"]["arch"]["hidden_size"] == 192
    assert scales["4x"]["models"]["student"]["arch"]["num_hidden_layers"] == 3  # kept
    assert scales["2x"]["models"]["teacher"] == {
        "source": "local", "path": "artifacts/scales/1x/models/teacher"}
    assert all(s["scales"] == {} for s in scales.values())
    assert scales["1x"]["training"] == config["training"]  # lr_multiplier 1
    # the committed sweep's width-scaled learning rates (issue 31 item 5)
    lrs = [lr for s in scales.values() for lr in (s["training"]["lr"], s["training"]["rl"]["lr"])]
    assert lrs == pytest.approx([3e-4, 6e-5, 1.5e-4, 3e-5, 7.5e-5, 1.5e-5])


def test_a_scale_multiplies_every_learning_rate(repo):
    """lr_multiplier 0.5: training.lr, RL's own lr and a declared method's lr halve; the
    methods' peak learning rates (what the runs train at) follow."""
    from effopd.methods import declared_methods

    config = load_config(repo / "config/scales.yaml")
    config["training"]["methods"] = ["opd", "rl", "effopd",
                                     {"name": "opd-lr1e-4", "algorithm": "opd", "lr": 1e-4}]
    config["scales"]["2x"]["lr_multiplier"] = 0.5
    before = copy.deepcopy(config["training"])
    scales = scale_configs(config)
    assert scales["1x"]["training"] == before and config["training"] == before
    lrs = {name: method.peak_lr(scales["2x"]["training"])
           for name, method in declared_methods(scales["2x"]["training"]).items()}
    assert lrs == pytest.approx({"opd": 1.5e-4, "rl": 3e-5, "effopd": 1.5e-4,
                                 "opd-lr1e-4": 5e-5})
    rest = {k: v for k, v in scales["2x"]["training"].items() if k not in ("lr", "rl", "methods")}
    assert rest == {k: v for k, v in before.items() if k not in ("lr", "rl", "methods")}


def test_a_bad_scale_is_refused_naming_its_key(repo):
    config = load_config(repo / "config/scales.yaml")
    bad = copy.deepcopy(config)
    bad["scales"]["2x"]["student_arch"]["num_key_value_heads"] = 3  # 4 heads
    with pytest.raises(ConfigError, match=r"scale '2x' \(key 'scales/2x'\).*models/student/arch"
                                          r".*num_attention_heads 4 is not a multiple"):
        scale_configs(bad)
    from effopd.config import validate_config

    unknown = copy.deepcopy(config)
    unknown["scales"]["2x"]["student_arch"]["hidden"] = 3
    with pytest.raises(ConfigError, match="key 'scales/2x/student_arch'"):
        validate_config(unknown)
    nested = copy.deepcopy(config)
    nested["experiment"] = "a/b"
    with pytest.raises(ConfigError, match="key 'experiment'.*one level below"):
        validate_config(nested)


def test_scales_dag_builds_the_teacher_once(repo, tmp_path):
    result = run_cli("snakemake", "-s", str(repo / "Snakefile"), "--directory", str(tmp_path),
                     "-n", "--cores", "2", "--configfile", str(repo / "config/scales.yaml"))
    assert result.returncode == 0, result.stderr
    counts = job_counts(result.stdout)
    # 1x builds teacher and student; 2x and 4x build their student and copy the teacher.
    assert counts["scale_1x_build_model"] == 2
    assert counts["scale_2x_build_model"] == counts["scale_4x_build_model"] == 1
    assert "scale_1x_fetch_model" not in counts
    assert counts["scale_2x_fetch_model"] == counts["scale_4x_fetch_model"] == 1
    for scale in ("1x", "2x", "4x"):
        assert counts[f"scale_{scale}_train"] == 9  # 3 methods x 3 seeds
        assert counts[f"scale_{scale}_tabulate_claims"] == 1
    assert counts["tabulate_cross_scale"] == counts["plot_cross_scale"] == 1
    jobs = [block for block in re.split(r"\n(?=(?:local)?rule )", result.stdout)
            if block.startswith(("rule ", "localrule "))]
    builds = [block for block in jobs if "_build_model:" in block.splitlines()[0]]
    assert sum("built_role=teacher" in block for block in builds) == 1
    fetches = [block for block in jobs if "_fetch_model:" in block.splitlines()[0]]
    assert len(fetches) == 2 and all("input: artifacts/scales/1x/models/teacher" in block
                                     for block in fetches)


def digests(folder):
    return {p.relative_to(folder): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.mark.slow
def test_reviewer_mode_redraws_the_committed_sweep_byte_for_byte(repo, tmp_path):
    """The committed results/scales and paper_figures/scales: reviewer mode remakes every
    scale's tables and figures and the cross-scale ones from the committed results, and
    they equal the committed files byte for byte."""
    if not (repo / "results/scales/tables/cross_scale.csv").exists():
        pytest.skip("results/scales is not committed in this checkout")
    for folder in ("results/scales", "paper_figures/scales"):
        shutil.copytree(repo / folder, tmp_path / folder)
    committed = {folder: digests(repo / folder)
                 for folder in ("results/scales", "paper_figures/scales")}
    result = run_cli("snakemake", "figures", "--forceall", "--cores", "2", "--config",
                     "review=True", "-s", str(repo / "Snakefile"), "--directory",
                     str(tmp_path), "--configfile", str(repo / "config/scales.yaml"),
                     timeout=900)
    assert result.returncode == 0, result.stderr[-3000:]
    ran = {line.split("rule ")[1].rstrip(":") for line in result.stderr.splitlines()
           if line.startswith(("rule ", "localrule "))}
    assert "tabulate_cross_scale" in ran and "scale_4x_tabulate_claims" in ran
    assert not (tmp_path / "artifacts").exists()
    for folder, before in committed.items():
        after = digests(tmp_path / folder)
        tables = {p for p in before if p.suffix in (".csv", ".md", ".png", ".pdf")
                  and "benchmarks" not in p.parts}
        assert {p: after[p] for p in tables} == {p: before[p] for p in tables}, folder
