"""Streaming reader and checkpoint writer of effopd.analysis.checkpoint_io."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file
from transformers import Qwen3ForCausalLM

from effopd.analysis.checkpoint_io import (
    INDEX_NAME,
    ParamInfo,
    block_matrix_names,
    is_block_weight,
    iter_row_blocks,
    iter_tensor_pairs,
    iter_update_tensors,
    list_tensor_names,
    open_checkpoint,
    parse_param_name,
    read_tensor,
    write_modified_checkpoint,
)
from effopd.analysis.synthetic import qwen3_config, shard_checkpoint


@pytest.fixture(scope="module")
def hf_base(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny Qwen3 written by transformers itself, with a stand-in tokenizer file."""
    torch.manual_seed(0)
    out = tmp_path_factory.mktemp("hf") / "base"
    Qwen3ForCausalLM(qwen3_config()).save_pretrained(out)
    (out / "tokenizer_config.json").write_text('{"chat_template": "{{ messages }}"}')
    (out / "chat_template.jinja").write_text("{{ messages }}")
    return out


@pytest.fixture(scope="module")
def hf_sharded(hf_base: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return shard_checkpoint(hf_base, tmp_path_factory.mktemp("hf") / "sharded", n_shards=2)


@pytest.mark.parametrize(("name", "info"), [
    ("model.embed_tokens.weight", ParamInfo(None, "embed", "embedding")),
    ("lm_head.weight", ParamInfo(None, "lm_head", "head")),
    ("model.norm.weight", ParamInfo(None, "final_norm", "final_norm")),
    ("model.layers.0.self_attn.q_proj.weight", ParamInfo(0, "q", "attention")),
    ("model.layers.11.self_attn.k_norm.weight", ParamInfo(11, "k_norm", "attention")),
    ("model.layers.2.self_attn.o_proj.weight", ParamInfo(2, "o", "attention")),
    ("model.layers.27.mlp.down_proj.weight", ParamInfo(27, "down", "mlp")),
    ("model.layers.3.input_layernorm.weight", ParamInfo(3, "input_norm", "norm")),
    ("model.layers.3.post_attention_layernorm.weight", ParamInfo(3, "post_attn_norm", "norm")),
])
def test_parse_param_name(name: str, info: ParamInfo) -> None:
    assert parse_param_name(name) == info
    assert is_block_weight(name) == (info.layer is not None)


def test_parse_param_name_rejects_foreign_names() -> None:
    with pytest.raises(ValueError, match="rotary"):
        parse_param_name("model.layers.0.self_attn.rotary.inv_freq")
    with pytest.raises(ValueError, match="vision"):
        parse_param_name("vision_tower.patch.weight")


def test_names_are_in_forward_order(hf_base: Path) -> None:
    names = list_tensor_names(hf_base)
    assert names[0] == "model.embed_tokens.weight"
    assert names[-2:] == ["model.norm.weight", "lm_head.weight"]
    layers = [parse_param_name(n).layer for n in names[1:-2]]
    assert layers == sorted(layers) and set(layers) == {0, 1, 2}
    assert len(block_matrix_names(hf_base)) == 3 * 7


@pytest.mark.parametrize("layout", ["single", "sharded"])
def test_streaming_reader_equals_full_load(hf_base: Path, hf_sharded: Path, layout: str) -> None:
    ckpt = hf_base if layout == "single" else hf_sharded
    assert open_checkpoint(ckpt).sharded == (layout == "sharded")
    full = load_file(hf_base / "model.safetensors")
    assert set(list_tensor_names(ckpt)) == set(full)
    for name, tensor in full.items():
        assert torch.equal(read_tensor(ckpt, name), tensor)
        assert torch.equal(read_tensor(ckpt, name, dtype=torch.float64), tensor.double())
    name = "model.embed_tokens.weight"
    blocks = list(iter_row_blocks(ckpt, ckpt, name, max_elements=7 * 32))
    assert len(blocks) == 8  # 50 rows in blocks of 7
    assert torch.equal(torch.cat([b for b, _ in blocks]), full[name])


def test_update_iterator_is_the_difference(hf_base: Path, tmp_path: Path) -> None:
    ckpt = write_modified_checkpoint(hf_base, tmp_path / "ckpt", lambda n, t: 2 * t + 1)
    base_sd = load_file(hf_base / "model.safetensors")
    ckpt_sd = load_file(ckpt / "model.safetensors")
    names = []
    for name, delta in iter_update_tensors(hf_base, ckpt):
        assert torch.equal(delta, ckpt_sd[name] - base_sd[name])
        names.append(name)
    assert names == list_tensor_names(hf_base)
    pairs = iter_tensor_pairs(hf_base, ckpt, ["lm_head.weight"], dtype=torch.float64)
    [(name, theta0, theta)] = list(pairs)
    assert theta0.dtype == torch.float64 and torch.equal(theta, ckpt_sd[name].double())


def test_update_iterator_names_the_missing_tensor_and_the_shape_mismatch(
        hf_base: Path, tmp_path: Path) -> None:
    tensors = load_file(hf_base / "model.safetensors")
    tensors.pop("model.norm.weight")
    tensors["lm_head.weight"] = tensors["lm_head.weight"][:10]
    broken = tmp_path / "broken"
    broken.mkdir()
    save_file(tensors, broken / "model.safetensors")
    with pytest.raises(KeyError, match=r"model\.norm\.weight.*broken"):
        list(iter_update_tensors(hf_base, broken))
    with pytest.raises(ValueError, match=r"lm_head\.weight.*\(10, 32\).*broken"):
        list(iter_update_tensors(hf_base, broken, ["lm_head.weight"]))
    with pytest.raises(FileNotFoundError, match="nowhere"):
        open_checkpoint(tmp_path / "nowhere")


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_identity_transform_writes_bit_identical_tensors(hf_base: Path, tmp_path: Path,
                                                         dtype: torch.dtype) -> None:
    base = write_modified_checkpoint(hf_base, tmp_path / "base", lambda n, t: t,
                                     out_dtype=dtype)
    seen = []

    def identity(name: str, tensor: torch.Tensor) -> torch.Tensor:
        seen.append(tensor.dtype)
        return tensor

    copy = write_modified_checkpoint(base, tmp_path / "copy", identity)
    assert set(seen) == {torch.float32}  # transforms see float32
    original, written = load_file(base / "model.safetensors"), load_file(copy / "model.safetensors")
    for name, tensor in original.items():
        assert tensor.dtype == dtype and written[name].dtype == dtype
        as_int = torch.int16 if dtype == torch.bfloat16 else torch.int32
        assert torch.equal(tensor.view(as_int), written[name].view(as_int))
    assert json.loads((copy / "config.json").read_text())["dtype"] == str(dtype)[6:]


def test_written_checkpoint_copies_files_and_loads(hf_base: Path, tmp_path: Path) -> None:
    out = write_modified_checkpoint(hf_base, tmp_path / "out", lambda n, t: t * 0.5,
                                    provenance={"kind": "half"})
    names = {p.name for p in out.iterdir()}
    assert {"config.json", "generation_config.json", "tokenizer_config.json",
            "chat_template.jinja", "model.safetensors", "effopd_provenance.json"} <= names
    model = Qwen3ForCausalLM.from_pretrained(out)
    reference = load_file(hf_base / "model.safetensors")
    for name, param in model.state_dict().items():
        assert torch.equal(param, reference[name] * 0.5)
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temp dir left


def test_sharded_base_gives_sharded_output_that_loads(hf_sharded: Path, tmp_path: Path) -> None:
    out = write_modified_checkpoint(hf_sharded, tmp_path / "out", lambda n, t: t + 1)
    index = json.loads((out / INDEX_NAME).read_text())
    assert index["weight_map"] == json.loads((hf_sharded / INDEX_NAME).read_text())["weight_map"]
    assert sorted(p.name for p in out.glob("*.safetensors")) == sorted(
        p.name for p in hf_sharded.glob("*.safetensors"))
    model = Qwen3ForCausalLM.from_pretrained(out)
    for name, param in model.state_dict().items():
        assert torch.equal(param, read_tensor(hf_sharded, name) + 1)


def test_writer_is_atomic_and_refuses_to_clobber(hf_base: Path, tmp_path: Path) -> None:
    def fail_late(name: str, tensor: torch.Tensor) -> torch.Tensor:
        if name == "lm_head.weight":
            raise RuntimeError("boom")
        return tensor

    with pytest.raises(RuntimeError, match="boom"):
        write_modified_checkpoint(hf_base, tmp_path / "out", fail_late)
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(ValueError, match=r"transform changed tensor 'model\.norm\.weight'"):
        write_modified_checkpoint(hf_base, tmp_path / "out",
                                  lambda n, t: t[:1] if n == "model.norm.weight" else t)
    out = write_modified_checkpoint(hf_base, tmp_path / "out", lambda n, t: t)
    with pytest.raises(FileExistsError):
        write_modified_checkpoint(hf_base, out, lambda n, t: t)
    write_modified_checkpoint(hf_base, out, lambda n, t: t * 0, overwrite=True)
    assert float(read_tensor(out, "lm_head.weight").abs().sum()) == 0.0
    assert [p.name for p in tmp_path.iterdir()] == ["out"]
