"""GBC (Pandy et al., CVPR 2022): Gaussian Bhattacharyya coefficient between target classes.

Each class is a diagonal Gaussian in a PCA-reduced feature space; the score is minus the sum of
the pairwise Bhattacharyya coefficients, so classes that overlap less score higher (at most 0).
"""

from __future__ import annotations

import numpy as np
from sklearn.decomposition import PCA

from metadb.metrics import check_labels, check_matrix, register_metric


def bhattacharyya_coefficient(m1, v1, m2, v2) -> float:
    """exp(-D_B) between N(m1, diag v1) and N(m2, diag v2)."""
    v = (v1 + v2) / 2
    db = 0.125 * ((m1 - m2) ** 2 / v).sum() + 0.5 * (np.log(v).sum() - 0.5 * (np.log(v1).sum() + np.log(v2).sum()))
    return float(np.exp(-db))


@register_metric("gbc", version="1", needs="features")
def gbc(features, labels, n_dims: int | None = 64) -> float:
    """-sum over ordered class pairs of their Bhattacharyya coefficient (diagonal Gaussians, PCA to n_dims)."""
    f = check_matrix(features, "features")
    y = check_labels(labels, len(f))
    if n_dims is not None and f.shape[1] > n_dims:
        f = PCA(n_components=min(n_dims, len(f)), random_state=0).fit_transform(f)
    stats = [(f[y == c].mean(axis=0), f[y == c].var(axis=0) + 1e-8) for c in range(y.max() + 1)]
    return -sum(bhattacharyya_coefficient(*stats[i], *stats[j])
                for i in range(len(stats)) for j in range(len(stats)) if i != j)
