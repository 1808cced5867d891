"""EffOPD's worker-side line search on an FSDP-wrapped tiny Qwen3 (CPU, gloo, 2 ranks)."""

import pytest
import torch
from fsdp_helpers import line_search_worker, load_tiny, planted_anchor, planted_score, spawn

from effopd.training.extrapolation import is_extrapolated, line_search


@pytest.mark.parametrize(("version", "rule"), [(2, "authors"), (1, "blocks")])
def test_shard_line_search_equals_the_unsharded_search(tmp_path, tiny_checkpoint, version,
                                                        rule):
    spawn(line_search_worker, str(tiny_checkpoint), str(tmp_path), version, rule, tmp=tmp_path)
    result = torch.load(tmp_path / "result.pt", weights_only=False)
    # planted optimum at multiplier 7: 3, 5, 7 accepted, 9 rejected
    assert [(r["multiplier"], r["accepted"]) for r in result["records"]] == [
        (1.0, True), (3.0, True), (5.0, True), (7.0, True), (9.0, False)]
    assert (tmp_path / "actor" / "effopd_anchor_world_size_2_rank_1.pt").is_file()
    reference = load_tiny(str(tiny_checkpoint))
    anchor = planted_anchor(reference, rule)
    params = {n: p for n, p in reference.named_parameters() if n in anchor}
    records, _ = line_search(params, anchor, planted_score(params, anchor, 7.0), step=4)
    assert [r.multiplier for r in records] == [r["multiplier"] for r in result["records"]]
    moved = 0
    for name, tensor in reference.state_dict().items():
        if name not in result["params"]:
            continue  # tied lm_head
        assert torch.equal(result["params"][name], tensor), name
        moved += name in anchor
    assert moved == len(anchor)


def test_parameter_rules_match_the_authors_code():
    names = {"model.layers.0.self_attn.q_proj.weight": (True, True),
             "model.layers.0.self_attn.q_norm.weight": (True, True),
             "model.layers.0.post_attention_layernorm.weight": (True, True),
             "model.layers.0.input_layernorm.weight": (True, False),
             "model.layers.0.mlp.down_proj.weight": (True, True),
             "model.embed_tokens.weight": (False, False), "model.norm.weight": (False, False),
             "lm_head.weight": (False, False)}
    for name, (blocks, authors) in names.items():
        assert is_extrapolated(name, "blocks") is blocks, name
        assert is_extrapolated(name, "authors") is authors, name
    with pytest.raises(ValueError, match="unknown parameter rule"):
        is_extrapolated("x", "all")
