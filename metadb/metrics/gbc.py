"""GBC (Pandy et al., CVPR 2022): Gaussian Bhattacharyya coefficient between target classes.

Each target class is modelled as a Gaussian with diagonal (or spherical) covariance in the
feature space; the score is minus the sum, over ordered pairs of distinct classes, of their
Bhattacharyya coefficient exp(-D_B). Classes that overlap less in the model's representation
score higher; the maximum is 0 (fully separated) and the minimum -C(C-1) (identical classes).

Parameters, as the authors' code (google-research stable_transfer, `gbc.py` and its config):
- `n_dims=64`: features are first reduced by an exact (full-SVD) PCA to 64 dimensions, as their
  transferability experiments configure `gbc.pca_reduction = 64`; None keeps the features. PCA
  is skipped when the features already have at most `n_dims` dimensions.
- `gaussian_type="diagonal"`: per-dimension class variances; "spherical" averages them into
  one variance per class (the default of the authors' source-selection config; its log-variance
  term is counted once rather than D times, exactly as their code computes it).
- Class variances are floored at 1e-4 (constant features), as the authors do.
"""

from __future__ import annotations

import numpy as np
from sklearn.decomposition import PCA

from metadb.errors import MetadbError
from metadb.metrics import check_labels, check_matrix, class_means, register_metric

VARIANCE_FLOOR = 1e-4


def bhattacharyya_distance(m1, v1, m2, v2) -> np.ndarray:
    """D_B between N(m1, diag v1) and N(m2, diag v2); broadcasts over leading axes."""
    v = (v1 + v2) / 2
    return (((m1 - m2) ** 2 / v).sum(axis=-1) / 8
            + 0.5 * (np.log(v).sum(axis=-1) - 0.5 * np.log(v1).sum(axis=-1) - 0.5 * np.log(v2).sum(axis=-1)))


def bhattacharyya_coefficient(m1, v1, m2, v2) -> float:
    """exp(-D_B) between N(m1, diag v1) and N(m2, diag v2), in [0, 1]."""
    return float(np.exp(-bhattacharyya_distance(np.asarray(m1, float), np.asarray(v1, float),
                                                np.asarray(m2, float), np.asarray(v2, float))))


@register_metric("gbc", version="2", needs="features")
def gbc(features, labels, n_dims: int | None = 64, gaussian_type: str = "diagonal") -> float:
    """GBC: minus the summed Bhattacharyya coefficients of all ordered class pairs (at most 0), after PCA to n_dims."""
    if gaussian_type not in ("diagonal", "spherical"):
        raise MetadbError(f"gaussian_type: {gaussian_type!r}; expected 'diagonal' or 'spherical'")
    f = check_matrix(features, "features")
    y = check_labels(labels, len(f))
    if n_dims is not None and f.shape[1] > n_dims:
        f = PCA(n_components=min(n_dims, len(f)), svd_solver="full").fit_transform(f)
    means = class_means(f, y)
    var = np.maximum(class_means((f - means[y]) ** 2, y), VARIANCE_FLOOR)
    if gaussian_type == "spherical":
        # one variance per class; as in the authors' code its log enters the distance once, not D times
        var = var.mean(axis=1, keepdims=True)
    bc = np.exp(-bhattacharyya_distance(means[:, None], var[:, None], means[None], var[None]))
    return float(-(bc.sum() - np.trace(bc)))
