"""Shared reads for transfer questions: observed outcomes per pair, relative gains, pair distances.

Analyses and predictors all start from the same tables; these functions read them once, with
the same conventions: the pair's ground truth is the mean of its selected outcome rows, and a
target's default metric is the one it has most selected rows of.
"""

from __future__ import annotations

from collections import defaultdict

import numpy as np


def outcome_metric(con, metric: str | None) -> str:
    if metric:
        return metric
    row = con.execute("""SELECT metric FROM outcomes WHERE is_selected GROUP BY metric
                         ORDER BY count(*) DESC, metric LIMIT 1""").fetchone()
    if not row:
        from metadb.errors import MetadbError

        raise MetadbError("the store holds no outcomes", "import some with `metadb outcomes import`")
    return row[0]


def observed(con, metric: str) -> dict[tuple[str, str], float]:
    """(source, target) -> mean selected outcome."""
    rows = con.execute("""SELECT source, target, avg(value) FROM outcomes WHERE is_selected AND metric = ?
                          GROUP BY source, target""", [metric]).fetchall()
    return {(s, t): v for s, t, v in rows}


def relative_gains(con, metric: str) -> dict[tuple[str, str], float]:
    """(source, target) -> mean over folds of the % gain over the target->target run of the same fold.

    This is the score of "Cats, not CAT scans"; the self pair has gain 0 by construction.
    """
    rows = con.execute("""SELECT source, target, coalesce(fold, 0), avg(value) FROM outcomes
                          WHERE is_selected AND metric = ? GROUP BY ALL""", [metric]).fetchall()
    base = {(t, f): v for s, t, f, v in rows if s == t}
    gains: dict[tuple[str, str], list[float]] = defaultdict(list)
    for s, t, f, v in rows:
        if (t, f) in base:
            gains[(s, t)].append((v - base[(t, f)]) / base[(t, f)] * 100.0)
    return {k: float(np.mean(v)) for k, v in gains.items()}


def distances(con, measure: str, backbone: str | None = None) -> dict[tuple[str, str], float]:
    """(a, b) -> distance, in both orientations; a dataset's distance to itself is 0 unless stored."""
    sql = "SELECT dataset_a, dataset_b, avg(value) FROM similarities WHERE measure = ?"
    params = [measure]
    if backbone is not None:
        sql += " AND backbone = ?"
        params.append(backbone)
    out: dict[tuple[str, str], float] = {}
    for a, b, v in con.execute(sql + " GROUP BY ALL", params).fetchall():
        out[(a, b)] = v
        out.setdefault((b, a), v)
    return out


def scores(con, metric: str) -> dict[tuple[str, str], float]:
    rows = con.execute("SELECT source, target, avg(value) FROM scores WHERE metric = ? GROUP BY ALL", [metric]).fetchall()
    return {(s, t): v for s, t, v in rows if v is not None}


def ranking_quality(predicted: np.ndarray, truth: np.ndarray) -> tuple[float | None, bool, float]:
    """Weighted Kendall tau (scipy defaults, as Juodelyte et al.), top-1 hit and regret."""
    from scipy.stats import weightedtau

    tau = weightedtau(predicted, truth)[0] if np.ptp(predicted) > 0 else float("nan")
    pick = int(np.argmax(predicted))
    regret = float(truth.max() - truth[pick])
    return (None if np.isnan(tau) else float(tau)), bool(truth[pick] == truth.max()), regret
