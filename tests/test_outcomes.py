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
    assert runner.invoke(cli, args).output.splitlines() == [
        "names mapped: blood -> bloodmnist (catalog alias)",
        "stubs (not in the store; catalog metadata): bloodmnist, imagenet, radimagenet",
        f"{path}: 3 outcome rows imported"]
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
    assert api.sql("SELECT run_id, is_selected, hyperparameters, status FROM outcomes ORDER BY run_id", db)[1] == [
        ("a", False, '{"lr":0.1}', "FINISHED"), ("b", True, '{"lr":0.01}', "FINISHED")]
    with pytest.raises(MetadbError, match=r"d.csv: run id a appears 2 times \(rows 2, 4\)"):
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
    # the distances' file is provenance, never a dataset: no stub is named after it
    names = [r[0] for r in api.sql("SELECT name FROM datasets ORDER BY name", db)[1]]
    assert names == ["chest", "isic", "kimia"]


MLFLOW = "Run ID,Status,source_flag,target_flag,lr,batch_size,val_loss,val_auc,test_auc\n"


def test_mlflow_max_selection_never_picks_a_failed_run_and_keeps_every_run(db, tmp_path):
    runs = ("r1,FINISHED,imagenet,blood,0.1,64,0.5,0.90,0.80\n"
            "r2,FAILED,imagenet,blood,0.01,64,0.2,0.99,0.70\n"
            "r3,FINISHED,imagenet,blood,0.001,128,0.4,0.95,0.85\n"
            "r4,FINISHED,radimagenet,blood,0.1,64,0.6,0.70,\n")  # logged no test_auc: counted skip
    (r,) = outcomes.import_outcomes(db, _csv(tmp_path, "m.csv", MLFLOW + runs), "mlflow", metric="test_auc",
                                    select="max:val_auc")
    assert (r.rows, r.skipped) == (3, 1)
    rows = api.sql("""SELECT run_id, target, is_selected, hyperparameters, protocol FROM outcomes
                      ORDER BY run_id""", db)[1]
    assert rows == [("r1", "bloodmnist", False, '{"lr":0.1,"batch_size":64}', "fine-tune"),
                    ("r2", "bloodmnist", False, '{"lr":0.01,"batch_size":64}', "fine-tune"),
                    ("r3", "bloodmnist", True, '{"lr":0.001,"batch_size":128}', "fine-tune")]
    assert api.sql("SELECT json_extract(hyperparameters, '$.lr')::DOUBLE FROM outcomes WHERE is_selected", db)[1] == [
        (0.001,)]


def test_run_ids_are_unique_across_files_and_the_store(db, tmp_path):
    a = _csv(tmp_path, "a.csv", MLFLOW + "x1,FINISHED,imagenet,blood,0.1,64,0.5,0.9,0.8\n")
    b = _csv(tmp_path, "b.csv", MLFLOW + "x1,FINISHED,radimagenet,blood,0.1,64,0.5,0.9,0.7\n")
    with pytest.raises(MetadbError, match=r"run id x1 appears 2 times \(.*a.csv row 2; .*b.csv row 2\)"):
        outcomes.import_outcomes(db, str(tmp_path / "*.csv"), "mlflow", metric="test_auc")
    outcomes.import_outcomes(db, a, "mlflow", metric="test_auc")
    with pytest.raises(MetadbError, match=r"b.csv row 2: run id x1 is already in the store \(imported from .*a.csv\)"):
        outcomes.import_outcomes(db, b, "mlflow", metric="test_auc")


def test_a_bad_file_in_a_glob_leaves_the_store_unchanged(runner, db, tmp_path):
    good = _csv(tmp_path, "1.csv", "source,target,value\nimagenet,chest,0.9\n")
    bad = _csv(tmp_path, "2.csv", "source,target,value\nstl10,chest,0.9\nisic,chest,93.5\n")
    r = runner.invoke(cli, ["outcomes", "import", str(tmp_path / "*.csv"), "--metric", "auc", "--db", db])
    assert r.exit_code == 1
    assert r.output == (f"Error: {bad} row 3, column value: auc 93.5 is outside [0, 1]; AUC and accuracy are "
                        "fractions: divide percentages by 100, or name another --metric\n")
    assert not Path(db).exists()  # the import made the store file, so the failed import removes it
    Path(bad).write_text("source,target,value\nstl10,chest,0.9\nisic,chest,0.935\n")
    r = runner.invoke(cli, ["outcomes", "import", str(tmp_path / "*.csv"), "--metric", "auc", "--db", db])
    assert r.output.splitlines()[-3:] == [f"{good}: 1 outcome rows imported", f"{bad}: 2 outcome rows imported",
                                          "2 of 2 files imported, 3 rows (one transaction)"]
    Path(bad).write_text("source,target,value\nstl10,isic,1.5\n")
    r = runner.invoke(cli, ["outcomes", "import", bad, "--metric", "auc", "--db", db])
    assert r.exit_code == 1 and api.sql("SELECT count(*) FROM outcomes", db)[1] == [(3,)]  # an existing store stays


