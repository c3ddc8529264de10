"""Ingest: stream a dataset through the extractors and commit it to the store atomically.

Images are decoded and measured in worker processes, a bounded number of chunks in flight, so
memory stays flat. Per-image rows stream into a staging Parquet file beside the store; the store
itself is written only at the end, in one transaction that replaces everything about the dataset.
An interrupted or killed ingest therefore leaves the store exactly as it was.

The store is opened only twice, briefly: to see whether the dataset is already up to date, and to
commit. While images decode (minutes on a big dataset) no lock is held, so `metadb sql`, queries
and `duckdb -readonly` keep working, and other writers can commit.
"""

from __future__ import annotations

import hashlib
import json
import os
import socket
import time
import uuid
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from itertools import islice
from pathlib import Path
from typing import Any, Iterable, Iterator, Sequence

import pyarrow as pa
import pyarrow.parquet as pq

import extractors as _builtin_extractors  # noqa: F401  (registers the built-in extractors)
from metadb import __version__, catalog, store
from metadb.allocator import reuse_image_buffers
from metadb.catalog import DatasetInfo
from metadb.errors import ImageError, MetadbError, StoreInUseError
from metadb.extract import Extractor, create_extractor, extractors
from metadb.imageio import decode
from metadb.loaders import Loader, create_loader
from metadb.executors import Executor, using
from metadb.loaders.base import shard_range, shown
from metadb.shards import run_shards
from metadb.staging import Staging
from metadb.records import Record

DEFAULT_EXTRACTORS = ("basic", "image_stats", "phash")
CHUNK = 64
SHARD_SIZE = 256  # images per task: small enough to balance 2 workers on 2,000 images, big enough to amortise a task
COMMIT_WAIT = 30.0  # seconds the final commit waits for readers at least, so decoded work is not thrown away

CORE_COLUMNS: dict[str, pa.DataType] = {
    "dataset": pa.string(), "image_id": pa.string(), "path": pa.string(), "label": pa.string(),
    "labels": pa.list_(pa.string()), "split": pa.string(), "width": pa.int32(), "height": pa.int32(),
    "channels": pa.int32(), "bit_depth": pa.int32(), "format": pa.string(), "file_bytes": pa.int64(),
    "content_hash": pa.string(),
}
SQL_TO_ARROW = {"BIGINT": pa.int64(), "DOUBLE": pa.float64(), "VARCHAR": pa.string(), "INTEGER": pa.int32()}


