"""The published studies, reproduced through metadb's own import commands and queries.

Figures from ../shared/reference/README.md: "Cats, not CAT scans" (van den Brandt et al.) and
Juodelyte et al. 2024. Every number below is the published one. The stores are built once per
module by the real CLI (CliRunner) into real DuckDB files, exactly as the README of metadb
tells a user to.
"""

from __future__ import annotations

import csv
import io
import subprocess
import sys
from pathlib import Path

import polars as pl
import pytest
from click.testing import CliRunner

from metadb import api
from metadb.cli import cli

SCORES = ("logme", "leep", "nleep", "parc", "sfda", "ncti", "lp", "fu")


def _run(*args: str) -> str:
    r = CliRunner().invoke(cli, list(args))
    assert r.exit_code == 0, r.output
    return r.output


@pytest.fixture(scope="module")
def cats(reference, tmp_path_factory) -> str:
    db = str(tmp_path_factory.mktemp("cats") / "cats.duckdb")
    cs = reference / "cats-scans"
    out = _run("outcomes", "import", str(cs / "auc_folds_means_std.csv"), "--format", "folds",
               "--architecture", "resnet50", "--db", db)
    assert out.endswith(": 120 outcome rows imported, 3 pairs not run (all folds nan) skipped\n"), out
    assert _run("similarity", "import", str(cs / "experts_clean.csv"), "--measure", "expert", "--db", db).endswith(
        ": 27 distance rows imported\n")
    _run("similarity", "import", str(cs / "aucs_scores_distances_experts.csv"), "--measure", "task2vec",
         "--format", "cats-scans", "--db", db)
    return db


@pytest.fixture(scope="module")
def juodelyte(reference, tmp_path_factory) -> str:
    db = str(tmp_path_factory.mktemp("juodelyte") / "j.duckdb")
    jd = reference / "juodelyte-2024"
    out = _run("outcomes", "import", str(jd / "finetuned_AUCs" / "*.csv"), "--format", "mlflow",
               "--select", "min:val_loss", "--metric", "test_auc", "--db", db)
    assert out.splitlines()[-1] == "12 of 12 files imported, 20,157 rows (one transaction)"
    for m in SCORES:
        _run("scores", "import", str(jd / "results" / f"{m}_dataset.csv"), "--metric", m, "--db", db)
    assert _run("scores", "combine", "--metrics", "lp,fu", "--as", "lpfu", "--db", db) == "lpfu: 154 scores stored\n"
    return db


# --- Cats, not CAT scans ------------------------------------------------------------------------
@pytest.mark.parametrize("measure,r,p", [("task2vec", -0.1088, 0.6127), ("expert", 0.2381, 0.2626)])
def test_cats_scans_distance_vs_relative_gain_correlation(cats, measure, r, p):
    cols, (row,) = api.query("correlate", cats, measure=measure, outcome="relative_gain")
    got = dict(zip(cols, row))
    assert got["n_pairs"] == 24
    assert got["pearson_r"] == pytest.approx(r, abs=5e-5)
    assert got["pearson_p"] == pytest.approx(p, abs=5e-5)


def test_correlate_from_the_command_line(cats):
    out = _run("query", "correlate", "--measure", "task2vec", "--outcome", "relative_gain", "--csv", "--db", cats)
    (row,) = csv.DictReader(io.StringIO(out))
    assert (row["measure"], row["n_pairs"], round(float(row["pearson_r"]), 4)) == ("task2vec", "24", -0.1088)


@pytest.mark.parametrize("target", ["isic", "chest", "pcam-middle"])
def test_cats_scans_imagenet_is_the_best_source_for_every_target(cats, target):
    cols, rows = api.query("best_source", cats, target=target)
    assert cols == ["rank", "source", "evidence", "value", "std", "n", "metric", "architecture", "setting",
                    "features_known", "origin"]
    assert rows[0][:3] == (1, "imagenet", "outcome") and rows[0][5] == 5 and rows[0][6] == "auc"
    assert rows[0][7:] == ("resnet50", None, None, "import:auc_folds_means_std.csv")
    assert [r[0] for r in rows] == list(range(1, len(rows) + 1))
    assert target not in [r[1] for r in rows]


def test_best_source_from_the_command_line_matches_the_published_means(cats, reference):
    out = _run("query", "best-source", "--target", "chest", "--csv", "--db", cats)
    rows = list(csv.DictReader(io.StringIO(out)))
    published = pl.read_csv(reference / "cats-scans" / "auc_folds_means_std.csv", null_values="nan")
    means = {r["source"]: r["mean"] for r in published.iter_rows(named=True)
             if r["target"] == "chest" and r["source"] != "chest" and r["mean"] is not None}
    assert {r["source"]: float(r["value"]) for r in rows} == pytest.approx(means, abs=1e-12)
    assert rows[0]["source"] == "imagenet" and len(rows) == 7  # 9 sources, minus chest itself and kimia (not run)


