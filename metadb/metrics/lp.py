"""LP, the feature-quality half of Juodelyte et al. 2024's LP x FU metric.

Features are projected by Neighbourhood Components Analysis to 50 dimensions (seeded), and LP is
the mean 5-nearest-neighbour probability of each image's own class in that space: how cleanly a
simple learner separates the target's classes in the model's representation. (FU, the
gradient-norm ratio under a triplet loss, needs the model itself and is not implemented yet.)
"""

from __future__ import annotations

import numpy as np
from sklearn.neighbors import KNeighborsClassifier, NeighborhoodComponentsAnalysis

from metadb.metrics import check_labels, check_matrix, register_metric


@register_metric("lp", version="1", needs="features")
def lp(features, labels, n_components: int = 50, k: int = 5, seed: int = 42) -> float:
    """Mean k-NN true-class probability after NCA to n_components (capped at D), as Juodelyte et al."""
    f = check_matrix(features, "features")
    y = check_labels(labels, len(f))
    nca = NeighborhoodComponentsAnalysis(n_components=min(n_components, f.shape[1]), random_state=seed).fit(f, y)
    z = nca.transform(f)
    prob = KNeighborsClassifier(n_neighbors=k).fit(z, y).predict_proba(z)
    return float(prob[np.arange(len(y)), y].mean())
