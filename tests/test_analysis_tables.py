"""Update-norm, spectra and alignment tables on tiny Qwen3 checkpoints with planted updates."""

from __future__ import annotations

import math
from pathlib import Path

import pandas as pd
import pytest
import torch
from safetensors.torch import load_file

from effopd.analysis.checkpoint_io import block_matrix_names, write_modified_checkpoint
from effopd.analysis.synthetic import (
    orthonormal_columns,
    qwen3_config,
    tensor_generator,
    write_random_qwen3,
)
from effopd.analysis.updates import (
    aggregate_update_norms,
    total_update_norm,
    update_norm_table,
    update_size_series,
)
from effopd.analysis.weight_pass import (
    alignment_table,
    series_tables,
    spectra_table,
    stream_updates,
)
from effopd.reports.analysis import long_by_k

ZERO = "model.layers.1.mlp.up_proj.weight"  # left untouched by every planted checkpoint



def planted(name: str, shape: torch.Size, right_third: bool) -> torch.Tensor:
    """3 u1 v1^T + 2 u2 v2^T + 1 u3 v3^T (final), or with (u2, v2) swapped for (u4, v4)."""
    g = tensor_generator(7, name)
    u, v = orthonormal_columns(shape[0], 4, g), orthonormal_columns(shape[1], 4, g)
    pick = [0, 3, 2] if right_third else [0, 1, 2]
    return (u[:, pick] * torch.tensor([3.0, 2.0, 1.0], dtype=torch.float64)) @ v[:, pick].mT


