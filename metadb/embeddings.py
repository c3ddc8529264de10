"""Embed a stored dataset through a backbone: per-class Gaussian statistics and per-image vectors.

Images stream from the dataset's own loader (re-opened from what the store recorded) through a
DataLoader (decoding in worker processes, pinned memory, channels_last and autocast on GPU) into
the model. Each batch adds to per-class float64 sums and sums of outer products, which merge
exactly; the finaliser turns them into mean and eigendecomposed covariance. Per-image vectors
stream into Parquet (`<store>.embeddings/<dataset>.<identity>.<run>.parquet`). The store is
written in one transaction at the end.

Everything is keyed by the backbone *identity* (`metadb.backbones.Identity`: weights, preprocessing,
device class, precision), so two embeddings are compared only when they share a feature space.
"""

from __future__ import annotations

import io
import json
import os
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from metadb import store
from metadb.class_gaussians import GaussianAccumulator, add_batch, per_image_schema
from metadb.errors import MetadbError
from metadb.image_batches import ImageStream, collate, forward
from metadb.loaders import create_loader


@dataclass
class EmbedResult:
    dataset: str
    backbone: str  # the identity, arch.tag
    device: str
    images_ok: int
    images_failed: int
    seconds: float
    per_image_path: str | None
    status: str = "embedded"
    precision: str = "fp32"
    notes: tuple[str, ...] = ()  # e.g. a checkpoint's classifier head that was ignored

    def summary(self) -> str:
        """One line, preceded by any notes on how the weights were loaded."""
        lines = list(self.notes)
        if self.status == "up-to-date":
            lines.append(f"{self.dataset}: {self.backbone} embeddings up to date; nothing to do (--force recomputes)")
        else:
            failed = f", {self.images_failed} unreadable skipped" if self.images_failed else ""
            lines.append(f"{self.dataset}: {self.images_ok} images embedded with {self.backbone} on {self.device} "
                         f"({self.precision}) in {self.seconds:.1f} s{failed}")
        return "\n".join(lines)


def npy(a: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, np.ascontiguousarray(a, dtype=np.float64))
    return buf.getvalue()


def from_npy(b: bytes) -> np.ndarray:
    return np.load(io.BytesIO(b))


def loader_for(con, dataset: str):
    row = con.execute("SELECT layout, root, params FROM datasets WHERE name = ? AND NOT is_stub", [dataset]).fetchone()
    if not row:
        names = [r[0] for r in con.execute("SELECT name FROM datasets WHERE NOT is_stub ORDER BY name").fetchall()]
        raise MetadbError(f"dataset {dataset!r} is not ingested", f"ingest it first; ingested: {', '.join(names) or 'none'}")
    layout, root, params = row
    if not Path(root).exists():
        raise MetadbError(f"{dataset} was read from {root}, which is gone", "re-ingest it from its new place")
    return create_loader(layout, root, **json.loads(params or "{}"))


