"""Reading and validating cells: files (CSV, CSV.gz, Parquet) to text columns, then column-wise checks.

Every reader in metadb.imports turns a file into text columns plus `file_row` and validates them
here, column-wise with polars, so an error names the file, row and column. Dataset names go
through `names`, which applies the import's naming rules (see `naming`) and records what it
mapped, so each import can say what it did to the names.
"""

from __future__ import annotations

import glob
import gzip
import hashlib
import json
import os
from contextvars import ContextVar
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable

import polars as pl

from metadb import catalog
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
    notes: list[str] = field(default_factory=list)  # what the reader decided, e.g. columns kept as hyperparameters

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
    notes: list[str] = field(default_factory=list)  # what the import did to names and columns, one line each

    @property
    def skipped(self) -> int:
        return sum(self.skips.values())

    def summary(self) -> str:
        if self.status != "imported":
            return f"{self.file}: already imported; nothing added"
        skipped = "".join(f", {n} {reason} skipped" for reason, n in self.skips.items() if n)
        return f"{self.file}: {self.rows} {self.kind} rows imported{skipped}"


# --- dataset names ------------------------------------------------------------------------------
@dataclass
class Naming:
    """How an import maps the names in its files to dataset names, and what it mapped.

    A names file (`--names map.csv`) wins; then catalog aliases (`blood` -> `bloodmnist`) unless
    turned off (`--no-catalog-names`). Every name that changed is recorded with why, so the
    import can print it: an alias can be wrong for another study (cats-scans `breast` is BUSI,
    not BreastMNIST).
    """

    use_catalog: bool = True
    given: dict[str, str] = field(default_factory=dict)
    mapped: dict[str, tuple[str, str]] = field(default_factory=dict)  # raw -> (name, why)

    def __call__(self, raw: str) -> str:
        raw = str(raw).strip()
        if raw in self.given:
            name, why = self.given[raw], "names file"
        elif self.use_catalog and raw in catalog.catalog:
            name, why = catalog.get(raw).name, "catalog alias"
        else:
            return raw
        if name != raw:
            self.mapped[raw] = (name, why)
        return name

    def note(self) -> str | None:
        if not self.mapped:
            return None
        return "names mapped: " + ", ".join(f"{raw} -> {name} ({why})" for raw, (name, why) in sorted(self.mapped.items()))


naming: ContextVar[Naming | None] = ContextVar("naming", default=None)


def read_names(path: str | Path) -> dict[str, str]:
    """`--names map.csv`: two columns, the name as written in the files, then the dataset it means."""
    p = Path(path).expanduser()
    if not p.is_file():
        raise MetadbError(f"--names {path}: no such file", "give a CSV of name,dataset rows")
    df = read_csv(p)
    cols = [c for c in df.columns if c != "file_row"]
    if len(cols) != 2:
        raise MetadbError(f"{p}: a names file has two columns (name as written, dataset); found {', '.join(cols)}")
    out: dict[str, str] = {}
    for row, raw, name in df.select("file_row", *cols).iter_rows():
        if not (raw or "").strip() or not (name or "").strip():
            raise MetadbError(f"{p} row {row}: empty name", "every row maps a name to a dataset")
        if raw.strip() in out and out[raw.strip()] != name.strip():
            raise MetadbError(f"{p} row {row}: {raw.strip()} is mapped twice ({out[raw.strip()]}, {name.strip()})")
        out[raw.strip()] = name.strip()
    return out

def canonical(name: str) -> str:
    """A name as this import maps it (see Naming); outside an import, through the catalog."""
    return (naming.get() or Naming())(name)


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
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt", encoding="utf-8-sig", errors="replace") as f:
        first = f.readline()
    counts = {sep: first.count(sep) for sep in (",", ";", "\t")}
    return max(counts, key=lambda s: (counts[s], s == ","))


def read_csv(path: Path, separator: str | None = None,
             wanted: Callable[[str], bool] | None = None) -> pl.DataFrame:
    """Columns as text (cells are validated column-wise below), plus `file_row` (header = row 1).

    Reads CSV, gzipped CSV (`.csv.gz`) and Parquet (whose typed columns are turned to text, so
    one validation path serves all three; a Parquet file's `file_row` is its 1-based row).
    `wanted` picks columns by (cleaned) name, so the 60-column MLflow exports parse only the
    dozen columns metadb keeps. A file with a header and no rows is an error: nothing to import.
    """
    parquet = path.suffix.lower() in (".parquet", ".pq")
    try:
        if parquet:
            header = pl.read_parquet_schema(path)
        else:
            separator = separator or sniff_separator(path)
            header = pl.read_csv(path, separator=separator, n_rows=0, encoding="utf8-lossy").columns
        clean = {c: c.lstrip("\ufeff").strip() for c in header}
        keep = [c for c in header if wanted(clean[c])] if wanted else None
        if parquet:
            df = pl.read_parquet(path, columns=keep)
            df = df.select([pl.col(c).cast(pl.Utf8) for c in df.columns])
        else:
            df = pl.read_csv(path, separator=separator, infer_schema_length=0, encoding="utf8-lossy", columns=keep)
    except (pl.exceptions.PolarsError, OSError, UnicodeDecodeError, EOFError) as e:
        what = "Parquet file" if parquet else "CSV"
        raise MetadbError(f"{path}: not a readable {what} ({str(e).splitlines()[0][:100]})",
                          "check the file" + ("" if parquet else " and its separator")) from None
    if df.height == 0:
        raise MetadbError(f"{path}: a header and no rows; nothing to import",
                          "check that the file is the one meant (an export of an empty table?)")
    df = df.rename({c: clean[c] for c in df.columns})
    return df.with_row_index("file_row", offset=1 if parquet else 2).with_columns(pl.col("file_row").cast(pl.Int64))


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
    """Dataset names, stripped and mapped by the import's naming rules; an empty name is an error."""
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


def first_column(df: pl.DataFrame, *candidates: str) -> str | None:
    """The first of `candidates` the export has (UI exports say `Run ID`, mlflow.search_runs `run_id`)."""
    return next((c for c in candidates if c in df.columns), None)
