"""H-score (Bao et al., ICIP 2019) and its shrinkage form (Ibrahim et al., ICLR 2022).

H-score = tr(cov(f)^-1 cov(E[f | y])): the share of the feature covariance that the class means
explain, i.e. how discriminative the features are for the target labels under a Gaussian model.
It is at most C - 1 and unchanged by any invertible linear map of the features.

With N close to D the sample covariance is badly conditioned and the pseudo-inverse blows the
score up; Ibrahim et al. replace cov(f) by the Ledoit-Wolf shrinkage estimate
(1 - a) S + a mu I and scale the between-class covariance by the same (1 - a).
"""

from __future__ import annotations

import numpy as np
from scipy import linalg
from sklearn.covariance import ledoit_wolf

from metadb.metrics import check_labels, check_matrix, class_means, register_metric

RCOND = 1e-15  # the pseudo-inverse cut-off of the authors' getHscore (README of their repository)


def class_mean_matrix(f: np.ndarray, y: np.ndarray) -> np.ndarray:
    """E[f | y] per row: (C x D) class means, one row per image (N x D)."""
    return class_means(f, y)[y]


def _cov(x: np.ndarray, ddof: int) -> np.ndarray:
    xc = x - x.mean(axis=0)
    return xc.T @ xc / (len(x) - ddof)


def _between_quadratic(means: np.ndarray, counts: np.ndarray, basis: np.ndarray) -> np.ndarray:
    """sum_c n_c (m_c . v_k)^2 for each column v_k of `basis`: v_k^T cov(E[f|y]) v_k times N - 1."""
    return counts @ (means @ basis) ** 2


@register_metric("hscore", version="1", needs="features", bound=lambda c: c - 1.0)
def hscore(features, labels) -> float:
    """H-score tr(pinv(cov f) cov(E[f|y])): how much of the feature variance the labels explain (at most C - 1).

    The between-class covariance has rank C - 1, so the trace is a sum over the covariance's
    eigenpairs of (between-class variance along v_k) / lambda_k, with pinv's cut-off (eigenvalues
    at most 1e-15 of the largest dropped). When N <= D the eigenpairs come from the thin SVD of
    the centred features (N x D) instead of the D x D covariance: the same pairs, with the
    covariance's numerically-zero eigenvalues (whose terms are zero) never formed.
    """
    f = check_matrix(features, "features")
    y = check_labels(labels, len(f))
    f = f - f.mean(axis=0)
    n, d = f.shape
    counts = np.bincount(y).astype(np.float64)
    # the authors use 1/(N-1) in both covariances; it cancels in the trace
    if n <= d:
        u, s, _ = np.linalg.svd(f, full_matrices=False)
        keep = s**2 > RCOND * s[0] ** 2  # pinv's cut-off on the covariance's eigenvalues s^2 / (N - 1)
        # m_c . v_k = s_k * (class mean of u_k), so each term is n_c (class mean of u_k)^2
        return float(counts @ (class_means(u[:, keep], y) ** 2).sum(axis=1))
    w, v = np.linalg.eigh(f.T @ f / (n - 1))
    keep = np.abs(w) > RCOND * np.abs(w).max()
    return float(_between_quadratic(class_means(f, y), counts, v[:, keep]) @ (1 / w[keep]) / (n - 1))


@register_metric("shrinkage_hscore", version="2", needs="features")
def shrinkage_hscore(features, labels) -> float:
    """Shrinkage H-score tr(cov_LW(f)^-1 (1 - a) cov(E[f|y])), stable when N ~ D (Ibrahim et al. 2022).

    As the reference implementation (thuml/Transfer-Learning-Library, `regularized_h_score`):
    the Ledoit-Wolf estimate (sklearn, 1/N) of the centred features, with the between-class
    covariance taken with 1/(N - 1). The trace is sum_c n_c m_c^T cov_LW^-1 m_c (1 - a) / (N - 1):
    one Cholesky factor and C triangular solves, not a D x D solve.
    """
    f = check_matrix(features, "features")
    y = check_labels(labels, len(f))
    f = f - f.mean(axis=0)
    # sklearn's ledoit_wolf, as LedoitWolf().fit computes it, without the precision matrix (a
    # D x D pseudo-inverse) that fit also forms
    covariance, shrinkage = ledoit_wolf(f, assume_centered=False)
    means, counts = class_means(f, y), np.bincount(y).astype(np.float64)
    scale = (1 - shrinkage) / (len(f) - 1)
    try:  # the shrunk covariance is positive definite whenever the shrinkage is positive
        low = np.linalg.cholesky(covariance)
        z = linalg.solve_triangular(low, means.T, lower=True, check_finite=False)
        return float(scale * counts @ (z**2).sum(axis=0))
    except np.linalg.LinAlgError:
        between = scale * (means.T * counts) @ means
        try:
            return float(np.trace(np.linalg.solve(covariance, between)))
        except np.linalg.LinAlgError:
            return float(np.trace(np.linalg.pinv(covariance, rcond=RCOND) @ between))
