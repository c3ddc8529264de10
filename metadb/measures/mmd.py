"""`mmd`: maximum mean discrepancy between per-image embeddings, RBF kernel, one bandwidth per matrix.

The bandwidth is the median pairwise distance of the pooled sample of every dataset in the matrix
(Gretton et al. 2012's heuristic), fixed before any pair is computed: with a bandwidth per pair,
MMD^2 of a pair far apart is measured with a wider kernel than a pair close together, and stops
growing with separation. The bandwidth is recorded in every pair's params.
"""

from __future__ import annotations

import numpy as np
from scipy.spatial.distance import cdist, pdist

from metadb.embeddings import per_image
from metadb.measures import Measure, register_measure

POOL_FOR_MEDIAN = 2000  # points of the pooled sample the median is taken over (seeded), ~2M distances


def mmd2(x: np.ndarray, y: np.ndarray, bandwidth: float) -> float:
    """Biased (V-statistic) MMD^2: never negative, exactly 0 for identical samples."""
    g = 1.0 / (2 * bandwidth**2)
    kxx = np.exp(-g * cdist(x, x, "sqeuclidean")).mean()
    kyy = np.exp(-g * cdist(y, y, "sqeuclidean")).mean()
    kxy = np.exp(-g * cdist(x, y, "sqeuclidean")).mean()
    return float(max(kxx + kyy - 2 * kxy, 0.0))


def median_bandwidth(samples: list[np.ndarray], seed: int = 0, cap: int = POOL_FOR_MEDIAN) -> float:
    """Median pairwise distance of the pooled samples (a seeded subset of `cap` points when larger)."""
    z = np.vstack(samples)
    if len(z) > cap:
        z = z[np.sort(np.random.default_rng(seed).choice(len(z), size=cap, replace=False))]
    med = float(np.median(pdist(z)))
    return med if med > 0 else 1.0


@register_measure
class Mmd(Measure):
    """RBF-kernel MMD^2 on a seeded subsample (default 500 per dataset), one median bandwidth per matrix."""

    name = "mmd"
    version = "2"

    def params(self):
        return {"sample": 500, "seed": 0, **self._params}

    def _sample(self, con, d: str, backbone: str) -> np.ndarray:
        cache = self.__dict__.setdefault("_samples", {})
        if d not in cache:
            x, _ = per_image(con, d, backbone)
            p = self.params()
            rng = np.random.default_rng(p["seed"])
            idx = np.sort(rng.choice(len(x), size=min(p["sample"], len(x)), replace=False))
            cache[d] = x[idx].astype(np.float64)
        return cache[d]

    def prepare(self, con, datasets, backbone):
        """The bandwidth for every pair of these datasets: median distance in their pooled sample."""
        pooled = [self._sample(con, d, backbone) for d in sorted(datasets)]
        self._bandwidth = median_bandwidth(pooled, self.params()["seed"])
        return {"bandwidth": self._bandwidth, "bandwidth_from": sorted(datasets)}

    def pairwise(self, con, pairs, backbone):
        if getattr(self, "_bandwidth", None) is None:  # called without a matrix: the datasets of these pairs
            self.prepare(con, sorted({d for p in pairs for d in p}), backbone)
        return {(a, b): 0.0 if a == b else mmd2(self._sample(con, a, backbone), self._sample(con, b, backbone),
                                                  self._bandwidth) for a, b in pairs}
