"""Leave-one-target-out: does a predictor rank a new target's sources better than any single metric?

For each held-out target, every model is fitted on the other targets' outcomes only (outcome
normalisation, the `record` feature, imputation, scaling and the choice of regularisation all see
training rows alone) and ranks that target's candidate sources: the sources with an observed
outcome, the target itself excluded. Every stored score and distance ranks the same candidates;
each gets scipy's weighted tau with default arguments (as Juodelyte et al. 2024), top-1 hit and regret.
"""

from __future__ import annotations

import numpy as np

from metadb import predictors, store, transfer
from metadb.errors import MetadbError

COLUMNS = ["method", "kind", "target", "n_sources", "weighted_tau", "top1_hit", "regret"]
SUMMARY = ["method", "kind", "n_targets", "weighted_tau", "top1_hit", "regret"]


def evaluate(db, models=("ridge",), metric: str | None = None, seed: int = 0, features=None,
             normalise: str = "rank", exclude_targets=(), per_target: bool = True):
    """Per held-out target and per method (each model, each score, each distance), then a mean per method.

    per_target=False returns the mean rows only, best first (SUMMARY columns).
    """
    for m in models:
        if m not in predictors.MODELS:
            raise MetadbError(f"--model {m!r}: expected one of {', '.join(predictors.MODELS)}")
    con = store.connect(db, read_only=True)
    try:
        metric = transfer.outcome_metric(con, metric)
        feats = predictors.pair_features(con, features, normalise)
        truth = transfer.observed(con, metric)
        score_names = [r[0] for r in con.execute("SELECT DISTINCT metric FROM scores ORDER BY 1").fetchall()]
        scores = {m: transfer.scores(con, m) for m in score_names}
        distances = {name.removeprefix("distance_"): transfer.space_distances(con, m, space)
                     for name, m, space in transfer.distance_features(con)}
    finally:
        con.close()
    unknown = sorted(set(exclude_targets) - {t for _, t in truth})
    if unknown:
        raise MetadbError(f"--exclude-target {', '.join(unknown)}: no {metric} outcomes for that target")
    observed = np.array([p in truth for p in feats.pairs], dtype=bool)
    targets = feats.targets
    rows = []
    for target in sorted(set(map(str, targets[observed])) - set(exclude_targets)):
        test = observed & (targets == target)
        if test.sum() < 2 or (observed & (targets != target)).sum() < 3:
            continue
        y_true = np.array([truth[p] for p, k in zip(feats.pairs, test) if k])
        candidates = [s for (s, _), k in zip(feats.pairs, test) if k]
        for m in models:
            got = predictors.held_out_predictions(feats, truth, observed, target, m, seed)
            rows.append((m, "predictor", target, len(candidates), *(_quality(got[0], y_true) if got else (None,) * 3)))
        for m, table in scores.items():
            rows.append((m, "score", target, len(candidates),
                         *_quality([table.get((s, target)) for s in candidates], y_true)))
        for m, table in distances.items():  # lower is closer: rank by the negated distance
            d = [table.get((target, s)) for s in candidates]
            rows.append((m, "distance", target, len(candidates),
                         *_quality([None if v is None else -v for v in d], y_true)))
    if not rows:
        raise MetadbError("too few observed pairs for leave-one-target-out (need 2+ targets with 2+ sources)")
    means = _means(rows)
    if not per_target:
        return SUMMARY, sorted(means, key=lambda r: (r[3] is None, -(r[3] or 0.0), r[0]))
    return COLUMNS, rows + [(m, k, "(mean)", *rest) for m, k, *rest in means]


def _quality(predicted, truth: np.ndarray) -> tuple:
    """(weighted tau, top-1 hit, regret); all None when the method does not score every candidate."""
    if any(v is None or np.isnan(v) for v in predicted):
        return None, None, None
    tau, hit, regret = transfer.ranking_quality(np.asarray(predicted, dtype=float), truth)
    return tau, float(hit), regret


def _means(rows: list[tuple]) -> list[tuple]:
    """Per method: targets where its tau is defined, mean tau, mean top-1 hit and regret over those it scored."""
    out = []
    for method, kind in dict.fromkeys((r[0], r[1]) for r in rows):
        mine = [r for r in rows if (r[0], r[1]) == (method, kind)]
        taus = [r[4] for r in mine if r[4] is not None]
        scored = [r for r in mine if r[5] is not None]
        out.append((method, kind, len(taus), float(np.mean(taus)) if taus else None,
                    float(np.mean([r[5] for r in scored])) if scored else None,
                    float(np.mean([r[6] for r in scored])) if scored else None))
    return out
