"""LEEP (Nguyen et al., ICML 2020): log expected empirical prediction of the source head.

The source classifier's softmax theta(x) over its Z source classes is composed with the empirical
conditional P(y | z) estimated on the target; LEEP is the mean log probability this "re-labelled"
source head gives each target image's true label. It scores a model by its source head alone,
without training anything, and is an upper-bound proxy for the log-likelihood a linear head on the
source predictions could reach.
"""

from __future__ import annotations

import numpy as np

from metadb.errors import MetadbError
from metadb.metrics import check_labels, check_matrix, register_metric


def check_probs(p, name: str = "source_probs") -> np.ndarray:
    """Rows of probabilities: non-negative and summing to 1 (a softmax, not logits)."""
    a = check_matrix(p, name)
    if (a < 0).any() or not np.allclose(a.sum(axis=1), 1.0, atol=1e-4):
        raise MetadbError(f"{name}: shape {a.shape} with rows that are not probabilities; "
                          "expected non-negative rows summing to 1 (pass the softmax, not logits)")
    return a


def expected_empirical_prediction(p: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Per image, sum_z P(y_i | z) theta_z(x_i): the EEP of Nguyen et al. (Eq. 2 before the log).

    P(y, z) = 1/N sum_i theta_z(x_i) 1[y_i = y]; a source class z that receives no mass has no
    P(y | z) and contributes nothing.
    """
    joint = np.zeros((y.max() + 1, p.shape[1]))
    np.add.at(joint, y, p / len(p))
    mass = joint.sum(axis=0, keepdims=True)
    cond = np.divide(joint, mass, out=np.zeros_like(joint), where=mass > 0)
    return np.einsum("nz,nz->n", p, cond[y])


@register_metric("leep", version="1", needs="source_probs")
def leep(source_probs, labels) -> float:
    """LEEP: mean log of the target label's probability under P(y|z) composed with the source softmax (N x Z)."""
    p = check_probs(source_probs)
    y = check_labels(labels, len(p))
    return float(np.mean(np.log(expected_empirical_prediction(p, y))))
