"""Predict transfer outcomes for pairs never fine-tuned, from what the store knows about them.

Features per (source, target): both datasets' meta-features, their differences, every stored
distance measure and every transferability score. A scikit-learn pipeline (median imputation,
standardisation, regressor) learns the observed outcome; leave-one-target-out evaluation tells
how well it ranks sources on a target it has never seen.
"""

from __future__ import annotations

import json
import pickle
import uuid
from dataclasses import dataclass

import numpy as np
from sklearn.base import BaseEstimator, RegressorMixin, clone
from sklearn.ensemble import GradientBoostingRegressor, RandomForestRegressor
from sklearn.impute import SimpleImputer
from sklearn.linear_model import Ridge
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.utils.validation import check_is_fitted

from metadb import store, transfer
from metadb.errors import MetadbError

MODELS = {
    "ridge": lambda seed: Ridge(alpha=1.0),
    "forest": lambda seed: RandomForestRegressor(n_estimators=200, min_samples_leaf=2, random_state=seed),
    "boosting": lambda seed: GradientBoostingRegressor(n_estimators=200, max_depth=2, random_state=seed),
}


class TransferPredictor(RegressorMixin, BaseEstimator):
    """Outcome regressor over pair features (scikit-learn estimator contract)."""

    def __init__(self, model: str = "ridge", random_state: int = 0):
        self.model = model
        self.random_state = random_state

    def fit(self, X: np.ndarray, y: np.ndarray) -> "TransferPredictor":
        if self.model not in MODELS:
            raise MetadbError(f"--model {self.model!r}: expected one of {', '.join(MODELS)}")
        X, y = np.asarray(X, dtype=float), np.asarray(y, dtype=float)
        if X.ndim != 2 or len(X) != len(y):
            raise MetadbError(f"X must be 2-D with one row per outcome; got X {X.shape} and y {y.shape}")
        if len(X) < 3:
            raise MetadbError(f"only {len(X)} pairs with observed outcomes; need at least 3 to fit a predictor",
                              "import more outcomes (metadb outcomes import)")
        self.keep_ = ~np.all(np.isnan(X), axis=0)  # features no training pair has carry no signal
        if not self.keep_.any():
            raise MetadbError(f"none of the {X.shape[1]} features is known for any pair with an outcome",
                              "ingest the datasets (meta-features), or import similarities or scores for them")
        self.n_features_in_ = X.shape[1]
        self.pipeline_ = make_pipeline(SimpleImputer(strategy="median"), StandardScaler(),
                                       MODELS[self.model](self.random_state)).fit(X[:, self.keep_], y)
        return self

    def predict(self, X: np.ndarray) -> np.ndarray:
        check_is_fitted(self, "pipeline_")
        return self.pipeline_.predict(np.asarray(X, dtype=float)[:, self.keep_])


@dataclass
class PairFeatures:
    pairs: list[tuple[str, str]]
    names: list[str]
    X: np.ndarray


def pair_features(con) -> PairFeatures:
    """One row per ordered pair of distinct datasets in the store, NaN where nothing is known."""
    datasets = [r[0] for r in con.execute("SELECT name FROM datasets ORDER BY name").fetchall()]
    wide = con.execute("SELECT * FROM meta_features_wide").fetchall()
    meta_cols = [d[0] for d in con.execute("SELECT * FROM meta_features_wide LIMIT 0").description][1:]
    meta = {r[0]: np.array(r[1:], dtype=float) for r in wide}
    measures = [r[0] for r in con.execute("SELECT DISTINCT measure FROM similarities ORDER BY 1").fetchall()]
    metrics = [r[0] for r in con.execute("SELECT DISTINCT metric FROM scores ORDER BY 1").fetchall()]
    dist = {m: transfer.distances(con, m) for m in measures}
    score = {m: transfer.scores(con, m) for m in metrics}
    names = ([f"source_{c}" for c in meta_cols] + [f"target_{c}" for c in meta_cols]
             + [f"diff_{c}" for c in meta_cols] + [f"distance_{m}" for m in measures] + [f"score_{m}" for m in metrics])
    nan = np.full(len(meta_cols), np.nan)
    pairs, rows = [], []
    for s in datasets:
        for t in datasets:
            if s == t:
                continue
            ms, mt = meta.get(s, nan), meta.get(t, nan)
            rows.append(np.concatenate([ms, mt, ms - mt, [dist[m].get((t, s), np.nan) for m in measures],
                                        [score[m].get((s, t), np.nan) for m in metrics]]))
            pairs.append((s, t))
    return PairFeatures(pairs, names, np.array(rows, dtype=float).reshape(len(pairs), len(names)))


