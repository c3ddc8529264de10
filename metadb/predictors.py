"""Predict transfer outcomes for pairs never fine-tuned, from what the store knows about them.

Features per (source, target), in selectable sets:
  meta       the source's meta-features (ingested, else declared in metadb.declared) and whether
             source and target share modality and channel count;
  scores     every transferability score, normalised within the target's candidate sources;
  distances  every distance measure, normalised within the target's candidate sources;
  record     the source's mean normalised outcome on the training targets (its track record;
             computed from training outcomes only, each training target leaving itself out).
Scores and outcomes live on a different scale per target (LogME of one target says nothing about
LogME of another), so both are normalised within each target (rank or z-score) before fitting:
the models learn to rank a target's candidates, which is what best-source asks of them.
Leave-one-target-out evaluation (metadb.predictor_evaluation) tells how well they rank sources on
a target they have never seen.
"""

from __future__ import annotations

import json
import math
import pickle
import uuid
from dataclasses import dataclass, field
from itertools import combinations

import numpy as np
from scipy.stats import rankdata
from sklearn.base import BaseEstimator, RegressorMixin
from sklearn.ensemble import GradientBoostingRegressor, RandomForestRegressor
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression, RidgeCV
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.utils.validation import check_is_fitted

from metadb import catalog, declared, store, transfer
from metadb.errors import MetadbError

FEATURE_SETS = ("meta", "scores", "distances", "record")
NORMALISATIONS = ("rank", "z", "none")
MIN_KNOWN_FRACTION = 0.5  # a pair is predicted only when at least half its features are known, not imputed
ALPHAS = np.logspace(-2, 4, 13)
SOURCE_META = ("n_images", "n_classes")  # log10; image size and intensity statistics did not rank sources better


class PairwiseRanker(RegressorMixin, BaseEstimator):
    """A linear ranking objective: logistic regression on feature differences of two sources of one target.

    Learns w so that w.x_a > w.x_b when source a transferred better than b to the same target
    (RankNet with a linear scorer; pairs only within a target, so per-target outcome scales never
    meet). C is scikit-learn's default (1.0), fixed before any evaluation.
    """

    def __init__(self, random_state: int = 0):
        self.random_state = random_state

    def fit(self, X: np.ndarray, y: np.ndarray, groups: np.ndarray) -> "PairwiseRanker":
        diffs, wins = [], []
        for g in np.unique(groups):
            idx = np.flatnonzero(groups == g)
            for i, j in combinations(idx, 2):
                if y[i] != y[j]:
                    diffs += [X[i] - X[j], X[j] - X[i]]
                    wins += [y[i] > y[j], y[j] > y[i]]
        if not diffs:
            raise MetadbError("no target has two sources with different outcomes: nothing to rank")
        self.model_ = LogisticRegression(fit_intercept=False, max_iter=5000).fit(np.array(diffs), wins)
        return self

    def predict(self, X: np.ndarray) -> np.ndarray:
        return np.asarray(X) @ self.model_.coef_[0]


def _ridge(seed: int, groups: np.ndarray | None) -> RidgeCV:
    """Ridge with alpha chosen by efficient leave-one-out over the training rows (no held-out target in them)."""
    return RidgeCV(alphas=ALPHAS)


MODELS = {  # name -> (factory(seed, groups), takes groups at fit)
    "ridge": (_ridge, False),
    "pairwise": (lambda seed, groups: PairwiseRanker(seed), True),
    "forest": (lambda seed, groups: RandomForestRegressor(n_estimators=200, min_samples_leaf=2, random_state=seed),
               False),
    "boosting": (lambda seed, groups: GradientBoostingRegressor(n_estimators=200, max_depth=2, random_state=seed),
                 False),
}


