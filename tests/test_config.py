"""Config schema: shipped configs validate, defaults fill in, errors name the key."""

import copy

import pytest
import yaml

from effopd.config import ConfigError, load_config, validate_config
from tests.conftest import run_cli

CONFIGS = ["config/config.yaml", "config/smoke.yaml", "config/paper.yaml", "config/study.yaml"]


@pytest.mark.parametrize("name", CONFIGS)
def test_shipped_configs_validate(repo, name):
    config = load_config(repo / name)
    assert config["generation"]["top_p"] == 1.0  # defaults filled
    assert config["grading"]["timeout_s"] > 0


def test_defaults_are_filled_and_not_shared(repo):
    raw = yaml.safe_load((repo / "config/smoke.yaml").read_text())
    raw.pop("grading")
    first = validate_config(copy.deepcopy(raw))
    second = validate_config(copy.deepcopy(raw))
    assert first["grading"] == {"timeout_s": 5.0, "workers": 2, "batch_size": 64}
    first["grading"]["workers"] = 99
    assert second["grading"]["workers"] == 2
    assert first["prompt"]["instruction"].startswith("Please reason step by step")


@pytest.fixture
def smoke(repo):
    return yaml.safe_load((repo / "config/smoke.yaml").read_text())


@pytest.mark.parametrize(("mutate", "fragment"), [
    (lambda c: c["models"]["teacher"]["sft"].update(steps=0), "models/teacher/sft/steps"),
    (lambda c: c["models"]["student"]["arch"].update(hidden=3), "models/student/arch"),
    (lambda c: c["generation"].update(temperature="hot"), "generation/temperature"),
    (lambda c: c.update(experiment="no spaces allowed"), "experiment"),
    (lambda c: c["models"].update(teacher={"source": "hub", "repo_id": "Qwen/Qwen3-4B"}),
     "revision"),
    (lambda c: c["models"].update(student={"source": "hub", "repo_id": "Qwen/Qwen3-4B",
                                           "revision": "main"}), "models/student/revision"),
    (lambda c: c["benchmarks"].update(x={"source": "task", "split": "dev"}),
     "benchmarks/x/split"),
    (lambda c: c.update(unknown_key=1), "unknown_key"),
])
def test_invalid_config_names_the_key(smoke, mutate, fragment):
    mutate(smoke)
    with pytest.raises(ConfigError, match=fragment):
        validate_config(smoke, source="smoke.yaml")


def test_cli_reports_file_and_key(tmp_path, smoke):
    smoke["generation"]["n"] = 0
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump(smoke))
    result = run_cli("effopd", "validate-config", str(bad))
    assert result.returncode == 1
    assert str(bad) in result.stderr and "generation/n" in result.stderr


def test_snakemake_rejects_invalid_config_before_any_job(tmp_path, repo, smoke):
    smoke["task"]["n_test"] = -1
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump(smoke))
    result = run_cli("snakemake", "-s", str(repo / "Snakefile"), "--directory", str(tmp_path),
                     "--configfile", str(bad), "-n")
    assert result.returncode != 0
    assert "task/n_test" in result.stderr + result.stdout
    assert not (tmp_path / "artifacts").exists()


def test_yaml_syntax_error_names_file(tmp_path):
    bad = tmp_path / "broken.yaml"
    bad.write_text("experiment: [unclosed\n")
    with pytest.raises(ConfigError, match="broken.yaml: not valid YAML"):
        load_config(bad)


def test_analysis_methods_may_name_opd_lr_baselines():
    """An OPD learning-rate baseline (opd-lr<m>x) can be analysed and be one side of a
    sensitivity pair (OPD at its best lr), as config/study.yaml does."""
    config = load_config("config/config.yaml")
    config["training"]["lr_baselines"] = {"multipliers": [15]}
    config["training"]["methods"] = ["opd", "rl", "effopd",
                                     {"name": "rl-best", "algorithm": "rl", "lr": 6e-5}]
    config["analysis"]["methods"] = ["opd", "rl", "opd-lr15x", "rl-best"]
    config["claims"]["sensitivity"] = [{"opd": "opd-lr15x", "rl": "rl-best"}]
    validate_config(copy.deepcopy(config), source="config.yaml")
    config["analysis"]["methods"] = ["opd", "rl", "rl-best"]
    with pytest.raises(ConfigError, match="'opd-lr15x' is not analysed"):
        validate_config(config, source="config.yaml")


def test_claims_sensitivity_pairs_name_analysed_methods_of_their_algorithms():
    config = load_config("config/config.yaml")
    config["training"]["methods"] = ["opd", "rl", "effopd",
                                     {"name": "rl-best", "algorithm": "rl", "lr": 6e-5}]
    good = copy.deepcopy(config)
    good["claims"]["sensitivity"] = [{"opd": "opd", "rl": "rl-best"}]
    good["analysis"]["methods"] = ["opd", "rl", "rl-best"]
    validate_config(good, source="config.yaml")
    for pair, words in (({"opd": "rl", "rl": "rl-best"},
                         "claims/sensitivity/0/opd': 'rl' is not a declared method of "
                         "algorithm opd"),
                        ({"opd": "opd", "rl": "rl-lr2"}, "'rl-lr2' is not a declared"),
                        ({"opd": "opd", "rl": "rl-best"}, "'rl-best' is not analysed")):
        bad = copy.deepcopy(config)
        bad["claims"]["sensitivity"] = [pair]
        bad["analysis"]["methods"] = ["opd", "rl"] if "analysed" in words else None
        with pytest.raises(ConfigError, match=words):
            validate_config(bad, source="config.yaml")
