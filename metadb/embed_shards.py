"""Embedding on an executor: each shard of a dataset through the backbone on some worker.

A worker builds the backbone once (cached per process, keyed by what decides its weights), reads
only its shard, and returns the shard's Gaussian accumulator after writing its per-image vectors to
a Parquet part in the staging folder. The driver keeps a manifest of finished shards (a killed run
resumes), merges the accumulators in shard order and concatenates the parts into the one per-image
file the store points at. Shards hold a multiple of the batch size, so every batch, and therefore
every vector, is the one a single-process run computes.
"""

from __future__ import annotations

import os
import socket
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from metadb.class_gaussians import GaussianAccumulator, add_batch, per_image_schema
from metadb.errors import MetadbError
from metadb.executors import using
from metadb.image_batches import forward, transformed
from metadb.loaders import create_loader
from metadb.records import Record
from metadb.shards import run_shards
from metadb.staging import Staging

BATCHES_PER_SHARD = 8
_MODELS: dict[tuple, Any] = {}  # per worker process: the backbone is built once, not once per shard


@dataclass(frozen=True)
class EmbedShard:
    index: int
    lo: int
    hi: int
    layout: str
    root: str
    params: dict[str, Any]
    records: tuple[Record, ...] | None  # file layouts: the driver's listing; containers read their range
    backbone: str
    weights: str | None
    random_init: bool
    device: str
    precision: str
    batch_size: int
    part: str  # "" when per-image vectors are not kept


@dataclass
class EmbedShardResult:
    acc: GaussianAccumulator
    n_ok: int
    failed: int
    seconds: float


def _backbone(task: EmbedShard):
    from metadb.backbones import create_backbone

    key = (task.backbone, task.weights, task.random_init, task.device)
    if key not in _MODELS:
        b = create_backbone(task.backbone, task.weights, task.random_init)
        _MODELS[key] = (b, b.model.to(task.device).eval(), b.transform())
    return _MODELS[key]


def embed_shard(task: EmbedShard) -> EmbedShardResult:
    """Worker: one shard through the backbone; vectors to its part, sums back to the driver."""
    import pyarrow.parquet as pq
    import torch

    t0 = time.perf_counter()
    if not os.access(task.root, os.R_OK):
        raise MetadbError(f"worker on {socket.gethostname()} cannot open the data root {task.root}",
                          "every worker must see the data at the same path (a shared filesystem)")
    b, model, transform = _backbone(task)
    records = task.records if task.records is not None else \
        create_loader(task.layout, task.root, **task.params).read_range(task.lo, task.hi)
    acc = GaussianAccumulator(b.feature_dim)
    part = Path(task.part) if task.part else None
    tmp = part.with_name(f".{part.name}.{os.getpid()}.tmp") if part else None
    writer = pq.ParquetWriter(tmp, per_image_schema(b.feature_dim)) if tmp else None
    n_ok = failed = 0
    batch: list = []
    try:
        for k, r in enumerate(records):
            batch.append(transformed(r, transform))
            if len(batch) == task.batch_size or k == task.hi - task.lo - 1:
                ok = [it for it in batch if it[3]]
                failed += len(batch) - len(ok)
                if ok:
                    f = forward(model, torch.stack([it[0] for it in ok]), task.device, task.precision,
                                f"images {task.lo + k + 1 - len(batch)}-{task.lo + k}", b.name)
                    add_batch(acc, writer, f, [it[1] for it in ok], [it[2] for it in ok])
                    n_ok += len(ok)
                batch = []
    finally:
        if writer is not None:
            writer.close()
    if tmp is not None:
        os.replace(tmp, part)
    return EmbedShardResult(acc, n_ok, failed, time.perf_counter() - t0)


def embed_sharded(db_path: Path, dataset: str, loader, fingerprint: str, b, backbone: str, weights, random_init: bool,
                  dev: str, precision: str, batch_size: int, per_image: bool, out_dir: Path, run_id: str,
                  progress: bool | None, executor):
    """(accumulator, images ok, images failed, per-image Parquet or None), like the single-process stream."""
    import pyarrow.parquet as pq

    listed: list[Record] | None = []
    for r in loader.records():
        if r.pixels is not None:
            listed = None
            break
        listed.append(r)
    total = len(listed) if listed is not None else loader.count()
    n = max(1, -(-total // (batch_size * BATCHES_PER_SHARD)))
    bounds = [(i * batch_size * BATCHES_PER_SHARD, min(total, (i + 1) * batch_size * BATCHES_PER_SHARD))
              for i in range(n)]
    key = f"{fingerprint}-{b.weights_sha256 or b.weights_source}-{dev.split(':')[0]}-{precision}-{int(per_image)}"
    staging = Staging(Path(f"{db_path}.staging"), f"embed-{b.name}", dataset, key[:120],
                      {"total": total, "shards": n, "batch_size": batch_size})
    params = json_params(loader)
    tasks = [EmbedShard(i, lo, hi, loader_layout(loader), str(loader.root), params,
                        tuple(listed[lo:hi]) if listed is not None else None, backbone,
                        str(weights) if weights else None, random_init, dev, precision, batch_size,
                        str(staging.part(i)) if per_image else "") for i, (lo, hi) in enumerate(bounds)]
    with using(executor) as ex:  # made before staging is opened: a bad --executor fails first
        results, _ = run_shards(ex, staging, embed_shard, tasks, desc=f"embed {dataset} ({b.name})",
                                progress=progress, label="embed shard")
    acc = GaussianAccumulator(b.feature_dim)
    for r in results:  # shard order: the same sums whichever worker finished first
        acc.merge(r.acc)
    tmp = None
    if per_image:
        out_dir.mkdir(exist_ok=True)
        tmp = out_dir / f".{run_id}.parquet.tmp"
        with pq.ParquetWriter(tmp, per_image_schema(b.feature_dim)) as w:
            for t in tasks:
                w.write_table(pq.read_table(t.part, schema=per_image_schema(b.feature_dim)))
    staging.remove()
    return acc, sum(r.n_ok for r in results), sum(r.failed for r in results), tmp


def loader_layout(loader) -> str:
    from metadb.loaders import loaders

    return next(e.name for e in loaders.entries() if e.factory is type(loader))


def json_params(loader) -> dict[str, Any]:
    return dict(loader.params)
