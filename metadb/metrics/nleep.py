"""N-LEEP (Li et al., CVPR 2021): LEEP with a Gaussian mixture on the target features as the source head.

Features are reduced by PCA keeping 80% of the variance; a GMM with `component_ratio` components
per class (seeded) gives each image a posterior over components, which stands in for the source
classifier's softmax in LEEP. `juodelyte=True` scores the mean expected probability without the
log, as Juodelyte et al. 2024's code (and the SFDA repository) do.
"""

from __future__ import annotations

import numpy as np
from sklearn.decomposition import PCA
from sklearn.mixture import GaussianMixture

from metadb.metrics import check_labels, check_matrix, register_metric


@register_metric("nleep", version="1", needs="features")
def nleep(features, labels, component_ratio: int = 5, seed: int = 0, juodelyte: bool = False) -> float:
    """LEEP on the posteriors of a seeded GMM (component_ratio x classes) fitted to PCA(80%) features."""
    f = check_matrix(features, "features")
    y = check_labels(labels, len(f))
    z = PCA(n_components=0.8, random_state=42).fit_transform(f)
    k = component_ratio * (y.max() + 1)
    post = GaussianMixture(n_components=k, random_state=seed).fit(z).predict_proba(z)
    joint = np.zeros((y.max() + 1, k))
    np.add.at(joint, y, post / len(y))
    mass = joint.sum(axis=0, keepdims=True)
    cond = np.divide(joint, mass, out=np.zeros_like(joint), where=mass > 0)
    expected = np.einsum("nk,nk->n", post, cond[y])
    return float(expected.mean() if juodelyte else np.log(expected).mean())
