"""Exact answers for the pure spectral and subspace functions of effopd.analysis."""

from __future__ import annotations

import math

import pytest
import torch

from effopd.analysis.spectra import (
    effective_rank,
    energy_share,
    gram_error_bound,
    rank_k_approximation,
    rank_k_norm_ratio,
    singular_values,
    stable_rank,
    topk_subspaces,
)
from effopd.analysis.subspace import (
    principal_angles,
    random_overlap,
    subspace_overlap,
    top1_abs_cos,
)
from effopd.analysis.synthetic import low_rank_matrix, orthonormal_columns


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


# --------------------------------------------------------------------------- closed forms


@pytest.mark.parametrize("r", [1, 3, 8])
def test_equal_singular_values_give_rank_r(r: int) -> None:
    s = [2.5] * r + [0.0] * 4
    assert effective_rank(s) == pytest.approx(r, rel=1e-12)
    assert stable_rank(s) == pytest.approx(r, rel=1e-12)
    for k in range(1, r + 1):
        assert energy_share(s, k) == pytest.approx(k / r, rel=1e-12)
        assert rank_k_norm_ratio(s, k) == pytest.approx(math.sqrt(k / r), rel=1e-12)


def test_two_values_closed_form_and_order_invariance() -> None:
    s = [3.0, 4.0]  # unsorted on purpose
    p = torch.tensor([4 / 7, 3 / 7], dtype=torch.float64)
    assert effective_rank(s) == pytest.approx(float(torch.exp(-(p * p.log()).sum())), rel=1e-12)
    assert stable_rank(s) == pytest.approx(25 / 16, rel=1e-12)
    assert energy_share(s, 1) == pytest.approx(16 / 25, rel=1e-12)
    assert energy_share(s, 2) == 1.0
    assert energy_share(s, 99) == 1.0
    assert rank_k_norm_ratio(s, 1) == pytest.approx(4 / 5, rel=1e-12)


def test_planted_matrix_spectrum_closed_forms() -> None:
    values = [3.0, 2.0, 1.0]
    delta = low_rank_matrix((40, 24), values, gen()).float()
    s = singular_values(delta, method="svd")
    assert s[:3].tolist() == pytest.approx(values, rel=1e-6)
    assert float(s[3:].max()) < 1e-5
    assert stable_rank(s) == pytest.approx(14 / 9, rel=1e-6)
    assert energy_share(s, 2) == pytest.approx(13 / 14, rel=1e-6)
    p = torch.tensor(values, dtype=torch.float64) / 6
    assert effective_rank(s) == pytest.approx(float(torch.exp(-(p * p.log()).sum())), rel=1e-5)


def test_zero_update_gives_nan_ratios() -> None:
    s = singular_values(torch.zeros(5, 3))
    assert s.tolist() == [0.0, 0.0, 0.0]
    assert math.isnan(effective_rank(s))
    assert math.isnan(stable_rank(s))
    assert math.isnan(energy_share(s, 1))
    assert math.isnan(rank_k_norm_ratio(s, 1))


def test_bad_inputs_raise() -> None:
    with pytest.raises(ValueError):
        energy_share([1.0], 0)
    with pytest.raises(ValueError):
        effective_rank([1.0, -0.5])
    with pytest.raises(ValueError):
        singular_values(torch.zeros(3))
    with pytest.raises(ValueError):
        singular_values(torch.eye(3), method="qr")


# --------------------------------------------------------------------------- fast path


def fast_path_cases() -> list[torch.Tensor]:
    g = gen(1)
    graded = low_rank_matrix((120, 60), [10.0 ** -e for e in range(9)], g)
    return [
        torch.randn(64, 32, generator=g),
        torch.randn(32, 96, generator=g),
        torch.randn(200, 50, generator=g) * 1e-6,                # lr-1e-6 sized
        low_rank_matrix((100, 60), [5.0, 1.0, 0.2], g).float(),   # exact rank 3
        graded.float(),                                           # sigma from 1 to 1e-8
    ]


@pytest.mark.parametrize("case", range(5))
def test_fast_singular_values_within_stated_bound(case: int) -> None:
    delta = fast_path_cases()[case]
    fast = singular_values(delta, method="gram")
    exact = torch.linalg.svdvals(delta.double())
    bound = gram_error_bound(delta)
    m, n = delta.shape
    assert bound == pytest.approx(math.sqrt((m + n) * 2.0**-52) * float(delta.double().norm()))
    assert float((fast - exact).abs().max()) <= bound
    # large values: relative error <= (m + n) eps ||Delta||_F^2 / sigma^2
    fro2 = float(delta.double().norm() ** 2)
    big = exact > 1e-3 * exact[0]
    relative = ((fast - exact).abs() / exact)[big]
    assert bool((relative <= (m + n) * 2.0**-52 * fro2 / exact[big] ** 2).all())


def test_fast_path_resolves_zero_singular_values_only_to_the_bound() -> None:
    delta = low_rank_matrix((100, 60), [5.0, 1.0, 0.2], gen(2)).float()
    tail = singular_values(delta)[3:]
    assert float(tail.max()) <= gram_error_bound(delta)


