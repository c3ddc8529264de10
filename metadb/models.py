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


def outputs(con, db_path: Path, model_row: tuple, target: str, split: str, device: str | None):
    """Cached (features, source-head probabilities, labels) of a model on a target split; extracted when stale.

    Labels are the records' label strings (multi-label positives joined by '|'), in image order.
    """
    import pyarrow as pa
    import pyarrow.parquet as pq
    import torch

    from metadb.backbones import pick_device
    from metadb.embeddings import _Images, _collate, loader_for

    name, arch, weights_ref, sha = model_row
    data_fp = con.execute("SELECT fingerprint FROM datasets WHERE name = ?", [target]).fetchone()
    fingerprint = f"{data_fp[0] if data_fp else ''}:{sha}"
    row = con.execute("SELECT path, fingerprint FROM model_features WHERE model = ? AND target = ? AND split = ?",
                      [name, target, split]).fetchone()
    if not (row and row[1] == fingerprint and Path(row[0]).exists()):
        b = load(name, arch, weights_ref, with_head=True)
        dev = pick_device(device)
        model = b.model.to(dev)
        in_split = (lambda r: r.split == split) if split else None
        data = torch.utils.data.DataLoader(_Images(loader_for(con, target), b.transform(), in_split), batch_size=32,
                                           num_workers=0, collate_fn=_collate)
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
        f, p = np.concatenate(feats), np.concatenate(probs)
        out = Path(f"{db_path}.features") / name
        out.mkdir(parents=True, exist_ok=True)
        path = out / f"{target}.{split or 'all'}.parquet"
        tmp = path.with_suffix(".tmp")
        pq.write_table(pa.table({"label": labels, "features": pa.FixedSizeListArray.from_arrays(f.ravel(), f.shape[1]),
                                 "probs": pa.FixedSizeListArray.from_arrays(p.ravel(), p.shape[1])}), tmp)
        tmp.replace(path)
        with store.transaction(con):
            con.execute("DELETE FROM model_features WHERE model = ? AND target = ? AND split = ?", [name, target, split])
            con.execute("INSERT INTO model_features VALUES (?, ?, ?, ?, ?, ?, ?, now())",
                        [name, target, split, len(labels), f.shape[1], str(path), fingerprint])
        return f, p, labels
    t = pq.read_table(row[0])
    f = np.asarray(t["features"].combine_chunks().flatten()).reshape(t.num_rows, -1)
    p = np.asarray(t["probs"].combine_chunks().flatten()).reshape(t.num_rows, -1)
    return f, p, t["label"].to_pylist()
