"""`frechet`: FID-style Frechet distance between whole-dataset embedding Gaussians."""

from __future__ import annotations

from functools import partial

from metadb.embeddings import load_stats
from metadb.errors import MetadbError
from metadb.measures import Measure, register_measure
from metadb.measures.gaussian import PairReady, applied_shrinkage, prepare_pairs, shrinkage_choice, wasserstein2_ready
from metadb.measures.pair_pool import map_items, map_pairs


@register_measure
class Frechet(Measure):
    """||m1 - m2||^2 + tr S1 + tr S2 - 2 tr sqrt(S1^1/2 S2 S1^1/2), with OAS shrinkage when n < D (or none)."""

    name = "frechet"
    version = "1"
    shrinks = True

    def pairwise(self, con, pairs, backbone):
        shrink = shrinkage_choice(self.params()["shrinkage"])
        wanted = sorted({d for p in pairs for d in p})
        stats = {s.dataset: s for s in load_stats(con, backbone, datasets=wanted)}
        missing = [d for d in wanted if d not in stats]
        if missing:
            raise MetadbError(f"no {backbone} embeddings of {', '.join(missing)}",
                              f"run `metadb embed {missing[0]} --backbone {backbone}`")
        ready = map_items(partial(_prepare, shrink=shrink), stats)
        alpha = {d: applied_shrinkage(s.eigvals, s.n, len(s.mean), shrink) for d, s in stats.items()}
        for a, b in pairs:
            self.details_[(a, b)] = {"shrunk": alpha[a] > 0 or alpha[b] > 0, "alpha": {a: alpha[a], b: alpha[b]},
                                     "n": {a: stats[a].n, b: stats[b].n}, "dim": len(stats[a].mean)}
        distinct = [(a, b) for a, b in pairs if a != b]
        values = dict(zip(distinct, map_pairs(wasserstein2_ready, ready, distinct)))
        return {(a, b): values.get((a, b), 0.0) for a, b in pairs}


def _prepare(s, shrink: bool) -> PairReady:
    return prepare_pairs(s.mean, s.eigvals, s.eigvecs, s.n, shrink)
