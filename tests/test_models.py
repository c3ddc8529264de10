"""Models and scoring: cached features, stored scores with provenance, rank-models from SQL."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
from scipy.stats import weightedtau

from conftest import real_patches, write_imagefolder
from metadb import api
from metadb.backbones import create_backbone
from metadb.cli import cli
from metadb.embeddings import loader_for
from metadb.metrics import fu, logme, lp, ncti_scores
from metadb.store import connect
from test_loaders import medmnist_fixture


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
    assert r.exit_code == 1 and "leep needs the model's source head (tiny on tgt)" in r.output
    # under --metrics all, what cannot run is skipped where it cannot: LEEP for the head-less model,
    # and FU (hence LP x FU) where the triplet loss is 0, as on these three well-separated textures
    r = runner.invoke(cli, ["score", "--target", "tgt", "--metrics", "all", "--split", "", "--db", target])
    assert r.exit_code == 0, r.output
    ran = {(m, s) for m, s in api.sql("SELECT source, metric FROM scores", target)[1]}
    assert ("lite0", "leep") in ran and ("tiny", "leep") not in ran and ("tiny", "logme") in ran
    assert {("lite0", "ncti"), ("tiny", "ncti")} <= ran
    assert "skipped fu for lite0: images: every triplet of every batch of 3 already meets the margin" in r.stderr
    rows = api.query("rank_models", target, target="tgt", metric="logme")[1]
    assert [r[1] for r in rows] == sorted([r[1] for r in rows], key=lambda m: -dict((x[1], x[4]) for x in rows)[m])
    assert {r[1] for r in rows} == {"lite0", "tiny"}


def test_a_model_whose_weights_file_is_gone_is_named_with_the_fix(runner, target, tmp_path):
    import timm
    import torch

    weights = tmp_path / "r18.pth"
    torch.save(timm.create_model("resnet18").state_dict(), weights)
    assert runner.invoke(cli, ["models", "add", "r18", "--arch", "resnet18", "--weights", str(weights),
                               "--db", target]).exit_code == 0
    weights.unlink()
    r = runner.invoke(cli, ["score", "--target", "tgt", "--models", "r18", "--split", "", "--db", target])
    assert r.exit_code == 1 and r.output == (f"Error: model r18: its weights file {weights} is gone; put it back, or "
                                             "re-add the model: metadb models add r18 --arch resnet18 --weights FILE\n")
    assert api.sql("SELECT count(*) FROM scores", target)[1] == [(0,)]


def test_unknown_model_and_metric(runner, target):
    r = runner.invoke(cli, ["score", "--target", "tgt", "--models", "nope", "--db", target])
    assert r.exit_code == 1 and "unknown model(s) nope" in r.output
    r = runner.invoke(cli, ["score", "--target", "tgt", "--metrics", "logmee", "--db", target])
    assert r.exit_code == 1 and "unknown metric 'logmee'; did you mean logme" in r.output


def cached(db, model, target="tgt"):
    """(features, labels) a model's scores were computed from, read back from its Parquet cache."""
    path = api.sql(f"SELECT path FROM model_features WHERE model = '{model}' AND target = '{target}'", db)[1][0][0]
    t = pq.read_table(path)
    return np.asarray(t["features"].combine_chunks().flatten()).reshape(t.num_rows, -1), t["label"].to_pylist()


