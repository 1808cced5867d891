"""Issue 21, no silent wrong numbers: bad inputs are refused before work starts, in one
line that names the file and the key, by the real CLI and the real Snakemake DAG.

Each test names the finding of the issue it pins (finding 1: duplicate seeds; 6: checks
that came too late or not at all; ...).
"""

from __future__ import annotations

import hashlib
import json
import shutil

import pandas as pd
import pytest
import yaml

from effopd.config import load_config
from tests.conftest import REPO, run_cli


@pytest.fixture
def smoke(repo):
    return yaml.safe_load((repo / "config/smoke.yaml").read_text())


def write_config(tmp_path, config, name="bad.yaml"):
    path = tmp_path / name
    path.write_text(yaml.safe_dump(config))
    return path


def error_lines(result):
    """The error lines of stderr: a refusal is exactly one, with no traceback."""
    lines = [line for line in result.stderr.splitlines() if " ERROR " in line]
    assert "Traceback" not in result.stderr, result.stderr
    return lines


# (finding, mutation of config/smoke.yaml, key named, fragment of the reason)
BAD_CONFIGS = [
    ("1", lambda c: c.update(seeds=[0, 0]), "seeds", "more than once"),
    ("1", lambda c: c["ablation"].update(seeds=[3, 3]), "ablation/seeds", "more than once"),
    ("6", lambda c: c["training"]["effopd"].update(validation_benchmark="nope"),
     "training/effopd/validation_benchmark", "benchmark 'nope' is not declared"),
    ("6", lambda c: c["evaluation"].update(base_benchmarks=["tiny_test", "nope"]),
     "evaluation/base_benchmarks", "benchmark 'nope' is not declared"),
    ("6", lambda c: c["evaluation"].update(series_benchmarks=["nope"]),
     "evaluation/series_benchmarks", "benchmark 'nope' is not declared"),
    ("6", lambda c: c["analysis"].update(selection_benchmark="nope"),
     "analysis/selection_benchmark", "benchmark 'nope' is not declared"),
    ("6", lambda c: c["training"].update(save_every=8), "training/save_every",
     "beyond training/steps 4"),
    ("6", lambda c: c["analysis"].update(spectra_ks=[1, 2]), "claims/k",
     "not among analysis/spectra_ks"),
    ("6", lambda c: c["models"]["student"]["arch"].update(num_attention_heads=3,
                                                          num_key_value_heads=2),
     "models/student/arch", "not a multiple of num_key_value_heads"),
    ("6", lambda c: c["task"].update(min_ops=3, max_ops=2), "task/min_ops", "above task/max_ops"),
    ("6", lambda c: c["training"].update(betas=[0.9, 1.0]), "training/betas",
     "outside [0, 1)"),
    ("6", lambda c: c["training"].update(steps=4.0), "training/steps", "not of type 'integer'"),
    ("7", lambda c: c["task"].update(n_train=6), "task/n_train",
     "fewer than training/opd/prompts_per_step 8"),
]


@pytest.mark.parametrize(("finding", "mutate", "key", "reason"), BAD_CONFIGS,
                         ids=[f"finding{f}-{k}" for f, _, k, _ in BAD_CONFIGS])
def test_validate_config_refuses_in_one_line(tmp_path, smoke, finding, mutate, key, reason):
    mutate(smoke)
    path = write_config(tmp_path, smoke)
    result = run_cli("effopd", "validate-config", str(path))
    assert result.returncode == 1
    (line,) = error_lines(result)
    assert str(path) in line and f"key '{key}'" in line and reason in line, line


@pytest.mark.parametrize(("mutate", "key"), [
    (lambda c: c.update(seeds=[0, 0]), "seeds"),  # finding 1: no "2 vs 2" from one run
    (lambda c: c["evaluation"].update(series_benchmarks=["nope"]),
     "evaluation/series_benchmarks"),  # finding 6: not a MissingInputException
    (lambda c: c["training"].update(save_every=8), "training/save_every"),  # not at the last rule
])
def test_snakemake_refuses_before_any_job(tmp_path, repo, smoke, mutate, key):
    mutate(smoke)
    path = write_config(tmp_path, smoke)
    result = run_cli("snakemake", "-n", "-s", str(repo / "Snakefile"), "--directory",
                     str(tmp_path), "--configfile", str(path))
    assert result.returncode != 0
    output = result.stdout + result.stderr
    assert f"{path}: invalid config: key '{key}'" in output, output[-2000:]
    assert "MissingInputException" not in output and "Job stats" not in output
    assert not (tmp_path / "artifacts").exists() and not (tmp_path / "results").exists()


