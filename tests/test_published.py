"""Published evidence packs: built from ../shared/reference, imported through the user importers,
reproducing the studies' headline figures. Every expected number is the published one (or the
reference file's own cell), never a value read back from metadb."""

from __future__ import annotations

import csv
import io
import json
import shutil
from pathlib import Path

import polars as pl
import pytest
from click.testing import CliRunner

from metadb import api, catalog
from metadb.cli import cli
from metadb.outcomes import import_outcomes
from metadb.published import all_packs, get, packs
from metadb.published.verify import agrees

CATS, JUODELYTE = "published:cats-scans@1", "published:juodelyte-2024@1"


def _run(*args: str) -> str:
    r = CliRunner().invoke(cli, list(args))
    assert r.exit_code == 0, r.output
    return r.output


def _text(path: Path, **kw) -> pl.DataFrame:
    """A published CSV exactly as written: every cell text, `nan` and empty cells null."""
    df = pl.read_csv(path, infer_schema_length=0, null_values=["nan", ""], encoding="utf8-lossy", **kw)
    return df.rename({c: c.lstrip("\ufeff") for c in df.columns})


def _reference_tables(ref: Path) -> dict[tuple[str, str], pl.DataFrame]:
    """(pack, file) -> the reference table it must equal, read independently of the build script."""
    cs, jd = ref / "cats-scans", ref / "juodelyte-2024"
    tables = {
        ("cats-scans", "auc_folds.parquet"): _text(cs / "auc_folds_means_std.csv"),
        ("cats-scans", "experts.parquet"): _text(cs / "experts_clean.csv", separator=";"),
        ("cats-scans", "task2vec_folds.parquet"): _text(cs / "aucs_scores_distances_experts.csv").select(
            "source", "target", *[f"distance_{i}" for i in range(1, 6)]),
        ("juodelyte-2024", "aucs.parquet"): _text(jd / "results" / "AUCs_dataset.csv").drop(""),
    }
    for m in ("logme", "leep", "nleep", "parc", "sfda", "ncti", "lp", "fu"):
        tables[("juodelyte-2024", f"{m}.parquet")] = _text(jd / "results" / f"{m}_dataset.csv").drop("")
    runs = pl.concat([_text(p) for p in sorted((jd / "finetuned_AUCs").glob("fined_*.csv"))], how="diagonal")
    runs = runs.filter(pl.any_horizontal(pl.all().is_not_null()))  # the exports' blank lines
    tables[("juodelyte-2024", "runs.parquet")] = runs.select(
        pl.col("Run ID").alias("run_id"), pl.col("source_flag").alias("source"),
        pl.col("target_flag").alias("target"), "batch_size", "epochs", "lr", "momentum", "wd",
        pl.col("Status").alias("status"), "val_loss", "val_auc", "test_auc")
    return tables


def test_packs_equal_the_reference_tables_value_for_value(reference):
    expected = _reference_tables(reference)
    shipped = {(p.name, t["file"]): p.path(t) for p in all_packs() for t in p.tables}
    assert set(shipped) == set(expected)
    for key, ref in expected.items():
        pack = pl.read_parquet(shipped[key])
        assert pack.columns == ref.columns, key
        assert pack.height == ref.height, key
        for c in pack.columns:
            if pack[c].dtype == pl.Utf8:
                assert pack[c].to_list() == ref[c].to_list(), (key, c)
            else:  # the published text parsed once: exact equality, nulls where the file had nan or nothing
                assert pack[c].cast(pl.Float64).to_list() == ref[c].cast(pl.Float64).to_list(), (key, c)
    assert pl.read_parquet(shipped[("juodelyte-2024", "runs.parquet")]).height == 20157


def test_each_manifest_cites_its_study_and_checks_its_files():
    cats, jd = get("cats-scans").manifest, get("juodelyte-2024").manifest
    assert (cats["arxiv"], cats["commit"], cats["licence"], cats["year"]) == ("2107.05940", "9bc5d8a", "none stated", 2021)
    assert (jd["arxiv"], jd["commit"], jd["licence"], jd["year"]) == ("2412.20172", "7e308c4", "MIT", 2024)
    for pack in all_packs():
        pack.check()
        assert pack.size < 3_000_000  # a few MB at most, inside the wheel
        for t in pack.tables:
            assert t["meaning"] and t["units"] and t["rows"] == pl.read_parquet(pack.path(t)).height


def test_manifest_names_map_onto_the_catalog():
    names = {n["study"]: n for n in get("cats-scans").manifest["names"]}
    assert names["chest"]["catalog"] == "chest" and "Kermany" in catalog.get("chest").title
    assert "Kermany" in names["chest"]["is"]
    for subset, seed in (("pcam-small", "random_state=22"), ("pcam-middle", "random_state=2")):
        assert seed in names[subset]["is"] and "not the same images" in names[subset]["is"]
    flags = {n["study"]: n["catalog"] for n in get("juodelyte-2024").manifest["names"]}
    assert flags["breast"] == "breastmnist" and flags["blood"] == "bloodmnist" and len(flags) == 15
    for pack in all_packs():
        for n in pack.manifest["names"]:
            assert catalog.get(n["catalog"]).name == n["catalog"]


