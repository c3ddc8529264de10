"""Import published or in-house results: fine-tuning outcomes, transferability scores, distances.

Every importer turns files into rows of one table. All files a command matches are parsed and
validated first (column-wise, with polars), then committed together in one transaction with one
row per file in `imports` (the file's sha256 plus the options). So a bad cell in the seventh of
twelve files leaves the store as it was, and re-importing a file adds nothing. Dataset names are
canonicalised through the catalog (aliases such as `blood` -> `bloodmnist`); names the store does
not hold become flagged stubs (`datasets.is_stub`), with catalog metadata when the catalog knows
them. Rows reach DuckDB through a temporary Parquet file (as ingest stages its rows), so one
`INSERT ... BY NAME` reads them with the table's types and no Python object is scanned.
"""

from __future__ import annotations

import glob
import hashlib
import json
import os
import tempfile
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable

import polars as pl

from metadb import catalog, store
from metadb.errors import MetadbError

NULLS = ["", "nan", "NaN", "NAN", "-nan", "NA", "N/A", "null", "NULL", "None"]
HYPERPARAMETERS = ("lr", "learning_rate", "momentum", "wd", "weight_decay", "batch_size", "epochs", "optimizer",
                   "dropout", "scheduler", "augmentation", "image_size", "freeze")
INDEX_COLUMNS = ("", "index", "Unnamed: 0", "column_1")  # a pandas index written by to_csv
OUTCOME_DEFAULT_METRIC = "auc"
BLANK = "blank lines"


def per_file(read: Callable[[Path], "Parsed"]) -> Callable[[list[Path]], list["Parsed"]]:
    """A batch reader for formats whose files are read and validated one at a time."""
    return lambda paths: [read(p) for p in paths]


@dataclass
class Parsed:
    """One file's validated rows, ready to insert, and what was skipped on purpose."""

    frame: pl.DataFrame
    skips: dict[str, int] = field(default_factory=dict)  # reason -> rows or cells skipped

    @property
    def skipped(self) -> int:
        return sum(self.skips.values())


@dataclass
class ImportResult:
    file: str
    kind: str
    status: str  # "imported" or "already imported"
    rows: int = 0
    skips: dict[str, int] = field(default_factory=dict)

    @property
    def skipped(self) -> int:
        return sum(self.skips.values())

    def summary(self) -> str:
        if self.status != "imported":
            return f"{self.file}: already imported; nothing added"
        skipped = "".join(f", {n} {reason} skipped" for reason, n in self.skips.items() if n)
        return f"{self.file}: {self.rows} {self.kind} rows imported{skipped}"


# --- reading and validating cells --------------------------------------------------------------
def canonical(name: str) -> str:
    name = str(name).strip()
    return catalog.get(name).name if name in catalog.catalog else name


def value_range(metric: str | None) -> tuple[float, float] | None:
    """AUC, accuracy and F1 live in [0, 1]; losses, LogME and other scores are unbounded."""
    m = (metric or "").lower()
    return (0.0, 1.0) if any(k in m for k in ("auc", "acc", "f1")) else None


def files(pattern: str) -> list[Path]:
    found = sorted(Path(p) for p in glob.glob(os.path.expanduser(pattern)) if Path(p).is_file())
    if not found:
        raise MetadbError(f"no file matches {pattern}", "check the path (quote glob patterns so the shell leaves them)")
    return found


def sniff_separator(path: Path) -> str:
    """`;` for files like experts_clean.csv, tab for TSV, else `,`."""
    with open(path, encoding="utf-8-sig", errors="replace") as f:
        first = f.readline()
    counts = {sep: first.count(sep) for sep in (",", ";", "\t")}
    return max(counts, key=lambda s: (counts[s], s == ","))


def read_csv(path: Path, separator: str | None = None,
             wanted: Callable[[str], bool] | None = None) -> pl.DataFrame:
    """Columns as text (cells are validated column-wise below), plus `file_row` (header = row 1).

    `wanted` picks columns by (cleaned) name, so the 60-column MLflow exports parse only the
    dozen columns metadb keeps. A `.parquet` file is read the same way: its columns cast to text
    (floats print in shortest round-trip form, so the checks below see the exact values).
    """
    if Path(path).suffix.lower() == ".parquet":
        try:
            df = pl.read_parquet(path)
        except (pl.exceptions.PolarsError, OSError) as e:
            raise MetadbError(f"{path}: not a readable Parquet file ({str(e).splitlines()[0][:100]})") from None
        df = df.select([c for c in df.columns if wanted is None or wanted(c)]).cast(pl.Utf8)
        return df.with_row_index("file_row", offset=1).with_columns(pl.col("file_row").cast(pl.Int64))
    separator = separator or sniff_separator(path)
    try:
        header = pl.read_csv(path, separator=separator, n_rows=0, encoding="utf8-lossy").columns
        clean = {c: c.lstrip("\ufeff").strip() for c in header}
        keep = [c for c in header if wanted(clean[c])] if wanted else None
        df = pl.read_csv(path, separator=separator, infer_schema_length=0, encoding="utf8-lossy", columns=keep)
    except (pl.exceptions.PolarsError, OSError, UnicodeDecodeError) as e:
        raise MetadbError(f"{path}: not a readable CSV ({str(e).splitlines()[0][:100]})",
                          "check the file and its separator") from None
    df = df.rename({c: clean[c] for c in df.columns})
    return df.with_row_index("file_row", offset=2).with_columns(pl.col("file_row").cast(pl.Int64))


