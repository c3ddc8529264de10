"""PARC (Bolya et al., NeurIPS 2021, "Scalability vs. utility"): pairwise annotation representation comparison.

The Spearman correlation (x100) between two dissimilarity matrices over pairs of target images:
1 - Pearson correlation of their (PCA-reduced, standardised) features, and 1 - Pearson correlation
of their one-hot labels. A model whose representation already puts same-class images close and
other-class images far scores high. As the official code (dbolya/parc `methods.PARC`, reused by
TencentARC/SFDA's `PARC_Score`): features are reduced to 32 dimensions by randomized PCA
(random_state 1919, one power iteration) and standardised per dimension.

Label ties: the dissimilarity of one-hot labels takes two values only (0 for a same-class pair,
1 + 1/(C-1) otherwise), but `1 - np.corrcoef(one_hot)` as the official code computes it carries
rounding noise of about 1e-16, so scipy ranks those "ties" in an arbitrary order rather than
averaging them; on small N this moves the score noticeably (8.98 against 9.41 for N=40). The
default `ties="official"` reproduces the published figures exactly; `ties="exact"` ranks true ties
(Spearman = Pearson between the ranks of the feature dissimilarities and the different-class
indicator), is deterministic in the math rather than in floating-point accidents, and needs no
N x N matrix. Above `max_samples` images a seeded subsample is scored (the official SFDA code
names a cap of 15,000 but then scores every image).
"""

from __future__ import annotations

import numpy as np
from scipy.stats import rankdata, spearmanr
from sklearn.decomposition import PCA
from sklearn.preprocessing import StandardScaler

from metadb.errors import MetadbError
from metadb.metrics import check_labels, check_matrix, register_metric


@register_metric("parc", version="1", needs="features")
def parc(features, labels, n_dims: int | None = 32, max_samples: int = 15_000, seed: int = 0,
         ties: str = "official") -> float:
    """PARC x100: Spearman correlation of feature and label dissimilarities over image pairs (features PCA'd to n_dims)."""
    if ties not in ("official", "exact"):
        raise MetadbError(f"ties: {ties!r}; expected 'official' or 'exact'")
    f = check_matrix(features, "features", min_rows=3)
    y = check_labels(labels, len(f))
    if len(f) > max_samples:
        keep = np.sort(np.random.default_rng(seed).choice(len(f), max_samples, replace=False))
        f, y = f[keep], y[keep]
    if n_dims is not None:
        f = PCA(n_components=min(n_dims, *f.shape), svd_solver="randomized", random_state=1919,
                iterated_power=1).fit_transform(f)
    f = StandardScaler().fit_transform(f)
    if ties == "official":
        upper = np.triu_indices(len(f), 1)
        feature_rdm = (1 - np.corrcoef(f))[upper]
        label_rdm = (1 - np.corrcoef(np.eye(y.max() + 1)[y]))[upper]
        return float(spearmanr(feature_rdm, label_rdm)[0] * 100)
    # 1 - corrcoef(rows): centre and normalise each row, then dissimilarity = 1 - dot product
    f = f - f.mean(axis=1, keepdims=True)
    f /= np.linalg.norm(f, axis=1, keepdims=True)
    n = len(f)
    feature_rdm = np.empty(n * (n - 1) // 2)  # the upper triangle, row by row, as np.triu_indices orders it
    different = np.empty(n * (n - 1) // 2)
    start = 0
    for i in range(n - 1):  # one row at a time, so no N x N matrix is held
        stop = start + n - 1 - i
        feature_rdm[start:stop] = 1 - f[i + 1:] @ f[i]
        different[start:stop] = y[i + 1:] != y[i]
        start = stop
    r = np.corrcoef(rankdata(feature_rdm), different)[0, 1]
    return float(r * 100)
