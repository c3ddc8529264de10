"""Shared reads for transfer questions: observed outcomes per pair, relative gains, pair distances.

Analyses and predictors all start from the same tables; these functions read them once, with
the same conventions: the pair's ground truth is the mean of its selected outcome rows (folds,
seeds), never a mean across architectures: a pair measured with several architectures is refused
unless one is named; and a target's default metric is the one it has most selected rows of. Which
way is better comes from the store's metric directions (metadb.directions).
"""

from __future__ import annotations

from collections import defaultdict

import numpy as np

from metadb import directions
from metadb.errors import MetadbError


def outcome_metric(con, metric: str | None) -> str:
    if metric:
        return metric
    row = con.execute("""SELECT metric FROM outcomes WHERE is_selected GROUP BY metric
                         ORDER BY count(*) DESC, metric LIMIT 1""").fetchone()
    if not row:
        raise MetadbError("the store holds no outcomes", "import some with `metadb outcomes import`")
    return row[0]


def higher_is_better(con, metric: str) -> bool:
    """The metric's declared direction; an undeclared metric is a one-line error, never a guess."""
    return directions.require(con, metric)


def _selected_rows(con, metric: str, architecture: str | None, columns: str) -> list[tuple]:
    """Selected rows of `metric` (of one architecture when given); refuses to pool architectures."""
    where, params = "is_selected AND metric = ?", [metric]
    if architecture is not None:
        where += " AND architecture IS NOT DISTINCT FROM ?"
        params.append(architecture)
    else:
        mixed = con.execute(f"""SELECT source, target, list(DISTINCT coalesce(architecture, '(none)') ORDER BY coalesce(architecture, '(none)'))
                                FROM outcomes WHERE {where} GROUP BY source, target
                                HAVING count(DISTINCT coalesce(architecture, '')) > 1 ORDER BY 1, 2 LIMIT 1""",
                            params).fetchone()
        if mixed:
            raise MetadbError(f"{mixed[0]}->{mixed[1]} has {metric} outcomes for architectures "
                              f"{', '.join(mixed[2])}; they are not averaged", "name one architecture")
    return con.execute(f"SELECT {columns} FROM outcomes WHERE {where} GROUP BY ALL", params).fetchall()


def observed(con, metric: str, architecture: str | None = None) -> dict[tuple[str, str], float]:
    """(source, target) -> mean selected outcome over folds and seeds, for one architecture.

    Several architectures for one pair: refused unless `architecture` names one (a mean across
    architectures answers no question anyone asked).
    """
    rows = _selected_rows(con, metric, architecture, "source, target, avg(value)")
    return {(s, t): v for s, t, v in rows}


def relative_gains(con, metric: str, architecture: str | None = None) -> dict[tuple[str, str], float]:
    """(source, target) -> mean over folds of the % gain over the target->target run of the same fold.

    This is the score of "Cats, not CAT scans"; the self pair has gain 0 by construction. For a
    lower-is-better metric the gain is the relative decrease, so a positive gain is always better.
    """
    sign = 1.0 if higher_is_better(con, metric) else -1.0
    rows = _selected_rows(con, metric, architecture, "source, target, coalesce(fold, 0), avg(value)")
    base = {(t, f): v for s, t, f, v in rows if s == t}
    gains: dict[tuple[str, str], list[float]] = defaultdict(list)
    for s, t, f, v in rows:
        if (t, f) in base:
            gains[(s, t)].append(sign * (v - base[(t, f)]) / base[(t, f)] * 100.0)
    return {k: float(np.mean(v)) for k, v in gains.items()}