def drop_blank(df: pl.DataFrame) -> tuple[pl.DataFrame, int]:
    """Rows with every cell empty (blank lines) are dropped and counted; row numbers stay the file's."""
    cells = [c for c in df.columns if c != "file_row"]
    blank = df.select(pl.all_horizontal([pl.col(c).is_null() | (pl.col(c).str.strip_chars() == "")
                                         for c in cells])).to_series()
    return (df.filter(~blank), int(blank.sum())) if blank.any() else (df, 0)


def require(df: pl.DataFrame, path: Path, columns: list[str], expected: str = "") -> None:
    missing = [c for c in columns if c not in df.columns]
    if missing:
        found = ", ".join(c for c in df.columns if c != "file_row")
        raise MetadbError(f"{path}: missing column(s) {', '.join(missing)}; found {found}",
                          expected or None)


def first(df: pl.DataFrame, mask: pl.Series) -> dict[str, Any]:
    """The first row where mask holds, as a dict (for the error message)."""
    return df.filter(mask).row(0, named=True)


def at(path: Path | None, row: dict[str, Any]) -> str:
    """`file row N` for a message; frames holding several files carry each row's file in `_file`."""
    return f"{row.get('_file') or path} row {row['file_row']}"


def pair(row: dict[str, Any]) -> str:
    return f"{row.get('source')}->{row.get('target')}" if "source" in row and "target" in row else ""


def numbers(df: pl.DataFrame, column: str, path: Path | None, metric: str | pl.Series | None = None,
            required: bool = False) -> pl.Series:
    """Column as Float64 (missing cells null), refusing text, non-finite numbers and out-of-range metrics.

    `metric` names the metric of every cell, or gives one per row (long files); bounded metrics
    (AUC, accuracy) must lie in [0, 1]. All checks run in one polars pass; only when one fails is
    the first offending cell looked up for the message.
    """
    raw = pl.col(column).str.strip_chars()
    value = raw.cast(pl.Float64, strict=False)
    missing = raw.is_null() | raw.is_in(NULLS).fill_null(False) | value.is_nan().fill_null(False)
    if isinstance(metric, pl.Series):
        bounds = {m: value_range(m) is not None for m in metric.unique().to_list()}
        bounded = pl.lit(metric).replace_strict(bounds, return_dtype=pl.Boolean)
    else:
        bounded = pl.lit(value_range(metric) is not None)
    checks = df.select(
        value=pl.when(missing).then(None).otherwise(value),
        bad=value.is_null() & ~missing,
        infinite=value.is_infinite().fill_null(False),
        missing=missing,
        outside=bounded & ~missing & ((value < 0.0) | (value > 1.0)).fill_null(False),
    )
    flags = checks.select(pl.col("bad", "infinite", "missing", "outside").any()).row(0, named=True)
    if flags["bad"]:
        r = first(df, checks["bad"])
        raise MetadbError(f"{at(path, r)}, column {column}: {r[column]!r} is not a number",
                          "fix the cell, or leave it empty for a missing value")
    if flags["infinite"]:
        r = first(df, checks["infinite"])
        raise MetadbError(f"{at(path, r)}, column {column}: {r[column]!r} is not finite")
    if required and flags["missing"]:
        r = first(df, checks["missing"])
        raise MetadbError(f"{at(path, r)}: empty value for {pair(r) or column} ({r[column]!r} in {column})",
                          "a value is required here; drop the row if it was not run")
    if flags["outside"]:
        i = int(checks["outside"].arg_true()[0])
        name = metric if isinstance(metric, str) else metric[i]
        where = at(path, df.row(i, named=True))
        raise MetadbError(f"{where}, column {column}: {name} {checks['value'][i]} is outside [0, 1]",
                          "AUC and accuracy are fractions: divide percentages by 100, or name another --metric")
    return checks["value"].alias(column)


