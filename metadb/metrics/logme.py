"""LogME (You et al., ICML 2021; fixed-point form of You et al., JMLR 2022).

The log marginal evidence of a Bayesian linear model from features to each one-hot class
indicator, maximised over its prior and noise precisions, averaged over classes and divided by N.
One SVD of the features serves every class, and the fixed-point updates run on the spectrum for
all classes at once (each class stops when its own precision ratio has converged).
"""

from __future__ import annotations

import numpy as np

from metadb.errors import MetadbError
from metadb.metrics import check_labels, check_matrix, register_metric

MAX_STEPS = 11  # the reference stops after at most 11 fixed-point steps
TOLERANCE = 1e-3


@register_metric("logme", version="1", needs="features")
def logme(features, labels) -> float:
    """LogME of features (N x D) for class labels (N,), or a multi-label 0/1 matrix (N x C)."""
    f = check_matrix(features, "features")
    n, d = f.shape
    lab = np.asarray(labels)
    if lab.ndim == 2:  # multi-label: one binary target per label
        if lab.shape[0] != n:
            raise MetadbError(f"labels: shape {lab.shape}; expected ({n}, C)")
        y = lab.astype(np.float64)
    else:
        c = check_labels(lab, n)
        y = (c[:, None] == np.arange(c.max() + 1)[None, :]).astype(np.float64)
    return float(np.mean(_evidence(f, y)))


def _projections(f: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(U^T y)^2 (k x C) and the squared singular values (k,) of f, without forming U.

    With N > D, U^T y = V^T (f^T y) / s from the D x D Gram matrix: one N x D x D product and a
    D x D eigendecomposition, instead of also the N x D x k product that U itself would cost.
    """
    n, d = f.shape
    if n > d:
        w, v = np.linalg.eigh(f.T @ f)
        keep = w > (1e-10) ** 2
        w, v = w[keep], v[:, keep]
        return (v.T @ (f.T @ y)) ** 2 / w[:, None], w
    u, s, _ = np.linalg.svd(f, full_matrices=False)
    return (u.T @ y) ** 2, s**2


def _evidence(f: np.ndarray, y: np.ndarray) -> np.ndarray:
    n, d = f.shape
    x2, sigma = _projections(f, y)  # k x C
    res_x2 = (y**2).sum(axis=0) - x2.sum(axis=0)
    c = y.shape[1]
    alpha, beta = np.ones(c), np.ones(c)
    active = np.ones(c, dtype=bool)
    m2 = res2 = np.zeros(c)
    for _ in range(MAX_STEPS):
        t = alpha / beta
        gamma = (sigma[:, None] / (sigma[:, None] + t)).sum(axis=0)
        m2_new = (sigma[:, None] * x2 / (t + sigma[:, None]) ** 2).sum(axis=0)
        res2_new = (x2 / (1 + sigma[:, None] / t) ** 2).sum(axis=0) + res_x2
        alpha_new = gamma / (m2_new + 1e-5)
        beta_new = (n - gamma) / (res2_new + 1e-5)
        m2 = np.where(active, m2_new, m2)
        res2 = np.where(active, res2_new, res2)
        alpha = np.where(active, alpha_new, alpha)
        beta = np.where(active, beta_new, beta)
        active &= np.abs(alpha_new / beta_new - t) / t > TOLERANCE
        if not active.any():
            break
    evidence = (d / 2.0 * np.log(alpha) + n / 2.0 * np.log(beta)
                - 0.5 * np.log(alpha[None, :] + beta[None, :] * sigma[:, None]).sum(axis=0)
                - beta / 2.0 * res2 - alpha / 2.0 * m2 - n / 2.0 * np.log(2 * np.pi))
    return evidence / n
