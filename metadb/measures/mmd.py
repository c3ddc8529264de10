"""`mmd`: maximum mean discrepancy between per-image embeddings, RBF kernel, median heuristic."""

from __future__ import annotations

import numpy as np
from scipy.spatial.distance import cdist

from metadb.embeddings import per_image
from metadb.measures import Measure, register_measure


def mmd2(x: np.ndarray, y: np.ndarray, bandwidth: float) -> float:
    """Biased (V-statistic) MMD^2: never negative, exactly 0 for identical samples."""
    g = 1.0 / (2 * bandwidth**2)
    kxx = np.exp(-g * cdist(x, x, "sqeuclidean")).mean()
    kyy = np.exp(-g * cdist(y, y, "sqeuclidean")).mean()
    kxy = np.exp(-g * cdist(x, y, "sqeuclidean")).mean()
    return float(max(kxx + kyy - 2 * kxy, 0.0))


def median_bandwidth(x: np.ndarray, y: np.ndarray) -> float:
    """Median pairwise distance of the pooled sample (Gretton et al. 2012's heuristic)."""
    z = np.vstack([x, y])
    d = cdist(z, z)
    med = float(np.median(d[np.triu_indices(len(z), 1)]))
    return med if med > 0 else 1.0


@register_measure
class Mmd(Measure):
    """RBF-kernel MMD^2 on a seeded subsample (default 500 per dataset) of per-image embeddings."""

    name = "mmd"
    version = "1"

    def pairwise(self, con, pairs, backbone):
        size, seed = self._params.get("sample", 500), self._params.get("seed", 0)
        cache: dict[str, np.ndarray] = {}

        def sample(d: str) -> np.ndarray:
            if d not in cache:
                x, _ = per_image(con, d, backbone)
                rng = np.random.default_rng(seed)
                idx = np.sort(rng.choice(len(x), size=min(size, len(x)), replace=False))
                cache[d] = x[idx].astype(np.float64)
            return cache[d]

        out = {}
        for a, b in pairs:
            x, y = sample(a), sample(b)
            out[(a, b)] = 0.0 if a == b else mmd2(x, y, median_bandwidth(x, y))
        return out
