"""Imports that must not change the data without a word (issue 9, items 2, 3, 12, 15).

Selection over every stored run (not per import), duplicates and conflicts across files, formats
and the store, columns kept as hyperparameters, reported name mapping, folds summaries checked,
Parquet and gzipped exports. Real published files where they exist (../shared/reference).
"""

from __future__ import annotations

import gzip
from pathlib import Path

import polars as pl
import pytest

from metadb import api, outcomes
from metadb.cli import cli
from metadb.errors import MetadbError

MLFLOW = ["Run ID", "Status", "source_flag", "target_flag", "lr", "momentum", "wd", "batch_size", "epochs",
          "val_loss", "val_auc", "test_auc"]


def _csv(tmp_path: Path, name: str, text: str) -> str:
    p = tmp_path / name
    p.write_text(text)
    return str(p)


def _published(reference: Path, target: str | None = None) -> dict[tuple[str, str], float]:
    table = pl.read_csv(reference / "juodelyte-2024" / "results" / "AUCs_dataset.csv").drop("")
    return {(r["source"], t): v for r in table.iter_rows(named=True) for t, v in r.items()
            if t != "source" and v is not None and (target is None or t == target)}


def _selected(db: str) -> dict[tuple[str, str], float]:
    return {(s, t): v for s, t, v in api.sql("SELECT source, target, value FROM outcomes WHERE is_selected", db)[1]}


# --- item 2: selection is a property of all stored runs ---------------------------------------------
def test_a_grid_imported_in_two_batches_selects_one_run_per_pair_as_the_published_table(db, tmp_path, reference):
    """fined_breast.csv (1,680 runs) split in two files imported separately selects what the authors did."""
    runs = (reference / "juodelyte-2024" / "finetuned_AUCs" / "fined_breast.csv").read_text().splitlines(keepends=True)
    header, body = runs[0], runs[1:]
    first = _csv(tmp_path, "batch1.csv", header + "".join(body[0::2]))
    second = _csv(tmp_path, "batch2.csv", header + "".join(body[1::2]))
    for path in (first, second):
        outcomes.import_outcomes(db, path, "mlflow", metric="test_auc", select="min:val_loss")
    per_pair = api.sql("SELECT source, count(*) FILTER (WHERE is_selected) FROM outcomes GROUP BY source", db)[1]
    assert {n for _, n in per_pair} == {1} and len(per_pair) == 14
    published = _published(reference, "breastmnist")
    assert _selected(db) == pytest.approx(published, abs=1e-12)
    rows = api.query("best_source", db, target="breast")[1]
    assert all(r[5] == 1 for r in rows)  # one selected run per source, not one per batch


def test_a_better_run_in_a_later_batch_takes_over_and_a_failed_one_never_does(db, tmp_path):
    head = "Run ID,Status,source_flag,target_flag,lr,val_loss,test_auc\n"
    outcomes.import_outcomes(db, _csv(tmp_path, "a.csv", head + "a,FINISHED,imagenet,isic,0.1,0.5,0.80\n"),
                             "mlflow", metric="test_auc", select="min:val_loss")
    outcomes.import_outcomes(db, _csv(tmp_path, "b.csv", head + "b,FINISHED,imagenet,isic,0.01,0.3,0.75\n"
                                                          "c,FAILED,imagenet,isic,0.02,0.1,0.99\n"),
                             "mlflow", metric="test_auc", select="min:val_loss")
    assert api.sql("SELECT run_id FROM outcomes WHERE is_selected", db)[1] == [("b",)]
    assert api.query("best_source", db, target="isic")[1][0][3:6] == (0.75, None, 1)
    with pytest.raises(MetadbError, match=r"imagenet->isic \(test_auc\) would be selected by two rules: "
                                          r"max:val_loss and min:val_loss"):
        outcomes.import_outcomes(db, _csv(tmp_path, "c.csv", head + "d,FINISHED,imagenet,isic,0.1,0.2,0.7\n"),
                                 "mlflow", metric="test_auc", select="max:val_loss")
    assert api.sql("SELECT count(*) FROM outcomes", db)[1] == [(3,)]
    (r,) = outcomes.import_outcomes(db, _csv(tmp_path, "e.csv", head + "e,FINISHED,stl10,isic,0.1,0.2,0.7\n"
                                                               "f,FINISHED,stl10,isic,0.1,0.3,0.6\n"), "mlflow",
                                    metric="test_auc")
    assert "no --select: every run of a pair counts as its outcome" in r.notes[-1]