@pytest.fixture
def mixed(db, tmp_path):
    """Two classes that are not one texture each (FU's triplet loss is 0 on well-separated classes)."""
    from PIL import Image

    for k, (texture, patch) in enumerate((t, p) for t in ("brick", "cell") for p in real_patches(t, 64, 12)):
        cls = tmp_path / "mixed" / ("ab"[k % 12 // 6])
        cls.mkdir(parents=True, exist_ok=True)
        Image.fromarray(patch).save(cls / f"{texture}{k}.png")
    api.ingest(db, path=tmp_path / "mixed", name="tgt", workers=1)
    return db


def test_candidate_normalised_ncti_and_lpfu_with_fu_from_the_model(runner, mixed):
    target = mixed
    for args in (["lite0", "--arch", "tf_efficientnet_lite0"], ["mnv2", "--arch", "mobilenetv2_100"],
                 ["tiny", "--arch", "lcnet_050", "--random-init"]):
        assert runner.invoke(cli, ["models", "add", *args, "--db", target]).exit_code == 0
    r = runner.invoke(cli, ["score", "--target", "tgt", "--metrics", "ncti,lpfu", "--split", "", "--db", target])
    assert r.exit_code == 0, r.output
    rows = api.sql("SELECT source, metric, value, params, n, seed FROM scores ORDER BY metric, source", target)[1]
    by = {(s, m): (v, p) for s, m, v, p, _, _ in rows}
    assert {m for _, m in by} == {"ncti", "lpfu", "lp", "fu"}  # lp and fu are stored as lpfu's ingredients
    models = ["lite0", "mnv2", "tiny"]
    feats = {m: cached(target, m) for m in models}
    labels = feats["lite0"][1]
    # NCTI: the candidates' terms min-max normalised across the three (the reference function is
    # checked against the authors' code in test_metrics)
    expected = ncti_scores([feats[m][0] for m in models], labels)
    assert [by[(m, "ncti")][0] for m in models] == pytest.approx(expected, rel=1e-10, abs=1e-12)
    assert '"normalised_over": ["lite0", "mnv2", "tiny"]' in by[("lite0", "ncti")][1]
    # 24 images <= NCTI's 64 PCA components: stored flagged, said once
    flags = dict(api.sql("SELECT source, flags FROM scores WHERE metric = 'ncti'", target)[1])
    assert flags == {m: ["unstable"] for m in ["lite0", "mnv2", "tiny"]}
    assert "warning: ncti for lite0, mnv2, tiny: N = 24 images <= the 24 PCA components" in r.output
    # FU from the model itself, on every image (24 < the 512-image sample), in the seeded order
    con = connect(target, read_only=True)
    records = {r.image_id: r for r in loader_for(con, "tgt").records()}
    con.close()
    records = [records[i] for i in np.random.default_rng(0).permutation(sorted(records))]
    b = create_backbone("tf_efficientnet_lite0")
    from PIL import Image
    import torch
    images = torch.stack([b.transform()(Image.open(r.file).convert("RGB")) for r in records])
    # score's pool workers run torch on one thread; float32 gradients summed on two differ by ~1e-4
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with torch.enable_grad():
            expected_fu = fu(b.model, images, [r.label for r in records])
    finally:
        torch.set_num_threads(threads)
    assert by[("lite0", "fu")][0] == pytest.approx(expected_fu, rel=1e-6)
    assert by[("lite0", "lp")][0] == pytest.approx(lp(feats["lite0"][0], labels), rel=1e-12)
    # LP x FU: the product of the two min-max normalised over the candidates
    lp_v = np.array([by[(m, "lp")][0] for m in models])
    fu_v = np.array([by[(m, "fu")][0] for m in models])
    mm = lambda v: (v - v.min()) / (v.max() - v.min())  # noqa: E731
    assert [by[(m, "lpfu")][0] for m in models] == pytest.approx(mm(lp_v) * mm(fu_v), rel=1e-12)
    # evaluated against fine-tuned outcomes of the same models, with the outcomes issue's analysis
    aucs = {"lite0": 0.91, "mnv2": 0.88, "tiny": 0.62}
    csv = Path(target).parent / "finetuned.csv"
    csv.write_text("source,target,value\n" + "".join(f"{m},tgt,{v}\n" for m, v in aucs.items()))
    assert runner.invoke(cli, ["outcomes", "import", str(csv), "--metric", "auc", "--db", target]).exit_code == 0
    r = runner.invoke(cli, ["query", "metric-agreement", "--metric", "ncti", "--json", "--db", target])
    assert r.exit_code == 0, r.output
    tgt_row = next(row for row in json.loads(r.output) if row["target"] == "tgt")
    ncti_v = [by[(m, "ncti")][0] for m in models]
    assert tgt_row["weighted_tau"] == pytest.approx(weightedtau(ncti_v, [aucs[m] for m in models])[0], rel=1e-12)
    assert tgt_row["top1_hit"] == float(models[int(np.argmax(ncti_v))] == "lite0")
    # a new normalisation over fewer candidates replaces the whole earlier set
    r = runner.invoke(cli, ["score", "--target", "tgt", "--models", "lite0,tiny", "--metrics", "ncti", "--split", "",
                            "--db", target])
    assert r.exit_code == 0, r.output
    assert api.sql("SELECT source FROM scores WHERE metric = 'ncti' ORDER BY 1", target)[1] == [("lite0",), ("tiny",)]
    r = runner.invoke(cli, ["score", "--target", "tgt", "--models", "lite0", "--metrics", "ncti", "--db", target])
    assert r.exit_code == 1 and "ncti: normalised across the candidate models scored together, so 2 or more are needed; 1 chosen" in r.output


def test_a_multi_label_target_is_scored_label_by_label_by_logme_only(runner, db, tmp_path):
    arrays = medmnist_fixture(tmp_path / "chest", "chestmnist", 24)
    api.ingest(db, dataset="chestmnist", root=tmp_path / "chest", workers=1)
    assert runner.invoke(cli, ["models", "add", "lite0", "--arch", "tf_efficientnet_lite0", "--db", db]).exit_code == 0
    r = runner.invoke(cli, ["score", "--target", "chestmnist", "--metrics", "logme,leep", "--db", db])
    assert r.exit_code == 1 and "leep scores single-label targets only" in r.output
    r = runner.invoke(cli, ["score", "--target", "chestmnist", "--metrics", "all", "--db", db])
    assert r.exit_code == 0, r.output
    rows = api.sql("SELECT metric, value, n FROM scores", db)[1]
    assert [(m, n) for m, _, n in rows] == [("logme", 24)]
    # LogME averaged over the 0/1 label columns that occur in the dataset, from the npz's own label matrix
    f, _ = cached(db, "lite0", "chestmnist")
    present = sum(arrays[f"{s}_labels"].sum(axis=0) for s in ("train", "val", "test")) > 0
    from metadb.loaders.medmnist import LABELS
    order = np.argsort(np.array(LABELS["chestmnist"])[present])  # the store's columns are in label-name order
    y = arrays["train_labels"][:, present][:, order]
    assert rows[0][1] == pytest.approx(logme(f, y), rel=1e-12)


def test_saturated_scores_are_stored_flagged_with_a_warning_or_remedied_by_pca(runner, target):
    # 18 real texture patches, 3 classes, 1280-d features: N <= D, so H-score is C - 1 = 2 for any features
    runner.invoke(cli, ["models", "add", "lite0", "--arch", "tf_efficientnet_lite0", "--source", "imagenet",
                        "--db", target])
    r = runner.invoke(cli, ["score", "--target", "tgt", "--metrics", "hscore,logme", "--split", "", "--db", target])
    assert r.exit_code == 0, r.output
    warnings = r.stderr.splitlines()
    assert warnings[0] == (
        "warning: hscore for lite0: hscore = 2 is its bound for any features: N = 18 images, features of rank 17 "
        "(D = 1280) fit any labelling of them; stored flagged 'saturated' (--saturated pca scores it on PCA "
        "features, or use shrinkage_hscore)")
    assert len(warnings) == 2 and warnings[1].startswith("warning: logme for lite0: logme = ") and \
        "does not depend on the labels: N = 18 images" in warnings[1]
    rows = api.sql("SELECT metric, value, flags, json_extract_string(params, '$.saturated') IS NOT NULL FROM scores "
                   "ORDER BY metric", target)[1]
    assert rows[0][0] == "hscore" and rows[0][1] == pytest.approx(2.0, abs=1e-6) and rows[0][2:] == (["saturated"], True)
    assert rows[1][0] == "logme" and rows[1][2:] == (["saturated"], True)
    r = runner.invoke(cli, ["score", "--target", "tgt", "--metrics", "hscore", "--split", "", "--saturated", "pca",
                            "--db", target])
    assert r.exit_code == 0, r.output
    assert "scored on 4 PCA dimensions instead (flag 'pca')" in r.stderr  # N / 4
    value, flags, params = api.sql("SELECT value, flags, params FROM scores WHERE metric = 'hscore'", target)[1][0]
    params = json.loads(params)
    assert flags == ["pca"] and params["pca_dims"] == 4 and params["saturated_value"] == pytest.approx(2.0, abs=1e-6)
    assert 0 < value < params["saturated_value"] - 1e-4  # three well-separated textures: still near 2