def integers(df: pl.DataFrame, column: str, path: Path | None) -> pl.Series:
    """An optional integer column (fold, seed): empty cells null, anything else must be a whole number."""
    values = numbers(df, column, path)
    fractional = values.is_not_null() & (values != values.round(0))
    if fractional.any():
        r = first(df, fractional)
        raise MetadbError(f"{at(path, r)}, column {column}: {r[column]!r} is not a whole number")
    return values.cast(pl.Int64)


def names(df: pl.DataFrame, column: str, path: Path | None) -> pl.Series:
    """Dataset names, stripped and canonicalised through the catalog; an empty name is an error."""
    raw = df[column].str.strip_chars()
    empty = raw.is_null() | (raw == "")
    if empty.any():
        r = first(df, empty)
        raise MetadbError(f"{at(path, r)}: empty {column}", f"every row needs a {column} dataset name")
    mapping = {n: canonical(n) for n in raw.unique().to_list()}
    return raw.replace_strict(mapping, return_dtype=pl.Utf8)


def json_objects(df: pl.DataFrame, column: str, path: Path) -> None:
    """Refuse a cell that is not a JSON object: the column is read back with json_extract."""
    for row, cell in df.select("file_row", column).filter(pl.col(column).is_not_null()).iter_rows():
        try:
            ok = isinstance(json.loads(cell), dict)
        except ValueError:
            ok = False
        if not ok:
            raise MetadbError(f"{path} row {row}, column {column}: {cell[:60]!r} is not a JSON object",
                              'write it like {"lr": 0.01, "batch_size": 64}')


def refuse_duplicates(df: pl.DataFrame, keys: list[str], path: Path | None, what: str) -> None:
    """One row per key (a pair, a source row, a run id); the message lists where the repeats are."""
    dup = df.select(keys).is_duplicated()
    if not dup.any():
        return
    rows = df.filter(dup)
    key = rows.row(0, named=True)
    same = rows.filter(pl.all_horizontal([pl.col(k) == key[k] for k in keys]))
    shown = ", ".join(str(key[k]) for k in keys)
    if "_file" in same.columns and same["_file"].n_unique() > 1:
        where = "; ".join(at(None, r) for r in same.iter_rows(named=True))
        message = f"{what} {shown} appears {same.height} times ({where})"
    else:
        rows_at = ", ".join(map(str, same["file_row"].to_list()))
        message = f"{key.get('_file') or path}: {what} {shown} appears {same.height} times (rows {rows_at})"
    raise MetadbError(message, f"keep one row per {what}")


def now() -> datetime:
    return datetime.now(timezone.utc).replace(tzinfo=None)


def digest(path: Path, options: dict[str, Any]) -> str:
    h = hashlib.sha256(path.read_bytes())
    h.update(json.dumps(options, sort_keys=True).encode())
    return h.hexdigest()


# --- committing --------------------------------------------------------------------------------
Check = Callable[[Any, list[tuple[Path, Parsed]], str | None], None]


def import_files(db: str | Path | None, pattern: str, kind: str, fmt: str, options: dict[str, Any], table: str,
                 read: Callable[[list[Path]], list[Parsed]], check: Check | None = None,
                 origin: str = "import") -> list[ImportResult]:
    """Parse every matching file not imported before, then commit them all in one transaction (or none).

    `read` gets the list of files to import and returns one Parsed per file, so a format can
    validate its files together (MLflow exports) or one by one (`per_file`). `origin` is stored
    on every row: 'import' for a user's file, 'published:<pack>@<version>' for an evidence pack.
    """
    if origin != "import":  # keeps the digests of plain imports what they were before origins existed
        options = {**options, "origin": origin}
    paths = files(pattern)
    con = store.connect(db)
    try:
        results: dict[Path, ImportResult] = {}
        pending: list = []
        seen: set[str] = set()
        for path in paths:
            sha = digest(path, options)
            if sha in seen or con.execute("SELECT 1 FROM imports WHERE sha256 = ?", [sha]).fetchone():
                results[path] = ImportResult(str(path), kind, "already imported")
                continue
            seen.add(sha)
            pending.append((path, sha))
        parsed_all = read([path for path, _ in pending]) if pending else []
        for parsed in parsed_all:
            parsed.frame = parsed.frame.with_columns(origin=pl.lit(origin))
        pending = [(path, sha, parsed) for (path, sha), parsed in zip(pending, parsed_all)]
        if pending:
            insert_all(con, table, kind, fmt, pending, check)
        for path, _, parsed in pending:
            results[path] = ImportResult(str(path), kind, "imported", parsed.frame.height, parsed.skips)
        return [results[p] for p in paths]
    finally:
        con.close()