def test_selection_is_per_architecture_and_observed_never_averages_architectures(db, tmp_path):
    from metadb import store, transfer

    head = "Run ID,source_flag,target_flag,val_loss,test_auc\n"
    outcomes.import_outcomes(db, _csv(tmp_path, "r18.csv", head + "a,imagenet,isic,0.5,0.80\nb,imagenet,isic,0.6,0.9\n"),
                             "mlflow", metric="test_auc", select="min:val_loss", architecture="resnet18")
    outcomes.import_outcomes(db, _csv(tmp_path, "r50.csv", head + "c,imagenet,isic,0.4,0.70\n"),
                             "mlflow", metric="test_auc", select="min:val_loss", architecture="resnet50")
    assert api.sql("SELECT run_id FROM outcomes WHERE is_selected ORDER BY 1", db)[1] == [("a",), ("c",)]
    rows = api.query("best_source", db, target="isic")[1]
    assert [(r[1], r[3], r[7]) for r in rows] == [("imagenet", 0.8, "resnet18"), ("imagenet", 0.7, "resnet50")]
    assert [r[3] for r in api.query("best_source", db, target="isic", architecture="resnet50")[1]] == [0.7]
    con = store.connect(db, read_only=True)
    try:
        with pytest.raises(MetadbError, match=r"imagenet->isic has test_auc outcomes for architectures resnet18, "
                                              r"resnet50; they are not averaged; name one architecture"):
            transfer.observed(con, "test_auc")
        assert transfer.observed(con, "test_auc", architecture="resnet18") == {("imagenet", "isic"): 0.8}
    finally:
        con.close()


def test_the_twelve_exports_as_one_parquet_file_select_the_published_aucs(db, tmp_path, reference):
    """An evidence pack ships the 20,157-run grid as one typed Parquet file; the selection is the same."""
    exports = sorted((reference / "juodelyte-2024" / "finetuned_AUCs").glob("fined_*.csv"))
    grid = pl.concat([pl.read_csv(f, columns=MLFLOW, infer_schema_length=None) for f in exports], how="vertical_relaxed")
    grid.write_parquet(tmp_path / "runs.parquet")
    (r,) = outcomes.import_outcomes(db, str(tmp_path / "runs.parquet"), "mlflow", metric="test_auc",
                                    select="min:val_loss")
    assert r.rows == 20157
    assert _selected(db) == pytest.approx(_published(reference), abs=1e-12)


def test_gzipped_csv_exports_are_read(db, tmp_path, reference):
    export = reference / "juodelyte-2024" / "finetuned_AUCs" / "fined_derma.csv"
    gz = tmp_path / "fined_derma.csv.gz"
    gz.write_bytes(gzip.compress(export.read_bytes()))
    outcomes.import_outcomes(db, str(gz), "mlflow", metric="test_auc", select="min:val_loss")
    assert _selected(db) == pytest.approx(_published(reference, "dermamnist"), abs=1e-12)


# --- item 3: duplicates and conflicts ---------------------------------------------------------------
def test_conflicting_rows_are_refused_naming_both(db, tmp_path):
    path = _csv(tmp_path, "o.csv", "source,target,value,fold\nimagenet,chest,0.91,1\nstl10,chest,0.7,1\n"
                                   "imagenet,chest,0.55,1\n")
    with pytest.raises(MetadbError, match=r"conflicting outcomes for imagenet->chest auc fold 1: 0.91 \(.*o.csv row 2\) "
                                          r"and 0.55 \(.*o.csv row 4\)"):
        outcomes.import_outcomes(db, path, metric="auc")