class TransferPredictor(RegressorMixin, BaseEstimator):
    """Outcome (or within-target outcome rank) regressor over pair features (scikit-learn contract).

    With `column_sets` (the feature set of each column) it is an ensemble: one model per non-empty
    combination of the sets present, predictions averaged (they share the normalised outcome's
    scale). Averaging instead of choosing a combination keeps held-out targets out of that choice,
    and on the Juodelyte et al. tables it ranks better than any single combination chosen in
    advance. `groups` (the target of each row) lets pairwise compare sources of one target only.
    """

    def __init__(self, model: str = "ridge", random_state: int = 0, column_sets: tuple[str, ...] | None = None):
        self.model = model
        self.random_state = random_state
        self.column_sets = column_sets

    def fit(self, X: np.ndarray, y: np.ndarray, groups: np.ndarray | None = None) -> "TransferPredictor":
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
        factory, takes_groups = MODELS[self.model]
        if takes_groups and groups is None:
            raise MetadbError(f"--model {self.model} ranks sources within a target: pass the target of every row")
        self.n_features_in_ = X.shape[1]
        sets = np.array(self.column_sets if self.column_sets is not None else ["all"] * X.shape[1])
        present = list(dict.fromkeys(sets[self.keep_]))
        self.members_ = []  # (column mask, fitted pipeline)
        for k in range(len(present), 0, -1):
            for combo in combinations(present, k):
                cols = self.keep_ & np.isin(sets, combo)
                pipe = make_pipeline(SimpleImputer(strategy="median"), StandardScaler(),
                                     factory(self.random_state, groups))
                fit_params = {f"{pipe.steps[-1][0]}__groups": np.asarray(groups)} if takes_groups else {}
                self.members_.append((cols, pipe.fit(X[:, cols], y, **fit_params)))
        return self

    def predict(self, X: np.ndarray) -> np.ndarray:
        check_is_fitted(self, "members_")
        X = np.asarray(X, dtype=float)
        return np.mean([pipe.predict(X[:, cols]) for cols, pipe in self.members_], axis=0)


def within_target(values: np.ndarray, targets: np.ndarray, how: str) -> np.ndarray:
    """Normalise values among the rows of each target (NaN stays NaN): rank to [0, 1], z-score, or none."""
    if how not in NORMALISATIONS:
        raise MetadbError(f"--normalise {how!r}: expected one of {', '.join(NORMALISATIONS)}")
    out = np.full(len(values), np.nan)
    for t in np.unique(targets):
        idx = np.flatnonzero((targets == t) & ~np.isnan(values))
        v = values[idx]
        if how == "none":
            out[idx] = v
        elif how == "rank":
            out[idx] = (rankdata(v) - 1) / (len(v) - 1) if len(v) > 1 else 0.5
        else:
            out[idx] = (v - v.mean()) / v.std() if len(v) > 1 and v.std() > 0 else 0.0
    return out


@dataclass
class PairFeatures:
    pairs: list[tuple[str, str]]
    names: list[str]
    X: np.ndarray
    features: tuple[str, ...] = FEATURE_SETS
    normalise: str = "rank"
    meta_provenance: dict[str, dict[str, str]] = field(default_factory=dict)

    @property
    def targets(self) -> np.ndarray:
        return np.array([t for _, t in self.pairs])

    @property
    def sources(self) -> np.ndarray:
        return np.array([s for s, _ in self.pairs])


def parse_features(features: str | tuple[str, ...] | list[str] | None) -> tuple[str, ...]:
    if features is None:
        return FEATURE_SETS
    names = [f.strip() for f in features.split(",")] if isinstance(features, str) else list(features)
    unknown = [f for f in names if f not in FEATURE_SETS]
    if unknown or not names:
        raise MetadbError(f"--features {','.join(names)!r}: expected a comma-separated subset of "
                          f"{','.join(FEATURE_SETS)}")
    return tuple(f for f in FEATURE_SETS if f in names)


def _modalities(name: str) -> set[str]:
    try:
        return set(catalog.get(name).modality.split("/"))
    except MetadbError:
        return set()


