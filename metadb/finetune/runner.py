"""The driver: plans trials, runs each through `run_trial`, and alone writes the store.

`finetune` expands sources x grid x folds into trial specs whose run ids are hashes of what
decides them, skips those already stored, and commits each finished trial in one transaction:
its `runs` row, its `outcomes` row (origin 'run') and the recomputed selection. Kill it at any
point and rerun the same command: finished trials are skipped, the interrupted one starts over,
and the store never holds half a trial. The store is opened only to plan and to commit, so
readers are not locked out while a trial trains.
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

from metadb import store
from metadb.errors import MetadbError
from metadb.finetune import protocol as P
from metadb.finetune.trial import SourceModel, TrialRecord, TrialSpec, run_trial
from metadb.imports.selection import reselect

RUN_COLUMNS = ("run_id", "kind", "source", "source_weights", "source_sha256", "target", "architecture", "protocol",
               "fold", "seed", "hyperparameters", "overrides", "status", "best_epoch", "epochs_run", "val_auc",
               "val_loss", "test_auc", "test_loss", "n_train", "n_val", "n_test", "classes", "wall_s", "device",
               "versions", "curves_path", "checkpoint_path", "checkpoint_sha256")


@dataclass
class Summary:
    planned: int = 0
    skipped: int = 0
    records: list[tuple[TrialSpec, TrialRecord]] = field(default_factory=list)
    commit_seconds: float = 0.0  # the driver's share: one transaction per trial
    logged: int = 0             # runs logged to MLflow by this command

    def line(self) -> str:
        logged = f"; {self.logged} logged to MLflow" if self.logged else ""
        return f"{self.planned} trials: {len(self.records)} run, {self.skipped} already stored{logged}"


def trial_line(spec: TrialSpec, r: TrialRecord) -> str:
    """One finished trial, as the CLI prints it the moment it is committed."""
    auc = (f"test AUC {r.test_auc:.4f}, " if r.test_auc is not None else "") + \
          (f"val AUC {r.val_auc:.4f}" if r.val_auc is not None else "no AUC")
    return (f"{spec.run_id} {spec.source.name} -> {spec.target} fold {spec.fold}{_changes(spec)}: "
            f"{r.status}, {auc}, best epoch {r.best_epoch}, {r.wall_s:.1f} s on {r.device}")


def _changes(spec: TrialSpec) -> str:
    return "".join(f" {k}={v}" for k, v in spec_overrides(spec.protocol).items())


def spec_overrides(p: P.Protocol) -> dict[str, Any]:
    """The fields of a resolved protocol that differ from its file."""
    base = P.load(p.name).as_dict()
    return {k: v for k, v in p.as_dict().items() if base[k] != v}


def run_id(kind: str, source: SourceModel, target: str, fold: int, p: P.Protocol) -> str:
    """A hash of everything that decides the trial, so the same command twice finds its trials stored."""
    key = {"kind": kind, "source": source.name, "weights": source.weights_ref if source.weights_sha256 is None
           else source.weights_sha256, "target": target, "architecture": source.architecture, "fold": fold,
           "protocol": p.as_dict()}
    return hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:16]


def _db_path(db) -> Path:
    return Path(db) if db is not None else store.default_path()


def _target_row(con, target: str) -> tuple[str, str, str, str, tuple[str, ...]]:
    from metadb.embeddings import loader_for

    loader_for(con, target)  # one-line errors: not ingested, or its folder is gone
    layout, root, params, label_type = con.execute(
        "SELECT layout, root, params, label_type FROM datasets WHERE name = ?", [target]).fetchone()
    # images the last ingest could not decode (it replaces these rows): trials leave them out too
    bad = tuple(r[0] for r in con.execute("SELECT DISTINCT path FROM ingest_errors WHERE dataset = ? ORDER BY path",
                                          [target]).fetchall())
    return layout, root, params or "{}", label_type or "single-label", bad


def resolve_sources(con, names: Sequence[str], default_arch: str) -> list[SourceModel]:
    """Registered models by name, `random` (the protocol's architecture), or `all` (every model and random)."""
    rows = {r[0]: r for r in con.execute(
        "SELECT name, architecture, weights_ref, weights_sha256, source_dataset FROM models ORDER BY name").fetchall()}
    wanted = list(dict.fromkeys(n.strip() for n in names if n.strip()))
    if "all" in wanted:
        wanted = [*rows, "random"]
    if not wanted:
        raise MetadbError("--sources is empty", "name registered models (metadb models list), random, or all")
    out = []
    for n in wanted:
        if n == "random":
            out.append(SourceModel("random", default_arch, "random-init", None))
        elif n in rows:
            name, arch, ref, sha, src = rows[n]
            out.append(SourceModel(name, arch, ref, sha, (src or "").lower() == "imagenet"))
        else:
            raise MetadbError(f"--sources: no model {n!r}",
                              f"registered: {', '.join(rows) or 'none'} (metadb models add), or random, or all")
    return out


def plan(db, target: str, sources: Sequence[str], protocol: str, overrides: dict[str, Any] | None = None,
         grid: dict[str, list[str]] | None = None, device: str | None = None, workers: int | None = None,
         progress: bool | None = None) -> list[TrialSpec]:
    """Every trial of a finetune command, in order (source, grid point, fold); nothing runs."""
    base = P.load(protocol, overrides)
    points = P.expand_grid(base, grid or {})
    db_path = _db_path(db)
    con = store.connect(db_path)
    try:
        layout, root, params, label_type, bad = _target_row(con, target)
        models = resolve_sources(con, sources, base.architecture)
    finally:
        con.close()
    specs = []
    for src in models:
        for p in points:
            if src.name == "random":
                src = SourceModel("random", p.architecture, "random-init", None)
            p = p.replace(architecture=src.architecture)  # a registered model brings its own
            for fold in range(1, p.folds + 1):
                specs.append(TrialSpec(run_id("finetune", src, target, fold, p), "finetune", src, target, layout,
                                       root, params, label_type, p, fold, f"{db_path}.runs", device, workers, bad,
                                       progress))
    return specs


def finetune(db, target: str, sources: Sequence[str], protocol: str, overrides: dict[str, Any] | None = None,
             grid: dict[str, list[str]] | None = None, device: str | None = None, workers: int | None = None,
             progress: bool | None = None, execute: Callable[[TrialSpec], TrialRecord] = run_trial,
             on_record: Callable[[TrialSpec, TrialRecord], None] | None = None, executor=None,
             mlflow: str | None = None) -> Summary:
    """Run every trial not yet stored; each finished one commits its run, outcome and the selection.

    `executor` (a spec or an Executor, see metadb.executors): trials run there, in parallel, and
    the driver commits each as it returns; without it they run here one after another.
    With `mlflow` (a tracking URI), each committed trial is then logged as an MLflow run, and stored
    trials of this command that MLflow lacks are logged first (metadb.finetune.mlflow_log).
    """
    from tqdm import tqdm

    specs = plan(db, target, sources, protocol, overrides, grid, device, workers, progress)
    logger = None
    if mlflow:
        from metadb.finetune.mlflow_log import MlflowLogger

        logger = MlflowLogger(mlflow)  # a missing MLflow or a bad URI fails here, before any training
    done = stored_run_ids(db, [s.run_id for s in specs])
    todo = [s for s in specs if s.run_id not in done]
    summary = Summary(len(specs), len(specs) - len(todo))
    if logger:
        summary.logged += logger.log_stored(_db_path(db), [s.run_id for s in specs if s.run_id in done])
    bar = tqdm(total=len(todo), desc=f"finetune {target}", unit="trial",
               disable=not progress if progress is not None else None)
    with bar:
        for spec, rec in _executed(todo, execute, executor, device):
            t0 = time.perf_counter()
            commit(db, spec, rec)
            summary.commit_seconds += time.perf_counter() - t0
            summary.records.append((spec, rec))
            bar.update(1)
            if logger:  # after the commit: MLflow only ever shows trials the store holds
                summary.logged += logger.log_stored(_db_path(db), [spec.run_id])
            if on_record:
                on_record(spec, rec)
    return summary


def _executed(todo: list[TrialSpec], execute, executor, device: str | None):
    """(spec, record) as trials finish: here in order, or on an executor (a GPU each when asked for CUDA)."""
    if executor is None:
        yield from ((spec, execute(spec)) for spec in todo)
        return
    from metadb.executors import TaskFailed, using

    with using(executor) as ex:
        gpu = {"GPU": 1} if (device or "").startswith("cuda") and not ex.name.startswith("local") else None
        try:
            for k, rec in ex.run(execute, todo, resources=gpu):
                yield todo[k], rec
        except TaskFailed as e:
            s = todo[e.index]
            raise MetadbError(f"trial {s.run_id} ({s.source.name} -> {s.target} fold {s.fold}) failed after "
                              f"{e.attempts} attempt(s): {type(e.error).__name__}: {e.error}",
                              "finished trials are committed; the same command runs the rest") from None


def stored_run_ids(db, ids: list[str]) -> set[str]:
    con = store.connect(_db_path(db))
    try:
        return {r[0] for r in con.execute("SELECT run_id FROM runs WHERE list_contains(?, run_id)", [ids]).fetchall()}
    finally:
        con.close()


def commit(db, spec: TrialSpec, rec: TrialRecord) -> None:
    """One transaction: the run row, its outcome row (when finished) and the store-wide selection."""
    con = store.connect(_db_path(db))
    try:
        with store.transaction(con):
            _commit_in(con, spec, rec)
            if spec.kind == "finetune" and rec.status == "finished":
                _insert_outcome(con, spec, rec)
                reselect(con)
    finally:
        con.close()


def _insert_outcome(con, spec: TrialSpec, rec: TrialRecord) -> None:
    """The trial as an imported MLflow run would be: metric auc (test AUC when there is a test split)."""
    value = rec.test_auc if spec.protocol.test_split else rec.val_auc
    if value is None or value != value:  # NaN: AUC undefined on a one-class split; the run row says so
        return
    pretraining = "random-init" if spec.source.weights_ref == "random-init" else None
    con.execute("""INSERT INTO outcomes (source, target, architecture, pretraining, protocol, metric, value, fold, seed,
                                         hyperparameters, run_id, status, is_selected, file, file_row, imported_at,
                                         origin, selection, selection_value)
                   VALUES (?, ?, ?, ?, 'fine-tune', 'auc', ?, ?, ?, ?, ?, 'FINISHED', false, NULL, NULL, now(), 'run',
                           'min:val_loss', ?)""",
                [spec.source.name, spec.target, spec.source.architecture, pretraining, value, spec.fold,
                 spec.protocol.seed, json.dumps({"protocol": spec.protocol.name, **spec.protocol.as_dict()}),
                 spec.run_id, rec.val_loss])


# --- pretrain ----------------------------------------------------------------------------------
def pretrain(db, dataset: str, architecture: str | None, protocol: str, overrides: dict[str, Any] | None = None,
             name: str | None = None, device: str | None = None, workers: int | None = None,
             progress: bool | None = None) -> tuple[str, TrialRecord | None]:
    """Train `architecture` from scratch on a dataset (the protocol's split) and register it as model `name`."""
    p = P.load(protocol, overrides)
    if architecture:
        p = p.replace(architecture=P.coerce("architecture", architecture))
    name = name or f"{dataset}-{p.architecture}"
    db_path = _db_path(db)
    con = store.connect(db_path)
    try:
        layout, root, params, label_type, bad = _target_row(con, dataset)
    finally:
        con.close()
    src = SourceModel("random", p.architecture, "random-init", None)
    spec = TrialSpec(run_id("pretrain", src, dataset, 0, p), "pretrain", src, dataset, layout, root, params,
                     label_type, p, 0, f"{db_path}.runs", device, workers, bad, progress)
    con = store.connect(db_path)
    try:
        have = con.execute("SELECT checkpoint_path, checkpoint_sha256 FROM runs WHERE run_id = ?", [spec.run_id]).fetchone()
        registered = con.execute("SELECT weights_sha256 FROM models WHERE name = ?", [name]).fetchone()
    finally:
        con.close()
    if have and registered and registered[0] == have[1]:
        return name, None
    rec = run_trial(spec) if not have else None
    if rec is not None and rec.status != "finished":
        commit(db, spec, rec)
        raise MetadbError(f"pretraining {p.architecture} on {dataset} diverged (non-finite loss)", "lower --lr")
    con = store.connect(db_path)
    try:
        with store.transaction(con):
            if rec is not None:
                _commit_in(con, spec, rec)
            path, sha = (rec.checkpoint_path, rec.checkpoint_sha256) if rec else have
            n_classes = rec.n_outputs if rec else len(json.loads(con.execute(
                "SELECT classes FROM runs WHERE run_id = ?", [spec.run_id]).fetchone()[0]))
            con.execute("""INSERT OR REPLACE INTO models (name, architecture, source_dataset, method, weights_ref,
                                                          weights_sha256, n_source_classes, has_source_head, added_at)
                           VALUES (?, ?, ?, 'supervised', ?, ?, ?, true, now())""",
                        [name, p.architecture, dataset, f"file:{Path(path).resolve()}", sha, n_classes])
    finally:
        con.close()
    return name, rec


def _commit_in(con, spec: TrialSpec, rec: TrialRecord) -> None:
    p = spec.protocol
    row = [spec.run_id, spec.kind, spec.source.name, spec.source.weights_ref, spec.source.weights_sha256, spec.target,
           spec.source.architecture, p.name, spec.fold, p.seed, json.dumps(p.as_dict()), json.dumps(spec_overrides(p)),
           rec.status, rec.best_epoch, rec.epochs_run, rec.val_auc, rec.val_loss, rec.test_auc, rec.test_loss,
           rec.n_train, rec.n_val, rec.n_test, json.dumps(rec.classes), rec.wall_s, rec.device,
           json.dumps(rec.versions), rec.curves_path, rec.checkpoint_path, rec.checkpoint_sha256]
    con.execute(f"INSERT INTO runs ({', '.join(RUN_COLUMNS)}, finished_at) "
                f"VALUES ({', '.join('?' * len(RUN_COLUMNS))}, now())", row)


# --- listing -----------------------------------------------------------------------------------
def list_runs(db, target: str | None = None) -> tuple[list[str], list[tuple]]:
    """Trials with their status, what varied, the kept epoch, AUCs and losses, time and device."""
    con = store.connect(db, read_only=True)
    try:
        rel = con.execute("""
            SELECT r.run_id, r.kind, r.source, r.target, r.architecture, r.protocol, r.fold, r.seed,
                   r.overrides, r.status, r.best_epoch, r.epochs_run, r.val_auc, r.val_loss, r.test_auc, r.test_loss,
                   round(r.wall_s, 2) AS wall_s, r.device, coalesce(o.is_selected, false) AS selected
            FROM runs r LEFT JOIN outcomes o ON o.run_id = r.run_id AND o.origin = 'run'
            WHERE ? IS NULL OR r.target = ?
            ORDER BY r.target, r.source, r.fold, r.finished_at, r.run_id""", [target, target])
        return [d[0] for d in rel.description], rel.fetchall()
    finally:
        con.close()