def test_import_is_idempotent_with_provenance_on_every_row(db):
    out = _run("published", "import", "cats-scans", "--db", db)
    assert "cats-scans/auc_folds.parquet: 120 outcome rows imported, 3 pairs not run (all folds nan) skipped" in out
    assert "pcam-small and pcam-middle are the study's own PCam subsets" in out
    out = _run("published", "import", "--all", "--db", db)
    assert "cats-scans: already imported as published:cats-scans@1; nothing added" in out
    assert "juodelyte-2024/runs.parquet: 20157 outcome rows imported" in out
    counts = "SELECT origin, count(*) FROM {} GROUP BY origin ORDER BY origin"
    before = {t: api.sql(counts.format(t), db)[1] for t in ("outcomes", "scores", "similarities")}
    assert before == {"outcomes": [(CATS, 120), (JUODELYTE, 20157)],
                      "scores": [(JUODELYTE, 165 * 6 + 154 * 2)],  # ncti and lp have no chestmnist column
                      "similarities": [(CATS, 27 + 24)]}
    assert _run("published", "import", "--all", "--db", db).count("nothing added") == 2
    assert {t: api.sql(counts.format(t), db)[1] for t in before} == before
    names = {r[0] for r in api.sql("SELECT source FROM outcomes UNION SELECT target FROM outcomes UNION "
                                   "SELECT source FROM scores UNION SELECT target FROM scores", db)[1]}
    assert names == {n["catalog"] for p in all_packs() for n in p.manifest["names"]}


def test_runs_already_imported_from_the_exports_are_refused_in_one_line(db, reference):
    """The pack holds the same runs as the study's exports: importing both would count each run twice."""
    import_outcomes(db, str(reference / "juodelyte-2024" / "finetuned_AUCs" / "fined_blood.csv"), "mlflow",
                    "test_auc", "min:val_loss")
    r = CliRunner().invoke(cli, ["published", "import", "--all", "--db", db])
    assert r.exit_code == 1
    *done, error = r.output.splitlines()
    assert done[-1].startswith("cats-scans: 171 rows from 3 of 3 tables imported as published:cats-scans@1")
    assert "runs.parquet row " in error and "is already in the store (imported from " in error
    assert api.sql("SELECT count(*) FROM outcomes WHERE origin = 'published:juodelyte-2024@1'", db)[1] == [(0,)]
    assert api.sql("SELECT count(*) FROM scores", db)[1] == [(0,)]


def test_best_source_for_chest_answers_from_the_cats_scans_pack(db, reference):
    _run("published", "import", "cats-scans", "--db", db)
    rows = list(csv.DictReader(io.StringIO(_run("query", "best-source", "--target", "chest", "--csv", "--db", db))))
    published = pl.read_csv(reference / "cats-scans" / "auc_folds_means_std.csv", null_values="nan")
    means = {r["source"]: r["mean"] for r in published.iter_rows(named=True)
             if r["target"] == "chest" and r["source"] != "chest" and r["mean"] is not None}
    assert (rows[0]["source"], rows[0]["evidence"]) == ("imagenet", "outcome")
    assert {r["source"]: float(r["value"]) for r in rows} == pytest.approx(means, abs=1e-12)


def test_pack_runs_import_exactly_like_the_published_mlflow_exports(tmp_path, reference):
    """The Parquet run grid through the mlflow importer stores what the 12 CSV exports store, run for run."""
    from_csv, from_pack = str(tmp_path / "csv.duckdb"), str(tmp_path / "pack.duckdb")
    import_outcomes(from_csv, str(reference / "juodelyte-2024" / "finetuned_AUCs" / "fined_*.csv"), "mlflow",
                    "test_auc", "min:val_loss")
    pack = get("juodelyte-2024")
    import_outcomes(from_pack, str(pack.folder / "runs.parquet"), "mlflow", "test_auc", "min:val_loss")
    rows = ("SELECT run_id, source, target, metric, value, is_selected, status, hyperparameters "
            "FROM outcomes ORDER BY run_id")
    expected = api.sql(rows, from_csv)[1]
    assert len(expected) == 20157 and api.sql(rows, from_pack)[1] == expected


def test_verify_reproduces_the_published_figures():
    out = _run("published", "verify", "--all", "--csv")
    rows = {(r["pack"], r["figure"]): r for r in csv.DictReader(io.StringIO(out))}
    assert all(r["agrees"] == "yes" for r in rows.values()) and len(rows) == 13
    assert rows[("cats-scans", "targets whose best source is imagenet (isic, chest, pcam-middle)")]["recomputed"] == "3.0"
    got = {k[1]: float(r["recomputed"]) for k, r in rows.items()}
    assert got["Task2Vec distance vs relative AUC gain, Pearson r"] == pytest.approx(-0.1088, abs=5e-5)
    assert got["Task2Vec distance vs relative AUC gain, p"] == pytest.approx(0.6127, abs=5e-5)
    assert got["expert distance vs relative AUC gain, Pearson r"] == pytest.approx(0.2381, abs=5e-5)
    assert got["selected runs reproduce the published AUC matrix (pairs)"] == 168
    for label, tau in (("LogME", 0.335), ("LEEP", 0.351), ("N-LEEP", 0.411), ("PARC", 0.297),
                       ("SFDA (9 targets)", 0.267), ("NCTI", 0.183)):
        assert got[f"mean weighted Kendall tau, {label}"] == pytest.approx(tau, abs=5e-4)
    assert got["mean weighted Kendall tau, LP x FU"] == pytest.approx(0.52, abs=5e-3)