@pytest.fixture(scope="module")
def series(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("series")
    base = write_random_qwen3(root / "base", qwen3_config(), seed=0)
    matrices = set(block_matrix_names(base))

    def make(swapped: bool):
        def transform(name: str, theta0: torch.Tensor) -> torch.Tensor:
            if name in matrices and name != ZERO:
                return theta0 + planted(name, theta0.shape, swapped).float()
            if name == "model.embed_tokens.weight":
                return theta0 * 1.5
            return theta0
        return transform

    return {"base": base,
            "early": write_modified_checkpoint(base, root / "early", make(True)),
            "final": write_modified_checkpoint(base, root / "final", make(False))}


def direct_deltas(series: dict[str, Path], label: str) -> dict[str, torch.Tensor]:
    base = load_file(series["base"] / "model.safetensors")
    ckpt = load_file(series[label] / "model.safetensors")
    return {name: (ckpt[name] - base[name]).double() for name in base}  # float32 difference


def test_update_norm_table_matches_direct_norms(series: dict[str, Path]) -> None:
    table = update_norm_table(series["base"], series["final"])
    base = load_file(series["base"] / "model.safetensors")
    deltas = direct_deltas(series, "final")
    assert list(table["name"])[0] == "model.embed_tokens.weight"
    assert len(table) == len(base)
    for row in table.itertuples():
        assert row.delta_norm == pytest.approx(float(torch.linalg.norm(deltas[row.name])),
                                               rel=1e-12, abs=0)
        assert row.base_norm == pytest.approx(float(torch.linalg.norm(base[row.name].double())),
                                              rel=1e-12)
        assert row.relative_norm == pytest.approx(row.delta_norm / row.base_norm, rel=1e-12)
        assert row.numel == base[row.name].numel()
    planted_rows = table[table["name"].isin(block_matrix_names(series["base"]))
                         & (table["name"] != ZERO)]
    # ||3 u1 v1^T + 2 u2 v2^T + u3 v3^T||_F = sqrt(14), up to float32 storage rounding
    assert planted_rows["delta_norm"].to_numpy() == pytest.approx(math.sqrt(14), rel=1e-6)
    assert table.set_index("name").loc[ZERO, "delta_norm"] == 0.0
    embed = table.set_index("name").loc["model.embed_tokens.weight"]
    assert embed["relative_norm"] == pytest.approx(0.5, rel=1e-6)
    chunked = update_norm_table(series["base"], series["final"], max_elements=64)
    pd.testing.assert_frame_equal(chunked, table, check_exact=False, rtol=1e-12)


def test_aggregates_shares_and_total(series: dict[str, Path]) -> None:
    table = update_norm_table(series["base"], series["final"])
    blocks = table[table["block"]]
    by_layer = aggregate_update_norms(blocks, "layer")
    assert list(by_layer["layer"]) == [0, 1, 2]
    assert by_layer["share"].sum() == pytest.approx(1.0, rel=1e-12)
    # six planted matrices of norm^2 14 per layer, five in layer 1
    assert by_layer["delta_norm"].tolist() == pytest.approx(
        [math.sqrt(7 * 14), math.sqrt(6 * 14), math.sqrt(7 * 14)], rel=1e-6)
    assert by_layer["share"].tolist() == pytest.approx([7 / 20, 6 / 20, 7 / 20], rel=1e-6)
    by_module = aggregate_update_norms(table, "module")
    assert by_module["share"].sum() == pytest.approx(1.0, rel=1e-12)
    assert set(by_module["module"]) >= {"q", "k", "v", "o", "gate", "up", "down", "embed"}
    direct = torch.cat([d.reshape(-1) for n, d in direct_deltas(series, "final").items()
                        if ".layers." in n])
    assert total_update_norm(table) == pytest.approx(float(direct.norm()), rel=1e-12)
    everything = torch.cat([d.reshape(-1) for d in direct_deltas(series, "final").values()])
    assert total_update_norm(table, block_only=False) == pytest.approx(
        float(everything.norm()), rel=1e-12)
    sizes = update_size_series(series["base"], {"final": series["final"]})
    assert sizes.loc[0, "block_norm"] == pytest.approx(total_update_norm(table), rel=1e-12)


def test_spectra_table_closed_forms(series: dict[str, Path]) -> None:
    table = spectra_table(series["base"], series["final"], ks=(1, 2, 3, 64)).set_index("name")
    assert len(table) == 21
    zero = table.loc[ZERO]
    assert zero["delta_norm"] == 0.0 and math.isnan(zero["effective_rank"])
    rows = table.drop(index=ZERO)
    p = torch.tensor([3.0, 2.0, 1.0], dtype=torch.float64) / 6
    assert rows["sigma_1"].to_numpy() == pytest.approx(3.0, rel=1e-6)
    assert rows["stable_rank"].to_numpy() == pytest.approx(14 / 9, rel=1e-6)
    assert rows["energy_share_k1"].to_numpy() == pytest.approx(9 / 14, rel=1e-6)
    assert rows["energy_share_k2"].to_numpy() == pytest.approx(13 / 14, rel=1e-6)
    assert rows["energy_share_k3"].to_numpy() == pytest.approx(1.0, rel=1e-6)
    assert rows["energy_share_k64"].to_numpy() == pytest.approx(1.0, rel=1e-12)
    assert rows["norm_ratio_k1"].to_numpy() == pytest.approx(3 / math.sqrt(14), rel=1e-6)
    assert rows["effective_rank"].to_numpy() == pytest.approx(
        float(torch.exp(-(p * p.log()).sum())), rel=1e-5)
    exact = spectra_table(series["base"], series["final"], ks=(1, 2), method="svd")
    assert exact["energy_share_k1"].to_numpy() == pytest.approx(
        table.loc[exact["name"], "energy_share_k1"].to_numpy(), rel=1e-10, nan_ok=True)


def test_alignment_of_a_checkpoint_with_itself_is_one(series: dict[str, Path]) -> None:
    table = alignment_table(series["base"], [series["final"]], series["final"],
                            k_list=(1, 2, 4, 32))
    assert set(table["checkpoint"]) == {"final"}
    rows = table[table["name"] != ZERO]
    for column in ("left_overlap_k1", "right_overlap_k2", "left_overlap_k4",
                   "top1_left_abs_cos", "top1_right_abs_cos"):
        assert rows[column].to_numpy() == pytest.approx(1.0, abs=1e-10)
    narrow = rows[rows[["rows", "cols"]].min(axis=1) < 32]
    assert narrow["left_overlap_k32"].isna().all()  # k above min(m, n)
    assert (rows[rows[["rows", "cols"]].min(axis=1) >= 32]["left_overlap_k32"] > 1 - 1e-10).all()
    assert table[table["name"] == ZERO].drop(columns=["layer"]).isna().sum().sum() == 10


def test_alignment_known_answer(series: dict[str, Path]) -> None:
    """Early = 3 u1v1 + 2 u4v4 + u3v3, final = 3 u1v1 + 2 u2v2 + u3v3.

    Top-1: same direction, overlap 1. Top-2: spans {1,4} vs {1,2}, overlap 1/2.
    Top-3: {1,4,3} vs {1,2,3}, overlap 2/3.
    """
    table = alignment_table(series["base"], {"early": series["early"]}, series["final"],
                            k_list=(1, 2, 3))
    rows = table[table["name"] != ZERO]
    for side in ("left", "right"):
        assert rows[f"{side}_overlap_k1"].to_numpy() == pytest.approx(1.0, abs=1e-9)
        assert rows[f"{side}_overlap_k2"].to_numpy() == pytest.approx(0.5, abs=1e-9)
        assert rows[f"{side}_overlap_k3"].to_numpy() == pytest.approx(2 / 3, abs=1e-9)
        assert rows[f"top1_{side}_abs_cos"].to_numpy() == pytest.approx(1.0, abs=1e-9)
    long = long_by_k(rows, ["left_overlap", "right_overlap"])
    assert len(long) == 3 * len(rows)
    assert long.groupby("k")["left_overlap"].mean().tolist() == pytest.approx(
        [1.0, 0.5, 2 / 3], abs=1e-9)


@pytest.mark.parametrize("method", ["gram", "svd"])
def test_one_pass_series_tables_equal_the_separate_tables(series: dict[str, Path],
                                                          method: str) -> None:
    ckpts = {"early": series["early"], "final": series["final"]}
    spectra, alignment = series_tables(series["base"], ckpts, series["final"], ks=(1, 4),
                                       k_list=(1, 2, 3), method=method)
    separate = pd.concat([spectra_table(series["base"], path, ks=(1, 4), method=method)
                          .assign(checkpoint=label) for label, path in ckpts.items()])
    keys = ["checkpoint", "name"]
    one_pass = spectra.sort_values(keys).reset_index(drop=True)
    two_pass = separate[spectra.columns].sort_values(keys).reset_index(drop=True)
    # eigh and eigvalsh resolve the tail of an exactly rank-3 update differently, within the
    # fast-path bound; only the effective rank (a sum of sigma, not sigma^2) notices, at 1e-7.
    assert one_pass["effective_rank"].to_numpy() == pytest.approx(
        two_pass["effective_rank"].to_numpy(), rel=1e-6, nan_ok=True)
    pd.testing.assert_frame_equal(one_pass.drop(columns="effective_rank"),
                                  two_pass.drop(columns="effective_rank"),
                                  check_exact=False, rtol=1e-9, atol=1e-12)
    reference = alignment_table(series["base"], ckpts, series["final"], k_list=(1, 2, 3),
                                method=method)
    pd.testing.assert_frame_equal(
        alignment.sort_values(keys).reset_index(drop=True),
        reference.sort_values(keys).reset_index(drop=True),
        check_exact=False, rtol=1e-9, atol=1e-9)


def test_one_pass_norms_equal_the_per_checkpoint_tables(series: dict[str, Path]) -> None:
    """The pass's norms are update_norm_table's to the last bit, also when every tensor
    is reduced in many blocks of rows."""
    ckpts = {"early": series["early"], "final": series["final"]}
    for max_elements in (64, 1 << 24):
        result = stream_updates(series["base"], ckpts, series["final"], ks=(1,), k_list=(1,),
                                max_elements=max_elements)
        for label, path in ckpts.items():
            pd.testing.assert_frame_equal(
                result.norms[label],
                update_norm_table(series["base"], path, max_elements=max_elements),
                check_exact=True)