def embed(db: str | Path | None, dataset: str, backbone: str, weights: str | Path | None = None,
          device: str | None = None, per_image: bool = True, batch_size: int | None = None,
          random_init: bool = False, progress: bool | None = None, workers: int | None = None,
          force: bool = False, precision: str | None = None, executor=None) -> EmbedResult:
    """Embed one ingested dataset; the store changes only when every batch has gone through.

    `precision` is fp32 or amp (bfloat16 autocast; the default on CUDA); it is part of the identity.
    `executor` (a spec or an Executor, see metadb.executors): shards run there, each returning its
    Gaussian accumulator and a Parquet part; without it, one process streams through a DataLoader.
    """
    import torch

    from metadb.backbones import create_backbone, identity, pick_device, pick_precision

    dev = pick_device(device)
    prec = pick_precision(precision, dev)
    b = create_backbone(backbone, weights, random_init)
    ident = identity(b, dev, prec)
    db_path = Path(db) if db is not None else store.default_path()
    con = store.connect(db_path)
    try:
        loader = loader_for(con, dataset)
        fingerprint = con.execute("SELECT fingerprint FROM datasets WHERE name = ?", [dataset]).fetchone()[0]
        if not force and _up_to_date(con, dataset, ident, fingerprint, per_image):
            return EmbedResult(dataset, ident.name, dev, 0, 0, 0.0, None, "up-to-date", prec, b.notes)
        model = b.model.to(dev)
        cuda = dev.startswith("cuda")
        if cuda:
            model = model.to(memory_format=torch.channels_last)
        batch_size = batch_size or (128 if cuda else 32)
        workers = workers if workers is not None else (min(8, os.cpu_count() or 1) if cuda else 1)
        run_id = uuid.uuid4().hex[:12]
        out_dir = Path(f"{db_path}.embeddings")
        final = out_dir / f"{dataset}.{ident.name}.{run_id}.parquet"
        t0 = time.perf_counter()
        con.close()  # no lock while images go through the network: readers and ingest are not shut out
        if executor is not None:
            from metadb.embed_shards import embed_sharded

            acc, n_ok, failed, tmp = embed_sharded(db_path, dataset, loader, fingerprint, b, backbone, weights,
                                                   random_init, dev, prec, batch_size, per_image, out_dir, run_id,
                                                   progress, executor)
        else:
            data = torch.utils.data.DataLoader(ImageStream(loader, b.transform()), batch_size=batch_size,
                                               num_workers=workers, collate_fn=collate, pin_memory=cuda)
            acc, n_ok, failed, tmp = _stream(data, model, dev, prec, b, dataset, per_image, out_dir, run_id, progress)
        if n_ok < 2:
            raise MetadbError(f"{dataset}: only {n_ok} images could be embedded; need at least 2")
        seconds = time.perf_counter() - t0
        try:  # reopened to commit, waiting for another writer's commit if need be
            con = store.connect(db_path)
        except BaseException:
            if tmp is not None:
                tmp.unlink(missing_ok=True)
            raise
        if tmp is not None:
            tmp.rename(final)
        try:
            with store.transaction(con):
                now = con.execute("SELECT fingerprint FROM datasets WHERE name = ?", [dataset]).fetchone()
                if now is None or now[0] != fingerprint:
                    raise MetadbError(f"{dataset} was re-ingested while it was being embedded; nothing was stored",
                                      "run the same embed command again")
                _write(con, ident, dataset, acc, run_id, dev, batch_size, n_ok, failed, final if tmp else None, seconds,
                       fingerprint)
        except BaseException:
            final.unlink(missing_ok=True)
            raise
        return EmbedResult(dataset, ident.name, dev, n_ok, failed, seconds, str(final) if tmp else None, "embedded",
                           prec, b.notes)
    finally:
        con.close()


def _stream(data, model, dev, precision, b, dataset, per_image, out_dir, run_id, progress):
    import pyarrow.parquet as pq
    import torch
    from tqdm import tqdm

    acc = GaussianAccumulator(b.feature_dim)
    writer, tmp = None, None
    if per_image:
        out_dir.mkdir(exist_ok=True)
        tmp = out_dir / f".{run_id}.parquet.tmp"
        writer = pq.ParquetWriter(tmp, per_image_schema(b.feature_dim))
    n_ok = failed = 0
    bar = tqdm(desc=f"embed {dataset} ({b.name})", unit="img", disable=None if progress is None else not progress)
    try:
        with torch.inference_mode(), bar:
            for k, (x, ids, labels, bad) in enumerate(data):
                failed += len(bad)
                if x is None:
                    continue
                f = forward(model, x, dev, precision, f"batch {k} of {dataset}", b.name)
                add_batch(acc, writer, f, ids, labels)
                n_ok += len(ids)
                bar.update(len(ids) + len(bad))
    except BaseException:
        if writer is not None:
            writer.close()
            tmp.unlink(missing_ok=True)
        raise
    if writer is not None:
        writer.close()
    return acc, n_ok, failed, tmp


