"""Comparing subspaces: pure functions on orthonormal bases.

U (n x k) and W (n x l) have orthonormal columns. The cosines of the principal
angles theta_1 <= ... <= theta_min(k,l) between span(U) and span(W) are the
singular values of U^T W (Bjorck and Golub 1973).
"""

from __future__ import annotations

import math

import torch


def _check_bases(u: torch.Tensor, w: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    if u.ndim != 2 or w.ndim != 2 or u.shape[0] != w.shape[0]:
        raise ValueError(f"bases must be n x k and n x l, got {tuple(u.shape)}, {tuple(w.shape)}")
    return u.to(torch.float64), w.to(device=u.device, dtype=torch.float64)


def subspace_overlap(u: torch.Tensor, w: torch.Tensor) -> float:
    """Overlap ||U^T W||_F^2 / k = mean of cos^2 of the principal angles.

    1 for identical subspaces, 0 for orthogonal ones; a uniformly random k-dim
    subspace of R^n has expected overlap k / n (:func:`random_overlap`). With
    different widths k != l, the divisor is min(k, l).
    """
    a, b = _check_bases(u, w)
    k = min(a.shape[1], b.shape[1])
    return float((a.mT @ b).square().sum() / k)


def principal_angles(u: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    """Principal angles (radians, ascending) between span(U) and span(W).

    theta_i = arccos(s_i), s_i the singular values of U^T W clamped to [0, 1].
    Precise for angles well above sqrt(eps); tiny angles read as 0.
    """
    a, b = _check_bases(u, w)
    cosines = torch.linalg.svdvals(a.mT @ b).clamp(0.0, 1.0)
    return torch.arccos(cosines).cpu()


def top1_abs_cos(u: torch.Tensor, w: torch.Tensor) -> float:
    """|cos| of the angle between two vectors: |u . w| / (||u|| ||w||); NaN if either is 0."""
    a = u.reshape(-1).to(torch.float64)
    b = w.reshape(-1).to(device=a.device, dtype=torch.float64)
    if a.shape != b.shape:
        raise ValueError(f"vectors differ in length: {a.numel()} and {b.numel()}")
    norms = torch.linalg.vector_norm(a) * torch.linalg.vector_norm(b)
    if norms == 0:
        return math.nan
    return float((a @ b).abs() / norms)


def random_overlap(k: int, n: int) -> float:
    """Expected overlap of a fixed and a uniformly random k-dim subspace of R^n: k / n.

    E ||U^T W||_F^2 = k * k / n, since each of the k^2 entries of U^T W has
    mean square 1 / n.
    """
    if not 1 <= k <= n:
        raise ValueError(f"need 1 <= k <= n, got k={k}, n={n}")
    return k / n
