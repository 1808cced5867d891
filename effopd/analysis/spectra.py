"""Spectra of one update matrix: pure functions on a 2-D tensor or its singular values.

Notation: Delta is m x n with singular values sigma_1 >= ... >= sigma_r >= 0,
r = min(m, n), ||Delta||_F^2 = sum_i sigma_i^2.

Fast path. The singular values are the square roots of the eigenvalues of the
smaller Gram matrix G (Delta^T Delta when m >= n, else Delta Delta^T), formed
and diagonalised in float64: cost O(m n min(m, n)) for one product plus one
symmetric eigensolve of size min(m, n), much cheaper than an SVD that also
returns U and V.

Accuracy of the fast path (stated, and tested against float64
``torch.linalg.svdvals``). Let eps = 2^-52 (float64 machine epsilon). The
float64 Gram product and a backward-stable eigensolver perturb every
eigenvalue of G by at most about (m + n) * eps * ||Delta||_F^2, and
|sigma_hat - sigma| <= |sigma_hat^2 - sigma^2| / (sigma_hat + sigma)
<= sqrt(|sigma_hat^2 - sigma^2|). Hence

    |sigma_hat_i - sigma_i| <= delta := sqrt((m + n) * eps) * ||Delta||_F      (all i),
    |sigma_hat_i - sigma_i| / sigma_i <= (m + n) * eps * ||Delta||_F^2 / sigma_i^2.

Large singular values are accurate to ~1e-12 relative; small ones lose
relative accuracy and are only resolved down to delta (~1e-6 ||Delta||_F for
Qwen3 shapes): an exactly rank-r matrix shows min(m, n) - r "zero" singular
values of size up to delta instead of 0. Energy shares, stable rank and the
rank-k norm ratio (sums of sigma^2) are accurate to ~(m + n) * eps in absolute
terms. The effective rank uses sigma itself: the spurious tail adds at most
min(m, n) * delta to sum_i sigma_i, which biases the effective rank of an
exactly low-rank matrix upward when that sum is not small against
sum_i sigma_i (real updates, full rank with a noise floor far above delta, are
unaffected). ``method="svd"`` gives the exact route when that matters.

Zero updates: the singular values are all 0 and every ratio below (effective
rank, stable rank, energy share, norm ratio) is undefined; the functions
return NaN for them, so a table row of an untouched tensor is NaN, not a
misleading 0 or 1.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import NamedTuple

import numpy as np
import torch

EPS64 = float(np.finfo(np.float64).eps)
METHODS = ("gram", "svd")

SingularValues = torch.Tensor | np.ndarray | Sequence[float]


def _check_matrix(delta: torch.Tensor) -> torch.Tensor:
    if delta.ndim != 2:
        raise ValueError(f"expected a 2-D update matrix, got shape {tuple(delta.shape)}")
    return delta.to(torch.float64)


def singular_values(delta: torch.Tensor, method: str = "gram") -> torch.Tensor:
    """All min(m, n) singular values of ``delta``, descending, float64 on the CPU.

    ``method="gram"``: sigma_i = sqrt(max(lambda_i(G), 0)) with G the smaller
    Gram matrix, in float64 (accuracy: module docstring and
    :func:`gram_error_bound`). ``method="svd"``: ``torch.linalg.svdvals`` in
    float64 (exact to float64 rounding, slower).
    """
    a = _check_matrix(delta)
    if method == "svd":
        return torch.linalg.svdvals(a).cpu()
    if method != "gram":
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")
    gram = a.mT @ a if a.shape[0] >= a.shape[1] else a @ a.mT
    eigenvalues = torch.linalg.eigvalsh(gram)  # ascending
    return eigenvalues.clamp_min(0).sqrt().flip(0).cpu()


def gram_error_bound(delta: torch.Tensor) -> float:
    """Absolute error bound of the Gram fast path: sqrt((m + n) * eps64) * ||Delta||_F."""
    m, n = delta.shape
    fro = float(torch.linalg.vector_norm(delta.to(torch.float64)))
    return math.sqrt((m + n) * EPS64) * fro


def _as_singular_values(s: SingularValues) -> torch.Tensor:
    values = torch.as_tensor(np.asarray(s, dtype=np.float64) if not isinstance(s, torch.Tensor)
                             else s.detach().to("cpu", torch.float64))
    if values.ndim != 1:
        raise ValueError(f"expected a 1-D vector of singular values, got {tuple(values.shape)}")
    if bool((values < 0).any()) or bool(torch.isnan(values).any()):
        raise ValueError("singular values must be non-negative numbers")
    return torch.sort(values, descending=True).values


def effective_rank(s: SingularValues) -> float:
    """Effective rank of Roy and Vetterli (2007): exp(H(p)), p_i = sigma_i / sum_j sigma_j.

    H(p) = -sum_i p_i log p_i with 0 log 0 = 0. Equals r for r equal non-zero
    singular values, 1 for rank one. NaN when all sigma are 0.
    """
    values = _as_singular_values(s)
    total = values.sum()
    if total <= 0:
        return math.nan
    p = values[values > 0] / total
    return float(torch.exp(-(p * torch.log(p)).sum()))


def stable_rank(s: SingularValues) -> float:
    """Stable rank: ||Delta||_F^2 / ||Delta||_2^2 = sum_i sigma_i^2 / sigma_1^2. NaN if zero."""
    values = _as_singular_values(s)
    if values.numel() == 0 or values[0] <= 0:
        return math.nan
    return float((values**2).sum() / values[0] ** 2)


def energy_share(s: SingularValues, k: int) -> float:
    """Share of the squared Frobenius norm in the top-k directions.

    energy_share(s, k) = sum_{i<=k} sigma_i^2 / sum_i sigma_i^2 (1 for k >= the
    number of values). NaN if all sigma are 0.
    """
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    values = _as_singular_values(s)
    total = (values**2).sum()
    if total <= 0:
        return math.nan
    return float((values[:k] ** 2).sum() / total)


def rank_k_norm_ratio(s: SingularValues, k: int) -> float:
    """||Delta_k||_F / ||Delta||_F = sqrt(energy_share(s, k)), Delta_k the best rank-k part."""
    return math.sqrt(energy_share(s, k))


def spectrum_row(s: torch.Tensor, ks: Sequence[int]) -> dict[str, float]:
    """The spectral summary of one matrix from its singular values (NaN ratios if all zero)."""
    row = {"delta_norm": float(torch.linalg.vector_norm(s)),
           "sigma_1": float(s.max()) if s.numel() else math.nan,
           "effective_rank": effective_rank(s), "stable_rank": stable_rank(s)}
    for k in ks:
        share = energy_share(s, k)
        row[f"energy_share_k{k}"] = share
        row[f"norm_ratio_k{k}"] = math.sqrt(share)
    return row


class Subspaces(NamedTuple):
    """Top-k singular triplets: ``U`` (m x k), ``S`` (k), ``V`` (n x k), float64, CPU.

    Delta ~ U diag(S) V^T; columns of U and V are orthonormal.
    """

    U: torch.Tensor
    S: torch.Tensor
    V: torch.Tensor


def _fix_signs(vectors: torch.Tensor) -> torch.Tensor:
    """Flip each column so that its largest-magnitude entry is positive (a deterministic sign)."""
    pivots = vectors.gather(0, vectors.abs().argmax(dim=0, keepdim=True))
    signs = torch.where(pivots < 0, -1.0, 1.0).to(vectors.dtype)
    return vectors * signs


def _orthonormal_image(a: torch.Tensor, basis: torch.Tensor) -> torch.Tensor:
    """Orthonormal columns q_i proportional to a @ basis_i (QR with a non-negative R diagonal).

    When basis holds right singular vectors, a @ v_i = sigma_i u_i are mutually
    orthogonal, so q_i = u_i; for sigma_i = 0 the QR still returns an orthonormal
    completion.
    """
    q, r = torch.linalg.qr(a @ basis)
    signs = torch.where(torch.diagonal(r) < 0, -1.0, 1.0).to(q.dtype)
    return q * signs


def _gram_decomposition(a: torch.Tensor, k: int) -> tuple[torch.Tensor, Subspaces]:
    """All singular values and top-k triplets from one eigh of the smaller Gram matrix."""
    if a.shape[0] >= a.shape[1]:
        eigenvalues, eigenvectors = torch.linalg.eigh(a.mT @ a)  # ascending
        v = _fix_signs(eigenvectors[:, -k:].flip(1))
        u = _orthonormal_image(a, v)
    else:
        eigenvalues, eigenvectors = torch.linalg.eigh(a @ a.mT)
        u = _fix_signs(eigenvectors[:, -k:].flip(1))
        v = _orthonormal_image(a.mT, u)
    s = eigenvalues.flip(0).clamp_min(0).sqrt()
    return s.cpu(), Subspaces(u.cpu(), s[:k].cpu(), v.cpu())


def _check_k(shape: tuple[int, ...], k: int) -> None:
    if not 1 <= k <= min(shape):
        raise ValueError(f"k must lie in [1, {min(shape)}] for a {shape[0]}x{shape[1]} matrix, "
                         f"got {k}")


def spectrum_and_subspaces(delta: torch.Tensor, k: int,
                           method: str = "gram") -> tuple[torch.Tensor, Subspaces]:
    """All singular values (descending) and the top-k triplets of ``delta`` from ONE decomposition.

    ``"gram"``: one ``eigh`` of the smaller Gram matrix (float64) yields every
    sigma_i^2 and the eigenvectors of one side; the other side is the
    orthonormalised image (see :func:`topk_subspaces`). ``"svd"``: one reduced
    ``torch.linalg.svd``. Accuracy of the values as in the module docstring.
    Requires 1 <= k <= min(m, n).
    """
    a = _check_matrix(delta)
    _check_k(tuple(a.shape), k)
    if method == "gram":
        return _gram_decomposition(a, k)
    if method == "svd":
        u, s, vh = torch.linalg.svd(a, full_matrices=False)
        return s.cpu(), Subspaces(u[:, :k].cpu(), s[:k].cpu(), vh[:k].mT.cpu())
    raise ValueError(f"method must be one of {METHODS}, got {method!r}")


def topk_subspaces(delta: torch.Tensor, k: int, method: str = "gram", niter: int = 4,
                   oversample: int = 10) -> Subspaces:
    """Top-k left and right singular vectors and values of ``delta`` (float64 arithmetic).

    ``"gram"`` (default): eigenvectors of the smaller Gram matrix give one side
    (V_k of Delta^T Delta when m >= n), the other side is the orthonormalised
    image U_k = qr(Delta V_k), i.e. u_i = Delta v_i / sigma_i. ``"svd"``:
    reduced ``torch.linalg.svd`` (reference). ``"lowrank"``: randomized
    ``torch.svd_lowrank`` with q = k + ``oversample`` columns and ``niter``
    power iterations, seeded (0) for repeatability; its error shrinks like
    (sigma_{q+1} / sigma_k)^(2 niter + 1). Singular vectors of (nearly) equal
    singular values are only determined up to a rotation within their span;
    overlaps are unaffected when the whole span is inside the top k. Signs
    are fixed so that the largest-magnitude entry of each v (gram: of the
    eigenvector side) is positive. Requires 1 <= k <= min(m, n).
    """
    if method not in (*METHODS, "lowrank"):
        raise ValueError(f"method must be one of {(*METHODS, 'lowrank')}, got {method!r}")
    if method != "lowrank":
        return spectrum_and_subspaces(delta, k, method)[1]
    a = _check_matrix(delta)
    _check_k(tuple(a.shape), k)
    q = min(k + oversample, *a.shape)
    devices = [a.device] if a.device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(0)
        u, s, v = torch.svd_lowrank(a, q=q, niter=niter)
    return Subspaces(u[:, :k].cpu(), s[:k].cpu(), v[:, :k].cpu())


def rank_k_approximation(delta: torch.Tensor, k: int, method: str = "gram") -> torch.Tensor:
    """Best rank-k approximation Delta_k = U_k diag(S_k) V_k^T (Eckart-Young), in delta's dtype.

    Computed as the projection Delta V_k V_k^T when m >= n (else U_k U_k^T
    Delta), which equals U_k diag(S_k) V_k^T for exact singular vectors and uses
    the side the Gram eigensolver returns directly. k >= min(m, n) returns
    Delta itself.
    """
    m, n = delta.shape
    if k >= min(m, n):
        return delta.clone()
    sub = topk_subspaces(delta, k, method=method)
    a = delta.to(torch.float64)
    if m >= n:
        v = sub.V.to(a.device)
        approx = (a @ v) @ v.mT
    else:
        u = sub.U.to(a.device)
        approx = u @ (u.mT @ a)
    return approx.to(delta.dtype)
