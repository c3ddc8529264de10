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
from sklearn.covariance import LedoitWolf

from metadb.metrics import check_labels, check_matrix, class_means, register_metric

RCOND = 1e-15  # the pseudo-inverse cut-off of the authors' getHscore (README of their repository)
ROUNDING = 1e-6  # eigenvalues below this share of the largest carry no signal float32 features resolve


def class_mean_matrix(f: np.ndarray, y: np.ndarray) -> np.ndarray:
    """E[f | y] per row: (C x D) class means, one row per image (N x D)."""
    return class_means(f, y)[y]


def _cov(x: np.ndarray, ddof: int) -> np.ndarray:
    xc = x - x.mean(axis=0)
    return xc.T @ xc / (len(x) - ddof)


def inverts_rounding(features) -> str | None:
    """Why H-score's pseudo-inverse would follow rounding on these features, or None.

    Low-rank features (rank below min(N - 1, D) once exactly constant columns are set aside) have
    directions that carry no signal but are not exactly zero: float32 rounding puts their variance
    near the authors' cut-off (1e-15 of the largest eigenvalue), and whether pinv keeps and inverts
    them is decided by rounding. Rank-20 features of 150 images score 1.27, and 3.01 after a
    1e-7 relative nudge. Eigenvalues come from the smaller of the N x N and D x D Gram matrices.
    """
    f = check_matrix(features, "features")
    f = f - f.mean(axis=0)
    f = f[:, np.any(f != 0, axis=0)]  # dead or constant columns are exactly zero: pinv drops them exactly
    full = min(len(f) - 1, f.shape[1])
    if full < 1:
        return None
    eig = np.linalg.eigvalsh(f @ f.T if len(f) < f.shape[1] else f.T @ f)
    rank = int((eig >= ROUNDING * eig[-1]).sum())
    if rank >= full:
        return None
    return (f"the features have {full - rank} direction(s) with variance below 1e-6 of the largest (rank {rank} "
            f"of {full}), which the authors' pseudo-inverse keeps or drops by rounding: the value follows it "
            f"(shrinkage_hscore does not)")


@register_metric("hscore", version="1", needs="features", bound=lambda c: c - 1.0, unstable=inverts_rounding)
def hscore(features, labels) -> float:
    """H-score tr(pinv(cov f) cov(E[f|y])): how much of the feature variance the labels explain (at most C - 1)."""
    f = check_matrix(features, "features")
    y = check_labels(labels, len(f))
    f = f - f.mean(axis=0)
    # the authors use 1/(N-1) in both covariances; it cancels in the trace
    return float(np.trace(np.linalg.pinv(_cov(f, 1), rcond=RCOND) @ _cov(class_mean_matrix(f, y), 1)))


@register_metric("shrinkage_hscore", version="2", needs="features")
def shrinkage_hscore(features, labels) -> float:
    """Shrinkage H-score tr(cov_LW(f)^-1 (1 - a) cov(E[f|y])), stable when N ~ D (Ibrahim et al. 2022).

    As the reference implementation (thuml/Transfer-Learning-Library, `regularized_h_score`):
    the Ledoit-Wolf estimate (sklearn, 1/N) of the centred features, with the between-class
    covariance taken with 1/(N - 1).
    """
    f = check_matrix(features, "features")
    y = check_labels(labels, len(f))
    f = f - f.mean(axis=0)
    lw = LedoitWolf(assume_centered=False).fit(f)
    between = (1 - lw.shrinkage_) * _cov(class_mean_matrix(f, y), 1)
    try:  # the shrunk covariance is positive definite whenever the shrinkage is positive
        return float(np.trace(np.linalg.solve(lw.covariance_, between)))
    except np.linalg.LinAlgError:
        return float(np.trace(np.linalg.pinv(lw.covariance_, rcond=RCOND) @ between))