@pytest.mark.parametrize("fmt,text,message", [
    ("folds", "source,target,fold_1,fold_2\nimagenet,isic,0.9,nan\n",
     r"f.csv row 2: imagenet->isic has fold_2 empty but other folds set"),
    ("folds", "source,target,fold_1\nimagenet,isic,0.9\nimagenet,isic,0.8\n",
     r"f.csv: pair imagenet, isic appears 2 times \(rows 2, 3\)"),
    ("folds", "source,target,mean\nimagenet,isic,0.9\n", r"f.csv: no fold_1 .. fold_k columns"),
    ("matrix", ",source,isic,chest\n0,imagenet,0.9,0.8\n1,imagenet,0.7,\n", r"f.csv: source imagenet appears 2 times"),
    ("matrix", "source,isic\nimagenet,-0.2\n", r"f.csv row 2, column isic: auc -0.2 is outside \[0, 1\]"),
    ("mlflow", "Run ID,source_flag,test_auc\nr,imagenet,0.9\n", r"f.csv: missing column\(s\) target_flag"),
    ("long", "source,target,value,fold\nimagenet,isic,0.9,1.5\n", r"f.csv row 2, column fold: '1.5' is not a whole"),
    ("long", "source,target,value\n,isic,0.9\n", r"f.csv row 2: empty source"),
    ("long", "source,target,value,hyperparameters\nimagenet,isic,0.9,lr=1\n", r"'lr=1' is not a JSON object"),
])
def test_format_specific_errors_name_the_file_and_row(db, tmp_path, fmt, text, message):
    with pytest.raises(MetadbError, match=message):
        outcomes.import_outcomes(db, _csv(tmp_path, "f.csv", text), fmt, metric="test_auc" if fmt == "mlflow" else "auc")


def test_folds_default_to_auc_and_skip_pairs_not_run(db, tmp_path):
    text = ("source,target,fold_1,fold_2,mean,std\nimagenet,isic,0.9,0.8,0.85,0.05\n"
            "kimia,isic,nan,nan,nan,nan\nisic,isic,0.7,0.6,0.65,0.05\n")
    (r,) = outcomes.import_outcomes(db, _csv(tmp_path, "f.csv", text), "folds")
    assert (r.rows, r.skipped, r.summary().split(": ", 1)[1]) == (
        4, 1, "4 outcome rows imported, 1 pairs not run (all folds nan) skipped")
    assert api.sql("SELECT source, fold, value, metric, file_row FROM outcomes ORDER BY file_row, fold", db)[1] == [
        ("imagenet", 1, 0.9, "auc", 2), ("imagenet", 2, 0.8, "auc", 2), ("isic", 1, 0.7, "auc", 4),
        ("isic", 2, 0.6, "auc", 4)]
    assert api.sql("SELECT count(*) FROM datasets WHERE name = 'kimia'", db)[1] == [(0,)]  # not run: no stub


def test_select_is_refused_outside_mlflow(db, tmp_path):
    with pytest.raises(MetadbError, match="--select applies to --format mlflow, not matrix"):
        outcomes.import_outcomes(db, _csv(tmp_path, "m.csv", "source,x\na,0.1\n"), "matrix", select="min:val_loss")


def test_scores_long_format_keeps_the_computed_score_columns(db, tmp_path):
    text = "model,target,value,metric_version,n,seed,runtime_s\nresnet18-imagenet,blood,-1.25,2,500,0,3.5\n"
    (r,) = outcomes.import_scores(db, _csv(tmp_path, "s.csv", text), "logme", fmt="long")
    assert r.summary().endswith("s.csv: 1 score rows imported")
    assert api.sql("SELECT source, target, metric, value, metric_version, n, seed, runtime_s, file_row FROM scores",
                   db)[1] == [("resnet18-imagenet", "bloodmnist", "logme", -1.25, "2", 500, 0, 3.5, 2)]
    assert api.sql("SELECT is_stub, title FROM datasets WHERE name = 'resnet18-imagenet'", db)[1] == [
        (True, "resnet18-imagenet")]


def test_distances_must_not_be_negative(db, tmp_path):
    with pytest.raises(MetadbError, match=r"d.csv row 3: distance -0.5 between chest and isic is negative"):
        outcomes.import_similarities(db, _csv(tmp_path, "d.csv", "a,b,distance\nchest,chest,0\nchest,isic,-0.5\n"),
                                     "mine")


def test_cli_errors_are_one_line(runner, db, tmp_path):
    r = runner.invoke(cli, ["outcomes", "import", _csv(tmp_path, "m.csv", "Run ID,x\n1,2\n"), "--format", "mlflow",
                            "--db", db])
    assert (r.exit_code, r.output) == (1, "Error: --format mlflow needs --metric, the logged metric that is the "
                                          "outcome (e.g. test_auc)\n")
    r = runner.invoke(cli, ["similarity", "import", str(tmp_path / "none*.csv"), "--measure", "expert", "--db", db])
    assert r.exit_code == 1 and len(r.output.splitlines()) == 1 and "no file matches" in r.output


def test_boolean_query_parameters_work_as_bare_flags(runner, db, tmp_path):
    rows = "source,target,value\nchest,pneumoniamnist,0.99\nimagenet,pneumoniamnist,0.95\n"
    outcomes.import_outcomes(db, _csv(tmp_path, "o.csv", rows), "long", metric="auc")
    base = ["query", "best-source", "--target", "pneumoniamnist", "--csv", "--db", db]
    sources = lambda extra: [l.split(",")[1] for l in runner.invoke(cli, base + extra).output.splitlines()[1:]]  # noqa: E731
    assert sources([]) == ["chest", "imagenet"]
    assert sources(["--exclude-lineage"]) == ["imagenet"]
    assert sources(["--exclude-lineage", "false"]) == ["chest", "imagenet"]
