"""Predictors: the scikit-learn contract, stored predictions feeding best-source, leave-one-target-out."""

from __future__ import annotations

import csv
import io
import json
import re

import numpy as np
import pytest
from sklearn.base import clone
from sklearn.exceptions import NotFittedError

from metadb import api, outcomes, predictors, store
from metadb.cli import cli
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


def test_predict_commands_end_to_end(runner, db, reference):
    jd = reference / "juodelyte-2024" / "results"
    for args in (["outcomes", "import", str(jd / "AUCs_dataset.csv"), "--format", "matrix", "--metric", "auc"],
                 ["scores", "import", str(jd / "logme_dataset.csv"), "--metric", "logme"],
                 ["scores", "import", str(jd / "leep_dataset.csv"), "--metric", "leep"]):
        assert runner.invoke(cli, args + ["--db", db]).exit_code == 0
    for model in ("ridge", "forest", "boosting"):
        r = runner.invoke(cli, ["predict", "fit", "--model", model, "--db", db])
        assert r.exit_code == 0, r.output
        assert re.fullmatch(rf"predictor [0-9a-f]{{12}} \({model}\): fitted on 168 observed pairs, 210 pairs predicted\n",
                            r.output)
    stored = api.sql("SELECT model, outcome_metric, n_train, json_extract_string(params, '$.features_used') "
                     "FROM predictors ORDER BY fitted_at", db)[1]
    assert [s[:3] for s in stored] == [("ridge", "auc", 168), ("forest", "auc", 168), ("boosting", "auc", 168)]
    assert json.loads(stored[0][3]) == ["score_leep", "score_logme"]
    r = runner.invoke(cli, ["predict", "evaluate", "--cv", "leave-one-target-out", "--model", "ridge", "--csv",
                            "--db", db])
    assert r.exit_code == 0, r.output
    rows = list(csv.DictReader(io.StringIO(r.output)))
    assert [x["target"] for x in rows][-1] == "(mean)" and len(rows) == 13  # 12 held-out targets, + mean
    assert all(-1.0 <= float(x["weighted_tau"] or 0) <= 1.0 and float(x["regret"]) >= 0.0 for x in rows)
    assert {x["n_sources"] for x in rows[:-1]} == {"14"}


def test_best_source_ranks_each_source_once_on_its_strongest_evidence(db, tmp_path, reference):
    jd = reference / "juodelyte-2024" / "results"
    outcomes.import_outcomes(db, str(jd / "AUCs_dataset.csv"), "matrix", metric="auc")
    outcomes.import_scores(db, str(jd / "logme_dataset.csv"), "logme")
    predictors.fit(db, "ridge", "auc")
    # hide two observed pairs: their sources fall back to the stored predictions
    con = store.connect(db)
    con.execute("DELETE FROM outcomes WHERE target = 'bloodmnist' AND source IN ('imagenet', 'pathmnist')")
    con.close()
    rows = api.query("best_source", db, target="blood")[1]
    assert [r[0] for r in rows] == list(range(1, 15))
    assert sorted(r[1] for r in rows if r[2] == "predicted") == ["imagenet", "pathmnist"]
    assert [r[2] for r in rows] == ["outcome"] * 12 + ["predicted"] * 2


def test_a_store_without_features_is_refused_with_a_hint(db, tmp_path):
    p = tmp_path / "o.csv"
    p.write_text("source,target,value\na,x,0.9\nb,x,0.8\nc,x,0.7\na,y,0.6\n")
    outcomes.import_outcomes(db, str(p), "long", metric="auc")
    with pytest.raises(MetadbError, match="none of the 0 features is known for any pair with an outcome; ingest"):
        predictors.fit(db, "ridge")
