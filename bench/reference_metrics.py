"""The published algebra of the three metrics metadb computes differently, for bench_score's baseline.

A user of the reference repositories runs their code: H-score as Bao et al.'s README
`getHscore` (a D x D pseudo-inverse), shrinkage H-score as tllib's `regularized_h_score`
(sklearn's LedoitWolf().fit, then a pseudo-inverse), SFDA as TencentARC/SFDA's `SFDA_Score`
(a D x D generalised eigendecomposition per pass). These are those computations, as metadb had
them before issue 11 (checked against the authors' code in tests/test_metrics.py, rel 1e-10);
every other metric's code is the same in metadb and in the baseline.
"""

from __future__ import annotations

import numpy as np
from scipy import linalg
from sklearn.covariance import LedoitWolf


def _cov(x: np.ndarray) -> np.ndarray:
    xc = x - x.mean(axis=0)
    return xc.T @ xc / (len(x) - 1)


def _class_mean_rows(f: np.ndarray, y: np.ndarray) -> np.ndarray:
    g = np.zeros_like(f)
    for c in np.unique(y):
        g[y == c] = f[y == c].mean(axis=0)
    return g


def hscore(f: np.ndarray, y: np.ndarray) -> float:
    """Bao et al. README getHscore."""
    return float(np.trace(np.linalg.pinv(_cov(f), rcond=1e-15) @ _cov(_class_mean_rows(f, y))))


def shrinkage_hscore(f: np.ndarray, y: np.ndarray) -> float:
    """tllib regularized_h_score."""
    f = f - f.mean(axis=0)
    lw = LedoitWolf(assume_centered=False).fit(f)
    between = (1 - lw.shrinkage_) * _cov(_class_mean_rows(f, y))
    return float(np.trace(np.linalg.pinv(lw.covariance_, rcond=1e-15) @ between))


def _shrink(cov: np.ndarray, shrinkage: float) -> np.ndarray:
    d = cov.shape[0]
    return (1.0 - shrinkage) * cov + shrinkage * np.trace(cov) / d * np.eye(d)


def _largest_eigenvalue(a: np.ndarray) -> float:
    x = a.sum(axis=1)
    for _ in range(3):
        t = a @ x
        y = t / np.linalg.norm(t)
        t = a @ y
        x = t / np.linalg.norm(t)
    return float(x @ a @ y)


def _softmax(z: np.ndarray) -> np.ndarray:
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def _sfda_pass(x: np.ndarray, y: np.ndarray, shrinkage: float | None):
    classes = np.unique(y)
    priors = np.bincount(y) / len(y)
    means = np.array([x[y == c].mean(axis=0) for c in classes])
    within = sum(p * np.atleast_2d(np.cov(x[y == c].T, bias=True)) for c, p in zip(classes, priors))
    if shrinkage is None:
        shrinkage = max(np.exp(-5 * _largest_eigenvalue(within)), 1e-10)
    within_s = _shrink(within, shrinkage)
    between = _shrink(np.cov(x.T, bias=True), shrinkage) - within_s
    vals, vecs = linalg.eigh(between, within_s)
    vecs = vecs[:, np.argsort(vals)[::-1]]
    coef = means @ vecs @ vecs.T
    intercept = -0.5 * np.diag(means @ coef.T) + np.log(priors)
    return _softmax(x @ coef.T + intercept), shrinkage, means


def sfda(x: np.ndarray, y: np.ndarray) -> float:
    """TencentARC/SFDA SFDA_Score."""
    prob, shrinkage, means = _sfda_pass(x, y, None)
    prob = _softmax(prob)
    others = (means.sum(axis=0) - means) / (len(means) - 1)
    p = prob[np.arange(len(y)), y][:, None]
    prob, _, _ = _sfda_pass(p * x + (1 - p) * others[y], y, shrinkage)
    return float(prob[np.arange(len(y)), y].mean())


REFERENCE = {"hscore": hscore, "shrinkage_hscore": shrinkage_hscore, "sfda": sfda}