def test_exact_duplicates_are_dropped_and_counted_across_files_and_the_store(runner, db, tmp_path):
    rows = "source,target,value,fold\nimagenet,chest,0.91,1\nimagenet,chest,0.91,1\nstl10,chest,0.7,1\n"
    a = _csv(tmp_path, "a.csv", rows)
    b = _csv(tmp_path, "b.csv", "source,target,value,fold\nstl10,chest,0.7,1\nstl10,chest,0.72,2\n")
    out = runner.invoke(cli, ["outcomes", "import", str(tmp_path / "*.csv"), "--metric", "auc", "--db", db]).output
    assert out.splitlines()[-3:] == [f"{a}: 2 outcome rows imported, 1 exact duplicates skipped",
                                     f"{b}: 1 outcome rows imported, 1 exact duplicates skipped",
                                     "2 of 2 files imported, 3 rows (one transaction)"]
    c = _csv(tmp_path, "c.tsv", "source\ttarget\tvalue\tfold\nimagenet\tchest\t0.91\t1\n")
    assert outcomes.import_outcomes(db, c, metric="auc")[0].summary() == f"{c}: 0 outcome rows imported, 1 exact duplicates skipped"
    with pytest.raises(MetadbError, match=r"conflicting outcomes for stl10->chest auc fold 2: 0.8 \(.*d.csv row 2\) "
                                          r"and 0.72 already stored \(from .*b.csv row 3\)"):
        outcomes.import_outcomes(db, _csv(tmp_path, "d.csv", "source,target,value,fold\nstl10,chest,0.8,2\n"), metric="auc")
    assert [(r[1], round(r[3], 6), r[5]) for r in api.query("best_source", db, target="chest")[1]] == [
        ("imagenet", 0.91, 1), ("stl10", 0.71, 2)]


def test_the_same_rows_as_long_and_then_as_folds_are_stored_once(db, tmp_path, reference):
    folds = reference / "cats-scans" / "auc_folds_means_std.csv"
    table = pl.read_csv(folds, null_values="nan").drop_nulls("fold_1")
    long = table.unpivot(index=["source", "target"], on=[f"fold_{k}" for k in range(1, 6)],
                         variable_name="fold", value_name="value")
    long = long.with_columns(pl.col("fold").str.slice(5).cast(pl.Int32))
    long.write_csv(tmp_path / "long.csv", float_precision=None)
    (r,) = outcomes.import_outcomes(db, str(tmp_path / "long.csv"), "long", metric="auc")
    assert r.rows == 120
    (r,) = outcomes.import_outcomes(db, str(folds), "folds")
    assert (r.rows, r.skips["exact duplicates"]) == (0, 120)
    assert api.sql("SELECT count(*) FROM outcomes", db)[1] == [(120,)]
    assert api.query("best_source", db, target="chest")[1][0][5] == 5


# --- item 12: nothing changed without a word --------------------------------------------------------
def test_unknown_columns_are_kept_as_hyperparameters_and_best_source_ranks_per_setting(runner, db, tmp_path):
    path = _csv(tmp_path, "o.csv", "source,target,AUC,freeze\nimagenet,chest,0.9,true\nimagenet,chest,0.6,false\n"
                                   "stl10,chest,0.7,true\nstl10,chest,0.8,false\n")
    out = runner.invoke(cli, ["outcomes", "import", path, "--metric", "auc", "--db", db]).output.splitlines()
    assert f"{path}: value column AUC (named like --metric auc)" in out
    assert f"{path}: kept as hyperparameters: freeze (best-source --by freeze ranks per setting)" in out
    assert out[-1] == f"{path}: 4 outcome rows imported"  # not refused as duplicates: the settings differ
    assert api.sql("SELECT DISTINCT hyperparameters FROM outcomes ORDER BY 1", db)[1] == [
        ('{"freeze":"false"}',), ('{"freeze":"true"}',)]
    rows = api.query("best_source", db, target="chest", by="freeze")[1]
    assert [(r[0], r[1], r[3], r[8]) for r in rows] == [(1, "stl10", 0.8, "false"), (2, "imagenet", 0.6, "false"),
                                                       (1, "imagenet", 0.9, "true"), (2, "stl10", 0.7, "true")]
    pooled = api.query("best_source", db, target="chest")[1]
    assert {r[8] for r in pooled} == {"pooled over different settings (rank per setting with --by)"}


