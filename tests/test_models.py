"""Models and scoring: cached features, stored scores with provenance, rank-models from SQL."""

from __future__ import annotations

import numpy as np
import pyarrow.parquet as pq
import pytest

from conftest import write_imagefolder
from metadb import api
from metadb.cli import cli
from metadb.metrics import logme


@pytest.fixture
def target(db, tmp_path):
    api.ingest(db, path=write_imagefolder(tmp_path / "t", {"brick": "brick", "cell": "cell", "ihc": "immunohistochemistry"},
                                          n=6), name="tgt", workers=1)
    return db


def test_models_score_and_rank(runner, target):
    r = runner.invoke(cli, ["models", "add", "lite0", "--arch", "tf_efficientnet_lite0", "--source", "imagenet",
                            "--db", target])
    assert r.exit_code == 0 and r.output.startswith("lite0: tf_efficientnet_lite0 with package:") and "1000-class" in r.output
    r = runner.invoke(cli, ["models", "add", "tiny", "--arch", "lcnet_050", "--random-init", "--db", target])
    assert r.exit_code == 0, r.output
    r = runner.invoke(cli, ["score", "--target", "tgt", "--models", "lite0", "--metrics", "logme,leep,nce,hscore",
                            "--split", "", "--json", "--db", target])
    assert r.exit_code == 0, r.output
    scores = {(s[0], s[1]): s for s in api.sql("SELECT source, metric, value, n, metric_version FROM scores", target)[1]}
    assert set(scores) == {("lite0", m) for m in ("logme", "leep", "nce", "hscore")}
    assert all(v[3] == 18 for v in scores.values())
    # the stored score is the metric run on the cached features
    path = api.sql("SELECT path FROM model_features WHERE model = 'lite0'", target)[1][0][0]
    t = pq.read_table(path)
    f = np.asarray(t["features"].combine_chunks().flatten()).reshape(t.num_rows, -1)
    _, y = np.unique(t["label"].to_pylist(), return_inverse=True)
    assert scores[("lite0", "logme")][2] == pytest.approx(logme(f, y), rel=1e-12)
    r = runner.invoke(cli, ["score", "--target", "tgt", "--models", "tiny", "--metrics", "leep", "--split", "",
                            "--db", target])
    assert r.exit_code == 1 and "leep needs the source head of tiny" in r.output
    runner.invoke(cli, ["score", "--target", "tgt", "--models", "tiny", "--metrics", "logme", "--split", "", "--db", target])
    rows = api.query("rank_models", target, target="tgt", metric="logme")[1]
    assert [r[1] for r in rows] == sorted([r[1] for r in rows], key=lambda m: -dict((x[1], x[4]) for x in rows)[m])
    assert {r[1] for r in rows} == {"lite0", "tiny"}


def test_unknown_model_and_metric(runner, target):
    r = runner.invoke(cli, ["score", "--target", "tgt", "--models", "nope", "--db", target])
    assert r.exit_code == 1 and "unknown model(s) nope" in r.output
    r = runner.invoke(cli, ["score", "--target", "tgt", "--metrics", "logmee", "--db", target])
    assert r.exit_code == 1 and "unknown metric 'logmee'; did you mean logme" in r.output
