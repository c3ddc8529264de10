"""SFDA (Shao et al., ECCV 2022): self-challenging Fisher discriminant analysis.

Features are projected by a regularised Fisher discriminant (LDA) whose shrinkage is set from
the within-class scatter's largest eigenvalue; samples are then mixed towards the other classes'
mean in proportion to how unsure the first pass was (ConfMix), and a second discriminant with
the same shrinkage scores the mean probability of the true class. The self-challenge makes the
score reward features whose classes stay separable when their hard examples are pushed together,
which a plain LDA accuracy saturates on.

As the official code (TencentARC/SFDA `metrics.py`: `SFDA`, `SFDA_Score`): shrinkage
max(exp(-5 lambda_max), 1e-10) with lambda_max from three double power-iteration steps, the
generalised eigenproblem eigh(S_b, S_w) for the projection, the first pass's probabilities
softened by a second softmax before mixing, and the mean (not log) true-class probability.
"""

from __future__ import annotations

import numpy as np
from scipy import linalg

from metadb.metrics import check_labels, check_matrix, class_means, register_metric


def _shrink(cov: np.ndarray, shrinkage: float) -> np.ndarray:
    d = cov.shape[0]
    out = (1.0 - shrinkage) * cov
    out.flat[:: d + 1] += shrinkage * np.trace(cov) / d
    return out


def _largest_eigenvalue(a: np.ndarray, steps: int = 3) -> float:
    """Three double power-iteration steps from the row sums, as the official code estimates it."""
    x = a.sum(axis=1)
    for _ in range(steps):
        t = a @ x
        y = t / np.linalg.norm(t)
        t = a @ y
        x = t / np.linalg.norm(t)
    return float(x @ a @ y)


def _softmax(z: np.ndarray) -> np.ndarray:
    z = z - z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def _discriminant(x: np.ndarray, y: np.ndarray, shrinkage: float | None) -> tuple[np.ndarray, float]:
    """Class probabilities of the regularised Fisher discriminant fitted on (x, y), and its shrinkage.

    The official code takes every eigenvector of eigh(S_b, S_w) and forms coef = means V V^T.
    Generalised eigenvectors satisfy V^T S_w V = I, so V V^T = S_w^-1 whatever S_b is: coef is
    means S_w^-1, one Cholesky solve instead of a D x D generalised eigendecomposition.
    """
    priors = np.bincount(y) / len(y)
    means = class_means(x, y)
    resid = x - means[y]
    within = resid.T @ resid / len(y)  # sum_c prior_c * (biased) class covariance
    if shrinkage is None:
        shrinkage = max(np.exp(-5 * _largest_eigenvalue(within)), 1e-10)
    coef = linalg.cho_solve(linalg.cho_factor(_shrink(within, shrinkage), check_finite=False), means.T,
                            check_finite=False).T
    intercept = -0.5 * np.einsum("cd,cd->c", means, coef) + np.log(priors)
    return _softmax(x @ coef.T + intercept), shrinkage


@register_metric("sfda", version="1", needs="features", bound=lambda c: 1.0)
def sfda(features, labels) -> float:
    """SFDA: mean true-class probability of the second-pass regularised Fisher discriminant after ConfMix."""
    x = check_matrix(features, "features").copy()
    y = check_labels(labels, len(x))
    prob, shrinkage = _discriminant(x, y, None)
    prob = _softmax(prob)  # softened, as the official code does, before mixing
    means = class_means(x, y)
    others = (means.sum(axis=0) - means) / (len(means) - 1)  # mean of the other classes' means
    p = prob[np.arange(len(y)), y][:, None]
    x = p * x + (1 - p) * others[y]
    prob, _ = _discriminant(x, y, shrinkage)
    return float(prob[np.arange(len(y)), y].mean())
