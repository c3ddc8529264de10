"""Closed forms on Gaussians kept as eigendecompositions (shared by frechet and mixture-w2)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import linalg
from scipy.linalg import lapack

from metadb.errors import MetadbError

SHRINKAGE = ("oas", "none")


def shrinkage_choice(value: str) -> bool:
    """True for 'oas' (the default), False for 'none'; anything else is refused."""
    if value not in SHRINKAGE:
        raise MetadbError(f"shrinkage {value!r}: expected oas or none")
    return value == "oas"


def applied_shrinkage(eigvals: np.ndarray, n: int, dim: int, shrink: bool) -> float:
    """The OAS coefficient actually applied: 0 unless asked for and n < D."""
    return oas_shrinkage(eigvals, n, dim) if shrink and n < dim else 0.0


def oas_shrinkage(eigvals: np.ndarray, n: int, dim: int) -> float:
    """Oracle Approximating Shrinkage coefficient (Chen et al. 2010) from the sample spectrum.

    Needs only tr(S) and tr(S^2), i.e. the eigenvalues: no samples. Used when n < D, where the
    sample covariance is singular and FID-style distances are dominated by noise.
    """
    tr, tr2 = eigvals.sum(), (eigvals**2).sum()
    num = (1 - 2 / dim) * tr2 + tr**2
    den = (n + 1 - 2 / dim) * (tr2 - tr**2 / dim)
    return float(min(1.0, num / den)) if den > 0 else 1.0


def factor(eigvals: np.ndarray, eigvecs: np.ndarray, n: int, shrink: bool) -> tuple[np.ndarray, float]:
    """Covariance as (L, c) with S = L L^T + c I: low-rank factor plus an isotropic part.

    Shrinkage towards tr(S)/D I keeps the eigenvectors and adds c to every eigenvalue.
    """
    dim = eigvecs.shape[0]
    alpha = applied_shrinkage(eigvals, n, dim, shrink)
    c = alpha * eigvals.sum() / dim
    return eigvecs * np.sqrt((1 - alpha) * eigvals), c


def trace_sqrt_product(l1: np.ndarray, c1: float, l2: np.ndarray, c2: float) -> float:
    """tr sqrt(S1^1/2 S2 S1^1/2) for S = L L^T + c I.

    Without isotropic parts it is the nuclear norm of L1^T L2 (an r1 x r2 SVD, no sqrtm). With
    them, the eigenvalues of S1^1/2 S2 S1^1/2 are those of S1 S2, computed in the span of
    [L1, L2] plus the isotropic remainder c1*c2 on its orthogonal complement.
    """
    dim = l1.shape[0]
    if c1 == 0.0 and c2 == 0.0:
        c = l1.T @ l2
        g = c @ c.T if c.shape[0] <= c.shape[1] else c.T @ c  # the smaller Gram matrix
        return float(np.sqrt(np.clip(np.linalg.eigvalsh(g), 0, None)).sum())  # = sum of singular values of c
    q, _ = np.linalg.qr(np.hstack([l1, l2]))
    k = q.shape[1]
    a1, a2 = q.T @ l1, q.T @ l2
    s1 = a1 @ a1.T + c1 * np.eye(k)
    s2 = a2 @ a2.T + c2 * np.eye(k)
    w, v = np.linalg.eigh(s1)
    r1 = (v * np.sqrt(np.clip(w, 0, None))) @ v.T
    inner = np.linalg.eigvalsh(r1 @ s2 @ r1)
    return float(np.sqrt(np.clip(inner, 0, None)).sum() + (dim - k) * np.sqrt(c1 * c2))


def wasserstein2(m1, l1, c1, m2, l2, c2) -> float:
    """Squared 2-Wasserstein (Frechet) distance between N(m1, S1) and N(m2, S2)."""
    dim = l1.shape[0]
    tr1 = float((l1**2).sum() + c1 * dim)
    tr2 = float((l2**2).sum() + c2 * dim)
    d = float(((m1 - m2) ** 2).sum() + tr1 + tr2 - 2 * trace_sqrt_product(l1, c1, l2, c2))
    return max(d, 0.0)


@dataclass(frozen=True)
class PairReady:
    """One Gaussian prepared once for many Frechet pairs: its covariance in the cheapest exact form.

    Positive definite covariances (any shrunk one, any full-rank one) keep S and its lower
    Cholesky factor L: a pair then costs one `dsygst` (L1^T S2 L1, D^3 flops, BLAS3) and one
    symmetric eigenvalue solve, about 1/4 of torchmetrics' nonsymmetric `eigvals(S1 @ S2)`.
    Singular ones (n <= D without shrinkage; `embed` stores only the eigenpairs above its floor)
    keep the thin factor F = V sqrt(w), D x r, and their pairs shrink to r x r problems.
    """

    mean: np.ndarray
    trace: float
    cov: np.ndarray | None = None
    chol: np.ndarray | None = None
    thin: np.ndarray | None = None


def prepare_pairs(mean: np.ndarray, eigvals: np.ndarray, eigvecs: np.ndarray, n: int, shrink: bool) -> PairReady:
    """The stored eigendecomposition (shrunk with OAS when asked and n < D) as a `PairReady`.

    Nothing is truncated beyond what is stored: an eigenvalue w of S1 can move
    tr sqrt(S1^1/2 S2 S1^1/2) by up to sqrt(w * lambda_max(S2)), so only w below ~1e-26 of the
    spectrum could be dropped within 1e-13 of the result, and float64 cannot resolve such values.
    """
    dim = eigvecs.shape[0]
    l, c = factor(eigvals, eigvecs, n, shrink)
    trace = float((l**2).sum() + c * dim)
    if c == 0.0 and l.shape[1] < dim:
        return PairReady(mean, trace, thin=l)
    cov = (l @ l.T).T  # syrk (numpy spots a product with its own transpose); .T: Fortran order for LAPACK
    cov[np.diag_indices(dim)] += c
    try:
        chol = np.asfortranarray(linalg.cholesky(cov, lower=True, check_finite=False))
        return PairReady(mean, trace, cov=cov, chol=chol)
    except linalg.LinAlgError:  # positive semidefinite only to rounding: fall back to the eigenpairs
        if c == 0.0:
            return PairReady(mean, trace, thin=l)
        w, v = np.linalg.eigh(cov)
        return PairReady(mean, trace, thin=v * np.sqrt(np.clip(w, 0, None)))


def _sqrt_eigvals_sum(m: np.ndarray) -> float:
    """Sum of square roots of a symmetric PSD matrix's eigenvalues, from its lower triangle only."""
    w = linalg.eigh(m, lower=True, eigvals_only=True, overwrite_a=True, check_finite=False, driver="evd")
    return float(np.sqrt(np.clip(w, 0, None)).sum())


