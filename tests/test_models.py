"""Checkpoints: real HF safetensors directories that save, reload and hash exactly."""

import json

import pytest
import torch
from safetensors.torch import load_file
from transformers import AutoModelForCausalLM, AutoTokenizer

from effopd.generation import SamplingSpec, sample_completions
from effopd.models.checkpoint import atomic_directory
from effopd.models.tiny import init_tiny_qwen3
from effopd.prompts import render_prompt
from effopd.provenance import directory_manifest, sha256_file
from tests.conftest import TINY_ARCH


def test_checkpoint_is_a_standard_hf_directory(tiny_checkpoint, char_tokenizer):
    names = {p.name for p in tiny_checkpoint.iterdir()}
    assert {"config.json", "model.safetensors", "generation_config.json", "tokenizer.json",
            "tokenizer_config.json", "manifest.json"} <= names
    config = json.loads((tiny_checkpoint / "config.json").read_text())
    assert config["architectures"] == ["Qwen3ForCausalLM"] and config["tie_word_embeddings"]
    reference = init_tiny_qwen3(TINY_ARCH, char_tokenizer, seed=0)
    loaded = AutoModelForCausalLM.from_pretrained(tiny_checkpoint)
    expected = reference.state_dict()
    for name, tensor in loaded.state_dict().items():
        assert torch.equal(tensor, expected[name]), name
    on_disk = load_file(tiny_checkpoint / "model.safetensors")
    assert all(t.dtype == torch.float32 for t in on_disk.values())


def test_manifest_hashes_every_file(tiny_checkpoint):
    manifest = json.loads((tiny_checkpoint / "manifest.json").read_text())
    assert manifest["source"] == "test"
    assert manifest["files"] == directory_manifest(tiny_checkpoint)
    assert manifest["files"]["model.safetensors"] == sha256_file(
        tiny_checkpoint / "model.safetensors")


def test_atomic_directory_keeps_old_content_on_failure(tmp_path):
    target = tmp_path / "out"
    target.mkdir()
    (target / "old.txt").write_text("old")
    with pytest.raises(RuntimeError), atomic_directory(target) as tmp:
        (tmp / "new.txt").write_text("new")
        raise RuntimeError("interrupted")
    assert [p.name for p in tmp_path.iterdir()] == ["out"]
    assert (target / "old.txt").read_text() == "old"
    with atomic_directory(target) as tmp:
        (tmp / "new.txt").write_text("new")
    assert [p.name for p in target.iterdir()] == ["new.txt"]


def test_sampling_returns_n_completions_that_stop_at_eos(tiny_checkpoint):
    tokenizer = AutoTokenizer.from_pretrained(tiny_checkpoint)
    model = AutoModelForCausalLM.from_pretrained(tiny_checkpoint)
    prompts = [render_prompt(tokenizer, f"Compute {a}+1.") for a in range(5)]
    spec = SamplingSpec(n=3, max_new_tokens=12, batch_size=2, seed=1)
    groups = sample_completions(model, tokenizer, prompts, spec)
    assert [len(g) for g in groups] == [3] * 5
    eos = set(model.generation_config.eos_token_id)
    for completion in (c for g in groups for c in g):
        assert 1 <= len(completion.token_ids) <= 12
        assert not eos & set(completion.token_ids[:-1])  # eos only as the last token
        assert completion.text == tokenizer.decode(completion.token_ids, skip_special_tokens=True)
    again = sample_completions(model, tokenizer, prompts, spec)
    assert [[c.token_ids for c in g] for g in again] == [[c.token_ids for c in g] for g in groups]