def insert_all(con, table: str, kind: str, fmt: str, pending: list[tuple[Path, str, Parsed]],
               check: Check | None = None) -> None:
    """Stage the rows in Parquet, then check them against the store and insert rows + stubs + import
    records in one transaction."""
    columns = [r[0] for r in con.execute(f"DESCRIBE {table}").fetchall()]
    frames = [parsed.frame for _, _, parsed in pending if parsed.frame.height]
    dataset_names: set[str] = set()
    for f in frames:
        for c in ("source", "target", "dataset_a", "dataset_b"):
            if c in f.columns:
                dataset_names.update(f[c].unique().to_list())
    with tempfile.TemporaryDirectory(prefix="metadb-import-") as tmp:
        staged = Path(tmp) / "rows.parquet"
        if frames:
            rows = pl.concat(frames, how="diagonal_relaxed")
            rows.select([c for c in columns if c in rows.columns]).write_parquet(staged)
        with store.transaction(con):
            if check:
                check(con, [(path, parsed) for path, _, parsed in pending], str(staged) if frames else None)
            if frames:
                con.execute(f"INSERT INTO {table} BY NAME SELECT * FROM read_parquet(?)", [str(staged)])
            add_stubs(con, dataset_names)
            con.executemany("INSERT INTO imports VALUES (?, ?, ?, ?, ?, ?)",
                            [[sha, str(path), kind, fmt, parsed.frame.height, now()] for path, sha, parsed in pending])


def add_stubs(con, dataset_names: set[str]) -> None:
    """Datasets known only by name become flagged stubs, with catalog metadata when there is some."""
    have = {r[0] for r in con.execute("SELECT name FROM datasets").fetchall()}
    rows = []
    for name in sorted(dataset_names - have):
        info = catalog.get(name) if name in catalog.catalog else None
        rows.append([name, info.title if info else name, info and info.modality, info and info.anatomy,
                     info and info.domain, info and info.label_type, info and info.licence, info and info.url,
                     list(info.derived_from) if info else []])
    if rows:
        con.executemany("""INSERT INTO datasets (name, title, modality, anatomy, domain, label_type, licence,
                                                 source_url, derived_from, is_stub)
                           VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, true)""", rows)


# --- outcomes ----------------------------------------------------------------------------------
def _provenance(frame: pl.DataFrame, path: Path) -> pl.DataFrame:
    return frame.with_columns(file=pl.lit(str(path)), imported_at=pl.lit(now()))


def _read_folds(path: Path, metric: str, **_: Any) -> Parsed:
    """cats-scans `auc_folds_means_std.csv`: source,target,fold_1..fold_k[,mean,std]; all-nan rows = not run."""
    df, blank = drop_blank(read_csv(path))
    expected = "expected source,target,fold_1..fold_k[,mean,std]"
    require(df, path, ["source", "target"], expected)
    folds = sorted((c for c in df.columns if c.startswith("fold_") and c[5:].isdigit()), key=lambda c: int(c[5:]))
    if not folds:
        raise MetadbError(f"{path}: no fold_1 .. fold_k columns", expected)
    df = df.with_columns(source=names(df, "source", path), target=names(df, "target", path))
    refuse_duplicates(df, ["source", "target"], path, "pair")
    values = pl.DataFrame({c: numbers(df, c, path, metric) for c in folds})
    n_missing = values.select(pl.sum_horizontal([pl.col(c).is_null() for c in folds])).to_series()
    partial = (n_missing > 0) & (n_missing < len(folds))
    if partial.any():
        r = first(df, partial)
        empty = [c for c in folds if values.filter(partial).row(0, named=True)[c] is None]
        raise MetadbError(f"{at(path, r)}: {pair(r)} has {', '.join(empty)} empty but other folds set",
                          "a pair has a value for every fold, or nan in all of them when it was not run")
    run = n_missing == 0
    wide = pl.concat([df.select("source", "target", "file_row"), values], how="horizontal").filter(run)
    long = wide.unpivot(index=["source", "target", "file_row"], on=folds, variable_name="fold", value_name="value")
    frame = long.with_columns(pl.col("fold").str.slice(5).cast(pl.Int32), metric=pl.lit(metric),
                              is_selected=pl.lit(True)).sort("file_row", "fold")
    return Parsed(_provenance(frame, path), {"pairs not run (all folds nan)": int((~run).sum()), BLANK: blank})


