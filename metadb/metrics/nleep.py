"""N-LEEP (Li et al., CVPR 2021, "Ranking neural checkpoints"): LEEP with a Gaussian mixture as the source head.

LEEP needs a source classifier; N-LEEP works from features alone by fitting a Gaussian mixture
to the target features and using each image's posterior over the mixture components in place of
the source softmax. As the paper: features are reduced by PCA keeping 80% of the variance, and the
mixture has `component_ratio` (5) components per target class, with full covariances.

The mixture is fitted from a seeded k-means initialisation (`seed`), so scores are reproducible.
`juodelyte=True` scores the mean expected empirical prediction without the log, as the code of
Juodelyte et al. 2024 (and of TencentARC/SFDA, which it follows) does; the default keeps the
paper's log, as Google's stable_transfer implementation does.
"""

from __future__ import annotations

import numpy as np
from sklearn.decomposition import PCA
from sklearn.mixture import GaussianMixture

from metadb.errors import MetadbError
from metadb.metrics import check_labels, check_matrix, register_metric
from metadb.metrics.leep import expected_empirical_prediction


@register_metric("nleep", version="1", needs="features")
def nleep(features, labels, seed: int = 0, component_ratio: int = 5, variance: float = 0.8,
          juodelyte: bool = False) -> float:
    """N-LEEP: LEEP on the posteriors of a seeded GMM (component_ratio x classes) fitted to PCA(80% variance) features."""
    f = check_matrix(features, "features")
    y = check_labels(labels, len(f))
    k = component_ratio * (y.max() + 1)
    if k > len(f):
        raise MetadbError(f"features: shape {f.shape}; nleep fits {k} mixture components "
                          f"({component_ratio} per class) and needs at least as many images")
    z = PCA(n_components=variance, svd_solver="full").fit_transform(f)
    post = GaussianMixture(n_components=k, random_state=seed).fit(z).predict_proba(z)
    eep = expected_empirical_prediction(post, y)
    return float(eep.mean() if juodelyte else np.log(eep).mean())