def test_duplicate_yaml_key_is_refused_by_cli_and_snakemake(tmp_path, repo):
    """Finding 6: a key given twice was silently last-wins."""
    text = (repo / "config/smoke.yaml").read_text()
    text = text.replace("seeds: [0]", "seeds: [0]\nseeds: [1]")
    path = tmp_path / "twice.yaml"
    path.write_text(text)
    result = run_cli("effopd", "validate-config", str(path))
    assert result.returncode == 1
    (line,) = error_lines(result)
    assert str(path) in line and "key 'seeds' appears twice (lines 4 and 5)" in line
    result = run_cli("snakemake", "-n", "-s", str(repo / "Snakefile"), "--directory",
                     str(tmp_path), "--configfile", str(path))
    assert result.returncode != 0
    assert "key 'seeds' appears twice" in result.stdout + result.stderr


def test_exponent_numbers_are_floats(tmp_path, repo):
    """Finding 6: ``lr: 1e-3`` (text to YAML 1.1) was refused as "not of type number"."""
    text = (repo / "config/smoke.yaml").read_text()
    assert "  lr: 0.001\n" in text
    path = tmp_path / "exp.yaml"
    path.write_text(text.replace("  lr: 0.001\n", "  lr: 1e-3\n"))
    assert load_config(path)["training"]["lr"] == 0.001
    result = run_cli("snakemake", "-n", "-p", "-s", str(repo / "Snakefile"), "--directory",
                     str(tmp_path), "--configfile", str(path))
    assert result.returncode == 0, result.stderr[-2000:]
    assert '"lr": 0.001' in result.stdout  # the train jobs receive the number


def test_shipped_configs_pass_every_cross_key_rule(repo):
    for name in ("config/config.yaml", "config/smoke.yaml", "config/paper.yaml",
                 "config/study.yaml", "config/scales.yaml", "pilots/base.yaml"):
        load_config(repo / name)


# --------------------------------------------------------------------------- reviewer mode

TINY = "results/tiny"


@pytest.fixture
def committed(tmp_path, repo):
    """A reviewer's copy of the committed tiny results (the tables need no figures)."""
    shutil.copytree(repo / TINY, tmp_path / TINY)
    return tmp_path


def review(repo, workdir, *args):
    return run_cli("snakemake", *args, "--cores", "2", "--config", "review=True", "-s",
                   str(repo / "Snakefile"), "--directory", str(workdir), "--configfile",
                   str(repo / "config/config.yaml"))


