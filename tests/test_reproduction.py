"""The published studies, reproduced through metadb's own import commands and queries.

Figures from ../shared/reference/README.md: "Cats, not CAT scans" (van den Brandt et al.) and
Juodelyte et al. 2024. Every number below is the published one.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import polars as pl
import pytest

from metadb import api
from metadb.cli import cli


def _run(runner, *args):
    r = runner.invoke(cli, list(args))
    assert r.exit_code == 0, r.output
    return r.output


@pytest.fixture(scope="module")
def cats(reference, tmp_path_factory):
    from click.testing import CliRunner

    db = str(tmp_path_factory.mktemp("cats") / "cats.duckdb")
    runner, cs = CliRunner(), reference / "cats-scans"
    _run(runner, "outcomes", "import", str(cs / "auc_folds_means_std.csv"), "--format", "folds", "--metric", "auc",
         "--architecture", "resnet50", "--db", db)
    _run(runner, "similarity", "import", str(cs / "experts_clean.csv"), "--measure", "expert", "--db", db)
    _run(runner, "similarity", "import", str(cs / "aucs_scores_distances_experts.csv"), "--measure", "task2vec",
         "--format", "cats-scans", "--db", db)
    return db


@pytest.fixture(scope="module")
def juodelyte(reference, tmp_path_factory):
    from click.testing import CliRunner

    db = str(tmp_path_factory.mktemp("juodelyte") / "j.duckdb")
    runner, jd = CliRunner(), reference / "juodelyte-2024"
    _run(runner, "outcomes", "import", str(jd / "finetuned_AUCs" / "*.csv"), "--format", "mlflow",
         "--select", "min:val_loss", "--metric", "test_auc", "--db", db)
    for m in ("logme", "leep", "nleep", "parc", "sfda", "ncti", "lp", "fu"):
        _run(runner, "scores", "import", str(jd / "results" / f"{m}_dataset.csv"), "--metric", m, "--db", db)
    _run(runner, "scores", "combine", "--metrics", "lp,fu", "--as", "lpfu", "--db", db)
    return db


def test_cats_scans_task2vec_and_expert_correlations(cats):
    cols, (row,) = api.query("correlate", cats, measure="task2vec", outcome="relative_gain")
    r = dict(zip(cols, row))
    assert r["n_pairs"] == 24
    assert r["pearson_r"] == pytest.approx(-0.1088, abs=5e-5) and r["pearson_p"] == pytest.approx(0.6127, abs=5e-5)
    cols, (row,) = api.query("correlate", cats, measure="expert")
    assert dict(zip(cols, row))["pearson_r"] == pytest.approx(0.2381, abs=5e-5)


@pytest.mark.parametrize("target", ["isic", "chest", "pcam-middle"])
def test_cats_scans_imagenet_is_the_best_source_for_every_target(cats, target):
    cols, rows = api.query("best_source", cats, target=target)
    assert rows[0][1:3] == ("imagenet", "outcome") and rows[0][5] == 5
    assert all(r[1] != target for r in rows)


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
    assert api.sql("SELECT count(*) FROM outcomes", juodelyte)[1] == [(20157,)]


@pytest.mark.parametrize("metric,published,targets", [
    ("logme", 0.335, 11), ("leep", 0.351, 11), ("nleep", 0.411, 11), ("parc", 0.297, 11),
    ("sfda", 0.267, 9), ("ncti", 0.183, 11), ("lpfu", 0.52, 11),
])
def test_juodelyte_mean_weighted_tau(juodelyte, metric, published, targets):
    cols, rows = api.query("metric_agreement", juodelyte, metric=metric)
    mean = dict(zip(cols, rows[-1]))
    assert mean["target"] == "(mean)" and mean["n_sources"] == targets
    assert mean["weighted_tau"] == pytest.approx(published, abs=0.0015 if metric != "lpfu" else 0.0035)
    assert all(r[1] == 14 for r in rows[:-1])  # 15 sources, the target itself excluded
    assert "chestmnist" not in [r[0] for r in rows]  # no published scores for it


def test_duckdb_cli_runs_best_source_on_the_imported_store(cats):
    duckdb_cli = Path(sys.executable).parent / "duckdb"
    out = subprocess.run([str(duckdb_cli), "-readonly", "-csv", cats, "-c",
                          "SELECT rank, source, evidence FROM best_source('isic') LIMIT 2"],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines() == ["rank,source,evidence", "1,imagenet,outcome", "2,pcam-middle,outcome"]
