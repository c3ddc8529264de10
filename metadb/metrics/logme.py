"""LogME (You et al., ICML 2021; the fixed-point form of You et al., JMLR 2022).

The log marginal evidence of a Bayesian linear model from the features to each class's one-vs-rest
indicator, maximised over its prior precision alpha and noise precision beta, divided by N and
averaged over classes. It needs no training, so a candidate model is scored in one pass over its
features; a higher evidence means the labels are more linearly predictable from the features.

Why it is fast: every class shares the features' spectrum. One eigendecomposition of the D x D Gram
matrix F^T F (or of the N x N matrix F F^T when N < D) gives the squared singular values and the
projections of every class target on the singular vectors; the fixed-point updates then run on
that spectrum for all classes at once, each class stopping when its own alpha/beta has converged,
exactly as the authors' per-class loop does (at most 11 steps, relative tolerance 1e-3).
"""

from __future__ import annotations

import numpy as np

from metadb.metrics import check_labels, check_matrix, check_multilabel, register_metric

MAX_STEPS = 11  # the authors' fixed-point loop stops after at most 11 steps
TOLERANCE = 1e-3  # ... or when alpha/beta changes by less than this, relatively
RANK_EPS = 1e-10  # singular values at or below this are always dropped when N > D, as the authors' truncated SVD


@register_metric("logme", version="3", needs="features", multilabel=True, saturates=True)
def logme(features, labels) -> float:
    """LogME of features (N x D) for class labels (N,), or the mean over labels of a 0/1 multi-label matrix (N x L).

    For class labels, each class c is scored as the binary target 1[y == c], as the official
    implementation (thuml/LogME, `LogME(regression=False)`) does; for a multi-label matrix each
    column is one such target (the official `regression=True` path on 0/1 columns). A single
    (N, 1) column is read as class labels, as every metric here reads it.
    """
    f = check_matrix(features, "features")
    n = len(f)
    if np.ndim(labels) == 2 and np.shape(labels)[1] > 1:  # (N, L) 0/1: one binary target per column
        y = check_multilabel(labels, n)
    else:
        c = check_labels(labels, n)
        y = (c[:, None] == np.arange(c.max() + 1)[None, :]).astype(np.float64)
    return float(np.mean(evidence(f, y)))


def _spectrum(f: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Squared singular values s^2 (k,) of f and the squared projections (U^T y)^2 (k x C).

    N > D: eigh of F^T F = V S^2 V^T, and U^T y = S^-1 V^T (F^T y), so U (N x k) is never formed.
    N <= D: eigh of F F^T = U S^2 U^T directly. Either way one symmetric eigendecomposition of the
    smaller Gram matrix, instead of an SVD of F.

    Numerical rank: an eigenvalue of a Gram matrix is only known to about eps x its largest one,
    so eigenvalues below max(eigenvalue) x size x eps are exact zeros blurred by rounding. With
    N > D their directions are dropped (a null direction of F carries no signal, and S^-1 V^T F^T y
    would divide rounding noise by rounding noise); with N <= D they are kept as exact zeros,
    where U is still an orthonormal basis. On full-rank features this changes nothing and the
    result equals the authors' to rounding. A dropped direction is an exact zero eigenvalue of
    F^T F; `fit` counts it in log|A| as log(alpha), which the authors' code does too (it keeps
    such a direction as a tiny singular value above its 1e-10 cut-off, whose projection is ~0).
    """
    n, d = f.shape
    if n > d:
        w, v = np.linalg.eigh(f.T @ f)
        keep = w > max(w[-1] * d * np.finfo(np.float64).eps, RANK_EPS**2)
        w, v = w[keep], v[:, keep]
        return w, (v.T @ (f.T @ y)) ** 2 / w[:, None]
    w, u = np.linalg.eigh(f @ f.T)
    w[w < max(w[-1], 0.0) * n * np.finfo(np.float64).eps] = 0.0
    return w, (u.T @ y) ** 2


def evidence(f: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Maximised log evidence / N of each column of y (N x C) given features f (N x D)."""
    return fit(f, y)[0]


def fit(f: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(log evidence / N, alpha, beta) of each column of y (N x C): the fixed point of You et al. 2022."""
    n, d = f.shape
    sigma, x2 = _spectrum(f, y)
    sigma = sigma[:, None]
    res_x2 = (y**2).sum(axis=0) - x2.sum(axis=0)  # the part of y outside the span of f
    c = y.shape[1]
    alpha, beta = np.ones(c), np.ones(c)
    m2, res2 = np.zeros(c), np.zeros(c)
    active = np.ones(c, dtype=bool)
    for _ in range(MAX_STEPS):
        t = alpha / beta
        gamma = (sigma / (sigma + t)).sum(axis=0)
        m2_new = (sigma * x2 / (t + sigma) ** 2).sum(axis=0)
        res2_new = (x2 / (1 + sigma / t) ** 2).sum(axis=0) + res_x2
        alpha_new = gamma / (m2_new + 1e-5)
        beta_new = (n - gamma) / (res2_new + 1e-5)
        # a converged class keeps the values of the step that converged it, as in the per-class loop
        m2 = np.where(active, m2_new, m2)
        res2 = np.where(active, res2_new, res2)
        alpha = np.where(active, alpha_new, alpha)
        beta = np.where(active, beta_new, beta)
        active &= np.abs(alpha_new / beta_new - t) / t > TOLERANCE
        if not active.any():
            break
    # N > D: log|A| runs over all D eigenvalues of alpha I + beta F^T F, and each of the D - k
    # dropped (zero) ones adds log(alpha), cancelling its share of the prior's D/2 log(alpha), so
    # the prior counts the k kept directions only. A dead (all-zero) feature column then leaves
    # the evidence unchanged, as it does in the authors' code. N <= D: their code counts D in the
    # prior and the N eigenvalues of F F^T in log|A|, and so does this.
    prior_dims = len(sigma) if n > d else d
    ev = (prior_dims / 2.0 * np.log(alpha) + n / 2.0 * np.log(beta)
          - 0.5 * np.log(alpha[None, :] + beta[None, :] * sigma).sum(axis=0)
          - beta / 2.0 * res2 - alpha / 2.0 * m2 - n / 2.0 * np.log(2 * np.pi))
    return ev / n, alpha, beta
