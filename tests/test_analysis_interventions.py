"""Checkpoint builders of effopd.analysis.interventions on tiny Qwen3 checkpoints."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from transformers import Qwen3ForCausalLM

from effopd.analysis.checkpoint_io import block_matrix_names, parse_param_name
from effopd.analysis.interventions import (
    LayerWindow,
    injected_update,
    is_attention,
    is_embedding,
    is_mlp,
    num_layers,
    rank_k_rescaled,
    scaled_update,
    sliding_windows,
)
from effopd.analysis.synthetic import qwen3_config, write_planted_checkpoint, write_random_qwen3


@pytest.fixture(scope="module", params=[torch.float32, torch.bfloat16], ids=["fp32", "bf16"])
def pair(request: pytest.FixtureRequest,
         tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A base and a checkpoint that moves every tensor (planted rank 3 + dense noise)."""
    root = tmp_path_factory.mktemp("pair")
    base = write_random_qwen3(root / "base", qwen3_config(), seed=0, dtype=request.param)
    ckpt = write_planted_checkpoint(base, root / "ckpt", 1.0, rank=3, scale=0.05, noise=1e-2)
    return base, ckpt


def tensors(path: Path) -> dict[str, torch.Tensor]:
    return load_file(path / "model.safetensors")


def bits(tensor: torch.Tensor) -> torch.Tensor:
    return tensor.view(torch.int16 if tensor.element_size() == 2 else torch.int32)


def test_scaled_update_endpoints(pair: tuple[Path, Path], tmp_path: Path) -> None:
    base, ckpt = pair
    theta0, theta = tensors(base), tensors(ckpt)
    zero = tensors(scaled_update(base, ckpt, 0.0, tmp_path / "a0"))
    one = tensors(scaled_update(base, ckpt, 1.0, tmp_path / "a1"))
    half = tensors(scaled_update(base, ckpt, 0.5, tmp_path / "a05"))
    for name in theta0:
        assert torch.equal(zero[name], theta0[name])
        assert one[name].dtype == theta0[name].dtype
        # theta_0 + (theta_t - theta_0) in float32, cast once: equal up to float32 rounding
        assert torch.allclose(one[name].float(), theta[name].float(), rtol=1e-6, atol=1e-7)
        expected = theta0[name].float() + 0.5 * (theta[name].float() - theta0[name].float())
        assert torch.equal(half[name], expected.to(theta0[name].dtype))


def test_injection_leaves_unselected_tensors_bit_identical(pair: tuple[Path, Path],
                                                           tmp_path: Path) -> None:
    base, ckpt = pair
    theta0, theta = tensors(base), tensors(ckpt)
    for select in (LayerWindow(1, 1), is_mlp, is_attention, is_embedding):
        out = tensors(injected_update(base, ckpt, tmp_path / repr(select), select))
        chosen = [name for name in theta0 if select(name)]
        assert chosen
        for name in theta0:
            if select(name):
                expected = theta0[name].float() + (theta[name].float() - theta0[name].float())
                assert torch.equal(out[name], expected.to(theta0[name].dtype))
                assert not torch.equal(out[name], theta0[name])
            else:
                assert torch.equal(bits(out[name]), bits(theta0[name]))


def test_selectors_pick_the_documented_tensors() -> None:
    window = LayerWindow(2, 2)
    assert window("model.layers.3.input_layernorm.weight")
    assert not window("model.layers.4.mlp.up_proj.weight")
    assert not window("model.embed_tokens.weight")
    assert is_attention("model.layers.0.self_attn.q_norm.weight")
    assert not is_attention("model.layers.0.input_layernorm.weight")
    assert is_mlp("model.layers.0.mlp.gate_proj.weight")
    assert is_embedding("model.embed_tokens.weight") and not is_embedding("lm_head.weight")
    assert [w.start for w in sliding_windows(28, 4, 2)] == list(range(0, 25, 2))
    assert sliding_windows(10, 4, 4) == [LayerWindow(0, 4), LayerWindow(4, 4), LayerWindow(6, 4)]
    with pytest.raises(ValueError):
        sliding_windows(3, 4, 1)


@pytest.mark.parametrize("rest", ["base", "scaled"])
def test_rank_k_rescaled_closed_form(pair: tuple[Path, Path], tmp_path: Path, rest: str) -> None:
    base, ckpt = pair
    theta0, theta = tensors(base), tensors(ckpt)
    k, alpha = 2, 0.7
    out = tensors(rank_k_rescaled(base, ckpt, k, alpha, tmp_path / "rk", rest=rest))
    matrices = set(block_matrix_names(base))
    for name in theta0:
        b = theta0[name].float()
        delta = theta[name].float() - b
        if name in matrices:
            u, s, vh = torch.linalg.svd(delta.double(), full_matrices=False)
            delta_k = (u[:, :k] * s[:k]) @ vh[:k]
            expected = b.double() + alpha * (s.norm() / s[:k].norm()) * delta_k
            assert torch.allclose(out[name].double(), expected.to(theta0[name].dtype).double(),
                                  rtol=1e-2 if b.dtype != theta0[name].dtype else 1e-5,
                                  atol=1e-6)
        elif rest == "base":
            assert torch.equal(bits(out[name]), bits(theta0[name]))
        else:
            assert torch.equal(out[name], (b + alpha * delta).to(theta0[name].dtype))


def test_written_checkpoints_load_and_record_provenance(pair: tuple[Path, Path],
                                                        tmp_path: Path) -> None:
    base, ckpt = pair
    out = injected_update(base, ckpt, tmp_path / "inj", LayerWindow(0, 2),
                          out_dtype=torch.float32)
    provenance = json.loads((out / "effopd_provenance.json").read_text())
    assert provenance["kind"] == "injected_update"
    assert provenance["select"] == "LayerWindow(start=0, size=2)"
    model = Qwen3ForCausalLM.from_pretrained(out)
    assert model.dtype == torch.float32
    state = tensors(out)
    for name, param in model.state_dict().items():
        assert torch.equal(param, state[name])
    assert num_layers(base) == 3
    assert {parse_param_name(n).layer for n in state} == {None, 0, 1, 2}
