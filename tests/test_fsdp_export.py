"""verl FSDP shards -> float32 HF checkpoint, bit for bit (torch FSDP on CPU, gloo, 2 ranks)."""

import json

import pytest
import torch
from fsdp_helpers import spawn, write_shards_worker
from safetensors.torch import load_file

from effopd.integrations.fsdp_export import export_fsdp_checkpoint, rank_files


@pytest.mark.parametrize("version", [2, 1])
def test_export_matches_unsharded_float32_model(tmp_path, tiny_checkpoint, version):
    from transformers import AutoModelForCausalLM

    actor = tmp_path / "global_step_3" / "actor"
    spawn(write_shards_worker, str(tiny_checkpoint), str(actor), version, tmp=tmp_path)
    shards = torch.load(actor / "model_world_size_2_rank_0.pt", weights_only=False)
    local = {k: v._local_tensor.shape[0] for k, v in shards.items()
             if type(v).__name__ == "DTensor"}
    assert len(local) == len(shards)  # every parameter is a DTensor shard, none replicated
    assert any(v.shape[0] % 2 for v in shards.values())  # an uneven chunk is covered
    assert all(local[k] < v.shape[0] for k, v in shards.items() if v.shape[0] > 1)
    out = tmp_path / "export"
    manifest = export_fsdp_checkpoint(actor, out, max_shard_bytes=20_000)
    assert manifest["world_size"] == 2 and manifest["source_dtypes"].keys() == {"float32"}
    index = json.loads((out / "model.safetensors.index.json").read_text())
    exported = {}
    for file in set(index["weight_map"].values()):
        exported.update(load_file(out / file))
    reference = load_file(tiny_checkpoint / "model.safetensors")
    assert exported.keys() == reference.keys()
    for name, tensor in reference.items():
        assert exported[name].dtype == torch.float32
        assert torch.equal(exported[name].view(torch.int32), tensor.view(torch.int32)), name
    assert json.loads((out / "config.json").read_text())["dtype"] == "float32"
    model = AutoModelForCausalLM.from_pretrained(out)
    assert model.dtype == torch.float32


def test_export_names_the_missing_rank(tmp_path):
    actor = tmp_path / "actor"
    actor.mkdir()
    torch.save({}, actor / "model_world_size_2_rank_0.pt")
    with pytest.raises(FileNotFoundError, match=r"ranks \[1\]"):
        rank_files(actor)
    with pytest.raises(FileNotFoundError, match="huggingface/config.json"):
        export_fsdp_checkpoint(actor, tmp_path / "out")