def trace_sqrt_ready(a: PairReady, b: PairReady) -> float:
    """tr sqrt(Sa^1/2 Sb Sa^1/2): the sum of square roots of the eigenvalues of Fa^T Sb Fa, any Sa = Fa Fa^T.

    Both positive definite: Fa = La (Cholesky) and `dsygst` forms La^T Sb La reading only
    triangles. One singular: its thin factor F (D x r) gives the r x r matrix F^T S F. Both
    singular: the singular values of Fa^T Fb, from the smaller Gram matrix.
    """
    if a.chol is not None and b.chol is not None:
        m, info = lapack.dsygst(b.cov, a.chol, itype=3, lower=1)
        if info != 0:
            raise MetadbError(f"dsygst failed (info {info}) on a Frechet pair", "report this with the datasets' names")
        return _sqrt_eigvals_sum(m)
    if a.thin is not None and b.thin is not None:
        return trace_sqrt_product(a.thin, 0.0, b.thin, 0.0)
    t, f = (a, b) if a.thin is not None else (b, a)
    return _sqrt_eigvals_sum(t.thin.T @ (f.cov @ t.thin))


def wasserstein2_ready(a: PairReady, b: PairReady) -> float:
    """Squared 2-Wasserstein (Frechet) distance between two prepared Gaussians."""
    d = float(((a.mean - b.mean) ** 2).sum() + a.trace + b.trace - 2 * trace_sqrt_ready(a, b))
    return max(d, 0.0)
