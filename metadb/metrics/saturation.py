"""When a transferability score says nothing about the features: saturation.

With N target images and features whose centred rank is N - 1 (generic features as soon as
N <= D: Juodelyte et al.'s 100 images per class through ResNet-18's 512 features), a linear model
fits ANY labelling of those images exactly. A metric that fits one in-sample then reaches its
bound whatever the features are: H-score = C - 1, SFDA = 1.0 (their published tables show SFDA
1.0 for every source on breast-, pneumonia- and octmnist). The same bound is reached when the
classes happen to be linearly separable in-sample (SFDA 0.9999999 at N = 150, D = 64).

LogME degenerates there too, without a fixed bound: at N <= D the features explain any target
exactly (zero residual), its evidence per image grows to about 24 on real 1280-d features
against about 1 at N > D, and it no longer tells true labels from shuffled ones (23.81 against
24.20 for handwritten 3s and 8s, 100 each, efficientnet-lite0 features).

Metrics declare this (`register_metric(..., saturates=True, bound=...)`); `saturation` says, in
one line, why a value carries no ranking information, and `reduce` applies the remedy metadb
offers for every such metric: PCA to at most `PCA_DIMS` dimensions (as GBC's and NCTI's authors
reduce before fitting) and at most N / 4, so the fit can no longer interpolate. For H-score the
published remedy is the shrinkage H-score (Ibrahim et al. 2022), metric `shrinkage_hscore`.
GBC, PARC, N-LEEP and NCTI reduce by PCA themselves (to 64, 32, 80% of the variance and 64
dimensions) and, checked on the same real features (tests/test_metrics.py), still score true
labels above shuffled ones at N <= D, so they are not flagged.
"""

from __future__ import annotations

from typing import Callable

import numpy as np
from sklearn.decomposition import PCA

PCA_DIMS = 64  # GBC (Pandy et al.) and NCTI (Wang et al.) reduce to 64 dimensions before fitting
AT_BOUND = 1e-6  # relative distance to the bound below which a value is the bound


def interpolation_rank(f: np.ndarray) -> int | None:
    """The centred features' numerical rank when it is N - 1 (any labelling is fitted exactly), else None."""
    n, d = f.shape
    if n - 1 > d:  # rank <= D < N - 1: no SVD needed
        return None
    rank = int(np.linalg.matrix_rank(f - f.mean(axis=0)))
    return rank if rank >= n - 1 else None


def saturation(name: str, fn: Callable, f: np.ndarray, n_classes: int, value: float) -> str | None:
    """Why `value` of metric `name` carries no ranking information on features f, or None when it does."""
    if not getattr(fn, "saturates", False):
        return None
    bound = fn.bound
    n, d = f.shape
    rank = interpolation_rank(f)
    if rank is not None:
        what = "is its bound for any features" if bound is not None else "does not depend on the labels"
        return (f"{name} = {value:.6g} {what}: N = {n} images, features of rank {rank} "
                f"(D = {d}) fit any labelling of them")
    if bound is None:
        return None
    top = bound(n_classes)
    if abs(value - top) <= AT_BOUND * max(1.0, abs(top)):
        return f"{name} = {value:.6g} is its bound {top:g}: the {n_classes} classes are linearly separable in-sample"
    return None


def pca_dims(n: int, n_classes: int) -> int:
    """Dimensions the PCA remedy keeps: at most PCA_DIMS, and at most N / 4.

    An in-sample fit in k dimensions scores shuffled labels at about k / (N - 1) of its bound
    (H-score: (C - 1) k / (N - 1)), so k = N / 4 keeps that chance level near a quarter.
    """
    return max(1, min(PCA_DIMS, n // 4, n - n_classes - 1))


def reduce(f: np.ndarray, n_classes: int) -> np.ndarray:
    """The features reduced by exact PCA to `pca_dims(N, C)` dimensions (unchanged when already fewer)."""
    k = pca_dims(len(f), n_classes)
    if f.shape[1] <= k:
        return f
    return PCA(n_components=k, svd_solver="full").fit_transform(f)