def test_duckdb_cli_runs_best_source_on_the_imported_store(cats):
    duckdb_cli = Path(sys.executable).parent / "duckdb"
    out = subprocess.run([str(duckdb_cli), cats, "-csv", "-c", "SELECT * FROM best_source('chest')"],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert lines[0] == "rank,source,evidence,value,std,n,metric,architecture,setting,features_known,origin"
    assert lines[1].startswith("1,imagenet,outcome,0.98673262835")
    assert lines[1].endswith(",5,auc,resnet50,NULL,NULL,import:auc_folds_means_std.csv")
    assert len(lines) == 8


# --- Juodelyte et al. 2024 ------------------------------------------------------------------------
def test_mlflow_selection_rederives_the_published_auc_matrix(juodelyte, reference):
    published = pl.read_csv(reference / "juodelyte-2024" / "results" / "AUCs_dataset.csv").drop("")
    derived = dict(((s, t), v) for s, t, v in api.sql(
        "SELECT source, target, value FROM outcomes WHERE is_selected AND metric = 'test_auc'", juodelyte)[1])
    n = 0
    for row in published.iter_rows(named=True):
        for target, value in row.items():
            if target == "source" or value is None:
                continue
            assert derived[(row["source"], target)] == pytest.approx(value, abs=1e-12)
            n += 1
    assert n == len(derived) == 168
    assert api.sql("SELECT count(*), count(DISTINCT run_id) FROM outcomes", juodelyte)[1] == [(20157, 20157)]


def test_reimporting_the_mlflow_exports_adds_nothing(juodelyte, reference):
    out = _run("outcomes", "import", str(reference / "juodelyte-2024" / "finetuned_AUCs" / "fined_*.csv"),
               "--format", "mlflow", "--select", "min:val_loss", "--metric", "test_auc", "--db", juodelyte)
    assert out.count("already imported; nothing added") == 12
    assert api.sql("SELECT count(*) FROM outcomes", juodelyte)[1] == [(20157,)]


@pytest.mark.parametrize("metric,published,targets", [
    ("logme", 0.335, 11), ("leep", 0.351, 11), ("nleep", 0.411, 11), ("parc", 0.297, 11),
    ("sfda", 0.267, 9), ("ncti", 0.183, 11), ("lpfu", 0.52, 11),
])
def test_juodelyte_mean_weighted_tau(juodelyte, metric, published, targets):
    cols, rows = api.query("metric_agreement", juodelyte, metric=metric)
    mean = dict(zip(cols, rows[-1]))
    assert mean["target"] == "(mean)" and mean["n_sources"] == targets
    # published to 3 decimals; LP x FU as "0.52 (0.522-0.523)"
    assert mean["weighted_tau"] == pytest.approx(published, abs=0.0005 if metric != "lpfu" else 0.0035)
    assert all(r[1] == 14 for r in rows[:-1])  # 15 sources, the target itself excluded
    assert "chestmnist" not in [r[0] for r in rows]  # no published scores for it
    assert len(rows) == 12


def test_juodelyte_per_target_metric_ranks_match_the_published_table(juodelyte, reference):
    """ktau_dataset_rank.csv ranks the 7 metrics per target by weighted tau (undefined tau last)."""
    metrics = {"logme": "logme", "sfda": "sfda", "leep": "leep", "parc": "parc", "ncti": "ncti", "nleep": "nleep",
               "our": "lpfu"}
    tau = {m: {r[0]: r[2] for r in api.query("metric_agreement", juodelyte, metric=m)[1][:-1]}
           for m in metrics.values()}
    published = pl.read_csv(reference / "juodelyte-2024" / "results" / "ktau_dataset_rank.csv", separator=";")
    for row in published.iter_rows(named=True):
        t = row["target"]
        order = sorted(metrics, key=lambda k: -(tau[metrics[k]][t] if tau[metrics[k]][t] is not None else -9))
        assert {k: order.index(k) + 1 for k in metrics} == {k: row[k] for k in metrics}, t


def test_metric_agreement_from_the_command_line(juodelyte):
    out = _run("query", "metric-agreement", "--metric", "logme", "--csv", "--db", juodelyte)
    rows = list(csv.DictReader(io.StringIO(out)))
    assert [r["target"] for r in rows][-1] == "(mean)" and len(rows) == 12
    assert round(float(rows[-1]["weighted_tau"]), 3) == 0.335
    for r in rows[:-1]:  # regret is the AUC lost by trusting the metric's top pick
        assert 0.0 <= float(r["regret"]) < 0.2 and r["top1_hit"] in ("0.0", "1.0")


def test_score_combination_query_equals_the_stored_lp_x_fu(juodelyte):
    cols, rows = api.query("score_combination", juodelyte, metrics="lp,fu")
    assert cols == ["source", "target", "value"] and len(rows) == 154  # 11 targets x 14 candidate sources
    stored = dict(((s, t), v) for s, t, v in api.sql("SELECT source, target, value FROM scores WHERE metric = 'lpfu'",
                                                     juodelyte)[1])
    assert {(s, t): v for s, t, v in rows} == stored
    by_target: dict[str, list[float]] = {}
    for _, t, v in rows:
        by_target.setdefault(t, []).append(v)
    assert all(min(v) == 0.0 and 0.0 < max(v) <= 1.0 for v in by_target.values())
