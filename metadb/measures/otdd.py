"""`otdd`: label-aware optimal-transport dataset distance, Gaussian approximation.

Alvarez-Melis & Fusi (2020) compare datasets as distributions over (feature, label), with the
cost between labels given by the Wasserstein distance between their class-conditional feature
distributions. With each class approximated by a Gaussian, every class pair costs the closed-form
W2^2 between the two Gaussians (mean term plus Bures term), and the dataset distance is the exact
optimal transport between the class-frequency weights under that cost (a small linear program).
"""

from __future__ import annotations

import numpy as np
from scipy.optimize import linprog

from metadb.embeddings import load_stats
from metadb.errors import MetadbError
from metadb.measures import Measure, register_measure
from metadb.measures.gaussian import factor, wasserstein2


def exact_ot(a: np.ndarray, b: np.ndarray, cost: np.ndarray) -> float:
    """min <P, C> over couplings P of a and b (transportation LP, solved exactly with HiGHS)."""
    m, n = cost.shape
    rows = np.kron(np.eye(m), np.ones(n))
    cols = np.kron(np.ones(m), np.eye(n))
    res = linprog(cost.ravel(), A_eq=np.vstack([rows, cols]), b_eq=np.concatenate([a, b]), bounds=(0, None),
                  method="highs")
    return float(res.fun)


@register_measure
class Otdd(Measure):
    """OT between class Gaussians weighted by class frequency, W2^2 (mean + Bures) as the cost."""

    name = "otdd"
    version = "1"

    def pairwise(self, con, pairs, backbone):
        wanted = sorted({d for p in pairs for d in p})
        classes: dict[str, list] = {d: [] for d in wanted}
        for s in load_stats(con, backbone, per_class=True, datasets=wanted):
            if s.label:
                classes[s.dataset].append((s.n, s.mean, *factor(s.eigvals, s.eigvecs, s.n, True)))
        empty = [d for d, c in classes.items() if not c]
        if empty:
            raise MetadbError(f"no per-class {backbone} embeddings of {', '.join(empty)}",
                              f"run `metadb embed {empty[0]} --backbone {backbone}`")
        out = {}
        for a, b in pairs:
            if a == b:
                out[(a, b)] = 0.0
                continue
            ca, cb = classes[a], classes[b]
            cost = np.array([[wasserstein2(*x[1:], *y[1:]) for y in cb] for x in ca])
            wa = np.array([x[0] for x in ca], dtype=float)
            wb = np.array([y[0] for y in cb], dtype=float)
            out[(a, b)] = exact_ot(wa / wa.sum(), wb / wb.sum(), cost)
        return out
