"""LEEP (Nguyen et al., ICML 2020): log expected empirical prediction of the source head."""

from __future__ import annotations

import numpy as np

from metadb.errors import MetadbError
from metadb.metrics import check_labels, check_matrix, register_metric


@register_metric("leep", version="1", needs="source_probs")
def leep(source_probs, labels) -> float:
    """Mean log of the target label's probability under P(y|z) composed with the source softmax."""
    p = check_matrix(source_probs, "source_probs")
    if (p < 0).any() or not np.allclose(p.sum(axis=1), 1.0, atol=1e-4):
        raise MetadbError("source_probs: rows must be probabilities (non-negative, summing to 1); pass the softmax")
    y = check_labels(labels, len(p))
    joint = np.zeros((y.max() + 1, p.shape[1]))
    np.add.at(joint, y, p / len(p))  # empirical joint P(y, z)
    mass = joint.sum(axis=0, keepdims=True)
    cond = np.divide(joint, mass, out=np.zeros_like(joint), where=mass > 0)  # P(y | z); unused z carry no mass
    expected = np.einsum("nz,nz->n", p, cond[y])
    return float(np.mean(np.log(expected)))
