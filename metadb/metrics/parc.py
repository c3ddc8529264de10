"""PARC (Bolya et al., NeurIPS 2021): pairwise annotation representation comparison.

Spearman correlation (x100) between the dissimilarity matrices of the (PCA-reduced, standardised)
features and of the one-hot labels, over the pairs of target images.
"""

from __future__ import annotations

import numpy as np
from scipy.stats import spearmanr
from sklearn.decomposition import PCA
from sklearn.preprocessing import StandardScaler

from metadb.metrics import check_labels, check_matrix, register_metric


@register_metric("parc", version="1", needs="features")
def parc(features, labels, n_dims: int = 32, max_samples: int = 15_000, seed: int = 0) -> float:
    """PARC with features reduced to `n_dims` by PCA (randomized, as the official code); N capped by a seeded subsample."""
    f = check_matrix(features, "features")
    y = check_labels(labels, len(f))
    if len(f) > max_samples:
        keep = np.sort(np.random.default_rng(seed).choice(len(f), max_samples, replace=False))
        f, y = f[keep], y[keep]
    if n_dims is not None:
        f = PCA(n_components=min(n_dims, len(f)), svd_solver="randomized", random_state=1919,
                iterated_power=1).fit_transform(f)
    f = StandardScaler().fit_transform(f)
    onehot = np.eye(y.max() + 1)[y]
    upper = np.triu_indices(len(f), 1)
    return float(spearmanr((1 - np.corrcoef(f))[upper], (1 - np.corrcoef(onehot))[upper])[0] * 100)