# --------------------------------------------------------------------------- subspaces


def test_overlap_of_identical_orthogonal_and_random_subspaces() -> None:
    eye = torch.eye(6, dtype=torch.float64)
    u = eye[:, :2]
    assert subspace_overlap(u, u) == 1.0
    assert subspace_overlap(u, eye[:, 2:4]) == 0.0
    assert subspace_overlap(u, eye[:, :1]) == 1.0  # widths differ: divide by min
    assert random_overlap(2, 16) == 0.125


@pytest.mark.parametrize(("a", "b"), [(0.3, 1.1), (0.0, math.pi / 2), (0.7, 0.7)])
def test_overlap_and_principal_angles_closed_form(a: float, b: float) -> None:
    e = torch.eye(6, dtype=torch.float64)
    u = e[:, [0, 1]]
    w = torch.stack([math.cos(a) * e[0] + math.sin(a) * e[2],
                     math.cos(b) * e[1] + math.sin(b) * e[3]], dim=1)
    expected = (math.cos(a) ** 2 + math.cos(b) ** 2) / 2
    assert subspace_overlap(u, w) == pytest.approx(expected, abs=1e-15)
    assert principal_angles(u, w).tolist() == pytest.approx(sorted([a, b]), abs=1e-7)


def test_random_subspaces_overlap_k_over_n_on_average() -> None:
    g = gen(3)
    fixed = orthonormal_columns(16, 2, g)
    bases, _ = torch.linalg.qr(torch.randn(4000, 16, 2, generator=g, dtype=torch.float64))
    overlaps = (fixed.mT @ bases).square().sum(dim=(1, 2)) / 2
    assert float(overlaps.mean()) == pytest.approx(random_overlap(2, 16), abs=0.005)
    assert subspace_overlap(fixed, bases[0]) == pytest.approx(float(overlaps[0]), rel=1e-12)


def test_top1_abs_cos() -> None:
    assert top1_abs_cos(torch.tensor([1.0, 0.0]), torch.tensor([-1.0, -1.0])) == pytest.approx(
        1 / math.sqrt(2), rel=1e-15)
    assert math.isnan(top1_abs_cos(torch.zeros(2), torch.ones(2)))


@pytest.mark.parametrize("method", ["gram", "svd", "lowrank"])
@pytest.mark.parametrize("shape", [(200, 120), (120, 200)])
def test_topk_subspaces_recover_a_planted_subspace(method: str, shape: tuple[int, int]) -> None:
    g = gen(4)
    u = orthonormal_columns(shape[0], 3, g)
    v = orthonormal_columns(shape[1], 3, g)
    planted = (u * torch.tensor([10.0, 8.0, 6.0], dtype=torch.float64)) @ v.mT
    delta = (planted + 1e-3 * torch.randn(shape, generator=g, dtype=torch.float64)).float()
    sub = topk_subspaces(delta, 3, method=method)
    assert subspace_overlap(sub.U, u) > 1 - 1e-5
    assert subspace_overlap(sub.V, v) > 1 - 1e-5
    assert sub.S.tolist() == pytest.approx([10.0, 8.0, 6.0], rel=1e-3)
    for basis in (sub.U, sub.V):
        assert torch.allclose(basis.mT @ basis, torch.eye(3, dtype=torch.float64), atol=1e-10)
    # u_i = Delta v_i / sigma_i, the same singular triplets as the reference SVD
    assert torch.allclose(delta.double() @ sub.V, sub.U * sub.S, atol=1e-6)


def test_topk_gram_matches_svd_triplets_up_to_sign() -> None:
    delta = low_rank_matrix((50, 30), [4.0, 3.0, 2.0, 1.0], gen(5)) + 1e-4 * torch.randn(
        50, 30, generator=gen(6), dtype=torch.float64)
    fast, ref = topk_subspaces(delta, 4, "gram"), topk_subspaces(delta, 4, "svd")
    assert torch.allclose((fast.U * ref.U).sum(0).abs(), torch.ones(4, dtype=torch.float64),
                          atol=1e-10)
    assert torch.allclose((fast.V * ref.V).sum(0).abs(), torch.ones(4, dtype=torch.float64),
                          atol=1e-10)
    with pytest.raises(ValueError):
        topk_subspaces(delta, 31)


@pytest.mark.parametrize("shape", [(40, 24), (24, 40)])
def test_rank_k_approximation_is_the_truncated_svd(shape: tuple[int, int]) -> None:
    delta = torch.randn(shape, generator=gen(7), dtype=torch.float64)
    u, s, vh = torch.linalg.svd(delta, full_matrices=False)
    for k in (1, 5):
        approx = rank_k_approximation(delta, k)
        assert torch.allclose(approx, (u[:, :k] * s[:k]) @ vh[:k], atol=1e-10)
        residual = float((delta - approx).norm() ** 2)
        assert residual == pytest.approx(float((s[k:] ** 2).sum()), rel=1e-10)
        assert float(approx.norm() / delta.norm()) == pytest.approx(rank_k_norm_ratio(s, k))
    assert torch.equal(rank_k_approximation(delta, 24), delta)
