"""`score-combination`: the product of min-max normalised scores across a target's candidates."""

from __future__ import annotations

import numpy as np

from metadb import transfer
from metadb.errors import MetadbError
from metadb.queries import Column, Param, register_python_query


def combine(con, metrics: list[str]) -> list[tuple[str, str, float]]:
    """(source, target, product of min-max(score)) over the sources holding every score for that target.

    Normalisation is within one target's candidate sources, the target itself excluded: this is
    the LP x FU metric of Juodelyte et al. 2024 when metrics = [lp, fu].
    """
    if len(metrics) < 2:
        raise MetadbError(f"--metrics {','.join(metrics)}: name two or more scores to combine, e.g. lp,fu")
    tables = [transfer.scores(con, m) for m in metrics]
    for m, t in zip(metrics, tables):
        if not t:
            raise MetadbError(f"no scores for metric {m!r}")
    out = []
    for target in sorted({t for _, t in tables[0]}):
        sources = sorted(s for s, t in tables[0] if t == target and s != target and all((s, t) in x for x in tables))
        if not sources:
            continue
        product = minmax_product([np.array([table[(s, target)] for s in sources]) for table in tables])
        out += [(s, target, float(p)) for s, p in zip(sources, product)]
    return out


def minmax_product(columns: list[np.ndarray]) -> np.ndarray:
    """Product over columns of each column min-max normalised across the candidates (a constant column counts 1)."""
    product = np.ones(len(columns[0]))
    for v in columns:
        span = v.max() - v.min()
        product *= (v - v.min()) / span if span > 0 else np.ones_like(v)
    return product


@register_python_query(
    "score_combination",
    "What is the product of min-max normalised scores (e.g. LP x FU of Juodelyte et al. 2024) for each candidate "
    "source of each target?",
    [Param("metrics", "VARCHAR", None, "comma-separated scores, e.g. lp,fu")],
    [Column("source", "VARCHAR", "candidate source"), Column("target", "VARCHAR", "target dataset"),
     Column("value", "DOUBLE", "product of the min-max normalised scores, in [0, 1]")],
)
def score_combination(con, metrics: str):
    return score_combination.columns, combine(con, [m.strip() for m in metrics.split(",") if m.strip()])