def _training(con, metric: str) -> tuple[PairFeatures, np.ndarray, np.ndarray]:
    feats = pair_features(con)
    truth = transfer.observed(con, metric)
    mask = np.array([p in truth for p in feats.pairs])
    y = np.array([truth.get(p, np.nan) for p in feats.pairs])
    return feats, mask, y


def fit(db, model: str = "ridge", metric: str | None = None, seed: int = 0) -> tuple[str, int, int]:
    """Fit on every observed pair, store the model and its predictions; returns (id, n_train, n_predicted)."""
    con = store.connect(db)
    try:
        metric = transfer.outcome_metric(con, metric)
        feats, mask, y = _training(con, metric)
        est = TransferPredictor(model, seed).fit(feats.X[mask], y[mask])
        predicted = est.predict(feats.X)
        pid = uuid.uuid4().hex[:12]
        with store.transaction(con):
            con.execute("INSERT INTO predictors VALUES (?, ?, ?, ?, ?, ?, ?, now())",
                        [pid, model, metric, json.dumps(feats.names), json.dumps(provenance(est, feats, mask)),
                         int(mask.sum()), pickle.dumps(est)])
            con.executemany("INSERT INTO predictions (predictor_id, source, target, value, predicted_at) "
                            "VALUES (?, ?, ?, ?, now())",
                            [[pid, s, t, float(v)] for (s, t), v in zip(feats.pairs, predicted)])
        return pid, int(mask.sum()), len(feats.pairs)
    finally:
        con.close()


def provenance(est: TransferPredictor, feats: PairFeatures, mask: np.ndarray) -> dict:
    """What the stored model was fitted with, so a prediction can be traced and reproduced."""
    from importlib.metadata import version

    return {**est.get_params(), "sklearn": version("scikit-learn"), "metadb": version("metadb"),
            "features_used": [n for n, k in zip(feats.names, est.keep_) if k],
            "train_targets": sorted({t for (_, t), m in zip(feats.pairs, mask) if m})}


def evaluate(db, model: str = "ridge", metric: str | None = None, seed: int = 0):
    """Leave-one-target-out: per held-out target, weighted tau, top-1 hit and regret; then the mean."""
    from metadb.analyses.metric_agreement import mean_row

    con = store.connect(db, read_only=True)
    try:
        metric = transfer.outcome_metric(con, metric)
        feats, mask, y = _training(con, metric)
    finally:
        con.close()
    targets = np.array([t for _, t in feats.pairs])
    rows = []
    for target in sorted(set(targets[mask])):
        test = mask & (targets == target)
        train = mask & (targets != target)
        if test.sum() < 2 or train.sum() < 3:
            continue
        est = clone(TransferPredictor(model, seed)).fit(feats.X[train], y[train])
        tau, hit, regret = transfer.ranking_quality(est.predict(feats.X[test]), y[test])
        rows.append((target, int(test.sum()), tau, float(hit), regret))
    if not rows:
        raise MetadbError("too few observed pairs for leave-one-target-out (need 2+ targets with 2+ sources)")
    return ["target", "n_sources", "weighted_tau", "top1_hit", "regret"], rows + [mean_row(rows)]
