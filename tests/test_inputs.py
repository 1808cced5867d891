"""Issue 21, no silent wrong numbers: bad inputs are refused before work starts, in one
line that names the file and the key, by the real CLI and the real Snakemake DAG.

Each test names the finding of the issue it pins (finding 1: duplicate seeds; 6: checks
that came too late or not at all; ...).
"""

from __future__ import annotations

import pytest
import yaml

from effopd.config import load_config
from tests.conftest import run_cli


@pytest.fixture
def smoke(repo):
    return yaml.safe_load((repo / "config/smoke.yaml").read_text())


def write_config(tmp_path, config, name="bad.yaml"):
    path = tmp_path / name
    path.write_text(yaml.safe_dump(config))
    return path


def error_lines(result):
    """The lines of stderr a user reads: a refusal is exactly one, with no traceback."""
    lines = [line for line in result.stderr.splitlines() if line.strip()]
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
                 "config/study.yaml", "pilots/base.yaml"):
        load_config(repo / name)
