"""NCE (Tran et al., ICCV 2019): negative conditional entropy of target labels given source labels."""

from __future__ import annotations

import numpy as np
from scipy.stats import entropy

from metadb.errors import MetadbError
from metadb.metrics import check_labels, register_metric


@register_metric("nce", version="1", needs="pseudo_labels")
def nce(source_pseudo_labels, labels) -> float:
    """-H(Y | Z) from the empirical joint of source pseudo-labels Z and target labels Y."""
    z = np.asarray(source_pseudo_labels)
    if z.ndim != 1 or not np.issubdtype(z.dtype, np.integer):
        raise MetadbError(f"source_pseudo_labels: shape {z.shape}, dtype {z.dtype}; expected (N,) integers (argmax of the source head)")
    y = check_labels(labels, len(z))
    joint = np.zeros((z.max() + 1, y.max() + 1))
    np.add.at(joint, (z, y), 1.0 / len(z))
    p_z = joint.sum(axis=1)
    seen = p_z > 0
    h = entropy((joint[seen] / p_z[seen, None]).T)  # H(Y | Z = z), natural log
    return float(-(p_z[seen] * h).sum())
