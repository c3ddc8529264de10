"""Predictors: the scikit-learn contract, stored predictions feeding best-source, leave-one-target-out."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.base import clone
from sklearn.exceptions import NotFittedError

from metadb import api, outcomes, predictors
from metadb.errors import MetadbError


def test_estimator_contract():
    est = predictors.TransferPredictor("ridge")
    with pytest.raises(NotFittedError):
        est.predict(np.zeros((2, 2)))
    X = np.array([[1.0, np.nan], [2.0, np.nan], [3.0, np.nan], [4.0, np.nan]])
    y = np.array([1.0, 2.0, 3.0, 4.0])
    assert est.fit(X, y) is est and est.keep_.tolist() == [True, False]
    assert clone(est).get_params() == {"model": "ridge", "random_state": 0}
    with pytest.raises(MetadbError, match="--model 'svm': expected one of ridge, forest, boosting"):
        predictors.TransferPredictor("svm").fit(X, y)


def test_fitted_predictions_rank_sources_without_outcomes(db, tmp_path, reference):
    jd = reference / "juodelyte-2024" / "results"
    outcomes.import_outcomes(db, str(jd / "AUCs_dataset.csv"), "matrix", metric="auc")
    outcomes.import_scores(db, str(jd / "logme_dataset.csv"), "logme")
    # a new target with LogME scores but no outcomes: best-source falls back to the predictor
    new = tmp_path / "new.csv"
    new.write_text("source,target,value\nimagenet,mytarget,2.0\nradimagenet,mytarget,1.0\nmedmnist,mytarget,0.5\n")
    outcomes.import_scores(db, str(new), "logme", fmt="long")
    pid, n_train, n_pred = predictors.fit(db, "ridge", "auc")
    assert n_train == 168 and n_pred == 16 * 15  # every ordered pair of the 16 datasets in the store
    rows = api.query("best_source", db, target="mytarget")[1]
    assert {r[2] for r in rows} == {"predicted"} and len(rows) == 15
    assert [r[3] for r in rows] == sorted((r[3] for r in rows), reverse=True)
    stored = dict(api.sql("SELECT source, value FROM predictions WHERE target = 'mytarget'", db)[1])
    assert {r[1]: r[3] for r in rows} == pytest.approx(stored)
    # LogME is positively related to AUC here, so the highest-LogME source is predicted best
    assert rows[0][1] == "imagenet"


def test_leave_one_target_out_with_an_oracle_score_ranks_perfectly(db, tmp_path, reference):
    jd = reference / "juodelyte-2024" / "results"
    outcomes.import_outcomes(db, str(jd / "AUCs_dataset.csv"), "matrix", metric="auc")
    outcomes.import_scores(db, str(jd / "AUCs_dataset.csv"), "oracle")  # the truth itself, as a score
    cols, rows = predictors.evaluate(db, "ridge", "auc")
    assert cols == ["target", "n_sources", "weighted_tau", "top1_hit", "regret"]
    assert len(rows) == 13 and rows[-1][0] == "(mean)"
    for target, n, tau, hit, regret in rows[:-1]:
        assert (n, hit, regret) == (14, 1.0, 0.0), target
        assert tau == pytest.approx(1.0), target
