"""`probe-fisher`: cosine distance of a linear probe's empirical Fisher on the stored features.

A cheap relative of Task2Vec (Achille et al. 2019; `task2vec` is the published one): a logistic
head is fitted (seeded) on the dataset's stored per-image embeddings, and each dataset is embedded
by the empirical Fisher with respect to the backbone's output features, E[(W^T (onehot(y) -
p(y|x)))^2] with the true labels y, one value per feature, L2-normalised. Datasets are compared by
plain cosine distance. No network weights, no sampled labels and no images are involved, so every
dataset seen through one backbone is embedded in the same D-dimensional space without another
forward pass. It is what metadb 0.1 called `task2vec`.
"""

from __future__ import annotations

import numpy as np
from scipy.spatial.distance import cosine
from sklearn.linear_model import LogisticRegression

from metadb.embeddings import per_image
from metadb.errors import MetadbError
from metadb.measures import Measure, register_measure


def fisher_embedding(x: np.ndarray, labels: list[str], seed: int = 0, sample: int = 1000) -> np.ndarray:
    classes = sorted(set(labels))
    if len(classes) < 2:
        raise MetadbError("probe-fisher needs a dataset with at least 2 classes")
    rng = np.random.default_rng(seed)
    idx = np.sort(rng.choice(len(x), size=min(sample, len(x)), replace=False))
    x = x[idx].astype(np.float64)
    y = np.array([classes.index(labels[i]) for i in idx])
    scale = x.std(axis=0).mean() or 1.0
    head = LogisticRegression(max_iter=2000, C=1.0).fit(x / scale, y)
    p = head.predict_proba(x / scale)
    w = head.coef_ if len(classes) > 2 else np.vstack([-head.coef_, head.coef_]) / 2
    onehot = np.eye(len(classes))[np.searchsorted(head.classes_, y)]
    grad = (onehot - p) @ w  # d log p(y|x) / d features, per sample
    f = (grad**2).mean(axis=0)
    return f / (np.linalg.norm(f) or 1.0)


@register_measure
class ProbeFisher(Measure):
    """Cosine distance of a logistic probe's empirical feature Fisher on stored embeddings (cheap Task2Vec relative)."""

    name = "probe-fisher"
    version = "1"

    def pairwise(self, con, pairs, backbone):
        seed = self._params.get("seed", 0)
        emb: dict[str, np.ndarray] = {}
        for d in sorted({d for p in pairs for d in p}):
            x, labels = per_image(con, d, backbone)
            emb[d] = fisher_embedding(x, labels, seed)
        return {(a, b): 0.0 if a == b else float(cosine(emb[a], emb[b])) for a, b in pairs}
