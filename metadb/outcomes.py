"""Import published or in-house results: fine-tuning outcomes, transferability scores, distances.

Every importer turns one file into rows of one table and commits them in one transaction with a
row in `imports` (the file's sha256 plus the options), so a bad cell aborts the whole file and
re-importing the same file adds nothing. Dataset names are canonicalised through the catalog
(aliases such as `blood` -> `bloodmnist`); names the store does not hold become flagged stubs.
"""

from __future__ import annotations

import glob
import hashlib
import json
import math
import os
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable

import polars as pl

from metadb import catalog, store
from metadb.errors import MetadbError

NULLS = ["", "nan", "NaN", "NA", "null", "None"]
HYPERPARAMETERS = ("lr", "momentum", "wd", "batch_size", "epochs", "optimizer", "weight_decay")


@dataclass
class ImportResult:
    file: str
    kind: str
    status: str  # "imported" or "already imported"
    rows: int = 0
    skipped: int = 0

    def summary(self) -> str:
        if self.status != "imported":
            return f"{self.file}: already imported; nothing added"
        skipped = f", {self.skipped} empty cells or runs skipped" if self.skipped else ""
        return f"{self.file}: {self.rows} {self.kind} rows imported{skipped}"


def canonical(name: str) -> str:
    name = str(name).strip()
    return catalog.get(name).name if name in catalog.catalog else name


def value_range(metric: str) -> tuple[float, float] | None:
    """AUC, accuracy and F1 live in [0, 1]; other metrics are unbounded."""
    m = metric.lower()
    return (0.0, 1.0) if any(k in m for k in ("auc", "acc", "f1")) else None


def files(pattern: str) -> list[Path]:
    found = sorted(Path(p) for p in glob.glob(os.path.expanduser(pattern)))
    if not found:
        raise MetadbError(f"no file matches {pattern}", "check the path (quote glob patterns)")
    return found


def read_csv(path: Path, separator: str = ",") -> pl.DataFrame:
    """All columns as strings (cells are validated, with row numbers, by the importers)."""
    try:
        df = pl.read_csv(path, separator=separator, infer_schema_length=0, encoding="utf8-lossy")
    except (pl.exceptions.PolarsError, OSError) as e:
        raise MetadbError(f"{path}: not a readable CSV ({str(e).splitlines()[0][:100]})") from None
    return df.rename({c: c.lstrip("\ufeff").strip() for c in df.columns})


def require(df: pl.DataFrame, path: Path, columns: list[str]) -> None:
    missing = [c for c in columns if c not in df.columns]
    if missing:
        raise MetadbError(f"{path}: missing column(s) {', '.join(missing)}; found {', '.join(df.columns)}")


def number(cell: Any, path: Path, row: int, column: str, metric: str | None = None) -> float | None:
    """A numeric cell (None when empty/nan), range-checked for bounded metrics."""
    if cell is None or str(cell).strip() in NULLS:
        return None
    try:
        v = float(cell)
    except ValueError:
        raise MetadbError(f"{path} row {row}, column {column}: {cell!r} is not a number") from None
    if math.isnan(v):
        return None
    bounds = value_range(metric) if metric else None
    if bounds and not bounds[0] <= v <= bounds[1]:
        raise MetadbError(f"{path} row {row}, column {column}: {metric} {v} is outside [{bounds[0]:g}, {bounds[1]:g}]")
    return v


def digest(path: Path, options: dict[str, Any]) -> str:
    h = hashlib.sha256(path.read_bytes())
    h.update(json.dumps(options, sort_keys=True).encode())
    return h.hexdigest()


def now() -> datetime:
    return datetime.now(timezone.utc).replace(tzinfo=None)


def import_files(db: str | Path | None, pattern: str, kind: str, fmt: str, options: dict[str, Any], table: str,
                 read: Callable[[Path], tuple[list[dict[str, Any]], int]]) -> list[ImportResult]:
    """Read every matching file and commit each in its own transaction, on one store connection."""
    paths = files(pattern)
    con = store.connect(db)
    try:
        return [commit(con, path, kind, fmt, options, table, read) for path in paths]
    finally:
        con.close()


