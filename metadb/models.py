"""Pretrained models as candidates to transfer from, and scoring them on a target.

A model is a timm architecture with weights (found like backbones are) and a pretraining source.
`outputs` extracts a model's pooled features and source-head probabilities on the target's images
once and caches them in Parquet keyed by (model, target, split) and the data and weights
fingerprints; `metadb.scoring` runs the metrics on them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from metadb import store
from metadb.errors import MetadbError


def add(db, name: str, arch: str, weights: str | None = None, source: str | None = None,
        method: str = "supervised", random_init: bool = False) -> dict[str, Any]:
    """Register a model; its weights are loaded once here, so a bad file fails now, not at scoring."""
    from metadb.backbones import create_backbone

    b = create_backbone(arch, weights, random_init, with_head=True)
    head = b.model.get_classifier()
    n_classes = int(getattr(head, "out_features", 0) or getattr(b.model, "num_classes", 0) or 0)
    has_head = b.weights_source != "random-init" and n_classes > 0
    con = store.connect(db)
    try:
        with store.transaction(con):
            con.execute("INSERT OR REPLACE INTO models VALUES (?, ?, ?, ?, ?, ?, ?, ?, now())",
                        [name, arch, source, method, b.weights_source, b.weights_sha256, n_classes, has_head])
    finally:
        con.close()
    return {"name": name, "architecture": arch, "weights": b.weights_source, "source_classes": n_classes}


def list_models(db) -> tuple[list[str], list[tuple]]:
    con = store.connect(db, read_only=True)
    try:
        rel = con.execute("""SELECT name, architecture, source_dataset, method, weights_ref, n_source_classes,
                                    has_source_head FROM models ORDER BY name""")
        return [d[0] for d in rel.description], rel.fetchall()
    finally:
        con.close()


def load(name: str, arch: str, weights_ref: str, with_head: bool):
    """A registered model's backbone, from the weights reference stored in `models`."""
    from metadb.backbones import create_backbone

    weights = weights_ref.split(":", 1)[1] if weights_ref.startswith("file:") else None
    if weights is not None and not Path(weights).exists():
        raise MetadbError(f"model {name}: its weights file {weights} is gone",
                          f"put it back, or re-add the model: metadb models add {name} --arch {arch} --weights FILE")
    return create_backbone(arch, weights, weights_ref == "random-init", with_head=with_head)


def features_path(db_path: Path, model: str, target: str, split: str) -> Path:
    """Where a model's cached outputs on a target split live: `<db>.features/<model>/<target>.<split>.parquet`."""
    return Path(f"{db_path}.features") / model / f"{target}.{split or 'all'}.parquet"


def extract(model_row: tuple, loader, split: str, device: str | None, target: str
            ) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """(features, source-head probabilities, labels) of a model on the loader's images of one split.

    Opens no store: a scoring worker runs this with the loader the driver described. Labels are the
    records' label strings (multi-label positives joined by '|'), in image order.
    """
    import torch

    from metadb.backbones import pick_device
    from metadb.image_batches import ImageStream, collate

    name, arch, weights_ref = model_row[:3]
    b = load(name, arch, weights_ref, with_head=True)
    dev = pick_device(device)
    model = b.model.to(dev)
    in_split = (lambda r: r.split == split) if split else None
    data = torch.utils.data.DataLoader(ImageStream(loader, b.transform(), in_split), batch_size=32, num_workers=0,
                                       collate_fn=collate)
    feats, probs, labels = [], [], []
    with torch.inference_mode():
        for x, _, labs, _ in data:
            if x is None:
                continue
            fmap = model.forward_features(x.to(dev))
            feats.append(model.forward_head(fmap, pre_logits=True).float().cpu().numpy())
            probs.append(model.forward_head(fmap).float().softmax(-1).cpu().numpy())
            labels += labs
    if not labels:
        raise MetadbError(f"{target}: no images in split {split!r}", "pass --split '' for every image")
    return np.concatenate(feats), np.concatenate(probs), labels


def write_outputs(path: Path, f: np.ndarray, p: np.ndarray, labels: list[str]) -> None:
    """Write the outputs Parquet under a temporary name, then rename: a reader never sees half a file."""
    import os

    import pyarrow as pa
    import pyarrow.parquet as pq

    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")  # per process: a retried task does not collide
    pq.write_table(pa.table({"label": labels, "features": pa.FixedSizeListArray.from_arrays(f.ravel(), f.shape[1]),
                             "probs": pa.FixedSizeListArray.from_arrays(p.ravel(), p.shape[1])}), tmp)
    tmp.replace(path)


def read_outputs(path: str | Path) -> tuple[np.ndarray, np.ndarray, list[str]]:
    import pyarrow.parquet as pq

    t = pq.read_table(path)
    f = np.asarray(t["features"].combine_chunks().flatten()).reshape(t.num_rows, -1)
    p = np.asarray(t["probs"].combine_chunks().flatten()).reshape(t.num_rows, -1)
    return f, p, t["label"].to_pylist()


def fresh_outputs(con, model: str, sha: str | None, target: str, split: str) -> tuple[str | None, str]:
    """(path of the cached outputs when they match today's data and weights, else None; that fingerprint)."""
    data_fp = con.execute("SELECT fingerprint FROM datasets WHERE name = ?", [target]).fetchone()
    fingerprint = f"{data_fp[0] if data_fp else ''}:{sha}"
    row = con.execute("SELECT path, fingerprint FROM model_features WHERE model = ? AND target = ? AND split = ?",
                      [model, target, split]).fetchone()
    return (row[0] if row and row[1] == fingerprint and Path(row[0]).exists() else None), fingerprint


def record_outputs(con, model: str, target: str, split: str, n: int, dim: int, path: str, fingerprint: str) -> None:
    """The model_features row of outputs just written (inside the caller's transaction)."""
    con.execute("DELETE FROM model_features WHERE model = ? AND target = ? AND split = ?", [model, target, split])
    con.execute("INSERT INTO model_features VALUES (?, ?, ?, ?, ?, ?, ?, now())",
                [model, target, split, n, dim, path, fingerprint])


def outputs(con, db_path: Path, model_row: tuple, target: str, split: str, device: str | None):
    """Cached (features, source-head probabilities, labels) of a model on a target split; extracted when stale.

    In-process, with the store open (scripts and benchmarks); `metadb score` runs the same steps on workers
    (metadb.score_tasks).
    """
    from metadb.embeddings import loader_for

    name, _, _, sha = model_row
    cached, fingerprint = fresh_outputs(con, name, sha, target, split)
    if cached:
        return read_outputs(cached)
    f, p, labels = extract(model_row, loader_for(con, target), split, device, target)
    path = features_path(db_path, name, target, split)
    write_outputs(path, f, p, labels)
    with store.transaction(con):
        record_outputs(con, name, target, split, len(labels), f.shape[1], str(path), fingerprint)
    return f, p, labels
