"""H-score (Bao et al., ICIP 2019) and its shrinkage version (Ibrahim et al., ICLR 2022)."""

from __future__ import annotations

import numpy as np
from sklearn.covariance import LedoitWolf

from metadb.metrics import check_labels, check_matrix, register_metric


def _class_mean_covariance(f: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Covariance of E[f | y] over samples: every row replaced by its class mean."""
    g = np.zeros_like(f)
    for c in np.unique(y):
        g[y == c] = f[y == c].mean(axis=0)
    return np.cov(g, rowvar=False, bias=True)


@register_metric("hscore", version="1", needs="features")
def hscore(features, labels) -> float:
    """tr(pinv(cov f) cov(E[f|y])): how much of the feature variance the labels explain."""
    f = check_matrix(features, "features")
    y = check_labels(labels, len(f))
    f = f - f.mean(axis=0)
    return float(np.trace(np.linalg.pinv(np.cov(f, rowvar=False, bias=True), rcond=1e-15) @ _class_mean_covariance(f, y)))


@register_metric("shrinkage_hscore", version="1", needs="features")
def shrinkage_hscore(features, labels) -> float:
    """H-score with Ledoit-Wolf shrinkage: tr(((1-a)S + a mu I)^-1 (1-a) S_between), stable when N ~ D."""
    f = check_matrix(features, "features")
    y = check_labels(labels, len(f))
    f = f - f.mean(axis=0)
    lw = LedoitWolf(assume_centered=False).fit(f)
    between = (1 - lw.shrinkage_) * _class_mean_covariance(f, y)
    return float(np.trace(np.linalg.solve(lw.covariance_, between)))
