"""NCE (Tran et al., ICCV 2019): negative conditional entropy of target labels given source labels.

Each target image gets the source model's hard prediction z (the argmax of its head); NCE is
-H(Y | Z) of the empirical joint distribution of (z, y). It is 0 when the source labels determine
the target labels and -H(Y) when they say nothing about them. Natural logarithms, as the paper.
"""

from __future__ import annotations

import numpy as np

from metadb.errors import MetadbError
from metadb.metrics import check_labels, register_metric


@register_metric("nce", version="1", needs="pseudo_labels")
def nce(source_pseudo_labels, labels) -> float:
    """-H(Y | Z) from the empirical joint of source pseudo-labels Z (N,) and target labels Y (N,)."""
    z = np.asarray(source_pseudo_labels)
    if z.ndim != 1 or not np.issubdtype(z.dtype, np.integer) or len(z) < 2:
        raise MetadbError(f"source_pseudo_labels: shape {z.shape}, dtype {z.dtype}; "
                          "expected (N,) integers, the argmax of the source head, N >= 2")
    y = check_labels(labels, len(z))
    _, z = np.unique(z, return_inverse=True)
    joint = np.zeros((z.max() + 1, y.max() + 1))
    np.add.at(joint, (z, y), 1.0 / len(z))
    p_z = joint.sum(axis=1, keepdims=True)  # every z here occurs, so p_z > 0
    cond = joint / p_z
    terms = np.where(joint > 0, joint * np.log(np.where(joint > 0, cond, 1.0)), 0.0)
    return float(terms.sum())