@dataclass
class IngestResult:
    dataset: str
    status: str  # "ingested" or "up-to-date"
    images_ok: int = 0
    images_failed: int = 0
    seconds: float = 0.0
    run_id: str = ""
    fingerprint: str = ""
    errors: list[tuple[str, str]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # choices made about ambiguous input, one line each
    workers: int = 0
    executor: str = ""
    resumed: int = 0  # shards taken from an interrupted run's staging folder
    shard_seconds: list[float] = field(default_factory=list)  # worker time per shard (benchmarks, projections)
    commit_seconds: float = 0.0  # driver: merge of partials and the one-transaction commit


    def summary(self) -> str:
        if self.status == "up-to-date":
            return f"{self.dataset}: up to date (fingerprint {self.fingerprint}); nothing to do (--force recomputes)"
        failed = f", {self.images_failed} skipped (see ingest_errors)" if self.images_failed else ""
        rate = self.images_ok / self.seconds if self.seconds else 0.0
        resumed = f", {self.resumed} shards resumed" if self.resumed else ""
        return (f"{self.dataset}: {self.images_ok} images ingested in {self.seconds:.1f} s{failed} "
                f"({rate:.0f} images/s; {self.workers} worker{'s' if self.workers != 1 else ''}, {self.executor}{resumed})")


def resolve(dataset: str | None, path: str | Path | None, name: str | None, layout: str | None,
            modality: str | None, root: str | Path | None, notes: list[str] | None = None) -> tuple[DatasetInfo, Path]:
    """A known dataset (catalog metadata, published layout) or an ad-hoc folder/CSV."""
    if dataset and path:
        raise MetadbError("use either --dataset (a known dataset) or --path (your own folder), not both")
    if dataset:
        info = catalog.get(dataset)
        base = Path(root or os.environ.get("METADB_DATA") or "~/data").expanduser()
        folder, others = info.find(base)
        if others and notes is not None:
            notes.append(f"{info.name}: read {folder}; also found {', '.join(map(str, others))} (pass it as --root to use it)")
        return info, folder
    if not path:
        raise MetadbError("nothing to ingest", "pass --dataset NAME (see `metadb datasets --known`) or --path DIR --name NAME")
    path = Path(path).expanduser()
    name = name or path.stem
    if shown(name) != name:
        raise MetadbError(f"dataset name {shown(name)!r} is not valid UTF-8", "pass a name with --name")
    layout = layout or ("csv" if path.suffix.lower() == ".csv" else "imagefolder")
    if name in catalog.catalog:
        known = catalog.get(name)
        return replace(known, layout=layout), path
    if not path.exists():
        raise MetadbError(f"{path} not found", "pass an existing folder or CSV with --path")
    return DatasetInfo(name, name, modality or "unknown", "unknown", "medical", "single-label", "unknown",
                       str(path.resolve()), layout=layout), path


def ingest(db: str | Path | None = None, *, dataset: str | None = None, path: str | Path | None = None,
           name: str | None = None, layout: str | None = None, modality: str | None = None,
           root: str | Path | None = None, extractor_names: Sequence[str] = DEFAULT_EXTRACTORS,
           working_size: int = 256, workers: int | None = None, force: bool = False, strict: bool = False,
           progress: bool | None = None, command: str = "", wait: float | None = None,
           executor: str | Executor | None = None) -> IngestResult:
    """Ingest one dataset; the store changes only when the whole dataset has been processed.

    `wait`: seconds to wait for another process holding the store (default $METADB_WAIT or 0).
    `executor`: where shards run (see metadb.executors; default the local pool of `workers`).
    A killed ingest keeps its finished shards in `<store>.staging/`; the same call resumes them.
    """
    notes: list[str] = []
    info, folder = resolve(dataset, path, name, layout, modality, root, notes)
    loader = create_loader(info.layout, folder, **info.loader_params())
    loader.check()
    if working_size < 8:
        raise MetadbError(f"--working-size must be at least 8 pixels; got {working_size}")
    exts = _extractors(extractor_names, working_size)
    fingerprint = _fingerprint(loader, exts)
    db_path = Path(db) if db is not None else store.default_path()
    wait = store.default_wait() if wait is None else wait
    con = store.connect(db_path, wait=wait)  # creates or migrates the store; released before decoding
    try:
        row = con.execute("SELECT fingerprint FROM datasets WHERE name = ?", [info.name]).fetchone()
    finally:
        con.close()
    if row and row[0] == fingerprint and not force:
        return IngestResult(info.name, "up-to-date", fingerprint=fingerprint, notes=notes)
    run_id = uuid.uuid4().hex[:12]
    result = _run(db_path, wait, info, folder, loader, exts, fingerprint, run_id, Path(f"{db_path}.staging"),
                  working_size, workers, strict, progress, command, executor)
    result.notes[:0] = notes
    return result


def _extractors(names: Sequence[str], working_size: int) -> list[Extractor]:
    names = list(dict.fromkeys(["basic", *names]))  # class counts always come from `basic`
    out = []
    for n in names:
        cls = extractors.entry(n).factory
        out.append(create_extractor(n, working_size=working_size) if cls.needs_pixels else create_extractor(n))
    return out


def _fingerprint(loader: Loader, exts: list[Extractor]) -> str:
    spec = [(e.name, e.version, e.params()) for e in exts]
    return hashlib.sha256((loader.fingerprint() + json.dumps(spec, sort_keys=True)).encode()).hexdigest()[:16]


def _schema(exts: list[Extractor]) -> pa.Schema:
    fields = dict(CORE_COLUMNS)
    for e in exts:
        for col, sql_type in e.image_columns.items():
            fields[col] = SQL_TO_ARROW[sql_type]
    return pa.schema(list(fields.items()))


def process_chunk(dataset: str, records: list[Record], exts: list[Extractor], working_size: int):
    """Worker: decode and measure a chunk; returns (rows, partials, errors)."""
    partials = [e.new_partial() for e in exts]
    need_pixels = any(e.needs_pixels for e in exts)
    rows, errors = [], []
    for r in records:
        row: dict[str, Any] = {"dataset": dataset, "image_id": r.image_id, "path": r.path, "label": r.label,
                               "labels": list(r.labels), "split": r.split}
        image = None
        if need_pixels:
            try:
                image = decode(r, working_size)
            except ImageError as e:
                errors.append((r.path, e.message))
                continue
            row.update(width=image.width, height=image.height, channels=image.channels,
                       bit_depth=image.bit_depth, format=image.fmt, file_bytes=image.nbytes,
                       content_hash=image.content_hash)
        for e, p in zip(exts, partials):
            row.update(e.update(p, image, r))
        rows.append(row)
    return rows, partials, errors


def _chunks(records: Iterable[Record]) -> Iterator[list[Record]]:
    it = iter(records)
    while chunk := list(islice(it, CHUNK)):
        yield chunk


@dataclass(frozen=True)
class ShardTask:
    """One shard of an ingest, everything a worker needs and nothing of the store.

    File layouts carry the driver's listing of the shard (paths only, no pixels), so no worker
    walks the whole tree; container layouts (HDF5, NPZ) carry None and the worker reads its range.
    """

    index: int
    lo: int
    hi: int
    dataset: str
    layout: str
    root: str
    params: dict[str, Any]
    records: tuple[Record, ...] | None
    extractor_names: tuple[str, ...]
    working_size: int
    part: str


@dataclass
class ShardResult:
    n_ok: int
    partials: list[dict[str, Any]]
    errors: list[tuple[str, str]]
    seconds: float


def ingest_shard(task: ShardTask) -> ShardResult:
    """Worker: decode and measure one shard; its rows go to a Parquet part, its partials come back."""
    t0 = time.perf_counter()
    if not os.access(task.root, os.R_OK):
        raise MetadbError(f"worker on {socket.gethostname()} cannot open the data root {task.root}",
                          "every worker must see the data at the same path (a shared filesystem)")
    reuse_image_buffers()  # in whichever process runs the shard: pool worker, Dask worker or this one
    exts = _extractors(task.extractor_names, task.working_size)
    schema = _schema(exts)
    if task.records is not None:
        records: Iterable[Record] = task.records
    else:
        records = create_loader(task.layout, task.root, **task.params).read_range(task.lo, task.hi)
    partials = [e.new_partial() for e in exts]
    errors: list[tuple[str, str]] = []
    n_ok = 0
    part = Path(task.part)
    tmp = part.with_name(f".{part.name}.{os.getpid()}.tmp")
    with pq.ParquetWriter(tmp, schema) as writer:
        buffered: list[dict[str, Any]] = []
        for chunk in _chunks(records):
            rows, parts, errs = process_chunk(task.dataset, chunk, exts, task.working_size)
            partials = [e.merge(a, b) for e, a, b in zip(exts, partials, parts)]
            errors.extend(errs)
            buffered.extend(rows)
            n_ok += len(rows)
        writer.write_table(pa.Table.from_pylist(buffered, schema=schema))
    os.replace(tmp, part)
    return ShardResult(n_ok, partials, errors, time.perf_counter() - t0)


def plan_shards(info: DatasetInfo, folder: Path, loader: Loader, exts: list[Extractor], working_size: int,
                shard_size: int = SHARD_SIZE) -> list[ShardTask]:
    """The shards of a dataset, from one listing pass on the driver (which also collects `skipped`)."""
    listed: list[Record] | None = []
    total = 0
    for r in loader.records():
        total += 1
        if r.pixels is not None:
            listed = None  # a container: workers read their own ranges
        elif listed is not None:
            listed.append(r)
    n = max(1, -(-total // shard_size))
    names = tuple(e.name for e in exts)
    tasks = []
    for i in range(n):
        lo, hi = shard_range(i, n, total)
        tasks.append(ShardTask(i, lo, hi, info.name, info.layout, str(folder), info.loader_params(),
                               tuple(listed[lo:hi]) if listed is not None else None, names, working_size, ""))
    return tasks


def _run(db_path: Path, wait: float, info: DatasetInfo, folder: Path, loader: Loader, exts: list[Extractor],
         fingerprint: str, run_id: str, staging_root: Path, working_size: int, workers: int | None, strict: bool,
         progress: bool | None, command: str, executor: str | Executor | None) -> IngestResult:
    started = datetime.now(timezone.utc).replace(tzinfo=None)
    t0 = time.perf_counter()
    tasks = plan_shards(info, folder, loader, exts, working_size)
    total = tasks[-1].hi
    skipped = list(loader.skipped)
    staging = Staging(staging_root, "ingest", info.name, fingerprint, {"total": total, "shards": len(tasks)})
    tasks = [replace(t, part=str(staging.part(t.index))) for t in tasks]

    def refuse_bad_images(res: ShardResult) -> None:  # --strict
        if res.errors:
            path, reason = res.errors[0]
            staging.remove()  # the data must change before a re-run; nothing here is reusable
            raise MetadbError(f"{folder / path}: {reason}", "fix or remove it, or drop --strict to skip bad images")

    with using(executor, workers) as ex:  # made before staging is opened: a bad --executor fails first
        results, resumed = run_shards(ex, staging, ingest_shard, tasks, desc=f"ingest {info.name}", progress=progress,
                                      name_first=True, check=refuse_bad_images if strict else None)
        workers_used = ex.workers
    t_merge = time.perf_counter()
    partials = [e.new_partial() for e in exts]
    errors: list[tuple[str, str]] = []
    for res in results:  # in shard order: the same sums whichever worker finished first
        partials = [e.merge(a, b) for e, a, b in zip(exts, partials, res.partials)]
        errors.extend(res.errors)
    n_ok = sum(r.n_ok for r in results)
    if skipped and strict:  # entries the loader could not use (names, folders, duplicates)
        path, reason = skipped[0]
        staging.remove()
        raise MetadbError(f"{folder / path}: {reason}", "fix it, or drop --strict to record and skip it")
    errors.extend(skipped)
    if n_ok == 0:
        detail = f"; first error: {errors[0][0]}: {errors[0][1]}" if errors else ""
        staging.remove()
        raise MetadbError(f"{folder}: no readable images{detail}")
    features = {e.name: e.finalize(p) for e, p in zip(exts, partials)}
    class_counts = partials[[e.name for e in exts].index("basic")]["class_counts"]
    ended = datetime.now(timezone.utc).replace(tzinfo=None)
    params = {"working_size": working_size, "extractors": [e.name for e in exts], **info.loader_params()}
    parts = [str(staging.part(t.index)) for t in tasks]
    con = _connect_to_commit(db_path, wait, n_ok)
    try:
        with store.transaction(con):
            _write(con, info, folder, loader, exts, features, class_counts, parts, _schema(exts), fingerprint,
                   run_id, errors, params, started, ended, n_ok, command)
    finally:
        con.close()
    staging.remove()
    end = time.perf_counter()
    return IngestResult(info.name, "ingested", n_ok, len(errors), end - t0, run_id,
                        fingerprint, errors, list(loader.notes), workers=workers_used, executor=ex.name,
                        resumed=resumed, shard_seconds=[r.seconds for r in results],
                        commit_seconds=end - t_merge)


def _connect_to_commit(db_path: Path, wait: float, n_ok: int):
    """The write handle for the commit: waits at least COMMIT_WAIT s for readers to let go."""
    try:
        return store.connect(db_path, wait=max(wait, COMMIT_WAIT))
    except StoreInUseError as e:
        raise StoreInUseError(f"{e.message}; the {n_ok} decoded images were not stored",
                              "re-run when it is free, or give it longer with --wait SECONDS") from None


def _write(con, info, folder, loader, exts, features, class_counts, parts, schema, fingerprint, run_id,
           errors, params, started, ended, n_ok, command) -> None:
    for table, key in (("images", "dataset"), ("classes", "dataset"), ("meta_features", "dataset"),
                       ("ingest_errors", "dataset"), ("datasets", "name")):
        con.execute(f"DELETE FROM {table} WHERE {key} = ?", [info.name])
    con.execute(
        "INSERT INTO datasets VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, false, ?)",
        [info.name, info.title, info.modality, info.anatomy, info.domain, loader.label_type or info.label_type,
         info.licence, info.url, list(info.derived_from), info.layout, str(Path(folder).resolve()),
         json.dumps(info.loader_params()), n_ok, len(class_counts), fingerprint, ended],
    )
    _insert_many(con, "INSERT INTO classes VALUES (?, ?, ?)",
                    [[info.name, label, count] for label, count in sorted(class_counts.items())])
    cols = ", ".join(schema.names)
    con.execute(f"INSERT INTO images ({cols}) SELECT {cols} FROM read_parquet(?)", [parts])
    _insert_many(con, 
        "INSERT INTO meta_features VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        [[info.name, e.name, e.version, k, v, json.dumps(e.params(), sort_keys=True), run_id, ended]
         for e in exts for k, v in features[e.name].items()],
    )
    con.execute("INSERT INTO ingest_runs VALUES (?, ?, ?, ?, ?, ?, ?, 'ok', ?, ?, ?)",
                [run_id, info.name, command, __version__, json.dumps(params, default=str), started, ended,
                 n_ok, len(errors), fingerprint])
    _insert_many(con, "INSERT INTO ingest_errors VALUES (?, ?, ?, ?)",
                    [[run_id, info.name, p, reason] for p, reason in errors])
    store.refresh_wide_view(con)


def _insert_many(con, sql: str, rows: list[list[Any]]) -> None:
    if rows:  # DuckDB refuses executemany with no parameter sets
        con.executemany(sql, rows)
