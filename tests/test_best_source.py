"""best-source answers honestly: metric direction, informed predictions only, where evidence came from,
unknown targets (issue 9 items 4, 5, 15; issue 14's provenance and --evidence)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from metadb import api, outcomes, store, transfer
from metadb.cli import cli
from metadb.errors import MetadbError


def _csv(tmp_path: Path, name: str, text: str) -> str:
    p = tmp_path / name
    p.write_text(text)
    return str(p)


# --- item 5: direction declared once ----------------------------------------------------------------
def test_a_lower_is_better_outcome_ranks_the_lowest_first(db, tmp_path):
    outcomes.import_outcomes(db, _csv(tmp_path, "o.csv", "source,target,value\nimagenet,chest,0.2\nstl10,chest,0.9\n"
                                                         "isic,chest,0.5\n"), metric="test_loss")
    assert [r[1] for r in api.query("best_source", db, target="chest")[1]] == ["imagenet", "isic", "stl10"]
    outcomes.import_outcomes(db, _csv(tmp_path, "a.csv", "source,target,value\nimagenet,isic,0.2\nstl10,isic,0.9\n"),
                             metric="val_auc")
    assert [r[1] for r in api.query("best_source", db, target="isic")[1]] == ["stl10", "imagenet"]
    assert api.sql("SELECT metric_higher_is_better('metrics.val_ece'), metric_higher_is_better('Accuracy')", db)[1] == [
        (False, True)]


def test_an_undeclared_metric_is_named_on_import_and_refused_by_best_source(db, tmp_path):
    (r,) = outcomes.import_outcomes(db, _csv(tmp_path, "o.csv", "source,target,value\nimagenet,chest,0.2\n"),
                                    metric="quality")
    assert any(n.startswith("outcome metric 'quality' has no declared direction (is higher better?)") for n in r.notes)
    with pytest.raises(Exception, match="outcome metric quality has no declared direction"):
        api.query("best_source", db, target="chest")
    api.sql("INSERT INTO metric_directions VALUES ('quality', true, NULL)", db, write=True)
    assert api.query("best_source", db, target="chest")[1][0][1] == "imagenet"


def test_ranking_quality_regret_and_top1_follow_the_direction():
    losses = np.array([0.2, 0.5, 0.9])  # source 0 is best
    tau, hit, regret = transfer.ranking_quality(np.array([0.0, 1.0, 2.0]), losses, higher_is_better=False)
    assert (hit, regret) == (False, pytest.approx(0.7)) and tau == pytest.approx(-1.0)
    tau, hit, regret = transfer.ranking_quality(np.array([2.0, 1.0, 0.0]), losses, higher_is_better=False)
    assert (hit, regret, tau) == (True, 0.0, pytest.approx(1.0))


def test_relative_gain_of_a_loss_is_its_decrease(db, tmp_path):
    outcomes.import_outcomes(db, _csv(tmp_path, "o.csv", "source,target,value\nchest,chest,0.5\nimagenet,chest,0.4\n"),
                             metric="loss")
    con = store.connect(db, read_only=True)
    try:
        assert transfer.relative_gains(con, "loss")[("imagenet", "chest")] == pytest.approx(20.0)
    finally:
        con.close()


# --- item 4: predictions only where something was known ---------------------------------------------
def test_uninformed_predictions_are_not_shown_and_informed_ones_carry_their_count(db, tmp_path):
    outcomes.import_outcomes(db, _csv(tmp_path, "o.csv", "source,target,value\nimagenet,isic,0.9\n"), metric="auc")
    api.sql("""INSERT INTO datasets (name, title, is_stub) VALUES ('chest', 'chest', true);
               INSERT INTO predictors (predictor_id, model, outcome_metric, fitted_at) VALUES ('p1', 'ridge', 'auc', now());
               INSERT INTO predictions (predictor_id, source, target, value, n_features_known, features_known) VALUES
                 ('p1', 'imagenet', 'chest', 0.8, 3, '["logme","frechet","n_images"]'),
                 ('p1', 'stl10', 'chest', 0.85, 0, '[]')""", db, write=True)
    cols, rows = api.query("best_source", db, target="chest")
    assert cols[9] == "features_known"
    assert [(r[1], r[2], r[9], r[10]) for r in rows] == [("imagenet", "predicted", 3, "predictor:ridge")]


# --- issue 14: where evidence came from -------------------------------------------------------------
def test_origin_is_shown_and_evidence_filters_it(runner, db, tmp_path):
    outcomes.import_outcomes(db, _csv(tmp_path, "pack.csv", "source,target,value\nimagenet,chest,0.9\n"), metric="auc",
                             origin="published:cats-scans@1")
    outcomes.import_outcomes(db, _csv(tmp_path, "mine.csv", "source,target,value\nstl10,chest,0.95\n"), metric="auc")
    rows = api.query("best_source", db, target="chest")[1]
    assert [(r[1], r[10]) for r in rows] == [("stl10", "import:mine.csv"), ("imagenet", "published:cats-scans@1")]
    assert [r[1] for r in api.query("best_source", db, target="chest", evidence="own")[1]] == ["stl10"]
    out = runner.invoke(cli, ["query", "best-source", "--target", "chest", "--evidence", "published", "--csv",
                              "--db", db]).output
    assert out.splitlines()[1].endswith(",published:cats-scans@1") and len(out.splitlines()) == 2


# --- item 15: an unknown target is an error ---------------------------------------------------------
def test_an_unknown_target_is_an_error_naming_close_names(runner, db, tmp_path):
    outcomes.import_outcomes(db, _csv(tmp_path, "o.csv", "source,target,value\nimagenet,chest,0.9\n"), metric="auc")
    r = runner.invoke(cli, ["query", "best-source", "--target", "chets", "--db", db])
    assert r.exit_code == 1 and "unknown target chets: not a dataset in the store; did you mean chest?" in r.output
    assert len(r.output.splitlines()) == 1
    r = runner.invoke(cli, ["query", "best-source", "--target", "zzzz", "--db", db])
    assert "unknown target zzzz: not a dataset in the store; ingest it or import outcomes for it first" in r.output
    with pytest.raises(MetadbError):
        outcomes.import_outcomes(db, _csv(tmp_path, "h.csv", "source,target,value\n"), metric="auc")


# --- issue 11: best-source reads a summary kept in step with every outcome write ----------------------
MLFLOW = "Run ID,Status,source_flag,target_flag,lr,val_loss,test_auc\n"


def test_the_summary_pools_own_and_published_rows_only_for_evidence_all(db, tmp_path):
    outcomes.import_outcomes(db, _csv(tmp_path, "pack.csv", "source,target,seed,value\nimagenet,chest,0,0.9\n"
                                                            "stl10,chest,0,0.7\n"),
                             metric="auc", origin="published:cats-scans@1")
    outcomes.import_outcomes(db, _csv(tmp_path, "mine.csv", "source,target,seed,value\nimagenet,chest,1,0.6\n"),
                             metric="auc")
    by_evidence = {e: [(r[1], r[3], r[4], r[5], r[10]) for r in api.query("best_source", db, target="chest",
                                                                          evidence=e)[1]]
                   for e in ("all", "own", "published")}
    assert by_evidence["all"] == [("imagenet", pytest.approx(0.75), pytest.approx(np.std([0.9, 0.6], ddof=1)), 2,
                                   "import:mine.csv, published:cats-scans@1"),
                                  ("stl10", pytest.approx(0.7), None, 1, "published:cats-scans@1")]
    assert by_evidence["own"] == [("imagenet", pytest.approx(0.6), None, 1, "import:mine.csv")]
    assert by_evidence["published"] == [("imagenet", pytest.approx(0.9), None, 1, "published:cats-scans@1"),
                                        ("stl10", pytest.approx(0.7), None, 1, "published:cats-scans@1")]


def test_the_summary_follows_reselection_and_equals_a_full_recompute(db, tmp_path):
    first = "a,FINISHED,imagenet,chest,0.1,0.5,0.80\nb,FINISHED,stl10,chest,0.1,0.5,0.70\n"
    outcomes.import_outcomes(db, _csv(tmp_path, "m1.csv", MLFLOW + first), "mlflow", metric="test_auc",
                             select="min:val_loss")
    assert [(r[1], r[3]) for r in api.query("best_source", db, target="chest")[1]] == [("imagenet", 0.8), ("stl10", 0.7)]
    # a later batch holds a better-validated imagenet run: the pair's answer moves to it
    outcomes.import_outcomes(db, _csv(tmp_path, "m2.csv", MLFLOW + "c,FINISHED,imagenet,chest,0.01,0.2,0.65\n"),
                             "mlflow", metric="test_auc", select="min:val_loss")
    assert [(r[1], r[3], r[10]) for r in api.query("best_source", db, target="chest")[1]] == [
        ("stl10", 0.7, "import:m1.csv"), ("imagenet", 0.65, "import:m2.csv")]
    outcomes.import_outcomes(db, _csv(tmp_path, "o.csv", "source,target,value\nimagenet,isic,0.9\n"), metric="auc")
    stored = api.sql("SELECT * FROM outcome_summary ORDER BY ALL", db)[1]
    assert stored == api.sql("SELECT * FROM outcome_summary_of(NULL) ORDER BY ALL", db)[1] and len(stored) == 3
    assert api.sql("SELECT * FROM outcome_summary_rows ORDER BY target", db)[1] == [("chest", 3), ("isic", 1)]
    # an edit by hand (metadb sql --write) changes a value in place: the summary follows it too
    api.sql("UPDATE outcomes SET value = 0.95 WHERE source = 'stl10' AND target = 'chest'", db, write=True)
    assert [(r[1], r[3]) for r in api.query("best_source", db, target="chest")[1]] == [("stl10", 0.95),
                                                                                      ("imagenet", 0.65)]
    assert api.sql("SELECT * FROM outcome_summary ORDER BY ALL", db)[1] == \
        api.sql("SELECT * FROM outcome_summary_of(NULL) ORDER BY ALL", db)[1]
