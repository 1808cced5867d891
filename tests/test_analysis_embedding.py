"""Embedding shift (cosine to base, shared 2-D PCA) with planted rotations of embedding rows."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

from effopd.analysis.checkpoint_io import write_modified_checkpoint
from effopd.analysis.embedding_shift import (
    embedding_cosine,
    embedding_cosine_summary,
    embedding_name,
    embedding_projection,
    embedding_rows,
    pca_2d,
    row_cosine,
)
from effopd.analysis.synthetic import qwen3_config, write_random_qwen3

ANGLES = torch.linspace(0.0, 1.5, 50, dtype=torch.float64)  # row t turns by ANGLES[t]



def rotate_rows(rows: torch.Tensor, angles: torch.Tensor) -> torch.Tensor:
    """Turn each row e by angle a in the plane of e and a fixed direction, keeping its norm."""
    e = rows.double()
    d = torch.ones_like(e[0])
    w = d - (e @ d / (e * e).sum(1)).unsqueeze(1) * e  # component of d orthogonal to each row
    w = w / w.norm(dim=1, keepdim=True) * e.norm(dim=1, keepdim=True)
    return torch.cos(angles).unsqueeze(1) * e + torch.sin(angles).unsqueeze(1) * w


@pytest.fixture(scope="module")
def pair(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("emb")
    base = write_random_qwen3(root / "base", qwen3_config(), seed=3)

    def turn(name: str, theta0: torch.Tensor) -> torch.Tensor:
        if name == "model.embed_tokens.weight":
            return rotate_rows(theta0, ANGLES).float()
        return theta0 + 0.1

    return base, write_modified_checkpoint(base, root / "ckpt", turn)


def test_embedding_cosine_is_the_cosine_of_the_planted_angle(pair: tuple[Path, Path]) -> None:
    base, ckpt = pair
    table = embedding_cosine(base, ckpt, [7, 3, 49, 3, 0])
    assert table["token_id"].tolist() == [0, 3, 7, 49]  # unique, sorted
    expected = torch.cos(ANGLES[[0, 3, 7, 49]])
    assert table["cosine"].to_numpy() == pytest.approx(expected.numpy(), abs=1e-6)
    assert table["trained_norm"].to_numpy() == pytest.approx(table["base_norm"].to_numpy(),
                                                             rel=1e-6)
    chord = 2 * torch.sin(ANGLES[[0, 3, 7, 49]] / 2) * torch.tensor(table["base_norm"].to_numpy())
    assert table["shift_norm"].to_numpy() == pytest.approx(chord.numpy(), rel=1e-5, abs=1e-6)
    summary = embedding_cosine_summary(table)
    assert summary["mean_cosine"] == pytest.approx(float(expected.mean()), abs=1e-6)
    assert summary["n_tokens"] == 4 and summary["min_cosine"] == pytest.approx(math.cos(1.5),
                                                                               abs=1e-6)


def test_embedding_errors_and_helpers(pair: tuple[Path, Path]) -> None:
    base, _ = pair
    assert embedding_name(base) == "model.embed_tokens.weight"
    with pytest.raises(ValueError, match=r"\[50\]"):
        embedding_cosine(base, base, [1, 50])
    with pytest.raises(ValueError, match="no token ids"):
        embedding_cosine(base, base, [])
    cos = row_cosine(torch.tensor([[1.0, 0.0], [0.0, 0.0]]), torch.tensor([[1.0, 1.0], [1.0, 0.0]]))
    assert cos[0].item() == pytest.approx(1 / math.sqrt(2), rel=1e-15) and math.isnan(cos[1])


def test_pca_2d_exact_axes() -> None:
    x = torch.tensor([[2.0, 0, 0], [-2.0, 0, 0], [0, 1.0, 0], [0, -1.0, 0]]) + 5.0
    fit = pca_2d(x)
    assert torch.allclose(fit.mean, torch.full((3,), 5.0, dtype=torch.float64))
    assert torch.allclose(fit.components, torch.eye(3, dtype=torch.float64)[:2], atol=1e-12)
    assert torch.allclose(fit.coords, (x - 5.0)[:, :2].double(), atol=1e-12)
    assert fit.explained_variance_ratio.tolist() == pytest.approx([0.8, 0.2], rel=1e-12)


def test_projection_uses_one_basis_for_both(pair: tuple[Path, Path]) -> None:
    base, ckpt = pair
    ids = [0, 5, 10, 20, 40]
    table = embedding_projection(base, ckpt, ids)
    assert len(table) == 10 and table["source"].tolist() == ["base"] * 5 + ["trained"] * 5
    union = torch.cat([embedding_rows(base, torch.tensor(ids).numpy()),
                       embedding_rows(ckpt, torch.tensor(ids).numpy())])
    fit = pca_2d(union)
    assert table[["x", "y"]].to_numpy() == pytest.approx(fit.coords.numpy(), abs=1e-9)
    assert sum(table.attrs["explained_variance_ratio"]) <= 1.0
    same = embedding_projection(base, base, ids)
    assert same.iloc[:5][["x", "y"]].to_numpy() == pytest.approx(
        same.iloc[5:][["x", "y"]].to_numpy(), abs=1e-9)
    with pytest.raises(ValueError, match="pca"):
        embedding_projection(base, ckpt, ids, method="tsne")
