"""LP, the feature-quality half of Juodelyte et al. 2024's LP x FU metric.

Features are projected by Neighbourhood Components Analysis (sklearn, seeded) to 50 dimensions,
and LP is the mean 5-nearest-neighbour probability of each image's own class in that space, each
image counting among its own neighbours: how cleanly a simple learner separates the target's
classes in the model's representation. As their code (DovileDo/transferability-in-medical-imaging
`src/metrics.py` `LP_Score`: NCA random_state 42, `KNeighborsClassifier(n_neighbors=5)` fitted
and queried on the same embeddings). The FU half needs the model itself: see `metadb.metrics.fu`;
the product of the two, min-max normalised over a target's candidates, is the
`score_combination` analysis.
"""

from __future__ import annotations

import numpy as np
from sklearn.neighbors import KNeighborsClassifier, NeighborhoodComponentsAnalysis

from metadb.errors import MetadbError
from metadb.metrics import check_labels, check_matrix, register_metric


@register_metric("lp", version="1", needs="features")
def lp(features, labels, n_components: int = 50, k: int = 5, seed: int = 42) -> float:
    """LP: mean k-NN true-class probability after NCA to n_components (capped at D), as Juodelyte et al. 2024."""
    f = check_matrix(features, "features")
    y = check_labels(labels, len(f))
    if len(f) < k:
        raise MetadbError(f"features: shape {f.shape}; lp needs at least k = {k} images")
    nca = NeighborhoodComponentsAnalysis(n_components=min(n_components, f.shape[1]), random_state=seed).fit(f, y)
    z = nca.transform(f)
    prob = KNeighborsClassifier(n_neighbors=k).fit(z, y).predict_proba(z)
    return float(prob[np.arange(len(y)), y].mean())