def commit(con, path: Path, kind: str, fmt: str, options: dict[str, Any], table: str,
           read: Callable[[Path], tuple[list[dict[str, Any]], int]]) -> ImportResult:
    """Insert rows + stubs + the import record in one transaction, unless already imported."""
    sha = digest(path, options)
    if con.execute("SELECT 1 FROM imports WHERE sha256 = ?", [sha]).fetchone():
        return ImportResult(str(path), kind, "already imported")
    rows, skipped = read(path)
    names = {r[k] for r in rows for k in ("source", "target", "dataset_a", "dataset_b") if k in r}
    columns = [r[0] for r in con.execute(f"DESCRIBE {table}").fetchall()]
    with store.transaction(con):
        if rows:
            frame = pl.DataFrame(rows, schema_overrides={c: pl.Utf8 for c in ("hyperparameters", "params")},
                                 infer_schema_length=None)
            incoming = frame.select([c for c in columns if c in frame.columns]).to_arrow()
            con.register("incoming", incoming)
            cols = ", ".join(c for c in columns if c in frame.columns)
            con.execute(f"INSERT INTO {table} ({cols}) SELECT {cols} FROM incoming")
            con.unregister("incoming")
        add_stubs(con, names)
        con.execute("INSERT INTO imports VALUES (?, ?, ?, ?, ?, ?)", [sha, str(path), kind, fmt, len(rows), now()])
    return ImportResult(str(path), kind, "imported", len(rows), skipped)


def add_stubs(con, names: set[str]) -> None:
    """Datasets known only by name become flagged stubs, with catalog metadata when there is some."""
    have = {r[0] for r in con.execute("SELECT name FROM datasets").fetchall()}
    for name in sorted(names - have):
        info = catalog.get(name) if name in catalog.catalog else None
        con.execute(
            """INSERT INTO datasets (name, title, modality, anatomy, domain, label_type, licence, source_url,
                                     derived_from, is_stub) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, true)""",
            [name, info.title if info else name, info and info.modality, info and info.anatomy, info and info.domain,
             info and info.label_type, info and info.licence, info and info.url,
             list(info.derived_from) if info else []],
        )


# --- outcomes ----------------------------------------------------------------------------------
def _outcome(source: str, target: str, metric: str, value: float, path: Path, row: int, **kw: Any) -> dict[str, Any]:
    base = {"source": canonical(source), "target": canonical(target), "metric": metric, "value": value,
            "architecture": None, "pretraining": None, "protocol": "fine-tune", "fold": None, "seed": None,
            "hyperparameters": None, "run_id": None, "status": None, "is_selected": True,
            "file": str(path), "file_row": row, "imported_at": now()}
    base.update({k: v for k, v in kw.items() if v is not None})
    return base


def _read_folds(path: Path, metric: str) -> tuple[list[dict], int]:
    df = read_csv(path)
    require(df, path, ["source", "target"])
    folds = sorted((c for c in df.columns if c.startswith("fold_")), key=lambda c: int(c.split("_")[1]))
    if not folds:
        raise MetadbError(f"{path}: no fold_1 … fold_k columns; expected source,target,fold_1..fold_k[,mean,std]")
    rows, skipped = [], 0
    for i, r in enumerate(df.iter_rows(named=True), start=2):
        values = [number(r[c], path, i, c, metric) for c in folds]
        if all(v is None for v in values):
            skipped += 1  # a pair that was not run
            continue
        if any(v is None for v in values):
            raise MetadbError(f"{path} row {i}: {r['source']}->{r['target']} has an empty fold; expected all or none")
        rows += [_outcome(r["source"], r["target"], metric, v, path, i, fold=int(c.split("_")[1]))
                 for c, v in zip(folds, values)]
    return rows, skipped