def pair_features(con, features=FEATURE_SETS, normalise: str = "rank") -> PairFeatures:
    """One row per ordered pair of distinct datasets in the store, NaN where nothing is known.

    The `record` set depends on training outcomes, so it is added by `with_record`, not here.
    """
    features = parse_features(features)
    datasets = [r[0] for r in con.execute("SELECT name FROM datasets ORDER BY name").fetchall()]
    pairs = [(s, t) for s in datasets for t in datasets if s != t]
    targets = np.array([t for _, t in pairs])
    names, columns, provenance = [], [], {}
    if "meta" in features:
        values, provenance = declared.meta_features(con)
        for n in SOURCE_META:
            col = np.array([values.get(s, {}).get(n, np.nan) for s, _ in pairs])
            names.append(f"source_{n}")
            columns.append(np.log10(np.maximum(col, 1.0)))
        if pairs:
            ch = {d: values.get(d, {}).get("channels_mode") for d in datasets}
            names += ["same_channels", "same_modality"]
            columns.append(np.array([np.nan if ch[s] is None or ch[t] is None else float(ch[s] == ch[t])
                                     for s, t in pairs]))
            mods = {d: _modalities(d) for d in datasets}
            columns.append(np.array([float(bool(mods[s] & mods[t])) if mods[s] and mods[t] else np.nan
                                     for s, t in pairs]))
    if "distances" in features:
        for name, m, space in transfer.distance_features(con):
            d = transfer.space_distances(con, m, space)
            names.append(name)
            columns.append(within_target(np.array([d.get((t, s), np.nan) for s, t in pairs]), targets, normalise))
    if "scores" in features:
        for m in [r[0] for r in con.execute("SELECT DISTINCT metric FROM scores ORDER BY 1").fetchall()]:
            sc = transfer.scores(con, m)
            names.append(f"score_{m}")
            columns.append(within_target(np.array([sc.get(p, np.nan) for p in pairs]), targets, normalise))
    X = np.column_stack(columns) if columns else np.empty((len(pairs), 0))
    return PairFeatures(pairs, names, X, features, normalise, provenance)


def column_set(name: str) -> str:
    if name.startswith(("source_", "same_")):
        return "meta"
    return {"distance": "distances", "score": "scores"}.get(name.split("_", 1)[0], name)


def column_sets(names: list[str]) -> tuple[str, ...]:
    return tuple(column_set(n) for n in names)


def subset(feats: PairFeatures, sets: tuple[str, ...]) -> PairFeatures:
    """The same pairs with only the columns of the given feature sets."""
    keep = [i for i, n in enumerate(feats.names) if column_set(n) in sets]
    return PairFeatures(feats.pairs, [feats.names[i] for i in keep], feats.X[:, keep],
                        tuple(f for f in FEATURE_SETS if f in sets), feats.normalise, feats.meta_provenance)


def held_out_predictions(feats: PairFeatures, truth: dict, observed: np.ndarray, target: str, model: str,
                         seed: int) -> tuple[np.ndarray, np.ndarray] | None:
    """(predictions, outcomes) for the target's observed sources, fitted on the other observed targets only."""
    targets = feats.targets
    test, train = observed & (targets == target), observed & (targets != target)
    if test.sum() < 2 or train.sum() < 3:
        return None
    X, y, names = design(feats, truth, train)
    est = TransferPredictor(model, seed, column_sets(names)).fit(X[train], y[train], groups=targets[train])
    return est.predict(X[test]), np.array([truth[p] for p, k in zip(feats.pairs, test) if k])


def source_record(feats: PairFeatures, y: np.ndarray, train: np.ndarray) -> np.ndarray:
    """Per pair (s, t): the mean normalised outcome of s over the training targets other than t.

    Leaving t out keeps a training row from seeing its own outcome through this feature; a
    held-out target is never a training target, so its outcomes cannot enter.
    """
    sources, targets = feats.sources, feats.targets
    out = np.full(len(feats.pairs), np.nan)
    for s in np.unique(sources):
        rows = np.flatnonzero(sources == s)
        known = rows[train[rows] & ~np.isnan(y[rows])]
        for i in rows:
            other = known[targets[known] != targets[i]]
            if len(other):
                out[i] = y[other].mean()
    return out


def design(feats: PairFeatures, truth: dict, train: np.ndarray) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """(X, normalised y, names): outcomes normalised within target over training rows, plus `record`."""
    y = np.array([truth.get(p, np.nan) for p in feats.pairs])
    y = np.where(train, y, np.nan)
    y = within_target(y, feats.targets, feats.normalise)
    if "record" not in feats.features:
        return feats.X, y, feats.names
    return np.column_stack([feats.X, source_record(feats, y, train)]), y, feats.names + ["record"]


