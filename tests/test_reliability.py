"""Reliability (issue 10): stale runs refused, loads verified, replacements without a
window, a full disk, bad inputs; every fault with a real tiny model on CPU."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest
import torch

from effopd.errors import CheckpointError, InputError, StaleRunError
from effopd.models.checkpoint import (
    MANIFEST_NAME,
    TRAINING_STATE_NAME,
    atomic_directory,
    recover_directory,
    verify_checkpoint,
)
from tests.conftest import run_cli
from tests.test_training import GRADING, PROMPT, TRAINING, data_files, run_files  # noqa: F401

# RL: the cheapest method (no teacher); a checkpoint after every step.
FAST = {**TRAINING, "steps": 4, "save_every": 1}


def rl_trainer(run_dir, student, data, training=None, train_file=None):
    from effopd.training.trainer import Trainer, TrainSpec

    spec = TrainSpec.from_config(training or FAST, "rl", GRADING)
    return Trainer(spec, seed=0, student_dir=student, teacher_dir=None,
                   train_file=train_file or data / "train.jsonl", val_file=None, prompt=PROMPT,
                   run_dir=run_dir)


def flip_byte(path: Path, offset: int) -> None:
    data = bytearray(path.read_bytes())
    data[offset % len(data)] ^= 0xFF
    path.write_bytes(bytes(data))


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory, tiny_checkpoint, data_files):  # noqa: F811
    """An uninterrupted 4-step RL run: its directory and final weights."""
    base = tmp_path_factory.mktemp("finished")
    trainer = rl_trainer(base / "run", tiny_checkpoint, data_files)
    trainer.run(*run_files(base))
    return base, {k: v.clone() for k, v in trainer.policy.state_dict().items()}


def copy_run(finished_run, tmp_path) -> Path:
    shutil.copytree(finished_run[0], tmp_path / "run_copy")
    return tmp_path / "run_copy"


def checkpoint_copy(tiny_checkpoint, tmp_path, manifest: bool = True) -> Path:
    target = tmp_path / "ckpt"
    shutil.copytree(tiny_checkpoint, target)
    if not manifest:
        (target / MANIFEST_NAME).unlink()
    return target

# ----------------------------------------------------------------- atomic replacement


def test_atomic_directory_replaces_and_leaves_nothing_behind(tmp_path):
    target = tmp_path / "d"
    with atomic_directory(target) as tmp:
        (tmp / "f").write_text("old")
    with atomic_directory(target) as tmp:
        (tmp / "f").write_text("new")
    assert (target / "f").read_text() == "new"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["d"]
    with pytest.raises(RuntimeError), atomic_directory(target) as tmp:
        (tmp / "f").write_text("half")
        raise RuntimeError("killed")
    assert (target / "f").read_text() == "new"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["d"]


def test_a_kill_between_the_two_renames_loses_nothing(tmp_path, monkeypatch):
    """Old renamed aside, then the process dies: the old copy is still there, and
    recover_directory (run before every write and every resume) puts it back."""
    target = tmp_path / "d"
    with atomic_directory(target) as tmp:
        (tmp / "f").write_text("old")
    real_rename = Path.rename

    def die_on_second_rename(self, dest):
        if Path(dest) == target:
            raise KeyboardInterrupt  # stands for SIGKILL: no cleanup of the aside copy
        return real_rename(self, dest)

    monkeypatch.setattr(Path, "rename", die_on_second_rename)
    with pytest.raises(KeyboardInterrupt), atomic_directory(target) as tmp:
        (tmp / "f").write_text("new")
    monkeypatch.setattr(Path, "rename", real_rename)
    assert not target.exists() and (tmp_path / ".d.replaced" / "f").read_text() == "old"
    (tmp_path / ".d.abc123").mkdir()  # a temporary directory a kill left behind
    recover_directory(target)
    assert (target / "f").read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["d"]

# ----------------------------------------------------------------- verification on load


def test_verify_checkpoint_names_the_faulty_file(tiny_checkpoint, tmp_path):
    assert verify_checkpoint(tiny_checkpoint)["files"]
    ckpt = checkpoint_copy(tiny_checkpoint, tmp_path)
    weights = ckpt / "model.safetensors"
    flip_byte(weights, weights.stat().st_size - 10)  # in the data: same size, other bytes
    verify_checkpoint(ckpt, sha256=False)  # the size alone cannot see it
    with pytest.raises(CheckpointError, match=r"model\.safetensors: sha256 differs"):
        verify_checkpoint(ckpt)
    os.truncate(weights, weights.stat().st_size - 100)
    with pytest.raises(CheckpointError, match=r"model\.safetensors: size \d+ bytes differs"):
        verify_checkpoint(ckpt, sha256=False)


def test_a_changed_manifest_is_told_apart_from_a_changed_file(tiny_checkpoint, tmp_path):
    ckpt = checkpoint_copy(tiny_checkpoint, tmp_path)
    manifest = json.loads((ckpt / MANIFEST_NAME).read_text())
    manifest["source"] = "tampered"  # still valid JSON
    (ckpt / MANIFEST_NAME).write_text(json.dumps(manifest))
    with pytest.raises(CheckpointError, match=r"manifest\.json: corrupt manifest \(its content"):
        verify_checkpoint(ckpt, sha256=False)
    (ckpt / MANIFEST_NAME).write_text("{not json")
    with pytest.raises(CheckpointError, match=r"manifest\.json: corrupt manifest \(not valid"):
        verify_checkpoint(ckpt, sha256=False)


@pytest.mark.parametrize("fault, message", [
    ("header", "corrupt safetensors header"), ("truncate", "truncated or padded"),
    ("tiny", "truncated safetensors file")])
def test_checkpoints_without_manifest_are_checked_structurally(tiny_checkpoint, tmp_path,
                                                               fault, message):
    """As a transformers Trainer ``checkpoint-N`` (no manifest of ours)."""
    from effopd.analysis.checkpoint_io import open_checkpoint

    ckpt = checkpoint_copy(tiny_checkpoint, tmp_path, manifest=False)
    weights = ckpt / "model.safetensors"
    assert verify_checkpoint(ckpt) is None  # sound: passes
    if fault == "header":
        flip_byte(weights, 12)
    elif fault == "truncate":
        os.truncate(weights, weights.stat().st_size - 64)
    else:
        os.truncate(weights, 5)
    with pytest.raises(CheckpointError, match=f"model.safetensors: {message}"):
        verify_checkpoint(ckpt)
    with pytest.raises(CheckpointError, match=f"model.safetensors: {message}"):
        open_checkpoint(ckpt)  # the analyses' loader


def one_line_failure(result: subprocess.CompletedProcess, name: str) -> str:
    assert result.returncode == 1, result.stderr
    assert "Traceback" not in result.stderr
    last = result.stderr.strip().splitlines()[-1]
    assert name in last and "ERROR" in last
    return last


def test_cli_ends_in_one_line_naming_the_file(tiny_checkpoint, data_files, tmp_path):  # noqa: F811
    ckpt = checkpoint_copy(tiny_checkpoint, tmp_path, manifest=False)
    os.truncate(ckpt / "model.safetensors", (ckpt / "model.safetensors").stat().st_size - 64)
    last = one_line_failure(run_cli("effopd", "analyze", "--base", str(tiny_checkpoint),
                                    "--checkpoints", str(ckpt), "--out-dir",
                                    str(tmp_path / "a")), str(ckpt / "model.safetensors"))
    assert "truncated" in last
    good = tmp_path / "good"
    shutil.copytree(tiny_checkpoint, good)
    flip_byte(good / "tokenizer.json", 30)
    last = one_line_failure(run_cli(
        "effopd", "evaluate", "--model", str(good), "--benchmark",
        str(data_files / "val_bench.jsonl"), "--label", "x", "--samples",
        str(tmp_path / "s.jsonl"), "--metrics", str(tmp_path / "m.json")),
        str(good / "tokenizer.json"))
    assert "sha256 differs" in last and not (tmp_path / "m.json").exists()


def test_error_line_is_one_line_and_bugs_are_not_hidden():
    from effopd.cli import error_line

    assert error_line(FileNotFoundError(2, "No such file or directory", "/x/y")) == \
        "/x/y: No such file or directory"
    assert error_line(CheckpointError("a\nb")) == "a b"
    assert error_line(RuntimeError("a bug")) is None

# ----------------------------------------------------------------- stale runs


def test_changed_config_is_refused_naming_keys_and_directory(finished_run, tmp_path,
                                                             tiny_checkpoint,
                                                             data_files):  # noqa: F811
    base = copy_run(finished_run, tmp_path)
    trainer = rl_trainer(base / "run", tiny_checkpoint, data_files,
                         training={**FAST, "lr": 2e-3, "grad_clip": 0.5})
    with pytest.raises(StaleRunError) as err:
        trainer.run(*run_files(base))
    message = str(err.value)
    assert "differs: config.grad_clip, config.lr" in message
    assert f"remove {base / 'run' / 'checkpoints'}" in message and "--fresh" in message
    assert trainer.step == 0


def test_changed_student_or_data_is_refused(finished_run, tmp_path, tiny_checkpoint,
                                            char_tokenizer, data_files):  # noqa: F811
    base = copy_run(finished_run, tmp_path)
    from effopd.models.checkpoint import save_checkpoint
    from effopd.models.tiny import init_tiny_qwen3
    from tests.conftest import TINY_ARCH

    student = tmp_path / "student"  # rebuilt: another initialisation, same architecture
    save_checkpoint(init_tiny_qwen3(TINY_ARCH, char_tokenizer, seed=1), char_tokenizer, student,
                    {"source": "test"})
    with pytest.raises(StaleRunError, match="differs: student_sha256"):
        rl_trainer(base / "run", student, data_files).resume()
    changed = tmp_path / "train.jsonl"
    changed.write_text("".join((data_files / "train.jsonl").read_text().splitlines(True)[1:]))
    with pytest.raises(StaleRunError, match="differs: train_data_sha256"):
        rl_trainer(base / "run", tiny_checkpoint, data_files, train_file=changed).resume()


def test_fresh_discards_the_stale_run(finished_run, tmp_path, tiny_checkpoint,
                                      data_files):  # noqa: F811
    base = copy_run(finished_run, tmp_path)
    training = {**FAST, "steps": 1, "lr": 2e-3}
    trainer = rl_trainer(base / "run", tiny_checkpoint, data_files, training=training)
    trainer.run(*run_files(base), fresh=True)
    steps = sorted(p.name for p in (base / "run" / "checkpoints").iterdir())
    assert steps == ["step_000001"]  # the old steps 1-4 are gone, step 1 is the new run's
    manifest = json.loads((base / "run" / "checkpoints" / steps[0] / MANIFEST_NAME).read_text())
    assert manifest["fingerprint"]["config"]["lr"] == 2e-3
    rl_trainer(base / "run", tiny_checkpoint, data_files, training=training).resume()


def test_lower_steps_index_and_resume_stop_at_the_new_end(finished_run, tmp_path,
                                                          tiny_checkpoint,
                                                          data_files):  # noqa: F811
    import pandas as pd

    base = copy_run(finished_run, tmp_path)
    trainer = rl_trainer(base / "run", tiny_checkpoint, data_files,
                         training={**FAST, "steps": 2})
    trainer.run(*run_files(base))
    assert trainer.step == 2  # resumed from step 2, not from step 4
    assert list(pd.read_csv(base / "index.csv")["step"]) == [1, 2]
    assert len(pd.read_csv(base / "log.csv")) == 2

# ----------------------------------------------------------------- resume fallback


def test_resume_falls_back_to_the_newest_checkpoint_that_verifies(finished_run, tmp_path,
                                                                  tiny_checkpoint,
                                                                  data_files):  # noqa: F811
    base = copy_run(finished_run, tmp_path)
    checkpoints = base / "run" / "checkpoints"
    states = sorted(p.parent.name for p in checkpoints.glob(f"*/{TRAINING_STATE_NAME}"))
    assert states == ["step_000003", "step_000004"]  # the newest two keep their state
    flip_byte(checkpoints / "step_000004" / "model.safetensors", -20)
    trainer = rl_trainer(base / "run", tiny_checkpoint, data_files)
    assert trainer.resume() and trainer.step == 3
    trainer = rl_trainer(base / "run", tiny_checkpoint, data_files)
    trainer.run(*run_files(base))  # redoes step 4 over the corrupt checkpoint
    for name, tensor in finished_run[1].items():
        assert torch.equal(tensor, trainer.policy.state_dict()[name]), name
    verify_checkpoint(checkpoints / "step_000004", training_state=True)


def test_corrupt_training_state_is_skipped(finished_run, tmp_path, tiny_checkpoint,
                                           data_files, caplog):  # noqa: F811
    base = copy_run(finished_run, tmp_path)
    state = base / "run" / "checkpoints" / "step_000004" / TRAINING_STATE_NAME
    flip_byte(state, 100)
    trainer = rl_trainer(base / "run", tiny_checkpoint, data_files)
    assert trainer.resume() and trainer.step == 3
    assert f"{state}: sha256 differs" in caplog.text


def test_interrupted_write_is_recovered_on_resume(finished_run, tmp_path, tiny_checkpoint,
                                                  data_files):  # noqa: F811
    """What SIGKILL leaves inside a checkpoint write: a temporary directory, or the old
    copy renamed aside; resume cleans the first and restores the second."""
    base = copy_run(finished_run, tmp_path)
    checkpoints = base / "run" / "checkpoints"
    (checkpoints / "step_000004").rename(checkpoints / ".step_000004.replaced")
    (checkpoints / ".step_000005.x1y2").mkdir()
    (checkpoints / ".step_000005.x1y2" / "model.safetensors").write_bytes(b"half")
    trainer = rl_trainer(base / "run", tiny_checkpoint, data_files)
    assert trainer.resume() and trainer.step == 4
    assert sorted(p.name for p in checkpoints.iterdir()) == [f"step_00000{i}" for i in (1, 2, 3, 4)]

# ----------------------------------------------------------------- full disk


@pytest.fixture
def small_disk(tmp_path):
    """A 200 KiB tmpfs (root only; skipped where mount is not permitted)."""
    mount = tmp_path / "disk"
    mount.mkdir()
    result = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=200k", "tmpfs", str(mount)],
                            capture_output=True, text=True)
    if result.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs: {result.stderr.strip()}")
    yield mount
    subprocess.run(["umount", str(mount)], capture_output=True)


def test_full_disk_leaves_no_half_written_checkpoint(small_disk, tmp_path, tiny_checkpoint,
                                                     data_files):  # noqa: F811
    trainer = rl_trainer(small_disk / "run", tiny_checkpoint, data_files)
    with pytest.raises(CheckpointError, match="writing the checkpoint failed.*nothing was "
                                              "written"):
        trainer.run(*run_files(tmp_path))
    checkpoints = small_disk / "run" / "checkpoints"
    assert not [p for p in checkpoints.iterdir() if p.name.startswith(".")]
    for path in checkpoints.iterdir():  # whatever was written is whole
        verify_checkpoint(path, training_state=(path / TRAINING_STATE_NAME).exists())

# ----------------------------------------------------------------- bad inputs


def test_int_and_list_eos_token_id(tiny_checkpoint, char_tokenizer):
    from transformers import AutoModelForCausalLM

    from effopd.generation import SamplingSpec, sample_completions, stop_token_ids

    assert stop_token_ids(5, 7) == {5, 7}
    assert stop_token_ids([5, 6], None) == {5, 6}
    assert stop_token_ids(None, 7) == {7}
    with pytest.raises(ValueError, match="end-of-sequence"):
        stop_token_ids(None, None)
    model = AutoModelForCausalLM.from_pretrained(str(tiny_checkpoint))
    model.generation_config.eos_token_id = char_tokenizer.eos_token_id  # an int, as Llama's
    groups = sample_completions(model, char_tokenizer, ["1+1="], SamplingSpec(
        max_new_tokens=4, n=2))
    assert len(groups) == 1 and len(groups[0]) == 2


def test_training_temperature_and_top_p_other_than_1_are_refused():
    from effopd.config import ConfigError, load_config, validate_config
    from effopd.training.trainer import TrainSpec

    with pytest.raises(InputError, match=r"training\.temperature = 0\.7"):
        TrainSpec.from_config({**TRAINING, "temperature": 0.7}, "opd", GRADING)
    with pytest.raises(InputError, match=r"training\.top_p = 0\.9"):
        TrainSpec.from_config({**TRAINING, "top_p": 0.9}, "rl", GRADING)
    config = load_config(Path(__file__).parents[1] / "config" / "smoke.yaml")
    config["training"]["top_p"] = 0.95
    with pytest.raises(ConfigError, match="key 'training/top_p'"):
        validate_config(config)
    config["training"]["engine"] = "verl"  # verl applies both to its log-probs
    validate_config(config)


def test_empty_or_unreadable_benchmark_fails_in_prepare(tmp_path):
    from effopd.evaluation import prepare_benchmark

    (tmp_path / "empty.jsonl").write_text("\n")
    with pytest.raises(InputError, match=f"{tmp_path / 'empty.jsonl'}: empty benchmark"):
        prepare_benchmark({"source": "task", "split": "val"}, tmp_path / "out.jsonl",
                          task_file=tmp_path / "empty.jsonl")
    with pytest.raises(InputError, match=f"{tmp_path / 'empty.jsonl'}: empty benchmark"):
        prepare_benchmark({"source": "jsonl", "path": str(tmp_path / "empty.jsonl")},
                          tmp_path / "out.jsonl")
    (tmp_path / "binary.jsonl").write_bytes(b"\xff\xfe\x00garbage")
    with pytest.raises(InputError, match=f"{tmp_path / 'binary.jsonl'}: unreadable"):
        prepare_benchmark({"source": "task", "split": "val"}, tmp_path / "out.jsonl",
                          task_file=tmp_path / "binary.jsonl")
    assert not (tmp_path / "out.jsonl").exists()


def test_limit_has_one_meaning(tmp_path):
    import argparse

    from effopd.cli.args import limit_arg
    from effopd.data.benchmarks import load_benchmark
    from effopd.data.train_data import filter_rows
    from effopd.evaluation import prepare_benchmark
    from effopd.io import apply_limit, atomic_write_jsonl

    assert apply_limit([1, 2, 3], 2, "x") == [1, 2] and apply_limit([1, 2], None, "x") == [1, 2]
    for bad in (0, -1, 1.5, True):
        with pytest.raises(ValueError, match="x: limit must be a positive integer or null"):
            apply_limit([1], bad, "x")
    atomic_write_jsonl(tmp_path / "b.jsonl", [{"problem": "p", "answer": "1", "id": "a",
                                               "question": "p"}] * 3)
    with pytest.raises(ValueError, match="limit must be"):
        load_benchmark({"source": "jsonl", "path": str(tmp_path / "b.jsonl"), "limit": 0})
    with pytest.raises(ValueError, match="limit must be"):
        prepare_benchmark({"source": "task", "split": "val", "limit": 0}, tmp_path / "o.jsonl",
                          task_file=tmp_path / "b.jsonl")
    with pytest.raises(ValueError, match="limit must be"):
        filter_rows([{"question": "q", "answer": "1"}], {"problem_key": "question",
                                                         "answer_key": "answer", "limit": 0}, "w")
    assert limit_arg("all") is None and limit_arg("3") == 3
    with pytest.raises(argparse.ArgumentTypeError):
        limit_arg("0")


def test_intervention_cache_key_has_code_version_and_config(tmp_path, tiny_checkpoint,
                                                            monkeypatch):
    from effopd import provenance
    from effopd.analysis.scoring import Candidate, EvalSettings, _cache_key

    assert provenance.code_digest(("grading.py",)) == provenance.code_digest(("grading.py",))
    assert provenance.code_digest(("grading.py",)) != provenance.code_digest(("metrics.py",))
    (tmp_path / "b.jsonl").write_text('{"id": "0", "problem": "p", "answer": "1"}\n')
    candidate = Candidate("base", {"alpha": 0.0}, (tiny_checkpoint,), model=tiny_checkpoint)
    settings = EvalSettings(benchmark=tmp_path / "b.jsonl")
    key = _cache_key(candidate, settings)
    assert key != _cache_key(candidate, EvalSettings(benchmark=tmp_path / "b.jsonl", n=2))
    monkeypatch.setattr(provenance, "code_digest", lambda modules: "another version")
    assert key != _cache_key(candidate, settings)


@pytest.mark.slow
def test_fault_injection_benchmark_quick():
    """The benchmark itself (a few minutes): every fraction of its last line whole."""
    import re
    import sys

    repo = Path(__file__).resolve().parents[1]
    result = subprocess.run([sys.executable, str(repo / "tools" / "fault_injection.py"),
                             "--quick"], capture_output=True, text=True, timeout=900,
                            env={**os.environ, "PYTHONPATH": str(repo)})
    assert result.returncode == 0, result.stderr[-3000:]
    last = result.stdout.strip().splitlines()[-1]
    match = re.fullmatch(r"kills survived (\d+)/(\d+), corruptions refused (\d+)/(\d+), "
                         r"stale resumes refused (\d+)/(\d+), partial writes (\d+)", last)
    assert match, last
    a, b, c, d, e, f, partial = map(int, match.groups())
    assert (a, c, e, partial) == (b, d, f, 0) and min(b, d, f) > 0, result.stdout


def test_trainer_verifies_its_student(tmp_path, tiny_checkpoint, data_files):  # noqa: F811
    student = checkpoint_copy(tiny_checkpoint, tmp_path)
    flip_byte(student / "model.safetensors", -30)
    with pytest.raises(CheckpointError, match=f"{student / 'model.safetensors'}: sha256"):
        rl_trainer(tmp_path / "run", student, data_files)