def _matrix_cells(path: Path, metric: str | None, value_name: str = "value") -> tuple[pl.DataFrame, dict[str, int]]:
    """(source, target, value, file_row) for each filled cell of a source x target matrix CSV.

    The Juodelyte files have a leading unnamed index column and a `source` column; empty cells
    are the self pairs. A square distance matrix may name its row column `dataset` instead.
    """
    df, blank = drop_blank(read_csv(path))
    row_col = next((c for c in ("source", "dataset", "name", "model") if c in df.columns), None)
    if row_col is None:
        raise MetadbError(f"{path}: no source column",
                          "expected a `source` column naming each row, then one column per target")
    targets = [c for c in df.columns if c not in (row_col, "file_row") and c not in INDEX_COLUMNS
               and not c.startswith("Unnamed")]
    if not targets:
        raise MetadbError(f"{path}: no target columns besides {row_col}", "one column per target dataset is expected")
    df = df.with_columns(names(df, row_col, path).alias("source"))
    refuse_duplicates(df, ["source"], path, "source")
    values = pl.DataFrame({canonical(t): numbers(df, t, path, metric) for t in targets})
    if values.width < len(targets):
        raise MetadbError(f"{path}: two target columns name the same dataset ({', '.join(targets)})")
    wide = pl.concat([df.select("source", "file_row"), values], how="horizontal")
    long = wide.unpivot(index=["source", "file_row"], variable_name="target", value_name=value_name)
    filled = long.filter(pl.col(value_name).is_not_null()).sort("file_row", maintain_order=True)
    return filled, {"empty cells": long.height - filled.height, BLANK: blank}


def _read_matrix(path: Path, metric: str, **_: Any) -> Parsed:
    cells, skips = _matrix_cells(path, metric)
    frame = cells.with_columns(metric=pl.lit(metric), is_selected=pl.lit(True))
    skips["empty cells (self pairs or not run)"] = skips.pop("empty cells")
    return Parsed(_provenance(frame, path), skips)


def _read_long(path: Path, metric: str | None, **_: Any) -> Parsed:
    """source,target,value[,metric,fold,seed,run_id,status,architecture,pretraining,protocol,hyperparameters]."""
    df, blank = drop_blank(read_csv(path))
    require(df, path, ["source", "target", "value"] + ([] if metric else ["metric"]),
            "expected source,target,value[,metric,fold,seed,run_id,...] (or pass --metric)")
    df = df.with_columns(source=names(df, "source", path), target=names(df, "target", path))
    metrics = (df["metric"].str.strip_chars().fill_null(metric or "") if "metric" in df.columns
               else pl.Series([metric] * df.height))
    if (metrics == "").any():
        r = first(df, metrics == "")
        raise MetadbError(f"{at(path, r)}: empty metric", "fill the metric column or pass --metric")
    frame = df.select("source", "target", "file_row").with_columns(
        metric=metrics, value=numbers(df, "value", path, metrics, required=True), is_selected=pl.lit(True))
    extra = {c: integers(df, c, path).cast(pl.Int32) for c in ("fold", "seed") if c in df.columns}
    extra.update({c: df[c] for c in ("architecture", "pretraining", "protocol", "run_id", "status", "hyperparameters")
                  if c in df.columns})
    if "hyperparameters" in extra:
        json_objects(df, "hyperparameters", path)
    if "run_id" in extra:
        refuse_duplicates(df.with_columns(run_id=extra["run_id"]).filter(pl.col("run_id").is_not_null()),
                          ["run_id"], path, "run id")
    return Parsed(_provenance(frame.with_columns(**extra), path), {BLANK: blank})


def parse_select(select: str | None) -> tuple[str, str] | None:
    if select is None:
        return None
    how, _, column = select.partition(":")
    if how not in ("min", "max") or not column:
        raise MetadbError(f"--select {select!r}: expected min:COLUMN or max:COLUMN, e.g. min:val_loss")
    return how, column


def _column(df: pl.DataFrame, *candidates: str) -> str | None:
    """The first of `candidates` the export has (UI exports say `Run ID`, mlflow.search_runs `run_id`)."""
    return next((c for c in candidates if c in df.columns), None)


def _hyperparameters(df: pl.DataFrame, exclude: set[str]) -> pl.Series | None:
    """The run's configuration as a JSON object; numbers stay numbers (`{"lr":0.001,"batch_size":256}`)."""
    cols = [c for c in df.columns if (c in HYPERPARAMETERS or c.startswith("params.")) and c not in exclude
            and c not in ("params.source_flag", "params.target_flag")]
    if not cols:
        return None
    raw = {c: pl.col(c).str.strip_chars() for c in cols}
    given = {c: raw[c].is_not_null() & (raw[c] != "") for c in cols}
    kinds = df.select(
        [(raw[c].cast(pl.Int64, strict=False).is_not_null() == given[c]).all().alias(f"{c}\0int") for c in cols]
        + [(raw[c].cast(pl.Float64, strict=False).is_not_null() == given[c]).all().alias(f"{c}\0float") for c in cols]
    ).row(0, named=True)
    typed = [(raw[c].cast(pl.Int64, strict=False) if kinds[f"{c}\0int"] else
              raw[c].cast(pl.Float64, strict=False) if kinds[f"{c}\0float"] else raw[c])
             .alias(c.removeprefix("params.")) for c in cols]
    return df.select(pl.struct(typed).struct.json_encode()).to_series()