def test_agreement_is_at_the_published_precision():
    assert agrees("-0.11", -0.1088) and agrees("0.52", 0.5249) and agrees("0.335", 0.3354)
    assert not agrees("0.52", 0.5251) and not agrees("0.335", 0.3356) and not agrees("168", 167.0)
    assert not agrees("0.24", None)


@pytest.fixture
def damaged_packs(tmp_path, monkeypatch) -> Path:
    """A copy of the shipped packs with one byte of a late table flipped (earlier tables are intact)."""
    data = tmp_path / "data"
    shutil.copytree(packs.DATA, data)
    lp = data / "juodelyte-2024" / "lp.parquet"
    raw = bytearray(lp.read_bytes())
    raw[len(raw) // 2] ^= 0xFF
    lp.write_bytes(bytes(raw))
    monkeypatch.setattr(packs, "DATA", data)
    return data


def test_a_damaged_pack_is_a_one_line_error_and_imports_nothing(damaged_packs, db):
    r = CliRunner().invoke(cli, ["published", "import", "--all", "--db", db])
    assert r.exit_code == 1
    assert r.output.startswith("Error: evidence pack juodelyte-2024: lp.parquet does not match its manifest "
                               "checksum (sha256 ") and r.output.count("\n") == 1
    assert "nothing imported; the installed copy is damaged: reinstall metadb" in r.output
    assert not Path(db).exists()  # refused before the store was opened: cats-scans was not imported either
    r = CliRunner().invoke(cli, ["published", "verify", "juodelyte-2024"])
    assert r.exit_code == 1 and "lp.parquet does not match its manifest checksum" in r.output


def test_unknown_pack_and_missing_name_are_one_line_errors(db):
    r = CliRunner().invoke(cli, ["published", "import", "cats", "--db", db])
    assert r.exit_code == 1 and r.output == ("Error: no evidence pack named 'cats'; metadb ships: cats-scans, "
                                             "juodelyte-2024 (see `metadb published list`)\n")
    r = CliRunner().invoke(cli, ["published", "import", "--db", db])
    assert r.exit_code == 1 and "name a pack to import, or pass --all" in r.output


def test_published_list_in_every_output_format():
    rows = list(csv.DictReader(io.StringIO(_run("published", "list", "--csv"))))
    assert [(r["pack"], r["licence"], r["citation"]) for r in rows] == [
        ("cats-scans", "none stated", "van den Brandt et al. 2021, arXiv:2107.05940"),
        ("juodelyte-2024", "MIT", "Juodelyte et al. 2024, arXiv:2412.20172")]
    assert rows[1]["size"].endswith(" kB") and "20,157 fine-tuning runs" in rows[1]["what"]
    assert [r["pack"] for r in json.loads(_run("published", "list", "--json"))] == ["cats-scans", "juodelyte-2024"]
    assert "Cats, not CAT scans" in _run("published", "list")


def test_show_describes_the_tables_and_the_name_mapping():
    rows = list(csv.DictReader(io.StringIO(_run("published", "show", "juodelyte-2024", "--csv"))))
    by_file = {r["file"]: r for r in rows}
    assert by_file["runs.parquet"]["rows"] == "20157" and by_file["aucs.parquet"]["imported_as"] == "not imported"
    assert by_file["runs.parquet"]["imported_as"] == "outcomes (mlflow, test_auc)"
    assert by_file["lp.parquet"]["from"] == ("https://github.com/DovileDo/transferability-in-medical-imaging/blob/"
                                             "7e308c4/results/lp_dataset.csv")
    mapping = list(csv.DictReader(io.StringIO(_run("published", "show", "cats-scans", "--names", "--csv"))))
    assert {r["study"]: r["catalog"] for r in mapping}["chest"] == "chest"


def test_the_shipped_packs_are_what_the_build_script_writes_today(tmp_path, reference):
    """Edit the build script's citations or tables and forget to rebuild: this fails."""
    from metadb.published.build import build

    build(reference, tmp_path)
    for pack in all_packs():
        rebuilt = json.loads((tmp_path / pack.name / "manifest.json").read_text())
        strip = lambda m: {**m, "tables": [{k: v for k, v in t.items() if k not in ("sha256", "bytes")}
                                           for t in m["tables"]]}
        assert strip(rebuilt) == strip(pack.manifest)
        for t in pack.tables:
            assert pl.read_parquet(tmp_path / pack.name / t["file"]).equals(pl.read_parquet(pack.path(t)))
