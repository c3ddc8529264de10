"""`metric-agreement`: how well does a score rank sources against fine-tuned outcomes, per target?"""

from __future__ import annotations

import numpy as np

from metadb import transfer
from metadb.errors import MetadbError
from metadb.queries import Column, Param, register_python_query


@register_python_query(
    "metric_agreement",
    "How well does a transferability score rank candidate sources, per target? Weighted Kendall tau "
    "(scipy weightedtau defaults, as Juodelyte et al. 2024) against outcomes, top-1 hit and regret, with a mean row.",
    [Param("metric", "VARCHAR", None, "score to evaluate, e.g. logme, leep, lpfu"),
     Param("outcome_metric", "VARCHAR", "NULL", "outcome it is judged against (default: the most reported one)")],
    [Column("target", "VARCHAR", "target dataset, or (mean) over targets where tau is defined"),
     Column("n_sources", "BIGINT", "candidate sources scored (the target itself excluded); targets in the mean row"),
     Column("weighted_tau", "DOUBLE", "weighted Kendall tau; NULL when the score is constant"),
     Column("top1_hit", "DOUBLE", "1 when the best-scored source is the best observed"),
     Column("regret", "DOUBLE", "best observed outcome minus that of the best-scored source")],
)
def metric_agreement(con, metric: str, outcome_metric: str | None = None):
    outcome_metric = transfer.outcome_metric(con, outcome_metric)
    truth = transfer.observed(con, outcome_metric)
    score = transfer.scores(con, metric)
    if not score:
        raise MetadbError(f"no scores for metric {metric!r}", "import or compute them first (metadb scores import)")
    rows = []
    for target in sorted({t for _, t in score}):
        sources = sorted(s for s, t in score if t == target and s != target and (s, t) in truth)
        if len(sources) < 2:
            continue
        predicted = np.array([score[(s, target)] for s in sources])
        observed = np.array([truth[(s, target)] for s in sources])
        tau, hit, regret = transfer.ranking_quality(predicted, observed, transfer.higher_is_better(con, outcome_metric))
        rows.append((target, len(sources), tau, float(hit), regret))
    if not rows:
        raise MetadbError(f"no target has both {metric} scores and {outcome_metric} outcomes for 2+ sources")
    return metric_agreement.columns, rows + [mean_row(rows)]


def mean_row(rows: list[tuple]) -> tuple:
    defined = [r for r in rows if r[2] is not None]
    return ("(mean)", len(defined), float(np.mean([r[2] for r in defined])) if defined else None,
            float(np.mean([r[3] for r in rows])), float(np.mean([r[4] for r in rows])))
