"""Model fetching, offline: the real snapshot_download path on a Hub cache the test builds."""

import json
import shutil

import pytest
from transformers import AutoModelForCausalLM

from effopd.models.fetch import fetch_model
from tests.conftest import run_cli

REVISION = "0123456789abcdef0123456789abcdef01234567"


def make_hub_cache(cache, repo_id, revision, checkpoint):
    """Lay out ``checkpoint``'s files as huggingface_hub stores a downloaded snapshot."""
    storage = cache / f"models--{repo_id.replace('/', '--')}"
    (storage / "refs").mkdir(parents=True)
    (storage / "refs" / "main").write_text(revision)
    snapshot = storage / "snapshots" / revision
    shutil.copytree(checkpoint, snapshot)
    return snapshot


def test_fetch_hub_model_offline_from_cache(tmp_path, tiny_checkpoint):
    cache = tmp_path / "hub"
    make_hub_cache(cache, "tiny-org/tiny-qwen3", REVISION, tiny_checkpoint)
    spec = {"source": "hub", "repo_id": "tiny-org/tiny-qwen3", "revision": REVISION}
    out = tmp_path / "models" / "student"
    result = run_cli("effopd", "fetch-model", "--spec", json.dumps(spec), "--out", str(out),
                     env={"HF_HUB_CACHE": str(cache), "HF_HUB_OFFLINE": "1"})
    assert result.returncode == 0, result.stderr
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["repo_id"] == "tiny-org/tiny-qwen3" and manifest["revision"] == REVISION
    original = json.loads((tiny_checkpoint / "manifest.json").read_text())["files"]
    assert manifest["files"]["model.safetensors"] == original["model.safetensors"]
    AutoModelForCausalLM.from_pretrained(out)


def test_fetch_unknown_revision_offline_fails_clearly(tmp_path, tiny_checkpoint):
    cache = tmp_path / "hub"
    make_hub_cache(cache, "tiny-org/tiny-qwen3", REVISION, tiny_checkpoint)
    spec = {"source": "hub", "repo_id": "tiny-org/tiny-qwen3", "revision": "f" * 40}
    out = tmp_path / "out"
    result = run_cli("effopd", "fetch-model", "--spec", json.dumps(spec), "--out", str(out),
                     env={"HF_HUB_CACHE": str(cache), "HF_HUB_OFFLINE": "1"})
    assert result.returncode != 0
    assert "tiny-org/tiny-qwen3" in result.stderr or "f" * 40 in result.stderr
    assert not out.exists()


def test_fetch_local_directory(tmp_path, tiny_checkpoint):
    manifest = fetch_model({"source": "local", "path": str(tiny_checkpoint)}, tmp_path / "m")
    assert manifest["source"] == "local" and "model.safetensors" in manifest["files"]


def test_fetch_local_directory_without_config_names_path(tmp_path):
    with pytest.raises(FileNotFoundError, match="has no config.json"):
        fetch_model({"source": "local", "path": str(tmp_path)}, tmp_path / "m")