def _mlflow_frame(path: Path, metric: str, select: tuple[str, str] | None) -> pl.DataFrame:
    """One export's columns under standard names (`Run ID` or `run_id`, `source_flag` or `params.source_flag`, ...)."""
    used = {"Run ID", "run_id", "Status", "status", "source_flag", "params.source_flag", "source", "target_flag",
            "params.target_flag", "target", metric, f"metrics.{metric}", "seed"}
    if select:
        used |= {select[1], f"metrics.{select[1]}"}
    df = read_csv(path, wanted=lambda c: c in used or c in HYPERPARAMETERS or c.startswith("params."))
    found = {"_run": _column(df, "Run ID", "run_id"),
             "_source": _column(df, "source_flag", "params.source_flag", "source"),
             "_target": _column(df, "target_flag", "params.target_flag", "target"),
             "_value": _column(df, metric, f"metrics.{metric}")}
    shown = {"_run": "Run ID", "_source": "source_flag", "_target": "target_flag", "_value": metric}
    require(df, path, [shown[k] for k, c in found.items() if c is None],
            "expected an MLflow run export (Run ID, source_flag, target_flag and the --metric column)")
    if select:
        found["_key"] = _column(df, select[1], f"metrics.{select[1]}")
        if found["_key"] is None:
            raise MetadbError(f"{path}: no column {select[1]} for --select {select[0]}:{select[1]}",
                              "name a logged metric, e.g. min:val_loss or max:val_auc")
    found["_status"] = _column(df, "Status", "status")
    renamed = df.select([pl.col(c).alias(k) for k, c in found.items() if c is not None]
                        + [pl.col(c) for c in df.columns if c not in found.values()])
    return renamed.with_columns(_file=pl.lit(str(path)))


def _read_mlflow(paths: list[Path], metric: str, select: tuple[str, str] | None = None) -> list[Parsed]:
    """MLflow run exports, validated together: every run is kept; `select` marks each pair's ground truth.

    The files of one import are checked as one frame (a few polars passes for 20k runs, not a
    few per file); run ids must be unique across them. The selected run of a (source, target)
    is chosen among the runs of this import. Blank lines and runs that logged no value for
    `metric` are counted skips; a failed or killed run is never the selected one.
    """
    df = pl.concat([_mlflow_frame(p, metric, select) for p in paths], how="diagonal")
    data_cols = [c for c in df.columns if c not in ("file_row", "_file")]
    blank = df.select(pl.all_horizontal([pl.col(c).is_null() | (pl.col(c).str.strip_chars() == "")
                                         for c in data_cols])).to_series()
    blank_lines = dict(df.filter(blank).group_by("_file").len().iter_rows())
    df = df.filter(~blank).with_columns(run_id=pl.col("_run").str.strip_chars())
    no_id = df["run_id"].is_null() | (df["run_id"] == "")
    if no_id.any():
        raise MetadbError(f"{at(None, first(df, no_id))}: no run id", "every MLflow run has an id")
    refuse_duplicates(df, ["run_id"], None, "run id")
    hyperparameters = _hyperparameters(df, set())
    frame = df.select("run_id", "file_row", "_file").with_columns(
        hyperparameters=hyperparameters if hyperparameters is not None else pl.lit(None, pl.Utf8),
        source=names(df, "_source", None), target=names(df, "_target", None), metric=pl.lit(metric),
        value=numbers(df, "_value", None, metric),
        status=df["_status"] if "_status" in df.columns else pl.lit(None, pl.Utf8),
        _key=numbers(df, "_key", None, select[1]) if select else pl.lit(None, pl.Float64),
        seed=integers(df, "seed", None).cast(pl.Int32) if "seed" in df.columns else pl.lit(None, pl.Int32),
    )
    no_value = frame["value"].is_null()
    without = dict(frame.filter(no_value).group_by("_file").len().iter_rows())
    frame = frame.filter(~no_value)
    frame = frame.with_columns(is_selected=_selected(frame, select), imported_at=pl.lit(now())).drop("_key")
    parts = {file: part for (file,), part in frame.partition_by("_file", as_dict=True).items()}
    return [Parsed(parts.get(str(p), frame.clear()).rename({"_file": "file"}),
                   {f"runs without {metric}": without.get(str(p), 0), BLANK: blank_lines.get(str(p), 0)})
            for p in paths]


def _selected(frame: pl.DataFrame, select: tuple[str, str] | None) -> pl.Series:
    """Per (source, target), True for the finished run with the min/max of the selection column (first on ties)."""
    if select is None:
        return pl.Series([True] * frame.height)
    finished = pl.col("status").is_null() | (pl.col("status").str.to_uppercase() == "FINISHED")
    eligible = frame.with_row_index("_i").filter(pl.col("_key").is_not_null() & finished)
    best = (eligible.sort(["_key", "_i"], descending=[select[0] == "max", False])
            .group_by("source", "target").agg(pl.col("_i").first())["_i"])
    return frame.with_row_index("_i").select(pl.col("_i").is_in(best.implode()))["_i"].alias("is_selected")