@dataclass
class FitResult:
    predictor_id: str
    n_train: int
    n_predicted: int
    n_skipped: int
    min_known: int
    n_features: int

    def summary(self, model: str) -> str:
        line = (f"predictor {self.predictor_id} ({model}): fitted on {self.n_train} observed pairs, "
                f"{self.n_predicted} pairs predicted")
        if self.n_skipped:
            line += (f", {self.n_skipped} not predicted (fewer than {self.min_known} of the predictor's {self.n_features} "
                     f"features known; the rest would be imputed)")
        return line


def fit(db, model: str = "ridge", metric: str | None = None, seed: int = 0, features=None,
        normalise: str = "rank") -> FitResult:
    """Fit on every observed pair; store the model and a prediction for every pair informed enough.

    A pair is predicted only when at least MIN_KNOWN_FRACTION of the features the model uses are
    known for it (not imputed): with fewer, the prediction is mostly the training median, and
    best-source would rank it above real similarity evidence.
    """
    con = store.connect(db)
    try:
        metric = transfer.outcome_metric(con, metric)
        feats = pair_features(con, features, normalise)
        truth = transfer.observed(con, metric)
        mask = np.array([p in truth for p in feats.pairs], dtype=bool)
        X, y, names = design(feats, truth, mask)
        est = TransferPredictor(model, seed, column_sets(names)).fit(X[mask], y[mask], groups=feats.targets[mask])
        used = [n for n, k in zip(names, est.keep_) if k]
        known = ~np.isnan(X[:, est.keep_])
        min_known = max(1, math.ceil(MIN_KNOWN_FRACTION * len(used)))
        informed = known.sum(axis=1) >= min_known
        predicted = est.predict(X[informed]) if informed.any() else np.array([])
        pid = uuid.uuid4().hex[:12]
        params = provenance(est, feats, mask, names, min_known)
        rows = [[pid, s, t, float(v), int(k.sum()), json.dumps([n for n, kn in zip(used, k) if kn])]
                for (s, t), v, k in zip(np.array(feats.pairs, dtype=object)[informed], predicted, known[informed])]
        with store.transaction(con):
            con.execute("INSERT INTO predictors VALUES (?, ?, ?, ?, ?, ?, ?, now())",
                        [pid, model, metric, json.dumps(names), json.dumps(params), int(mask.sum()),
                         pickle.dumps(est)])
            con.executemany("INSERT INTO predictions (predictor_id, source, target, value, n_features_known, "
                            "features_known, predicted_at) VALUES (?, ?, ?, ?, ?, ?, now())", rows)
        return FitResult(pid, int(mask.sum()), len(rows), len(feats.pairs) - len(rows), min_known, len(used))
    finally:
        con.close()


def provenance(est: TransferPredictor, feats: PairFeatures, mask: np.ndarray, names: list[str],
               min_known: int) -> dict:
    """What the stored model was fitted with, so a prediction can be traced and reproduced."""
    from importlib.metadata import version

    used_meta = {n.removeprefix("source_") for n, k in zip(names, est.keep_) if k and n.startswith("source_")}
    datasets = sorted({s for s, _ in feats.pairs})
    return {**est.get_params(), "sklearn": version("scikit-learn"), "metadb": version("metadb"),
            "features": list(feats.features), "normalise": feats.normalise,
            "ensemble": "one model per non-empty combination of the feature sets, predictions averaged",
            "value": "outcome" if feats.normalise == "none" else f"within-target {feats.normalise} of the outcome",
            "min_features_known": min_known, "min_known_fraction": MIN_KNOWN_FRACTION,
            "features_used": [n for n, k in zip(names, est.keep_) if k],
            "meta_features_from": {d: {n: v for n, v in feats.meta_provenance.get(d, {}).items() if n in used_meta}
                                   for d in datasets if feats.meta_provenance.get(d)},
            "train_targets": sorted({t for (_, t), m in zip(feats.pairs, mask) if m})}