def _read_matrix_cells(path: Path, metric: str) -> tuple[list[tuple[str, str, float, int]], int]:
    """(source, target, value, row) for every non-empty cell of a source x target matrix CSV."""
    df = read_csv(path)
    require(df, path, ["source"])
    targets = [c for c in df.columns if c not in ("source", "") and not c.startswith(("Unnamed", "column_"))]
    cells, skipped = [], 0
    for i, r in enumerate(df.iter_rows(named=True), start=2):
        for t in targets:
            v = number(r[t], path, i, t, metric)
            if v is None:
                skipped += 1
            else:
                cells.append((r["source"], t, v, i))
    return cells, skipped


def _read_matrix(path: Path, metric: str) -> tuple[list[dict], int]:
    cells, skipped = _read_matrix_cells(path, metric)
    return [_outcome(s, t, metric, v, path, i) for s, t, v, i in cells], skipped


def _read_long(path: Path, metric: str | None) -> tuple[list[dict], int]:
    df = read_csv(path)
    require(df, path, ["source", "target", "value"] + ([] if metric else ["metric"]))
    rows = []
    for i, r in enumerate(df.iter_rows(named=True), start=2):
        m = r.get("metric") or metric
        v = number(r["value"], path, i, "value", m)
        if v is None:
            raise MetadbError(f"{path} row {i}: empty value for {r['source']}->{r['target']}")
        extra = {k: r.get(k) for k in ("architecture", "pretraining", "protocol", "run_id", "status")}
        for k in ("fold", "seed"):
            extra[k] = int(r[k]) if r.get(k) not in (None, "") else None
        rows.append(_outcome(r["source"], r["target"], m, v, path, i, **extra))
    return rows, 0


def parse_select(select: str | None) -> tuple[str, str] | None:
    if select is None:
        return None
    how, _, column = select.partition(":")
    if how not in ("min", "max") or not column:
        raise MetadbError(f"--select {select!r}: expected min:COLUMN or max:COLUMN, e.g. min:val_loss")
    return how, column


def numeric_column(df: pl.DataFrame, column: str, path: Path, metric: str | None = None) -> pl.Series:
    """Cast a string column to float in one pass; the first bad or out-of-range cell is the error."""
    raw = df[column].str.strip_chars()
    values = raw.cast(pl.Float64, strict=False)
    bad = values.is_null() & raw.is_not_null() & ~raw.is_in(NULLS)
    if bad.any():
        i = int(bad.arg_true()[0])
        number(raw[i], path, i + 2, column, metric)  # raises with the row and the cell
    bounds = value_range(metric) if metric else None
    if bounds:
        out = values.is_not_nan() & ((values < bounds[0]) | (values > bounds[1]))
        if out.any():
            i = int(out.arg_true()[0])
            number(raw[i], path, i + 2, column, metric)
    return values.fill_nan(None)