def test_folds_without_underscore_and_summaries_checked(db, tmp_path):
    ok = "source,target,fold1,fold2,fold3,mean,std\nimagenet,isic,0.9,0.8,0.7,0.8,0.0816\nstl10,isic,0.5,0.6,0.7,0.60,0.1\n"
    (r,) = outcomes.import_outcomes(db, _csv(tmp_path, "ok.csv", ok), "folds")  # std: ddof 0, then ddof 1
    assert r.rows == 6
    assert api.sql("SELECT fold, value FROM outcomes WHERE source = 'imagenet' ORDER BY fold", db)[1] == [
        (1, 0.9), (2, 0.8), (3, 0.7)]
    bad = "source,target,fold1,fold2,fold3,mean,std\nradimagenet,isic,0.9,0.8,0.7,0.85,0.1\n"
    with pytest.raises(MetadbError, match=r"bad.csv row 2: radimagenet->isic mean 0.85 is not the mean of its folds \(0.8\)"):
        outcomes.import_outcomes(db, _csv(tmp_path, "bad.csv", bad), "folds")
    bad_std = "source,target,fold_1,fold_2,std\nradimagenet,isic,0.9,0.8,0.5\n"
    with pytest.raises(MetadbError, match=r"row 2: radimagenet->isic std 0.5 is not the std of its folds \(0.05 or 0.0707107\)"):
        outcomes.import_outcomes(db, _csv(tmp_path, "bad_std.csv", bad_std), "folds")


def test_names_are_reported_and_mapping_can_be_turned_off_or_given(runner, db, tmp_path):
    path = _csv(tmp_path, "o.csv", "source,target,value\nimagenet,breast,0.9\n")
    out = runner.invoke(cli, ["outcomes", "import", path, "--metric", "auc", "--db", db]).output.splitlines()
    assert out[0] == "names mapped: breast -> breastmnist (catalog alias)"
    other = str(tmp_path / "other.duckdb")
    out = runner.invoke(cli, ["outcomes", "import", path, "--metric", "auc", "--no-catalog-names", "--db", other]).output
    assert "names mapped" not in out and "stubs (not in the store, unknown to the catalog): breast" in out
    assert api.query("best_source", other, target="breast")[1][0][1] == "imagenet"  # the stored name means itself
    names = _csv(tmp_path, "names.csv", "name,dataset\nbreast,busi\n")
    third = str(tmp_path / "third.duckdb")
    out = runner.invoke(cli, ["outcomes", "import", path, "--metric", "auc", "--names", names, "--db", third]).output
    assert out.splitlines()[0] == "names mapped: breast -> busi (names file)"
    assert api.sql("SELECT DISTINCT target FROM outcomes", third)[1] == [("busi",)]


# --- item 15 ----------------------------------------------------------------------------------------
def test_a_header_only_file_is_a_one_line_error_and_leaves_no_store(runner, db, tmp_path):
    path = _csv(tmp_path, "o.csv", "source,target,value\n")
    r = runner.invoke(cli, ["outcomes", "import", path, "--metric", "auc", "--db", db])
    assert r.exit_code == 1 and r.output.startswith(f"Error: {path}: a header and no rows; nothing to import")
    assert len(r.output.splitlines()) == 1 and not Path(db).exists()