OUTCOME_FORMATS: dict[str, Callable[..., Any]] = {
    "long": _read_long,
    "matrix": _read_matrix,
    "folds": _read_folds,
    "mlflow": _read_mlflow,  # reads all files of the import together
}


def _refuse_known_run_ids(con, pending: list[tuple[Path, Parsed]], staged: str | None) -> None:
    """A run id is one run: refuse ids repeated across the files of one import or already stored."""
    ids = [parsed.frame.select("run_id", "file_row", _file=pl.lit(str(path))) for path, parsed in pending
           if "run_id" in parsed.frame.columns]
    if not ids or staged is None:
        return
    ids = pl.concat(ids).filter(pl.col("run_id").is_not_null())
    refuse_duplicates(ids, ["run_id"], None, "run id")
    hit = con.execute("""SELECT o.run_id, o.file FROM outcomes o SEMI JOIN read_parquet(?) s ON o.run_id = s.run_id
                         LIMIT 1""", [staged]).fetchone()
    if hit:
        r = ids.filter(pl.col("run_id") == hit[0]).row(0, named=True)
        raise MetadbError(f"{at(None, r)}: run id {hit[0]} is already in the store (imported from {hit[1]})",
                          "each run is imported once; remove the repeated runs")


def import_outcomes(db: str | Path | None, pattern: str, fmt: str = "long", metric: str | None = None,
                    select: str | None = None, architecture: str | None = None, protocol: str | None = None,
                    pretraining: str | None = None, origin: str = "import") -> list[ImportResult]:
    """Import fine-tuning outcomes from every file matching `pattern`: all files or none.

    `metric` defaults to auc for matrix and folds files (the published tables are AUCs); mlflow
    needs it (the column to read); long files may carry a metric column instead.
    """
    if fmt not in OUTCOME_FORMATS:
        raise MetadbError(f"--format {fmt!r}: expected one of {', '.join(OUTCOME_FORMATS)}")
    if metric is None and fmt in ("matrix", "folds"):
        metric = OUTCOME_DEFAULT_METRIC
    if metric is None and fmt == "mlflow":
        raise MetadbError("--format mlflow needs --metric, the logged metric that is the outcome (e.g. test_auc)")
    chosen = parse_select(select)
    if chosen and fmt != "mlflow":
        raise MetadbError(f"--select applies to --format mlflow, not {fmt}",
                          "other formats hold one ground-truth value per pair, fold or seed")

    def read(paths: list[Path]) -> list[Parsed]:
        if fmt == "mlflow":
            parsed_all = _read_mlflow(paths, metric, chosen)
        else:
            parsed_all = [OUTCOME_FORMATS[fmt](p, metric=metric) for p in paths]
        given = {k: v for k, v in (("architecture", architecture), ("protocol", protocol),
                                   ("pretraining", pretraining)) if v is not None}
        for parsed in parsed_all:
            labels = dict(given)
            if "protocol" not in parsed.frame.columns:
                labels.setdefault("protocol", "fine-tune")
            parsed.frame = parsed.frame.with_columns(**{k: pl.lit(v) for k, v in labels.items()})
        return parsed_all

    options = {"format": fmt, "metric": metric, "select": select, "architecture": architecture,
               "protocol": protocol, "pretraining": pretraining}
    return import_files(db, pattern, "outcome", fmt, options, "outcomes", read, check=_refuse_known_run_ids,
                        origin=origin)


# --- scores ------------------------------------------------------------------------------------
def _read_scores(path: Path, metric: str, fmt: str) -> Parsed:
    if fmt == "matrix":
        cells, skips = _matrix_cells(path, None)
    else:
        df, blank = drop_blank(read_csv(path))
        src = _column(df, "source", "model") or "source"
        require(df, path, [src, "target", "value"],
                "expected source (or model),target,value[,metric_version,params,n,seed,runtime_s]")
        values = numbers(df, "value", path)
        extra = {c: df[c] for c in ("metric_version", "params") if c in df.columns}
        extra.update({c: integers(df, c, path) for c in ("n", "seed") if c in df.columns})
        if "runtime_s" in df.columns:
            extra["runtime_s"] = numbers(df, "runtime_s", path)
        cells = df.select("file_row").with_columns(source=names(df, src, path), target=names(df, "target", path),
                                                   value=values, **extra)
        skips = {"empty values": int(values.is_null().sum()), BLANK: blank}
        cells = cells.filter(pl.col("value").is_not_null())
    frame = cells.with_columns(metric=pl.lit(metric), file=pl.lit(str(path)), computed_at=pl.lit(now()))
    return Parsed(frame, skips)


