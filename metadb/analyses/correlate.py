"""`correlate`: does a distance measure predict transfer? (the analysis of "Cats, not CAT scans")."""

from __future__ import annotations

import numpy as np
from scipy import stats

from metadb import transfer
from metadb.errors import MetadbError
from metadb.queries import Column, Param, register_python_query


@register_python_query(
    "correlate",
    "Does a distance measure predict transfer? Pearson (scipy linregress, as cats-scans), Spearman and Kendall "
    "correlation between the pair's normalised distance and its outcome.",
    [Param("measure", "VARCHAR", None, "distance measure, e.g. task2vec, expert, frechet"),
     Param("outcome", "VARCHAR", "'relative_gain'", "relative_gain (% over target->target) or value (raw outcome)"),
     Param("metric", "VARCHAR", "NULL", "outcome metric (default: the most reported one)"),
     Param("backbone", "VARCHAR", "NULL", "backbone of the measure, when it has one")],
    [Column("measure", "VARCHAR", "the measure"), Column("outcome", "VARCHAR", "what was correlated"),
     Column("n_pairs", "BIGINT", "pairs with both a distance and an outcome"),
     Column("pearson_r", "DOUBLE", "Pearson r of distance/max vs outcome"), Column("pearson_p", "DOUBLE", "its p-value"),
     Column("slope", "DOUBLE", "regression slope"), Column("spearman_rho", "DOUBLE", "Spearman rho"),
     Column("spearman_p", "DOUBLE", "its p-value"), Column("kendall_tau", "DOUBLE", "Kendall tau-b"),
     Column("kendall_p", "DOUBLE", "its p-value")],
)
def correlate(con, measure: str, outcome: str = "relative_gain", metric: str | None = None,
              backbone: str | None = None):
    if outcome not in ("relative_gain", "value"):
        raise MetadbError(f"--outcome {outcome!r}: expected relative_gain or value")
    metric = transfer.outcome_metric(con, metric)
    y_by_pair = transfer.relative_gains(con, metric) if outcome == "relative_gain" else transfer.observed(con, metric)
    dist = transfer.distances(con, measure, backbone)
    if not dist:
        raise MetadbError(f"no distances for measure {measure!r}", "compute or import them first (metadb similarity)")
    pairs = [(s, t) for (s, t) in sorted(y_by_pair) if (t, s) in dist or s == t]
    if len(pairs) < 3:
        raise MetadbError(f"only {len(pairs)} pairs have both a {measure} distance and a {metric} outcome; need 3")
    x = np.array([0.0 if s == t and (t, s) not in dist else dist[(t, s)] for s, t in pairs])
    y = np.array([y_by_pair[p] for p in pairs])
    x = x / x.max() if x.max() > 0 else x  # normalised by the largest distance, as the paper did
    lr = stats.linregress(x, y)
    rho = stats.spearmanr(x, y)
    tau = stats.kendalltau(x, y)
    row = (measure, outcome, len(pairs), float(lr.rvalue), float(lr.pvalue), float(lr.slope),
           float(rho.statistic), float(rho.pvalue), float(tau.statistic), float(tau.pvalue))
    return correlate.columns, [row]