def _read_mlflow(path: Path, metric: str, select: tuple[str, str] | None) -> tuple[list[dict], int]:
    """An MLflow run export, validated column-wise (20k runs in well under a second)."""
    df = read_csv(path)
    require(df, path, ["Run ID", "source_flag", "target_flag", metric] + ([select[1]] if select else []))
    df = df.with_row_index("file_row", offset=2)
    blank = pl.all_horizontal([pl.col(c).is_null() for c in df.columns if c != "file_row"])
    skipped = int(df.select(blank.sum()).item())  # blank lines in the export
    df = df.filter(~blank)
    if df["Run ID"].null_count():
        raise MetadbError(f"{path} row {int(df.filter(pl.col('Run ID').is_null())['file_row'][0])}: no Run ID")
    dup = df.filter(pl.col("Run ID").is_duplicated())["Run ID"]
    if len(dup):
        raise MetadbError(f"{path}: run id {dup[0]} appears {int((df['Run ID'] == dup[0]).sum())} times; run ids must be unique")
    value = numeric_column(df, metric, path, metric)
    key = numeric_column(df, select[1], path) if select else pl.Series([None] * df.height, dtype=pl.Float64)
    hp_cols = [c for c in HYPERPARAMETERS if c in df.columns]
    hp = df.select(pl.struct(hp_cols).struct.json_encode()).to_series() if hp_cols else pl.Series([None] * df.height)
    frame = pl.DataFrame({
        "source": df["source_flag"].map_elements(canonical, return_dtype=pl.Utf8),
        "target": df["target_flag"].map_elements(canonical, return_dtype=pl.Utf8),
        "metric": metric, "value": value, "run_id": df["Run ID"], "status": df.get_column("Status") if "Status" in df.columns else None,
        "architecture": df["model"] if "model" in df.columns else None, "hyperparameters": hp,
        "file": str(path), "file_row": df["file_row"], "_key": key,
    })
    skipped += int(frame["value"].null_count())
    frame = frame.filter(pl.col("value").is_not_null())  # runs that logged no value (failed or killed)
    if select:
        order = pl.col("_key") if select[0] == "min" else -pl.col("_key")
        best = (frame.with_row_index("_i").filter(pl.col("_key").is_not_null())
                .sort(order, "_i").group_by("source", "target", maintain_order=True).first()["_i"])
        frame = frame.with_row_index("_i").with_columns(pl.col("_i").is_in(best.implode()).alias("is_selected")).drop("_i")
    else:
        frame = frame.with_columns(pl.lit(True).alias("is_selected"))
    rows = frame.drop("_key").with_columns(protocol=pl.lit("fine-tune"), imported_at=pl.lit(now())).to_dicts()
    return rows, skipped


def _mark_selected(rows: list[dict], select: tuple[str, str] | None) -> None:
    """Per (source, target), only the run with the min/max selection column is the ground truth."""
    if select is None:
        return
    best: dict[tuple[str, str], dict] = {}
    sign = 1 if select[0] == "min" else -1
    for r in rows:
        r["is_selected"] = False
        if r["_key"] is None:
            continue
        k = (r["source"], r["target"])
        if k not in best or sign * r["_key"] < sign * best[k]["_key"]:
            best[k] = r
    for r in best.values():
        r["is_selected"] = True
    for r in rows:
        del r["_key"]


OUTCOME_FORMATS: dict[str, Callable[..., tuple[list[dict], int]]] = {
    "folds": lambda p, metric, select: _read_folds(p, metric),
    "matrix": lambda p, metric, select: _read_matrix(p, metric),
    "long": lambda p, metric, select: _read_long(p, metric),
    "mlflow": lambda p, metric, select: _read_mlflow(p, metric, select),
}


def import_outcomes(db: str | Path | None, pattern: str, fmt: str, metric: str | None = None,
                    select: str | None = None, architecture: str | None = None,
                    protocol: str | None = None) -> list[ImportResult]:
    """Import fine-tuning outcomes from every file matching `pattern`, one transaction per file."""
    if fmt not in OUTCOME_FORMATS:
        raise MetadbError(f"--format {fmt!r}: expected one of {', '.join(OUTCOME_FORMATS)}")
    if metric is None and fmt != "long":
        raise MetadbError(f"--format {fmt} needs --metric (e.g. auc, test_auc)")
    chosen = parse_select(select)

    def read(path: Path) -> tuple[list[dict[str, Any]], int]:
        rows, skipped = OUTCOME_FORMATS[fmt](path, metric, chosen)
        for r in rows:
            r["architecture"] = architecture or r["architecture"]
            r["protocol"] = protocol or r["protocol"]
        return rows, skipped

    options = {"format": fmt, "metric": metric, "select": select, "architecture": architecture, "protocol": protocol}
    return import_files(db, pattern, "outcome", fmt, options, "outcomes", read)


