"""Optional MLflow logging of stored runs (`metadb finetune ... --mlflow file:./mlruns`).

Each fine-tuning trial becomes one MLflow run, written from its `runs` row (never from a trial in
flight), so only the driver logs and only what is committed: a trial killed before its commit is
in neither place. Parameters use the names the studies logged (Juodelyte et al.'s exports:
`source_flag`, `target_flag`, `lr`, `momentum`, `wd`, `batch_size`, `epochs`); the rest of the
resolved protocol follows under its own field names. Metrics are the kept epoch's `val_loss`,
`val_auc`, `test_auc`, `test_loss` and `auc`, the outcome metadb stores (test AUC when the
protocol has a test split, else validation AUC); per-epoch curves are `epoch_*` metrics stepped by
epoch, so the final `val_loss` is the kept epoch's and not the last one's. An export of these runs
(`mlflow.search_runs(...).to_csv(...)` or the UI's Download CSV) imports back with
`metadb outcomes import FILE --format mlflow --metric auc --select min:val_loss` and gives the same
best-source answer.

A run already logged (tag `metadb.run_id`) is not logged again, and stored runs that MLflow lacks
(an earlier command without --mlflow, a kill between commit and log) are logged when the same
command runs with --mlflow.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Iterable

from metadb import store
from metadb.errors import MetadbError

EXPERIMENT = "metadb"
RUN_TAG = "metadb.run_id"
# protocol field -> the parameter name the studies' MLflow exports use
STUDY_NAMES = {"weight_decay": "wd"}
CURVES = ("train_loss", "val_loss", "val_auc", "lr", "seconds")


def _import_mlflow():
    try:
        import mlflow  # noqa: F401
        from mlflow.tracking import MlflowClient
    except ImportError:
        raise MetadbError("--mlflow needs MLflow, which is not installed",
                          "pip install metadb[mlflow] (or mlflow-skinny)") from None
    return MlflowClient


class MlflowLogger:
    """Logs stored runs to one MLflow experiment; construction checks MLflow and the URI before any training."""

    def __init__(self, tracking_uri: str, experiment: str = EXPERIMENT):
        client_class = _import_mlflow()
        if tracking_uri.startswith("file:") or "://" not in tracking_uri:
            # MLflow 3 refuses its file store unless asked; --mlflow file:... is that request
            os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")
        try:
            self.client = client_class(tracking_uri=tracking_uri)
            found = self.client.get_experiment_by_name(experiment)
            self.experiment_id = found.experiment_id if found else self.client.create_experiment(experiment)
        except Exception as e:  # MLflow raises many kinds for an unusable URI; each is the user's to fix
            raise MetadbError(f"--mlflow {tracking_uri}: {str(e).splitlines()[0][:200]}",
                              "give a tracking URI such as file:./mlruns") from None
        self.uri = tracking_uri
        self._logged: set[str] | None = None

    def logged(self) -> set[str]:
        """metadb run ids already in the experiment (read once, then kept up to date by this logger)."""
        if self._logged is None:
            self._logged, token = set(), None
            while True:
                page = self.client.search_runs([self.experiment_id], max_results=1000, page_token=token)
                self._logged |= {r.data.tags[RUN_TAG] for r in page if RUN_TAG in r.data.tags}
                token = page.token
                if not token:
                    break
        return self._logged

    def log_stored(self, db, run_ids: Iterable[str]) -> int:
        """Log each of `run_ids` that is stored and not yet in MLflow; returns how many were logged."""
        wanted = [r for r in dict.fromkeys(run_ids) if r not in self.logged()]
        if not wanted:
            return 0
        con = store.connect(db, read_only=True)
        try:
            rel = con.execute("SELECT * FROM runs WHERE list_contains(?, run_id) AND kind = 'finetune' "
                              "ORDER BY finished_at, run_id", [wanted])
            cols = [d[0] for d in rel.description]
            rows = [dict(zip(cols, r)) for r in rel.fetchall()]
        finally:
            con.close()
        for row in rows:
            self._log(row)
            self.logged().add(row["run_id"])
        return len(rows)

    def _log(self, row: dict[str, Any]) -> None:
        from mlflow.entities import Metric, Param, RunTag

        protocol = json.loads(row["hyperparameters"])
        finished = row["finished_at"]
        end_ms = int(finished.timestamp() * 1000) if finished else None
        start_ms = end_ms - int(round((row["wall_s"] or 0) * 1000)) if end_ms else None
        tags = {RUN_TAG: row["run_id"], "source": row["source"], "target": row["target"], "fold": str(row["fold"]),
                "mlflow.runName": f"{row['source']}->{row['target']} fold {row['fold']}"}
        run = self.client.create_run(self.experiment_id, start_time=start_ms, tags=tags)
        rid = run.info.run_id
        at = end_ms or 0
        metrics = [Metric(k, float(v), at, 0) for k, v in _final_metrics(row, protocol).items()]
        metrics += [Metric(f"epoch_{c}", float(e[c]), at, int(e["epoch"])) for e in _curves(row["curves_path"])
                    for c in CURVES if e.get(c) is not None and e[c] == e[c]]
        params = [Param(k, _param_text(v)) for k, v in _params(row, protocol).items()]
        for i in range(0, max(len(metrics), 1), 1000):  # MLflow caps a batch at 1000 metrics
            self.client.log_batch(rid, metrics=metrics[i:i + 1000], params=params if i == 0 else [])
        self.client.set_tag(rid, "metadb.status", row["status"])
        self.client.set_terminated(rid, "FINISHED" if row["status"] == "finished" else "FAILED", end_time=end_ms)


def _params(row: dict[str, Any], protocol: dict[str, Any]) -> dict[str, Any]:
    """The study's names first (source_flag, target_flag, lr, momentum, wd, batch_size, epochs), then the rest."""
    out: dict[str, Any] = {"source_flag": row["source"], "target_flag": row["target"], "fold": row["fold"],
                           "seed": row["seed"], "architecture": row["architecture"], "protocol": row["protocol"],
                           "source_weights": row["source_weights"]}
    for k, v in protocol.items():
        if k not in ("name", "architecture", "seed"):
            out[STUDY_NAMES.get(k, k)] = v
    return out


def _param_text(v: Any) -> str:
    return json.dumps(v) if isinstance(v, bool) else str(v)


def _final_metrics(row: dict[str, Any], protocol: dict[str, Any]) -> dict[str, float]:
    """The kept epoch's figures, and `auc`: the value metadb stores as the trial's outcome."""
    out = {k: row[k] for k in ("val_loss", "val_auc", "test_auc", "test_loss", "wall_s") if row[k] is not None}
    if row["best_epoch"] is not None:
        out["best_epoch"] = row["best_epoch"]
    outcome = row["test_auc"] if protocol.get("test_split") else row["val_auc"]
    if row["status"] == "finished" and outcome is not None and outcome == outcome:
        out["auc"] = outcome
    return {k: v for k, v in out.items() if v == v}  # MLflow stores NaN, but an export would carry it as text


def _curves(path: str | None) -> list[dict[str, Any]]:
    if not path or not Path(path).exists():
        return []
    import pyarrow.parquet as pq

    return [e for e in pq.read_table(path).to_pylist()]
