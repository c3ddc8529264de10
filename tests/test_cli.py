"""The CLI, driven through click's CliRunner: output formats, one-line errors, documentation."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from datetime import datetime, timedelta, timezone

import pytest

from conftest import ROOT, write_imagefolder
from metadb import api
from metadb.cli import cli


@pytest.fixture
def store_with_tex(db, tmp_path):
    api.ingest(db, path=write_imagefolder(tmp_path / "tex", {"brick": "brick", "grass": "grass"}, n=3),
               name="tex", modality="photo", workers=1)
    return db


def test_ingest_prints_one_summary_line(runner, db, tmp_path):
    folder = write_imagefolder(tmp_path / "x", {"a": "camera", "b": "coins"}, n=2)
    r = runner.invoke(cli, ["ingest", "--path", str(folder), "--name", "x", "--db", db, "--workers", "1"])
    assert r.exit_code == 0, r.output
    assert re.fullmatch(r"x: 4 images ingested in \d+\.\d s \(\d+ images/s; 1 worker, local \(1 process\)\)\n", r.output)
    r = runner.invoke(cli, ["ingest", "--path", str(folder), "--name", "x", "--db", db])
    assert r.output.startswith("x: up to date (fingerprint ")


@pytest.mark.parametrize("fmt,check", [
    ("--csv", lambda out: out.splitlines()[:2] == ["name,n_images,n_classes", "tex,6,2"]),
    ("--json", lambda out: json.loads(out) == [{"name": "tex", "n_images": 6, "n_classes": 2}]),
    ("--nl", lambda out: out == '{"name": "tex", "n_images": 6, "n_classes": 2}\n'),
    ("--table", lambda out: out.splitlines()[0].split() == ["name", "n_images", "n_classes"]
     and out.splitlines()[2].split() == ["tex", "6", "2"]),
])
def test_sql_output_formats(runner, store_with_tex, fmt, check):
    r = runner.invoke(cli, ["sql", "SELECT name, n_images, n_classes FROM datasets", fmt, "--db", store_with_tex])
    assert r.exit_code == 0, r.output
    assert check(r.output), r.output


def test_sql_is_read_only_unless_write(runner, store_with_tex):
    r = runner.invoke(cli, ["sql", "DELETE FROM datasets", "--db", store_with_tex])
    assert r.exit_code == 1
    assert r.output.startswith("Error: SQL error:") and "writing needs --write" in r.output
    assert len(r.output.strip().splitlines()) == 1
    r = runner.invoke(cli, ["sql", "DELETE FROM images WHERE label = 'grass'", "--write", "--db", store_with_tex])
    assert r.exit_code == 0, r.output
    assert api.sql("SELECT count(*) FROM images", store_with_tex)[1] == [(3,)]


def test_datasets_and_show(runner, store_with_tex):
    r = runner.invoke(cli, ["datasets", "--json", "--db", store_with_tex])
    (row,) = json.loads(r.output)
    assert (row["name"], row["modality"], row["n_images"], row["n_classes"]) == ("tex", "photo", 6, 2)
    r = runner.invoke(cli, ["show", "tex", "--csv", "--db", store_with_tex])
    assert "basic,1,n_images,6.0" in r.output.splitlines()
    r = runner.invoke(cli, ["show", "nope", "--db", store_with_tex])
    assert r.exit_code == 1 and r.output == "Error: dataset 'nope' is not in the store; ingested: tex\n"


def test_known_catalog_lists_seed_datasets_with_lineage(runner):
    r = runner.invoke(cli, ["datasets", "--known", "--json"])
    rows = {d["name"]: d for d in json.loads(r.output)}
    assert {"kimia", "chest", "isic", "pcam", "pcam-small", "pcam-middle", "stl10", "textures",
            "bloodmnist", "chestmnist", "tissuemnist"} <= rows.keys()
    assert rows["pneumoniamnist"]["derived_from"] == ["chest"]
    assert rows["pcam-small"]["derived_from"] == ["pcam"]
    assert rows["chestmnist"]["label_type"] == "multi-label"


@pytest.mark.parametrize("args,message", [
    (["ingest", "--dataset", "kimai"], "Error: unknown dataset 'kimai'; did you mean kimia?"),
    (["ingest", "--path", "/no/such/folder"], "Error: /no/such/folder not found; pass an existing folder or CSV with --path"),
    (["ingest"], "Error: nothing to ingest; pass --dataset NAME"),
    (["ingest", "--dataset", "kimia", "--path", "x"], "Error: use either --dataset"),
    (["ingest", "--path", ".", "--layout", "imagefolderz"], "Error: unknown layout 'imagefolderz'; did you mean imagefolder?"),
    (["ingest", "--path", ".", "--extractors", "image_stat"], "Error: unknown extractor 'image_stat'; did you mean image_stats"),
    (["sql", "SELECT 1"], "Error: no store at"),
])
def test_bad_input_gets_one_line(runner, tmp_path, monkeypatch, args, message):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "c").mkdir()
    write_imagefolder(tmp_path / "c", {"a": "camera"}, n=1)
    r = runner.invoke(cli, args + ["--db", str(tmp_path / "s.duckdb")] if args[0] != "sql" else args)
    assert r.exit_code == 1, r.output
    assert r.output.startswith(message), r.output
    assert len(r.output.strip().splitlines()) == 1 and "Traceback" not in r.output


def test_known_dataset_with_missing_files_names_path_layout_and_source(runner, tmp_path):
    r = runner.invoke(cli, ["ingest", "--dataset", "chest", "--root", str(tmp_path), "--db", str(tmp_path / "s.duckdb")])
    assert r.exit_code == 1
    assert r.output.strip() == (
        f"Error: chest: not found under {tmp_path} (looked in {tmp_path}/chest_xray, {tmp_path}); "
        "expected chest_xray/{train,val,test}/{NORMAL,PNEUMONIA}/*.jpeg; "
        "download it from https://data.mendeley.com/datasets/rscbjbr9sj/2 and pass its parent folder "
        "(or the folder itself) with --root")


def test_every_command_has_help_and_is_in_the_readme(runner):
    readme = (ROOT / "README.md").read_text()
    for name, command in cli.commands.items():
        assert command.help, name
        assert f"metadb {name}" in readme, f"README does not document `metadb {name}`"
        assert runner.invoke(cli, [name, "--help"]).exit_code == 0


def test_registries_are_listed(runner):
    assert "image_stats" in runner.invoke(cli, ["extractors", "--csv"]).output
    assert "imagefolder" in runner.invoke(cli, ["layouts", "--csv"]).output
    assert "overlap" in runner.invoke(cli, ["queries", "--csv"]).output


def test_demo_ingests_real_shipped_images_and_ranks_two_pretrained_models(runner, db, tmp_path, capsys):
    from metadb.commands.demo import DEMO_METRICS, finetune_models, rank_models

    r = runner.invoke(cli, ["demo", "--data", str(tmp_path / "demo-data"), "--no-embed", "--db", db])
    assert r.exit_code == 0, r.output
    rows = dict(api.sql("SELECT name, n_images FROM datasets WHERE NOT is_stub ORDER BY name", db)[1])
    assert rows == {"demo-digits": 1797, "demo-medical": 91, "demo-textures": 192}
    # it imports the published evidence first, and ends answering the question on the tin from it
    tail = r.output.splitlines()[-10:]
    assert tail[0] == "$ metadb query best-source --target chest" and tail[3].split()[:3] == ["1", "imagenet", "outcome"]
    assert "demo-digits: 1797 images ingested" in r.output and "histogram_entropy" in r.output
    rank_models(db)  # the demo's last step, which needs no embeddings
    scored = api.sql("SELECT source, metric, n FROM scores WHERE target = 'demo-medical' ORDER BY 1, 2", db)[1]
    assert {(s, m) for s, m, _ in scored} == {(s, m) for s in ("efficientnet-lite0", "mobilenet-v2") for m in DEMO_METRICS}
    assert {n for *_, n in scored} == {91}
    capsys.readouterr()
    finetune_models(db)  # the demo's fine-tuning: 3 sources x 3 folds, real training on the 91 images
    out = capsys.readouterr().out.splitlines()
    shown = out.index("$ metadb query best-source --target demo-medical")  # then its header, rule and three rows
    assert out[shown - 2] == "9 trials: 9 run, 0 already stored" and len(out) == shown + 6
    cols, best = api.query("best_source", db, target="demo-medical")
    answer = [dict(zip(cols, row)) for row in best]
    assert [(a["evidence"], a["n"], a["origin"], a["metric"]) for a in answer] == [("outcome", 3, "run", "auc")] * 3
    assert {a["source"]: a["architecture"] for a in answer} == {
        "efficientnet-lite0": "tf_efficientnet_lite0", "mobilenet-v2": "mobilenetv2_100", "random": "mobilenetv2_100"}
    by_source = {a["source"]: a["value"] for a in answer}
    # ImageNet features separate fundus, IHC and cell images after 3 epochs; the same network from random weights
    # does not yet
    assert min(by_source["efficientnet-lite0"], by_source["mobilenet-v2"]) > 0.95 > by_source["random"]
    assert answer[-1]["source"] == "random"
    finetune_models(db)  # the demo run again: every trial is stored already
    assert "9 trials: 0 run, 9 already stored" in capsys.readouterr().out
    assert api.sql("SELECT count(*) FROM runs", db)[1] == [(9,)]


# --- read-only SQL is locked down (issue 9, item 13) ------------------------------------------
@pytest.mark.parametrize("statement", [
    "SELECT * FROM read_csv('/etc/passwd', sep = ':')",
    "SELECT * FROM read_text('/etc/hostname')",
    "SELECT * FROM sniff_csv('/etc/passwd')",
    "SELECT * FROM glob('/root/*')",
    "SELECT * FROM read_parquet('{outside}/x.parquet')",
    "COPY (SELECT 'x') TO '{db}'",
    "COPY (SELECT 'x') TO '{outside}/leak.csv'",
    "COPY (SELECT 'x' AS x) TO '{db}.embeddings/overwrite.parquet'",
    "EXPORT DATABASE '{outside}/dump'",
    "ATTACH '{outside}/other.duckdb' AS other",
    "INSTALL httpfs",
    "LOAD httpfs",
    "SET enable_external_access = true",
    "SET allowed_directories = ['/']",
    "SELECT * FROM enable_logging(storage = 'file', storage_path = '{outside}/logs')",
])
def test_read_only_sql_cannot_touch_files_outside_the_store(runner, store_with_tex, tmp_path, statement):
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "x.parquet").write_bytes(b"")
    (tmp_path / "store.duckdb.embeddings").mkdir()
    before = (tmp_path / "store.duckdb").read_bytes()
    r = runner.invoke(cli, ["sql", statement.format(db=store_with_tex, outside=outside), "--db", store_with_tex])
    assert r.exit_code == 1, r.output
    assert r.output.startswith("Error: SQL error:") and len(r.output.strip().splitlines()) == 1, r.output
    assert "--write" in r.output  # the one-line error says how to get file access on purpose
    assert (tmp_path / "store.duckdb").read_bytes() == before
    assert sorted(p.name for p in outside.iterdir()) == ["x.parquet"]
    assert list((tmp_path / "store.duckdb.embeddings").iterdir()) == []
    assert api.sql("SELECT name, n_images FROM datasets", store_with_tex)[1] == [("tex", 6)]


def test_write_mode_keeps_duckdb_file_access(runner, store_with_tex, tmp_path):
    out = tmp_path / "tex.csv"
    r = runner.invoke(cli, ["sql", f"COPY (SELECT name FROM datasets) TO '{out}'", "--write", "--db", store_with_tex])
    assert r.exit_code == 0, r.output
    assert out.read_text() == "name\ntex\n"


def test_select_now_needs_no_pytz(store_with_tex):
    """DuckDB's Python client needs pytz for TIMESTAMPTZ values; `metadb sql` must work without it."""
    code = ("import sys; sys.modules['pytz'] = None; from metadb.cli import main; "
            f"sys.argv = ['metadb', 'sql', 'SELECT now() AS t, 42 AS n', '--csv', '--db', {store_with_tex!r}]; main()")
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                         env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert run.returncode == 0, run.stderr + run.stdout
    header, row = run.stdout.splitlines()
    assert header == "t,n"
    t, n = row.rsplit(",", 1)
    assert n == "42"
    stamp = datetime.fromisoformat(t)
    assert stamp.utcoffset() is not None and abs(stamp - datetime.now(timezone.utc)) < timedelta(minutes=5)