def _up_to_date(con, dataset: str, ident, fingerprint: str, per_image: bool) -> bool:
    """Same data in the same feature space (and per-image vectors when asked for): nothing to recompute.

    Random-init runs are always recomputed: that is what asking for them again usually means.
    """
    row = con.execute("SELECT params, per_image_path FROM embedding_runs WHERE dataset = ? AND backbone = ?",
                      [dataset, ident.name]).fetchone()
    if not row or ident.weights_source == "random-init":
        return False
    params = json.loads(row[0])
    return (params.get("fingerprint") == fingerprint
            and (not per_image or (row[1] is not None and Path(row[1]).exists())))


def _write(con, ident, dataset, acc, run_id, dev, batch_size, n_ok, failed, path, seconds, fingerprint) -> None:
    """Replace the dataset's embedding in this identity (other identities of the arch are kept)."""
    from metadb.backbones import record

    record(con, ident)
    old = [r[0] for r in con.execute("SELECT per_image_path FROM embedding_runs WHERE dataset = ? AND backbone = ?",
                                     [dataset, ident.name]).fetchall() if r[0]]
    con.execute("DELETE FROM embedding_stats WHERE dataset = ? AND backbone = ?", [dataset, ident.name])
    con.execute("DELETE FROM embedding_runs WHERE dataset = ? AND backbone = ?", [dataset, ident.name])
    for label, n, mean, vals, vecs in acc.finalize():
        con.execute("INSERT INTO embedding_stats VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, now())",
                    [dataset, label, ident.name, n, ident.feature_dim, npy(mean), npy(vals), npy(vecs),
                     float(vals.sum()), run_id])
    params = {"batch_size": batch_size, "weights": ident.weights_source, "weights_sha256": ident.weights_sha256,
              "preprocessing": json.loads(ident.preprocessing), "precision": ident.precision,
              "fingerprint": fingerprint}
    con.execute("INSERT INTO embedding_runs VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, now())",
                [run_id, dataset, ident.name, dev, json.dumps(params), n_ok, failed, str(path) if path else None,
                 seconds])
    for p in old:  # superseded per-image files; only after the new rows are in place
        Path(p).unlink(missing_ok=True)


@dataclass(frozen=True)
class Stats:
    dataset: str
    label: str
    n: int
    mean: np.ndarray
    eigvals: np.ndarray
    eigvecs: np.ndarray
    run_id: str


def load_stats(con, backbone: str, per_class: bool = False, datasets: list[str] | None = None) -> list[Stats]:
    """Stored statistics in one feature space: `backbone` is an identity (or an arch that has only one)."""
    from metadb.backbones import resolve

    backbone = resolve(con, backbone)
    sql = "SELECT dataset, label, n, mean, eigvals, eigvecs, run_id FROM embedding_stats WHERE backbone = ?"
    sql += "" if per_class else " AND label = ''"
    rows = con.execute(sql + " ORDER BY dataset, label", [backbone]).fetchall()
    out = [Stats(d, lab, n, from_npy(m), from_npy(v), from_npy(e), r) for d, lab, n, m, v, e, r in rows]
    return [s for s in out if datasets is None or s.dataset in datasets]


def per_image(con, dataset: str, backbone: str) -> tuple[np.ndarray, list[str]]:
    """The stored per-image embeddings of one dataset (N x D float32) and their labels.

    `backbone` is an identity (or an architecture name that has only one identity in the store).
    """
    import pyarrow.parquet as pq

    from metadb.backbones import resolve

    backbone = resolve(con, backbone)
    row = con.execute("SELECT per_image_path FROM embedding_runs WHERE dataset = ? AND backbone = ?",
                      [dataset, backbone]).fetchone()
    if not row or not row[0]:
        raise MetadbError(f"no per-image embeddings of {dataset} with {backbone}",
                          f"run `metadb embed {dataset} --backbone {backbone} --per-image`")
    t = pq.read_table(row[0])
    x = np.asarray(t["embedding"].combine_chunks().flatten()).reshape(t.num_rows, -1)
    return x, t["label"].to_pylist()
