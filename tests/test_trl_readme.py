"""The README's TRL section (docs/cli.md, "EffOPD in your TRL script"), run verbatim: its
Python block trains tiny models with the callback, its shell line analyses the resulting
checkpoint-N series."""

from __future__ import annotations

import os
import re
import subprocess

import pandas as pd
import pytest
import torch

from effopd.io import read_jsonl
from effopd.prompts import DEFAULT_INSTRUCTION
from tests.conftest import BIN, REPO, TINY_ARCH

trl = pytest.importorskip("trl")


TRL_DOC = "docs/cli.md"  # the README's second layer: the command line and EffOPD in TRL


def readme_block(marker: str, language: str) -> str:
    """The fenced ``language`` block right after the ``<!-- marker: ... -->`` comment."""
    text = (REPO / TRL_DOC).read_text()
    match = re.search(rf"<!-- {marker}:[^>]*-->\s*```{language}\n(.*?)```", text, re.S)
    assert match, f"{TRL_DOC} has no {marker} block"
    return match.group(1)


def test_readme_trl_snippet_runs_and_its_checkpoints_analyse(tmp_path, char_tokenizer,
                                                            monkeypatch):
    from datasets import Dataset
    from transformers import AutoTokenizer

    from effopd.data.arithmetic import ArithmeticSpec, write_splits
    from effopd.integrations.trl_engine import conversation
    from effopd.models.checkpoint import save_checkpoint
    from effopd.models.tiny import init_tiny_qwen3

    monkeypatch.chdir(tmp_path)
    student = init_tiny_qwen3(TINY_ARCH, char_tokenizer, seed=0)
    save_checkpoint(student, char_tokenizer, tmp_path / "student", {"source": "test"})
    teacher = init_tiny_qwen3(TINY_ARCH, char_tokenizer, seed=1)
    write_splits(ArithmeticSpec(n_train=24, n_val=3, n_test=2, seed=5), tmp_path / "data")
    rows = lambda split: [{"prompt": conversation(r["question"], DEFAULT_INSTRUCTION),  # noqa: E731
                           "answer": r["answer"]} for r in read_jsonl(tmp_path / "data" / split)]
    namespace = {
        "student": student, "teacher": teacher,
        "tokenizer": AutoTokenizer.from_pretrained(str(tmp_path / "student")),
        "train_dataset": Dataset.from_list(rows("train.jsonl")),
        "val_dataset": rows("val.jsonl"),
        "config": trl.DistillationConfig(
            output_dir="run", max_steps=2, per_device_train_batch_size=4, learning_rate=1e-3,
            max_completion_length=8, bf16=False, use_cpu=True, gradient_checkpointing=False,
            save_steps=1, logging_steps=1, report_to=[], seed=0)}
    exec(compile(readme_block("trl-snippet", "python"), TRL_DOC, "exec"), namespace)

    search = pd.read_csv(tmp_path / "run" / "effopd_search.csv")
    assert search["step"].unique().tolist() == [1, 2]
    assert search.groupby("step")["multiplier"].first().tolist() == [1.0, 1.0]
    weights = namespace["trainer"].model.state_dict()
    assert all(v.dtype == torch.float32 for v in weights.values())

    line = readme_block("trl-analyze", "bash").strip()
    assert line.startswith("effopd analyze ")
    env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}"}
    result = subprocess.run(["bash", "-c", line], capture_output=True, text=True, env=env,
                            cwd=tmp_path, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    norms = pd.read_csv(tmp_path / "analysis" / "update_norms.csv")
    assert sorted(norms["step"].unique().tolist()) == [1, 2]
    assert (norms.filter(like="norm").select_dtypes("number").to_numpy() > 0).any()