def digests(folder):
    return {p.relative_to(folder): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.mark.parametrize("removed", [
    [f"{TINY}/eval/runs/rl/seed2", f"{TINY}/train/rl/seed2", f"{TINY}/analysis/rl/seed2"],
    [f"{TINY}/eval/runs/opd/seed1/tiny_test.csv"],
])
def test_reviewer_mode_refuses_missing_committed_results(repo, committed, removed):
    """Finding 2: with a seed's results removed, `make figures` kept the old claims
    ("3 vs 3") and exited 0."""
    for path in removed:
        target = committed / path
        shutil.rmtree(target) if target.is_dir() else target.unlink()
    before = digests(committed / TINY / "tables")
    result = review(repo, committed, "figures", "--forceall")
    assert result.returncode != 0
    output = result.stdout + result.stderr
    assert "reviewer mode:" in output and "committed result(s) the tables are drawn from "\
        "are missing: " + sorted(removed)[0] in output, output[-2000:]
    assert digests(committed / TINY / "tables") == before


def damage_duplicate_row(path):
    lines = path.read_text().splitlines(keepends=True)
    path.write_text("".join([*lines, lines[2]]))


def damage_truncate_row(path):
    lines = path.read_text().splitlines(keepends=True)
    lines[3] = ",".join(lines[3].split(",")[:5]) + "\n"
    path.write_text("".join(lines))


def damage_cell(column, value):
    def damage(path):
        table = pd.read_csv(path, dtype=str, keep_default_na=False)
        table.loc[1, column] = value
        table.to_csv(path, index=False)
    return damage


EVAL = f"{TINY}/eval/runs/opd/seed0/tiny_test.csv"
PROBLEMS = f"{TINY}/eval/runs/rl/seed1/tiny_test.problems.csv"
NORMS = f"{TINY}/analysis/opd/seed1/update_norms.csv"
SPEEDUP_TARGET = (f"{TINY}/tables/effopd_speedup.csv", "tabulate_training")
ANALYSIS_TARGET = (f"{TINY}/tables/analysis/update_spectra.csv", "tabulate_analysis")
CLAIMS_TARGET = (f"{TINY}/tables/claims.csv", "tabulate_claims")

# (file damaged, damage, the table job that reads it, what the refusal says)
MALFORMED = [
    ("duplicated row", EVAL, damage_duplicate_row, SPEEDUP_TARGET,
     f"{EVAL}: rows 3 and 11 share the key (step=1): a duplicated row"),
    ("truncated row", PROBLEMS, damage_truncate_row, SPEEDUP_TARGET,
     f"{PROBLEMS}: row 4 has 5 fields, the header 258"),
    ("impossible accuracy", EVAL, damage_cell("avg@n", "1.5"), SPEEDUP_TARGET,
     f"{EVAL}: row 3: column 'avg@n' is 1.5, expected a number in [0, 1]"),
    ("non-numeric cell, analysis", NORMS, damage_cell("block_norm", "0.2x"), ANALYSIS_TARGET,
     f"{NORMS}: row 3: column 'block_norm' is '0.2x', expected a number >= 0"),
    ("non-numeric cell, claims", NORMS, damage_cell("block_norm", "0.2x"), CLAIMS_TARGET,
     f"{NORMS}: row 3: column 'block_norm' is '0.2x', expected a number >= 0"),
    ("empty file", NORMS, lambda p: p.write_text(""), ANALYSIS_TARGET,
     f"{NORMS}: empty file"),
    ("binary file", NORMS, lambda p: p.write_bytes(bytes(range(256)) * 4), ANALYSIS_TARGET,
     f"{NORMS}: a binary file"),
]


@pytest.mark.parametrize(("name", "damaged", "damage", "target", "message"), MALFORMED,
                         ids=[case[0] for case in MALFORMED])
def test_reviewer_mode_refuses_malformed_tables(repo, committed, name, damaged, damage,
                                                target, message):
    """Finding 4: malformed committed tables were accepted (or crashed with a traceback,
    or failed without the file's name), and a failed table job deleted 26 committed
    tables."""
    damage(committed / damaged)
    before = digests(committed / TINY / "tables")
    path, rule = target
    result = review(repo, committed, path, "--forcerun", rule)
    assert result.returncode != 0
    log = (committed / f"logs/tiny/{rule}.log").read_text()
    errors = [line for line in log.splitlines() if " ERROR " in line]
    assert "Traceback" not in log and len(errors) == 1, log[-3000:]
    assert message in errors[0], errors[0]
    assert digests(committed / TINY / "tables") == before  # nothing committed deleted


# --------------------------------------------------------------------------- checkpoints

def copy_checkpoint(source, target):
    shutil.copytree(source, target)
    return target


def test_analyze_verifies_checksums_by_default(tmp_path, tiny_checkpoint):
    """Finding 3: a same-size corruption of one checkpoint's weights was analysed as if
    sound (OPD's block norm 0.256 -> 48.3), exit 0."""
    first = copy_checkpoint(tiny_checkpoint, tmp_path / "step_000001")
    final = copy_checkpoint(tiny_checkpoint, tmp_path / "step_000002")
    weights = first / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[-64] ^= 0xFF  # a byte of the last tensor: same size, a sound header
    weights.write_bytes(bytes(data))
    args = ["effopd", "analyze", "--base", str(tiny_checkpoint), "--checkpoints", str(first),
            str(final), "--steps", "1", "2", "--ks", "1", "--alignment-ks", "1",
            "--device", "cpu"]
    result = run_cli(*args, "--out-dir", str(tmp_path / "out"))
    assert result.returncode == 1
    (line,) = error_lines(result)
    assert str(weights) in line and "sha256" in line, line
    assert not (tmp_path / "out").exists()
    # the flag that skips the check for speed outside the DAG reads the corrupt weights
    skipped = run_cli(*args, "--no-verify-sha256", "--out-dir", str(tmp_path / "fast"))
    assert skipped.returncode == 0, skipped.stderr[-2000:]


TRAINING = {"steps": 4, "save_every": 2, "lr": 1e-3, "max_new_tokens": 8,
            "rollout_batch_size": 64, "rl": {"prompts_per_step": 2, "group_size": 2}}


def train_command(workdir, student, train_file, **changes):
    """`effopd train` of RL (the smallest method) on the smoke config's training block
    with TRAINING and ``changes``; outputs under ``workdir``."""
    from effopd.config import validate_config

    smoke = yaml.safe_load((REPO / "config/smoke.yaml").read_text())
    config = validate_config({**smoke, "training": TRAINING})
    training = {**config["training"], **changes}
    return run_cli("effopd", "train", "--method", "rl", "--seed", "0", "--training",
                   json.dumps(training), "--grading", json.dumps(config["grading"]),
                   "--prompt", json.dumps(config["prompt"]), "--student", str(student),
                   "--train", str(train_file), "--run-dir", str(workdir / "run"),
                   "--log-csv", str(workdir / "log.csv"), "--search-csv",
                   str(workdir / "search.csv"), "--index-csv", str(workdir / "index.csv"))


@pytest.fixture
def task_data(tmp_path):
    from effopd.data.arithmetic import ArithmeticSpec, write_splits

    write_splits(ArithmeticSpec(n_train=20, n_val=4, n_test=4, seed=3), tmp_path / "data")
    return tmp_path / "data"


@pytest.fixture
def rl_run(tmp_path, tiny_checkpoint, task_data):
    """A finished RL run through `effopd train` from a copy of the tiny student, and the
    command that trains it again with changed training keys."""
    student = copy_checkpoint(tiny_checkpoint, tmp_path / "student")

    def train(**changes):
        return train_command(tmp_path, student, task_data / "train.jsonl", **changes)

    result = train()
    assert result.returncode == 0, result.stderr[-2000:]
    return tmp_path, train


@pytest.mark.parametrize("change", ["save_every", "deleted checkpoint"])
def test_checkpoint_grid_must_match_the_config(rl_run, change):
    """Finding 5: a changed save_every "resumed" with the old grid (provenance recorded the
    new one); a deleted checkpoint directory gave OPD and EffOPD different grids."""
    workdir, train = rl_run
    index = (workdir / "index.csv").read_bytes()
    if change == "save_every":
        result = train(save_every=1)
    else:
        shutil.rmtree(workdir / "run/checkpoints/step_000002")
        result = train()
    assert result.returncode == 1
    (line,) = error_lines(result)
    missing = "[1, 3]" if change == "save_every" else "[2]"
    assert str(workdir / "run/checkpoints") in line and "differs: checkpoint grid" in line
    assert f"missing steps {missing}" in line and "--fresh" in line, line
    assert (workdir / "index.csv").read_bytes() == index


def test_lost_student_manifest_is_not_called_another_run(rl_run):
    """Finding 7: a missing student manifest was reported as a fingerprint difference whose
    advice was to discard the run's valid checkpoints."""
    workdir, train = rl_run
    (workdir / "student/manifest.json").unlink()
    result = train()
    assert result.returncode == 1
    (line,) = error_lines(result)
    assert f"{workdir / 'student/manifest.json'}: missing" in line and "--fresh" not in line
    assert (workdir / "run/checkpoints/step_000004").is_dir()


# --------------------------------------------------------------------------- one-line errors

def write_jsonl(path, rows):
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return path


def evaluate_command(tmp_path, model, benchmark, *extra):
    return run_cli("effopd", "evaluate", "--model", str(model), "--benchmark", str(benchmark),
                   "--label", "x", "--samples", str(tmp_path / "s.jsonl"), "--metrics",
                   str(tmp_path / "m.json"), *extra)


@pytest.mark.parametrize(("case", "message"), [
    ("benchmark without problem", "bench.jsonl: row 1 has no key(s) problem (has: id, question"),
    ("not a checkpoint", "empty: not a model checkpoint (no config.json)"),
    ("threads -5", "--threads -5: expected 1 to "),
    ("threads 100000", "--threads 100000: expected 1 to "),
])
def test_evaluate_faults_are_one_line(tmp_path, tiny_checkpoint, case, message):
    """Finding 7: `'problem'`, a tokenizer error without the path, tracebacks."""
    good = write_jsonl(tmp_path / "good.jsonl", [{"id": "a", "problem": "1+1", "answer": "2"}])
    model, benchmark, extra = tiny_checkpoint, good, []
    if case == "benchmark without problem":
        benchmark = write_jsonl(tmp_path / "bench.jsonl",
                                [{"id": "a", "question": "1+1", "answer": "2"}])
    elif case == "not a checkpoint":
        model = tmp_path / "empty"
        model.mkdir()
    else:
        extra = ["--threads", case.split()[1]]
    result = evaluate_command(tmp_path, model, benchmark, *extra)
    assert result.returncode == 1
    (line,) = error_lines(result)
    assert message in line, line


@pytest.mark.parametrize(("rows", "message"), [
    ([{"problem": "1+1", "answer": "2"}] * 4, "train.jsonl: row 1 has no key(s) question"),
    ([{"question": "1+1", "answer": "2"}], "train.jsonl: 1 training problems, fewer than "
                                           "prompts_per_step 2 (training.rl)"),
])
def test_train_data_faults_are_one_line(tmp_path, tiny_checkpoint, rows, message):
    """Finding 7: `'question'` and "Sample larger than population"."""
    train_file = write_jsonl(tmp_path / "train.jsonl", rows)
    result = train_command(tmp_path, tiny_checkpoint, train_file)
    assert result.returncode == 1
    (line,) = error_lines(result)
    assert message in line, line


def test_large_task_splits_show_progress(tmp_path):
    """Finding 6: `n_train: 100000000` ran for minutes without a word."""
    result = run_cli("effopd", "make-task", "--spec", json.dumps({"n_train": 100_000}),
                     "--out-dir", str(tmp_path))
    assert result.returncode == 0, result.stderr[-2000:]
    assert "task train: 100%" in result.stderr and "100000/100000" in result.stderr


def schema_of(path):
    """The schema of a committed results file (None: a table checked for its form only)."""
    from effopd import tables

    text = str(path)
    if "/eval/runs/" in text:
        return tables.PROBLEMS if path.name.endswith(".problems.csv") else tables.EVAL_SERIES
    if "/train/" in text:
        return {"log.csv": tables.TRAIN_LOG,
                "checkpoints.csv": tables.CHECKPOINT_INDEX}.get(path.name)
    if "/analysis/" in text and "/tables/" not in text:
        return tables.ANALYSIS_RUN_FILES[path.name]
    return tables.BASE_MODELS if path.name == "base_models.csv" else None


@pytest.mark.parametrize("experiment", ["tiny", "study", "scales"])
def test_committed_results_pass_their_schemas_unchanged(repo, experiment):
    """The validated reader accepts every committed results file and returns exactly what
    pandas reads, so reviewer mode's tables stay byte-identical."""
    from effopd.tables import read_table

    if experiment == "scales" and not (repo / "results/scales/tables/cross_scale.csv").exists():
        pytest.skip("results/scales is not committed in this checkout")
    files = sorted((repo / "results" / experiment).rglob("*.csv"))
    # (the search logs of OPD and RL are a header only: no line search ran)
    files = [f for f in files if "/benchmarks/" not in str(f)
             and len(f.read_text().splitlines()) > 1]
    assert len(files) > 100
    for path in files:
        pd.testing.assert_frame_equal(read_table(path, schema_of(path)), pd.read_csv(path))
