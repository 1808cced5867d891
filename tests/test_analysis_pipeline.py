"""The analysis pipeline and its command line on checkpoints the tests build themselves.

`effopd analyze` on planted synthetic series (exact norms, known steps and
subspaces), the accuracy analyses on a real tiny model, and the tables over
runs with hand-computed means, intervals and recovered gains.
"""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from safetensors.torch import load_file
from scipy import stats

from effopd.analysis import generated_tokens, recipes, scoring, settings
from effopd.analysis import series as series_mod
from effopd.analysis.checkpoint_io import write_modified_checkpoint
from effopd.analysis.synthetic import planted_series, qwen3_config, write_random_qwen3
from effopd.cli import main
from effopd.config import load_schema
from effopd.errors import InputError
from effopd.reports import analysis as reports
from effopd.tables import with_run

REPO = Path(__file__).resolve().parents[1]
STEPS = {"step_000010": 0.1, "step_000050": 0.5, "step_000100": 1.0}


@pytest.fixture(scope="module")
def planted(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A random 3-layer Qwen3 base and checkpoints theta_0 + f L + noise, f = step / 100."""
    root = tmp_path_factory.mktemp("planted")
    base = write_random_qwen3(root / "base", qwen3_config(), seed=0)
    return {"base": base, **planted_series(base, root / "run", STEPS, rank=2, scale=0.1,
                                           noise=1e-4)}


# --------------------------------------------------------------------------- series


@pytest.mark.parametrize(("path", "step"), [
    ("runs/opd/seed0/checkpoints/step_000050", 50),
    ("ckpts/global_step_50/actor/huggingface", 50),
    ("out/checkpoint-1200", 1200),
    ("out/iter_7", 7),
    ("out/final", None),
])
def test_parse_step_reads_common_checkpoint_layouts(path: str, step: int | None) -> None:
    assert series_mod.parse_step(path) == step


def test_unique_labels_use_the_shortest_distinct_tail() -> None:
    paths = ["r/global_step_5/actor/huggingface", "r/global_step_9/actor/huggingface"]
    assert series_mod.unique_labels(paths) == ["global_step_5/actor/huggingface",
                                             "global_step_9/actor/huggingface"]
    assert series_mod.unique_labels(["a/x", "a/y"]) == ["x", "y"]


def test_series_from_dirs_sorts_by_step_and_appends_the_final(tmp_path: Path) -> None:
    series = series_mod.series_from_dirs("base", ["c/step_000020", "c/step_000005"],
                                       final="c/step_000040")
    assert series.labels == ["step_000005", "step_000020", "final"]
    assert series.steps == [5, 20, 40]
    assert series.fraction(20) == 0.5
    kept = series_mod.series_from_dirs("base", ["c/b", "c/a"], steps=[2, 1], final="c/b")
    assert [p.name for p in kept.paths] == ["a", "b"] and kept.final_step == 2


def test_early_index_is_the_checkpoint_closest_to_the_fraction() -> None:
    series = series_mod.Series(Path("b"), ["1", "2", "4", "8", "16"],
                             [Path(str(s)) for s in (1, 2, 4, 8, 16)], [1, 2, 4, 8, 16])
    assert series.early_index(0.1) == 1  # 2/16 = 0.125 is nearest to 0.1
    assert series.early_index(0.0) == 0
    assert series.early_index(1.0) == 3  # never the final when others exist
    single = series_mod.Series(Path("b"), ["a"], [Path("a")], [None])
    assert single.early_index(0.1) == 0 and math.isnan(single.fraction(None))


def test_series_from_index_reads_the_trainers_index(tmp_path: Path) -> None:
    index = tmp_path / "checkpoints.csv"
    index.write_text("method,seed,step,path,wall_s\nopd-lr2x,3,4,runs/x/step_000004,2.0\n"
                     "opd-lr2x,3,2,runs/x/step_000002,1.0\n")
    series = series_mod.series_from_index(index, "base")
    assert series.steps == [2, 4] and series.labels == ["step_000002", "step_000004"]
    assert series.final == Path("runs/x/step_000004")
    assert series.run == {"method": "opd-lr2x", "seed": 3}


@pytest.mark.parametrize(("text", "error"), [
    ("step,path,wall_s\n2,a,1.0\n", "missing column\\(s\\) method, seed"),
    ("method,seed,step,path,wall_s\nopd,0,2,a,1.0\nopd,1,4,b,2.0\n",
     "column 'seed' holds 2 values"),
])
def test_an_index_without_one_run_is_refused(tmp_path: Path, text: str, error: str) -> None:
    index = tmp_path / "checkpoints.csv"
    index.write_text(text)
    with pytest.raises(InputError, match=f"checkpoints.csv: {error}"):
        series_mod.series_from_index(index, "base")


# --------------------------------------------------------------------------- effopd analyze


@pytest.fixture(scope="module")
def analyzed(planted: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("analyzed")
    code = main(["analyze", "--base", str(planted["base"]), "--checkpoints",
                 *(str(planted[label]) for label in STEPS), "--out-dir", str(out),
                 "--ks", "1", "2", "4", "--alignment-ks", "1", "2", "--device", "cpu",
                 "--run", "opd-lr2x", "5"])
    assert code == 0
    return out


def test_analyze_writes_the_four_tables_with_steps(analyzed: Path) -> None:
    for name in ("update_norms", "module_allocation", "spectra", "alignment"):
        table = pd.read_csv(analyzed / f"{name}.csv")
        assert list(table.columns[:2]) == ["method", "seed"], name  # --run's identity
        assert set(table["method"]) == {"opd-lr2x"} and set(table["seed"]) == {5}, name
        assert set(table["checkpoint"]) == set(STEPS), name
        assert sorted(set(table["step"])) == [10, 50, 100]
        assert (table["fraction"] == table["step"] / 100).all()
    assert not (analyzed / "embedding_cosine.csv").exists()


def test_update_norms_match_direct_float32_differences(planted: dict[str, Path],
                                                      analyzed: Path) -> None:
    norms = pd.read_csv(analyzed / "update_norms.csv").set_index("checkpoint")
    base = load_file(planted["base"] / "model.safetensors")
    for label in STEPS:
        ckpt = load_file(planted[label] / "model.safetensors")
        block = sum(float(((ckpt[n] - base[n]).double() ** 2).sum()) for n in base
                    if ".layers." in n)
        total = sum(float(((ckpt[n] - base[n]).double() ** 2).sum()) for n in base)
        assert norms.loc[label, "block_norm"] == pytest.approx(math.sqrt(block), rel=1e-9)
        assert norms.loc[label, "total_norm"] == pytest.approx(math.sqrt(total), rel=1e-9)
    assert norms["block_norm"].is_monotonic_increasing  # f = 0.1, 0.5, 1.0


def test_module_allocation_shares_add_up_per_checkpoint(analyzed: Path) -> None:
    allocation = pd.read_csv(analyzed / "module_allocation.csv")
    norms = pd.read_csv(analyzed / "update_norms.csv").set_index("checkpoint")
    for label, rows in allocation.groupby("checkpoint"):
        assert rows["share"].sum() == pytest.approx(1.0, abs=1e-12)
        assert (rows["delta_norm"] ** 2).sum() == pytest.approx(
            norms.loc[label, "total_norm"] ** 2, rel=1e-9)
        assert len(rows) == 3 * 11 + 3  # 11 module types per layer; embed, final norm, head
        assert set(rows.loc[rows["layer"].isna(), "module"]) == {"embed", "final_norm",
                                                                 "lm_head"}


def test_spectra_and_alignment_see_the_planted_rank_two_direction(analyzed: Path) -> None:
    spectra = pd.read_csv(analyzed / "spectra.csv")
    final = spectra[spectra["step"] == 100]
    assert (final["energy_share_k2"] > 0.99).all()  # rank-2 plant, tiny noise
    assert (final["energy_share_k4"] >= final["energy_share_k2"]).all()
    alignment = pd.read_csv(analyzed / "alignment.csv")
    last = alignment[alignment["step"] == 100]
    assert last["left_overlap_k2"].to_numpy() == pytest.approx(1.0, abs=1e-9)
    middle = alignment[alignment["step"] == 50]
    assert (middle[["left_overlap_k2", "right_overlap_k2"]] > 0.99).all().all()


def test_analyze_handles_a_verl_layout_with_parsed_steps(planted: dict[str, Path],
                                                         tmp_path: Path) -> None:
    dirs = []
    for step in (5, 10):
        target = tmp_path / "verl" / f"global_step_{step}" / "actor" / "huggingface"
        target.parent.mkdir(parents=True)
        shutil.copytree(planted["step_000050" if step == 5 else "step_000100"], target)
        dirs.append(str(target))
    out = tmp_path / "out"
    assert main(["analyze", "--base", str(planted["base"]), "--checkpoints", *reversed(dirs),
                 "--out-dir", str(out), "--ks", "1", "--alignment-ks", "1"]) == 0
    norms = pd.read_csv(out / "update_norms.csv")
    assert norms["step"].tolist() == [5, 10] and norms["fraction"].tolist() == [0.5, 1.0]
    assert norms["checkpoint"].tolist() == ["global_step_5/actor/huggingface",
                                            "global_step_10/actor/huggingface"]


def test_analyze_rejects_both_or_neither_series(planted: dict[str, Path], tmp_path: Path) -> None:
    assert main(["analyze", "--base", str(planted["base"]), "--out-dir", str(tmp_path)]) == 1
    assert main(["analyze", "--base", str(planted["base"]), "--index", "x.csv",
                 "--checkpoints", "a", "--out-dir", str(tmp_path)]) == 1


# --------------------------------------------------------------------------- embedding shift


@pytest.fixture(scope="module")
def tiny_series(tiny_checkpoint: Path, tmp_path_factory: pytest.TempPathFactory
                ) -> dict[str, Path]:
    """The tiny real model (2 layers, char tokenizer) and two trained-like checkpoints."""
    root = tmp_path_factory.mktemp("tiny_series")

    def moved(scale: float):
        def transform(name: str, theta0: torch.Tensor) -> torch.Tensor:
            generator = torch.Generator().manual_seed(len(name))
            return theta0 + scale * torch.randn(theta0.shape, generator=generator)
        return transform

    return {"base": tiny_checkpoint,
            "early": write_modified_checkpoint(tiny_checkpoint, root / "step_000001",
                                               moved(0.002)),
            "final": write_modified_checkpoint(tiny_checkpoint, root / "step_000010",
                                               moved(0.02))}


def test_embedding_shift_uses_the_generated_tokens(tiny_series: dict[str, Path],
                                                   tmp_path: Path) -> None:
    from transformers import AutoTokenizer

    samples = tmp_path / "samples"
    samples.mkdir()
    rows = [{"problem_id": "a", "sample": 0, "response": "12+3=15"},
            {"problem_id": "b", "sample": 0, "response": ""},
            {"problem_id": "c", "sample": 0, "response": "\\boxed{15}"}]
    (samples / "step_000010.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    out = tmp_path / "out"
    assert main(["analyze", "--base", str(tiny_series["base"]), "--checkpoints",
                 str(tiny_series["early"]), str(tiny_series["final"]), "--samples", str(samples),
                 "--out-dir", str(out), "--ks", "1", "--alignment-ks", "1"]) == 0
    tokenizer = AutoTokenizer.from_pretrained(str(tiny_series["final"]))
    expected = sorted(set(tokenizer("12+3=15", add_special_tokens=False)["input_ids"])
                      | set(tokenizer("\\boxed{15}", add_special_tokens=False)["input_ids"]))
    cosine = pd.read_csv(out / "embedding_cosine.csv")
    assert cosine["token_id"].tolist() == expected
    base = load_file(tiny_series["base"] / "model.safetensors")["model.embed_tokens.weight"]
    final = load_file(tiny_series["final"] / "model.safetensors")["model.embed_tokens.weight"]
    direct = torch.nn.functional.cosine_similarity(base[expected].double(),
                                                   final[expected].double())
    assert cosine["cosine"].to_numpy() == pytest.approx(direct.numpy(), abs=1e-9)
    projection = pd.read_csv(out / "embedding_projection.csv")
    assert len(projection) == 2 * len(expected)
    assert set(projection["source"]) == {"base", "trained"}
    assert 0 < projection["explained_x"].iloc[0] <= 1


def test_analyze_reads_each_checkpoint_once(tiny_series: dict[str, Path], tmp_path: Path,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    """`effopd analyze` (norms, allocation, spectra, alignment, embedding shift) reads every
    element of every tensor of the base and of each checkpoint exactly once: the checkpoint
    reader (checkpoint_io.safe_open) is wrapped and counts the elements it hands out."""
    from collections import Counter

    from safetensors import safe_open

    from effopd.analysis import checkpoint_io

    read: Counter[tuple[str, str]] = Counter()

    class Slice:
        def __init__(self, inner, key):
            self.inner, self.key = inner, key

        def get_shape(self):
            return self.inner.get_shape()

        def __getitem__(self, index):
            tensor = self.inner[index]
            read[self.key] += tensor.numel()
            return tensor

    class CountingReader:
        def __init__(self, path, framework, **kwargs):
            self.inner = safe_open(path, framework=framework, **kwargs)
            self.directory = str(Path(path).resolve().parent)

        def __enter__(self):
            self.inner.__enter__()
            return self

        def __exit__(self, *exc):
            return self.inner.__exit__(*exc)

        def __getattr__(self, name):
            return getattr(self.inner, name)

        def get_tensor(self, name):
            tensor = self.inner.get_tensor(name)
            read[(self.directory, name)] += tensor.numel()
            return tensor

        def get_slice(self, name):
            return Slice(self.inner.get_slice(name), (self.directory, name))

    monkeypatch.setattr(checkpoint_io, "safe_open", CountingReader)
    samples = tmp_path / "samples"
    samples.mkdir()
    (samples / "step_000010.jsonl").write_text(json.dumps({"response": "12+3=15"}) + "\n")
    out = tmp_path / "out"
    assert main(["analyze", "--base", str(tiny_series["base"]), "--checkpoints",
                 str(tiny_series["early"]), str(tiny_series["final"]), "--samples", str(samples),
                 "--out-dir", str(out), "--ks", "1", "4", "--alignment-ks", "1", "2",
                 "--no-verify-sha256"]) == 0
    assert (out / "embedding_cosine.csv").exists() and (out / "alignment.csv").exists()
    expected = Counter()
    for ckpt in (tiny_series["base"], tiny_series["early"], tiny_series["final"]):
        for name, tensor in load_file(Path(ckpt) / "model.safetensors").items():
            expected[(str(Path(ckpt).resolve()), name)] = tensor.numel()
    assert len(expected) > 3 * 10
    assert read == expected  # every element of every file once, nothing twice


def test_final_samples_file_picks_the_final_step(tmp_path: Path) -> None:
    (tmp_path / "step_000004.jsonl").write_text("")
    assert generated_tokens.final_samples_file(tmp_path, 4) == tmp_path / "step_000004.jsonl"
    with pytest.raises(FileNotFoundError, match="step_000008"):
        generated_tokens.final_samples_file(tmp_path, 8)


# --------------------------------------------------------------------------- accuracy analyses


@pytest.fixture(scope="module")
def accuracy_runs(tiny_series: dict[str, Path], tmp_path_factory: pytest.TempPathFactory
                  ) -> dict[str, object]:
    root = tmp_path_factory.mktemp("accuracy")
    benchmark = root / "bench.jsonl"
    benchmark.write_text("".join(json.dumps({"id": f"p{i}", "problem": f"Compute {i}+1.",
                                             "answer": str(i + 1)}) + "\n" for i in range(5)))
    settings = scoring.EvalSettings(benchmark=benchmark,
                                     generation={"max_new_tokens": 6, "temperature": 1.0},
                                     grading={"workers": 1}, pass_k=(1, 2), limit=3, n=1,
                                     device="cpu")
    series = series_mod.series_from_dirs(tiny_series["base"],
                                       [tiny_series["early"], tiny_series["final"]])
    work = root / "work"
    return {
        "series": series, "settings": settings, "work": work,
        "scaling": recipes.run_scaling(series, settings, work / "scaling", root / "s.csv",
                                        alphas=[0, 0.5, 1, 2], early_fraction=0.1,
                                        early_alphas=[0, 0.5, 1, 2]),
        "modules": recipes.run_modules(series, settings, work / "modules", root / "m.csv",
                                        window_size=1, window_stride=1,
                                        keep_checkpoints=True),
        "rank_k": recipes.run_rank_k(series, settings, work / "rank_k", root / "r.csv",
                                      ks=[1, 4, 64]),
    }


def test_scaling_scores_every_alpha_for_final_and_early(accuracy_runs: dict) -> None:
    table = accuracy_runs["scaling"]
    assert sorted(zip(table["kind"], table["alpha"], strict=True)) == sorted(
        (kind, alpha) for kind in ("final", "early") for alpha in (0.0, 0.5, 1.0, 2.0))
    assert set(table.loc[table["kind"] == "early", "step"]) == {1}  # 1/10 is the early one
    base_rows = table[table["alpha"] == 0]
    assert base_rows["avg@n"].nunique() == 1 and set(base_rows["label"]) == {"base"}
    assert (table["n_problems"] == 3).all() and (table["n"] == 1).all()
    assert table["avg@n"].between(0, 1).all()
    work = accuracy_runs["work"] / "scaling"
    assert not (work / "checkpoints").exists()  # every built checkpoint deleted
    assert {p.stem for p in (work / "scores").glob("*.json")} == set(table["label"])
    manifest = json.loads((work / "bench.manifest.json").read_text())
    assert manifest["n_problems"] == 3 and manifest["limit"] == 3


def test_scores_are_cached_and_reused(accuracy_runs: dict, monkeypatch: pytest.MonkeyPatch,
                                      tmp_path: Path) -> None:
    def fail(*args, **kwargs):
        raise AssertionError("a cached candidate was rebuilt")

    monkeypatch.setattr(recipes, "scaled_update", fail)
    again = recipes.run_scaling(accuracy_runs["series"], accuracy_runs["settings"],
                                 accuracy_runs["work"] / "scaling", tmp_path / "again.csv",
                                 alphas=[0, 0.5, 1, 2], early_fraction=0.1,
                                 early_alphas=[0, 0.5, 1, 2])
    columns = ["kind", "alpha", "avg@n"]
    pd.testing.assert_frame_equal(again[columns], accuracy_runs["scaling"][columns])
    changed = scoring.EvalSettings(**{**accuracy_runs["settings"].__dict__, "limit": 2})
    with pytest.raises(AssertionError, match="rebuilt"):
        recipes.run_scaling(accuracy_runs["series"], changed, accuracy_runs["work"] / "scaling",
                             tmp_path / "changed.csv", alphas=[0.5])


def test_scoring_in_a_subprocess_gives_the_same_scores(accuracy_runs: dict,
                                                       tmp_path: Path) -> None:
    """The path taken with vLLM (a fresh process per model), here with transformers."""
    series = accuracy_runs["series"]
    isolated = scoring.EvalSettings(**{**accuracy_runs["settings"].__dict__, "isolate": True})
    assert not accuracy_runs["settings"].in_subprocess and isolated.in_subprocess
    assert scoring.EvalSettings(Path("b"), generation={"backend": "vllm"}).in_subprocess
    candidate = scoring.Candidate("final_a1", {"alpha": 1.0}, (series.final,),
                                   model=series.final)
    table = scoring.score_candidates([candidate], isolated, tmp_path)
    direct = accuracy_runs["scaling"].set_index("label").loc["final_a1"]
    assert table["avg@n"].iloc[0] == direct["avg@n"]


def test_module_interventions_inject_one_part_each(accuracy_runs: dict,
                                                   tiny_series: dict[str, Path]) -> None:
    table = accuracy_runs["modules"]
    assert table["intervention"].tolist() == ["base", "full", "window_L00-00", "window_L01-01",
                                              "mlp", "attention", "embedding"]
    assert table.loc[table["kind"] == "window", "start"].tolist() == [0, 1]
    kept = accuracy_runs["work"] / "modules" / "checkpoints" / "mlp" / "model.safetensors"
    mlp = load_file(kept)
    base = load_file(tiny_series["base"] / "model.safetensors")
    final = load_file(tiny_series["final"] / "model.safetensors")
    for name, tensor in mlp.items():
        expected = final[name] if ".mlp." in name else base[name]
        assert torch.allclose(tensor, expected, atol=1e-7), name


def test_rank_k_drops_ks_at_full_rank_and_adds_references(accuracy_runs: dict) -> None:
    table = accuracy_runs["rank_k"]
    assert table["variant"].tolist() == ["base", "full", "rank_k", "rank_k"]
    assert table["k"].tolist()[2:] == [1, 4]  # 64 >= every matrix's rank: the full update


def test_evaluate_scaling_command_line(tiny_series: dict[str, Path], accuracy_runs: dict,
                                       tmp_path: Path) -> None:
    index = tmp_path / "checkpoints.csv"
    index.write_text(f"method,seed,step,path,wall_s\nrl,7,1,{tiny_series['early']},0\n"
                     f"rl,7,10,{tiny_series['final']},1\n")
    settings = accuracy_runs["settings"]
    out = tmp_path / "scaling.csv"
    assert main(["evaluate-scaling", "--base", str(tiny_series["base"]), "--index", str(index),
                 "--benchmark", str(settings.benchmark), "--generation",
                 json.dumps(settings.generation), "--grading", '{"workers": 1}',
                 "--limit", "2", "--n", "1", "--alphas", "0", "1", "--early-alphas", "0", "3",
                 "--selection-benchmark", str(settings.benchmark), "--work-dir",
                 str(tmp_path / "work"), "--out", str(out), "--device", "cpu"]) == 0
    table = pd.read_csv(out)
    assert list(table.columns[:2]) == ["method", "seed"]
    assert set(table["method"]) == {"rl"} and set(table["seed"]) == {7}
    assert set(table["step"]) == {1, 10}
    # final: alpha 0, 1; early: alpha 0, 3, on the series benchmark (first 2 problems)
    # and again on the selection benchmark (all 5 problems)
    assert sorted(zip(table["kind"], table["alpha"], table["n_problems"], strict=True)) == [
        ("early", 0.0, 2), ("early", 0.0, 5), ("early", 3.0, 2), ("early", 3.0, 5),
        ("final", 0.0, 2), ("final", 1.0, 2)]


def test_evaluate_interventions_equals_the_three_commands(tiny_series: dict[str, Path],
                                                         accuracy_runs: dict,
                                                         tmp_path: Path) -> None:
    """One process for scaling, modules and rank-k: the same rows, the same scores."""
    settings = accuracy_runs["settings"]
    outs = {name: tmp_path / f"{name}.csv" for name in ("scaling", "modules", "rank_k")}
    assert main(["evaluate-interventions", "--base", str(tiny_series["base"]),
                 "--checkpoints", str(tiny_series["early"]), str(tiny_series["final"]),
                 "--benchmark", str(settings.benchmark), "--generation",
                 json.dumps(settings.generation), "--grading", '{"workers": 1}',
                 "--pass-k", "1", "2", "--limit", "3", "--n", "1",
                 "--alphas", "0", "0.5", "1", "2", "--early-alphas", "0", "0.5", "1", "2",
                 "--early-fraction", "0.1", "--window-size", "1", "--window-stride", "1",
                 "--ks", "1", "4", "64", "--work-dir", str(tmp_path / "work"),
                 "--scaling-out", str(outs["scaling"]), "--modules-out", str(outs["modules"]),
                 "--rank-k-out", str(outs["rank_k"]), "--device", "cpu"]) == 0
    for name, out in outs.items():
        table, reference = pd.read_csv(out), accuracy_runs[name]
        assert table["label"].tolist() == reference["label"].tolist(), name
        assert table["avg@n"].tolist() == reference["avg@n"].tolist(), name
    assert {p.name for p in (tmp_path / "work").iterdir()} == {"scaling", "modules", "rank_k"}


# --------------------------------------------------------------------------- tables


def test_summarize_gives_the_student_t_interval() -> None:
    per_seed = pd.DataFrame({"method": ["rl", "opd", "opd"], "seed": [0, 0, 1],
                             "x": [5.0, 1.0, 3.0]})
    table = reports.summarize(per_seed, ["method"], ["x"])
    assert table["method"].tolist() == ["opd", "rl"]
    opd = table.iloc[0]
    half = stats.t.ppf(0.975, 1) * math.sqrt(2) / math.sqrt(2)
    assert opd["x_mean"] == 2.0 and opd["n_seeds"] == 2
    assert opd["x_ci95_low"] == pytest.approx(2 - half) and opd["x_ci95_high"] == pytest.approx(
        2 + half)
    assert math.isnan(table.iloc[1]["x_ci95_low"])
    compact = reports.compact(table)
    assert compact["x"].tolist() == [f"2 [{2 - half:.4g}, {2 + half:.4g}]", "5"]


def _scaling_rows(rows, benchmark="test"):
    return pd.DataFrame([{"method": "opd", "seed": 0, "kind": k, "alpha": a, "accuracy": acc,
                          "benchmark": benchmark, "step": 10 if k == "final" else 1,
                          "fraction": 1.0 if k == "final" else 0.1} for k, a, acc in rows])


def test_early_recovery_is_the_share_of_the_final_gain() -> None:
    rows = [("final", 0.0, 0.2), ("final", 1.0, 0.6), ("early", 0.0, 0.2),
            ("early", 1.0, 0.3), ("early", 2.0, 0.5), ("early", 3.0, 0.4)]
    per_seed = _scaling_rows(rows)
    table = reports.early_recovery(per_seed).iloc[0]
    assert table["selected_on"] == "series benchmark (winner's curse)"
    assert table["recovered_best_scaled_mean"] == pytest.approx((0.5 - 0.2) / (0.6 - 0.2))
    assert table["recovered_unscaled_mean"] == pytest.approx((0.3 - 0.2) / (0.6 - 0.2))
    assert table["best_alpha_mean"] == 2.0 and table["early_step_mean"] == 1


def test_early_recovery_chooses_alpha_on_validation_and_reports_test() -> None:
    test = [("final", 0.0, 0.2), ("final", 1.0, 0.6), ("early", 0.0, 0.2),
            ("early", 2.0, 0.35), ("early", 4.0, 0.55)]        # test would pick alpha 4
    val = [("early", 0.0, 0.1), ("early", 2.0, 0.7), ("early", 4.0, 0.3)]  # val picks 2
    per_seed = pd.concat([_scaling_rows(test), _scaling_rows(val, "val")], ignore_index=True)
    table = reports.early_recovery(per_seed).iloc[0]
    assert table["selected_on"] == "selection benchmark"
    assert table["best_alpha_mean"] == 2.0
    assert table["best_scaled_early_accuracy_mean"] == pytest.approx(0.35)  # test score
    assert table["recovered_best_scaled_mean"] == pytest.approx((0.35 - 0.2) / (0.6 - 0.2))
    curves = reports.scaling_curves(per_seed.assign(scaled_norm=0.0))
    assert len(curves) == 5  # the validation rows are not part of the scaling curves


def test_module_utility_gain_share() -> None:
    modules = pd.DataFrame({"method": "opd", "seed": 0,
                            "intervention": ["base", "full", "mlp", "attention"],
                            "kind": ["reference", "reference", "module", "module"],
                            "avg@n": [0.2, 0.6, 0.5, 0.1]})
    table = reports.module_utility_per_seed(modules).set_index("intervention")
    assert table.loc["mlp", "gain"] == pytest.approx(0.3)
    assert table.loc["mlp", "gain_share"] == pytest.approx(0.75)
    assert table.loc["attention", "gain_share"] == pytest.approx(-0.25)


def test_update_size_adds_the_base_at_norm_zero() -> None:
    norms = pd.DataFrame({"method": "opd", "seed": 0, "step": [2, 4], "block_norm": [1.0, 2.0],
                          "block_relative_norm": [0.1, 0.2]})
    curves = pd.DataFrame({"method": "opd", "seed": 0, "step": [0, 2, 4], "benchmark": "b",
                           "accuracy": [0.1, 0.3, 0.4]})
    sizes = reports.update_size_per_seed(norms, curves)
    assert sizes["step"].tolist() == [0, 2, 4] and sizes["block_norm"].tolist() == [0, 1, 2]
    assert sizes["fraction"].tolist() == [0, 0.5, 1]
    efficiency = reports.update_efficiency(sizes).iloc[0]
    assert efficiency["gain_per_unit_norm_mean"] == pytest.approx((0.4 - 0.1) / 2.0)


def test_tables_and_figures_over_two_methods_and_seeds(analyzed: Path, accuracy_runs: dict,
                                                       tmp_path: Path) -> None:
    """Every table and figure from per-run outputs of two methods x two seeds."""
    from effopd.plots.analysis import FIGURES, plot_analysis_figures

    rng = np.random.default_rng(0)
    run_dirs, eval_csvs = [], []
    for method in ("opd", "rl"):
        for seed in (0, 1):
            run = tmp_path / "runs" / method / f"seed{seed}"
            shutil.copytree(analyzed, run)
            tokens = np.arange(20)
            pd.DataFrame({"token_id": tokens, "cosine": rng.uniform(0.9, 1, 20),
                          "base_norm": 1.0, "trained_norm": 1.0, "shift_norm": 0.1}
                         ).to_csv(run / "embedding_cosine.csv", index=False)
            pd.DataFrame({"token_id": np.concatenate([tokens, tokens]),
                          "source": ["base"] * 20 + ["trained"] * 20, "x": rng.normal(size=40),
                          "y": rng.normal(size=40), "explained_x": 0.5, "explained_y": 0.2}
                         ).to_csv(run / "embedding_projection.csv", index=False)
            for name in ("scaling", "modules", "rank_k"):
                table = accuracy_runs[name].copy()
                if name == "scaling":  # the planted series' steps
                    table["step"] = table["kind"].map({"final": 100, "early": 10})
                table["avg@n"] = rng.uniform(0, 1, len(table))
                table.to_csv(run / f"{name}.csv", index=False)
            for table_csv in run.glob("*.csv"):  # this run's identity, as its producers write
                with_run(pd.read_csv(table_csv), {"method": method, "seed": seed}).to_csv(
                    table_csv, index=False)
            scores = pd.DataFrame({"method": method, "seed": seed, "step": [0, 10, 50, 100],
                                   "benchmark": "bench", "avg@n": rng.uniform(0, 1, 4)})
            eval_dir = tmp_path / "eval" / method / f"seed{seed}"
            eval_dir.mkdir(parents=True)
            scores.to_csv(eval_dir / "bench.csv", index=False)
            run_dirs.append(run)
            eval_csvs.append(eval_dir / "bench.csv")
    written = reports.write_analysis_tables(run_dirs, eval_csvs, tmp_path / "tables",
                                            early_fraction=0.1)
    assert set(written) == set(reports.TABLES)
    for path in written.values():
        assert path.with_suffix(".md").read_text().startswith("| ")
    sizes = pd.read_csv(written["update_size_accuracy"])
    assert (sizes["n_seeds"] == 2).all() and sizes["accuracy_ci95_low"].notna().all()
    alignment = pd.read_csv(written["subspace_alignment"])
    assert set(alignment.loc[alignment["early"], "step"]) == {10}
    layers = pd.read_csv(written["module_allocation_layers"])
    assert set(layers["group"]) == {"all", "attention", "mlp", "norm"}
    paths = plot_analysis_figures(tmp_path / "tables", tmp_path / "figures", benchmark="bench",
                                  plot_k=2)
    assert set(paths) == set(FIGURES)
    for png in paths.values():
        assert png.stat().st_size > 0 and png.with_suffix(".pdf").stat().st_size > 0


# --------------------------------------------------------------------------- config and DAG


def test_schema_defaults_match_the_command_line_defaults() -> None:
    block = load_schema()["properties"]["analysis"]["properties"]
    assert block["spectra_ks"]["default"] == list(settings.SPECTRA_KS)
    assert block["alignment_ks"]["default"] == list(settings.ALIGNMENT_KS)
    assert block["scaling_alphas"]["default"] == list(settings.SCALING_ALPHAS)
    assert block["early_fraction"]["default"] == settings.EARLY_FRACTION
    assert block["window_size"]["default"] == settings.WINDOW_SIZE
    assert block["window_stride"]["default"] == settings.WINDOW_STRIDE
    assert block["rank_ks"]["default"] == list(settings.RANK_KS)
    assert block["eval_limit"]["default"] == settings.EVAL_LIMIT
    assert block["eval_n"]["default"] == settings.EVAL_N


def test_rule_helpers_list_every_table_and_figure() -> None:
    """The analyses' tables and figures are named once (effopd/tables.py): the report and
    plot modules and the rule helpers all take that list, and the rule files write none
    of their own."""
    from effopd.plots.analysis import FIGURES
    from effopd.tables import ANALYSIS_FIGURES, ANALYSIS_RUN_FILES, ANALYSIS_TABLES

    assert reports.TABLES is ANALYSIS_TABLES and FIGURES is ANALYSIS_FIGURES
    text = (REPO / "workflow/rules/analysis_helpers.smk").read_text()
    for name in ("ANALYSIS_RUN_FILES", "ANALYSIS_TABLES", "ANALYSIS_FIGURES"):
        assert f"effopd.tables.{name}" in text
    rules = "".join(p.read_text() for p in (REPO / "workflow/rules").glob("*.smk"))
    for name in (*ANALYSIS_TABLES, *ANALYSIS_FIGURES, *ANALYSIS_RUN_FILES):
        assert f'"{name}"' not in rules, name  # no list of their own


def test_allocation_share_per_parameter_divides_out_size() -> None:
    final = pd.DataFrame({"method": "opd", "seed": 0, "layer": [0.0, 0.0, None],
                          "module": ["up", "q", "embed"], "group": ["mlp", "attention",
                                                                   "embedding"],
                          "numel": [300, 100, 600], "delta_norm": [2.0, 0.0, 0.0],
                          "base_norm": [1.0, 1.0, 1.0], "share": [1.0, 0.0, 0.0]})
    modules = reports.allocation_by_module(final).set_index("module")
    assert modules.loc["up", "param_share"] == pytest.approx(0.3)
    assert modules.loc["up", "share_per_param"] == pytest.approx(1 / 0.3)
    assert modules.loc["q", "share_per_param"] == 0
    layers = reports.allocation_by_layer(final).set_index("group")
    assert layers.loc["all", "param_share"] == pytest.approx(0.4)
    assert layers.loc["all", "share_per_param"] == pytest.approx(2.5)