def import_scores(db: str | Path | None, pattern: str, metric: str, fmt: str = "matrix",
                  origin: str = "import") -> list[ImportResult]:
    """Transferability scores of one metric (published LogME, LEEP, ...) from matrix or long CSVs."""
    if fmt not in ("matrix", "long"):
        raise MetadbError(f"--format {fmt!r}: expected matrix or long")
    return import_files(db, pattern, "score", fmt, {"metric": metric, "format": fmt}, "scores",
                        per_file(lambda path: _read_scores(path, metric, fmt)), origin=origin)


# --- distances ---------------------------------------------------------------------------------
def _read_distances(path: Path, measure: str, fmt: str) -> Parsed:
    """`long`: target;source;distance (experts_clean.csv) or a,b,distance; `matrix`: a square CSV;
    `cats-scans`: aucs_scores_distances_experts.csv, whose per-fold distance_1..k are averaged."""
    if fmt == "matrix":
        cells, skips = _matrix_cells(path, None)
        frame = cells.rename({"source": "dataset_a", "target": "dataset_b"})
    elif fmt == "cats-scans":
        df, blank = drop_blank(read_csv(path))
        require(df, path, ["source", "target"], "expected the cats-scans aucs_scores_distances_experts.csv")
        cols = sorted((c for c in df.columns if c.startswith("distance_") and c[9:].isdigit()),
                      key=lambda c: int(c[9:]))
        if not cols:
            raise MetadbError(f"{path}: no distance_1 .. distance_k columns",
                              "--format cats-scans reads per-fold Task2Vec distances")
        per_fold = pl.DataFrame([numbers(df, c, path, required=True) for c in cols])
        frame = df.select("file_row").with_columns(dataset_a=names(df, "target", path),
                                                   dataset_b=names(df, "source", path),
                                                   value=per_fold.mean_horizontal())
        skips = {BLANK: blank}
    else:
        df, blank = drop_blank(read_csv(path))
        a, b = next(((x, y) for x, y in (("target", "source"), ("dataset_a", "dataset_b"), ("a", "b"))
                     if x in df.columns and y in df.columns), ("target", "source"))
        v = _column(df, "distance", "value")
        require(df, path, [a, b, v or "distance"], "expected target;source;distance or a,b,distance")
        frame = df.select("file_row").with_columns(dataset_a=names(df, a, path), dataset_b=names(df, b, path),
                                                   value=numbers(df, v, path, required=True))
        skips = {BLANK: blank}
    negative = frame["value"] < 0
    if negative.any():
        r = first(frame, negative)
        raise MetadbError(f"{at(path, r)}: distance {r['value']} between {r['dataset_a']} and "
                          f"{r['dataset_b']} is negative", "metadb stores distances (lower = more alike); convert "
                          "similarities first, e.g. 1 - similarity")
    frame = frame.with_columns(measure=pl.lit(measure), backbone=pl.lit(""), measure_version=pl.lit("imported"),
                               params=pl.lit(json.dumps({"format": fmt})), source=pl.lit(str(path)),
                               computed_at=pl.lit(now()))
    return Parsed(frame.drop("file_row"), skips)


def import_similarities(db: str | Path | None, pattern: str, measure: str, fmt: str = "long",
                        origin: str = "import") -> list[ImportResult]:
    """User-supplied distances (expert judgement, published Task2Vec, ...) as a named measure."""
    if fmt not in ("long", "matrix", "cats-scans"):
        raise MetadbError(f"--format {fmt!r}: expected long, matrix or cats-scans")
    return import_files(db, pattern, "distance", fmt, {"measure": measure, "format": fmt}, "similarities",
                        per_file(lambda path: _read_distances(path, measure, fmt)), origin=origin)


def store_combination(db: str | Path | None, metrics: list[str], name: str) -> int:
    """Store a min-max product of scores (see analyses.score_combination) as the score `name`."""
    from metadb.analyses.score_combination import combine

    if name in metrics:
        raise MetadbError(f"--as {name}: the combined score needs a new name, not one of its inputs")
    con = store.connect(db)
    try:
        rows = combine(con, metrics)
        with store.transaction(con):
            con.execute("DELETE FROM scores WHERE metric = ?", [name])
            con.executemany("INSERT INTO scores (source, target, metric, value, metric_version, params, computed_at, origin) "
                            "VALUES (?, ?, ?, ?, 'minmax-product/1', ?, ?, 'computed')",
                            [[s, t, name, v, json.dumps({"minmax_product": metrics}), now()] for s, t, v in rows])
        return len(rows)
    finally:
        con.close()