# --- scores ------------------------------------------------------------------------------------
def import_scores(db: str | Path | None, pattern: str, metric: str, fmt: str = "matrix") -> list[ImportResult]:
    """Transferability scores (one metric) from source x target matrices or long CSVs."""
    if fmt not in ("matrix", "long"):
        raise MetadbError(f"--format {fmt!r}: expected matrix or long")

    def read(path: Path) -> tuple[list[dict[str, Any]], int]:
        if fmt == "matrix":
            cells, skipped = _read_matrix_cells(path, None)
        else:
            df = read_csv(path)
            require(df, path, ["source", "target", "value"])
            cells = [(r["source"], r["target"], number(r["value"], path, i, "value"), i)
                     for i, r in enumerate(df.iter_rows(named=True), start=2)]
            skipped = sum(c[2] is None for c in cells)
            cells = [c for c in cells if c[2] is not None]
        return [{"source": canonical(s), "target": canonical(t), "metric": metric, "value": v, "file": str(path),
                 "file_row": i, "computed_at": now()} for s, t, v, i in cells], skipped

    return import_files(db, pattern, "score", fmt, {"metric": metric, "format": fmt}, "scores", read)


# --- distances ---------------------------------------------------------------------------------
def _distance_rows(path: Path, fmt: str) -> tuple[list[tuple[str, str, float, int]], int]:
    """(a, b, distance, row): `long` is target;source;distance (or a,b,distance), `cats-scans` averages
    the per-fold distance_1..k columns of aucs_scores_distances_experts.csv, `matrix` is a square CSV."""
    if fmt == "matrix":
        return _read_matrix_cells(path, None)
    sep = ";" if ";" in path.read_text(encoding="utf-8-sig", errors="replace").splitlines()[0] else ","
    df = read_csv(path, sep)
    if fmt == "cats-scans":
        require(df, path, ["source", "target"])
        cols = sorted(c for c in df.columns if c.startswith("distance_"))
        if not cols:
            raise MetadbError(f"{path}: no distance_1 … distance_k columns")
        out = []
        for i, r in enumerate(df.iter_rows(named=True), start=2):
            vs = [number(r[c], path, i, c) for c in cols]
            if any(v is None for v in vs):
                raise MetadbError(f"{path} row {i}: empty distance for {r['source']}->{r['target']}")
            out.append((r["target"], r["source"], sum(vs) / len(vs), i))
        return out, 0
    a, b = ("target", "source") if "target" in df.columns else ("a", "b")
    require(df, path, [a, b, "distance"])
    out = []
    for i, r in enumerate(df.iter_rows(named=True), start=2):
        v = number(r["distance"], path, i, "distance")
        if v is None:
            raise MetadbError(f"{path} row {i}: empty distance for {r[a]}-{r[b]}")
        out.append((r[a], r[b], v, i))
    return out, 0


def import_similarities(db: str | Path | None, pattern: str, measure: str, fmt: str = "long") -> list[ImportResult]:
    """User-supplied distances (expert judgement, published Task2Vec, ...) as a named measure."""
    if fmt not in ("long", "matrix", "cats-scans"):
        raise MetadbError(f"--format {fmt!r}: expected long, matrix or cats-scans")

    def read(path: Path) -> tuple[list[dict[str, Any]], int]:
        cells, skipped = _distance_rows(path, fmt)
        return [{"dataset_a": canonical(a), "dataset_b": canonical(b), "measure": measure, "backbone": "",
                 "value": v, "measure_version": "imported", "params": json.dumps({"format": fmt}),
                 "inputs_fingerprint": None, "source": str(path), "computed_at": now()} for a, b, v, _ in cells], skipped

    return import_files(db, pattern, "distance", fmt, {"measure": measure, "format": fmt}, "similarities", read)


def store_combination(db: str | Path | None, metrics: list[str], name: str) -> int:
    """Store a min-max product of scores (see analyses.score_combination) as the score `name`."""
    from metadb.analyses.score_combination import combine

    con = store.connect(db)
    try:
        rows = combine(con, metrics)
        with store.transaction(con):
            con.execute("DELETE FROM scores WHERE metric = ?", [name])
            con.executemany("INSERT INTO scores (source, target, metric, value, metric_version, params, computed_at) "
                            "VALUES (?, ?, ?, ?, 'combination', ?, ?)",
                            [[s, t, name, v, json.dumps({"minmax_product": metrics}), now()] for s, t, v in rows])
        return len(rows)
    finally:
        con.close()
