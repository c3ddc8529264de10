"""Outcome, score and distance imports: formats, all-or-nothing on bad cells, idempotence, stubs, lineage."""

from __future__ import annotations

from pathlib import Path

import pytest

from conftest import write_imagefolder
from metadb import api, outcomes
from metadb.cli import cli
from metadb.errors import MetadbError


def _csv(tmp_path: Path, name: str, text: str) -> str:
    p = tmp_path / name
    p.write_text(text)
    return str(p)


LONG = "source,target,value,fold\nimagenet,blood,0.9,1\nimagenet,blood,0.8,2\nradimagenet,bloodmnist,0.7,1\n"


def test_long_import_canonicalises_names_and_makes_stubs(db, tmp_path):
    (r,) = outcomes.import_outcomes(db, _csv(tmp_path, "o.csv", LONG), "long", metric="auc")
    assert (r.status, r.rows) == ("imported", 3)
    assert api.sql("SELECT DISTINCT target FROM outcomes", db)[1] == [("bloodmnist",)]
    stubs = api.sql("SELECT name, is_stub, domain FROM datasets ORDER BY name", db)[1]
    assert stubs == [("bloodmnist", True, "medical"), ("imagenet", True, "natural"), ("radimagenet", True, "medical")]
    cols, rows = api.query("best_source", db, target="blood")
    assert [(x[1], round(x[3], 6), x[5]) for x in rows] == [("imagenet", 0.85, 2), ("radimagenet", 0.7, 1)]


def test_reimport_adds_nothing_and_says_so(runner, db, tmp_path):
    path = _csv(tmp_path, "o.csv", LONG)
    args = ["outcomes", "import", path, "--metric", "auc", "--db", db]
    assert runner.invoke(cli, args).output == f"{path}: 3 outcome rows imported\n"
    assert runner.invoke(cli, args).output == f"{path}: already imported; nothing added\n"
    assert api.sql("SELECT count(*) FROM outcomes", db)[1] == [(3,)]


@pytest.mark.parametrize("text,message", [
    ("source,target,value\nstl10,chest,0.5\nimagenet,chest,1.7\n", r"o.csv row 3, column value: auc 1.7 is outside \[0, 1\]"),
    ("source,target,value\nstl10,chest,0.5\nimagenet,chest,nan\n", r"o.csv row 3: empty value for imagenet->chest"),
    ("source,value\nimagenet,0.5\n", r"o.csv: missing column\(s\) target; found source, value"),
    ("source,target,value\nstl10,chest,0.5\nimagenet,chest,high\n", r"o.csv row 3, column value: 'high' is not a number"),
    ("source,target,value\nstl10,\"it's\",0.5\n\"a\"\"b\",chest,2\n", r'o.csv row 3, column value: auc 2.0 is outside'),
])
def test_bad_cells_abort_the_whole_file(db, tmp_path, text, message):
    outcomes.import_outcomes(db, _csv(tmp_path, "ok.csv", LONG), "long", metric="auc")
    with pytest.raises(MetadbError, match=message):
        outcomes.import_outcomes(db, _csv(tmp_path, "o.csv", text), "long", metric="auc")
    assert api.sql("SELECT count(*) FROM outcomes", db)[1] == [(3,)]  # nothing of o.csv, not even its good row


def test_mlflow_duplicate_run_ids_and_selection(db, tmp_path):
    header = "Run ID,Status,source_flag,target_flag,lr,val_loss,test_auc\n"
    runs = "a,FINISHED,imagenet,breastmnist,0.1,0.5,0.80\nb,FINISHED,imagenet,breastmnist,0.01,0.3,0.75\n"
    (r,) = outcomes.import_outcomes(db, _csv(tmp_path, "m.csv", header + runs + ",,,,,,\n"), "mlflow",
                                    metric="test_auc", select="min:val_loss")
    assert (r.rows, r.skipped) == (2, 1)
    assert api.sql("SELECT run_id, is_selected, hyperparameters FROM outcomes ORDER BY run_id", db)[1] == [
        ("a", False, '{"lr":"0.1"}'), ("b", True, '{"lr":"0.01"}')]
    with pytest.raises(MetadbError, match=r"d.csv: run id a appears 2 times"):
        outcomes.import_outcomes(db, _csv(tmp_path, "d.csv", header + runs + runs.replace("b,", "c,")), "mlflow",
                                 metric="test_auc")
    with pytest.raises(MetadbError, match="--select 'lowest': expected min:COLUMN or max:COLUMN"):
        outcomes.import_outcomes(db, str(tmp_path / "m.csv"), "mlflow", metric="test_auc", select="lowest")


def test_no_matching_file(db, tmp_path):
    with pytest.raises(MetadbError, match=r"no file matches .*/nope\*.csv"):
        outcomes.import_outcomes(db, str(tmp_path / "nope*.csv"), "matrix", metric="auc")


def test_exclude_lineage_drops_parents_siblings_and_shared_images(db, tmp_path):
    # pneumoniamnist derives from chest; pcam-small and pcam-middle share the parent pcam
    rows = ("source,target,value\nchest,pneumoniamnist,0.99\nimagenet,pneumoniamnist,0.95\n"
            "pcam-small,pcam-middle,0.9\nimagenet,pcam-middle,0.8\nmine,pcam-middle,0.85\n")
    outcomes.import_outcomes(db, _csv(tmp_path, "o.csv", rows), "long", metric="auc")
    best = lambda t, x: [r[1] for r in api.query("best_source", db, target=t, exclude_lineage=x)[1]]  # noqa: E731
    assert best("pneumoniamnist", False) == ["chest", "imagenet"]
    assert best("pneumoniamnist", True) == ["imagenet"]
    assert best("pcam-middle", True) == ["mine", "imagenet"]
    # a user dataset sharing images with the target is dropped too
    shared = write_imagefolder(tmp_path / "shared", {"x": "brick"}, n=3)
    api.ingest(db, path=shared, name="pcam-middle-copy", workers=1)
    api.ingest(db, path=shared, name="mine", workers=1)
    assert best("pcam-middle-copy", False) == [] and "mine" in [r[0] for r in api.query("overlap", db)[1]] + [
        r[1] for r in api.query("overlap", db)[1]]
    outcomes.import_outcomes(db, _csv(tmp_path, "p.csv", "source,target,value\nmine,pcam-middle-copy,0.7\n"
                                      "imagenet,pcam-middle-copy,0.6\n"), "long", metric="auc")
    assert best("pcam-middle-copy", True) == ["imagenet"]


def test_similarity_fallback_and_evidence(db, tmp_path):
    outcomes.import_similarities(db, _csv(tmp_path, "e.csv", "\ufefftarget;source;distance\nchest;isic;2\nchest;kimia;3\n"
                                          "chest;chest;0\n"), "expert")
    outcomes.import_outcomes(db, _csv(tmp_path, "o.csv", "source,target,value\nkimia,chest,0.9\n"), "long", metric="auc")
    rows = api.query("best_source", db, target="chest", measure="expert")[1]
    assert [(r[1], r[2]) for r in rows] == [("kimia", "outcome"), ("isic", "similarity:expert")]