def distance_spaces(con, measure: str, backbone: str | None = None) -> list[str]:
    """The feature spaces (backbone identities; '' for none) holding `measure` distances, most pairs first.

    `backbone` narrows them to an identity, an architecture's identities, or an imported backbone
    string; the order (most pairs, then most recent) is the one the similar and
    similarity_matrix macros use to pick the space that answers.
    """
    sql = """SELECT backbone FROM similarities WHERE measure = ?
               AND (?::VARCHAR IS NULL OR backbone = ? OR backbone IN (SELECT identity FROM backbones WHERE arch = ?))
             GROUP BY backbone ORDER BY count(*) DESC, max(computed_at) DESC, backbone"""
    return [r[0] for r in con.execute(sql, [measure, backbone, backbone, backbone]).fetchall()]


def distances(con, measure: str, backbone: str | None = None) -> dict[tuple[str, str], float]:
    """(a, b) -> distance in one feature space, both orientations; a dataset's distance to itself is 0 unless stored.

    Distances from two feature spaces (two backbones, or one architecture with other weights) are
    never averaged or mixed: when `measure` is stored in several and `backbone` does not single one
    out, this refuses, naming them. `backbone` may be an identity or an architecture name.
    """
    spaces = distance_spaces(con, measure, backbone)
    if backbone is not None and not spaces:
        stored = distance_spaces(con, measure)
        raise MetadbError(f"no {measure} distances with backbone {backbone!r}",
                          f"stored in: {', '.join(map(repr, stored))}" if stored else "compute or import them first")
    if len(spaces) > 1:
        raise MetadbError(f"{measure} distances are stored in {len(spaces)} feature spaces "
                          f"({', '.join(map(repr, spaces))}); they are not mixed", "name one with --backbone")
    return space_distances(con, measure, spaces[0]) if spaces else {}


def space_distances(con, measure: str, space: str) -> dict[tuple[str, str], float]:
    """(a, b) -> distance of `measure` in exactly one stored feature space, both orientations."""
    out: dict[tuple[str, str], float] = {}
    for a, b, v in con.execute("""SELECT dataset_a, dataset_b, avg(value) FROM similarities
                                  WHERE measure = ? AND backbone = ? GROUP BY ALL""", [measure, space]).fetchall():
        out[(a, b)] = v
        out.setdefault((b, a), v)
    return out


def distance_features(con) -> list[tuple[str, str, str]]:
    """(feature name, measure, space) for every stored measure and feature space.

    A measure stored in one space is `distance_<measure>`; in several, each space is its own
    feature, `distance_<measure>@<space>`, so predictors never pool two feature spaces.
    """
    rows = con.execute("SELECT measure, backbone FROM similarities GROUP BY ALL ORDER BY measure, backbone").fetchall()
    count: dict[str, int] = defaultdict(int)
    for m, _ in rows:
        count[m] += 1
    return [(f"distance_{m}" if count[m] == 1 else f"distance_{m}@{b}", m, b) for m, b in rows]


def scores(con, metric: str) -> dict[tuple[str, str], float]:
    rows = con.execute("SELECT source, target, avg(value) FROM scores WHERE metric = ? GROUP BY ALL", [metric]).fetchall()
    return {(s, t): v for s, t, v in rows if v is not None}


def ranking_quality(predicted: np.ndarray, truth: np.ndarray,
                    higher_is_better: bool = True) -> tuple[float | None, bool, float]:
    """Weighted Kendall tau (scipy defaults, as Juodelyte et al.), top-1 hit and regret.

    `predicted` is always "higher = predicted better"; `truth` is in the outcome's own units, so
    for a lower-is-better outcome (loss, error) it is negated before ranking, and regret is how
    much worse the picked source is than the best one, in the outcome's units (never negative).
    Pass `higher_is_better=transfer.higher_is_better(con, metric)`.
    """
    from scipy.stats import weightedtau

    good = np.asarray(truth, dtype=float) if higher_is_better else -np.asarray(truth, dtype=float)
    tau = weightedtau(predicted, good)[0] if np.ptp(predicted) > 0 else float("nan")
    pick = int(np.argmax(predicted))
    regret = float(good.max() - good[pick])
    return (None if np.isnan(tau) else float(tau)), bool(good[pick] == good.max()), regret
