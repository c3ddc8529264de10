"""Outcome file formats: long, matrix, folds (cats-scans) and MLflow run exports.

Each reader turns one file (or, for MLflow, all files of an import) into validated rows of the
`outcomes` table. Nothing here is dropped without a word: columns a reader does not know are kept
as hyperparameters (long) and said so in the import's notes; blank lines, empty cells and runs
without the metric are counted skips; checks that compare files or the store (duplicates, run
ids, selection) run at commit time (metadb.imports.duplicates, metadb.imports.selection).
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any, Callable

import polars as pl

from metadb.errors import MetadbError
from metadb.imports.cells import (BLANK, HYPERPARAMETERS, INDEX_COLUMNS, Parsed, at, canonical, drop_blank, first,
                                  first_column, integers, json_objects, names, now, numbers, pair, read_csv,
                                  refuse_duplicates, require)

LONG_COLUMNS = ("source", "target", "value", "metric", "fold", "seed", "run_id", "status", "architecture",
                "pretraining", "protocol", "hyperparameters")
FOLD = re.compile(r"^fold_?(\d+)$", re.I)
# an MLflow run's fold, seed and architecture, when it logged them (as metadb finetune --mlflow does):
# a bare column (the UI's Download CSV), a parameter or a tag (mlflow.search_runs)
RUN_KEYS = {k: (k, f"params.{k}", f"tags.{k}") for k in ("fold", "seed", "architecture")}


def _provenance(frame: pl.DataFrame, path: Path) -> pl.DataFrame:
    return frame.with_columns(file=pl.lit(str(path)), imported_at=pl.lit(now()))


def _read_folds(path: Path, metric: str, **_: Any) -> Parsed:
    """cats-scans `auc_folds_means_std.csv`: source,target,fold_1..fold_k[,mean,std]; all-nan rows = not run.

    `fold1` (no underscore) is read too. When the file has mean and std columns they are checked
    against the folds: the mean to the precision it is written with, the std as either the
    population (ddof 0) or the sample (ddof 1) one; a mismatch is refused naming the row.
    """
    df, blank = drop_blank(read_csv(path))
    expected = "expected source,target,fold_1..fold_k[,mean,std]"
    require(df, path, ["source", "target"], expected)
    folds = sorted((c for c in df.columns if FOLD.match(c)), key=lambda c: int(FOLD.match(c).group(1)))
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
    _check_summaries(df, values, run, path)
    wide = pl.concat([df.select("source", "target", "file_row"), values], how="horizontal").filter(run)
    long = wide.unpivot(index=["source", "target", "file_row"], on=folds, variable_name="fold", value_name="value")
    number = {c: int(FOLD.match(c).group(1)) for c in folds}
    frame = long.with_columns(pl.col("fold").replace_strict(number, return_dtype=pl.Int32), metric=pl.lit(metric),
                              is_selected=pl.lit(True)).sort("file_row", "fold")
    return Parsed(_provenance(frame, path), {"pairs not run (all folds nan)": int((~run).sum()), BLANK: blank})


def _decimals(cell: str | None) -> int:
    """Digits after the point as written (`0.9867` -> 4; `9.8e-01` -> 2), for the precision of a check."""
    text = (cell or "").strip().lower()
    mantissa, _, exponent = text.partition("e")
    digits = len(mantissa.partition(".")[2])
    return max(digits - int(exponent or 0), 0)


def _check_summaries(df: pl.DataFrame, values: pl.DataFrame, run: pl.Series, path: Path) -> None:
    """A folds file's mean and std columns must be the mean and std of its folds (to their written precision)."""
    lower = {c.lower(): c for c in df.columns}
    checks = [(name, lower[name]) for name in ("mean", "std") if name in lower]
    if not checks:
        return
    arr = values.to_numpy()
    import numpy as np

    computed = {"mean": arr.mean(axis=1), "std0": arr.std(axis=1, ddof=0),
                "std1": arr.std(axis=1, ddof=1) if arr.shape[1] > 1 else arr.std(axis=1)}
    for name, col in checks:
        given = numbers(df, col, path)
        for i in map(int, np.flatnonzero(run.to_numpy() & given.is_not_null().to_numpy())):
            tol = max(0.5 * 10.0 ** -_decimals(df[col][i]), 1e-9)
            options = [computed["mean"][i]] if name == "mean" else [computed["std0"][i], computed["std1"][i]]
            if min(abs(given[i] - o) for o in options) > tol:
                r = df.row(i, named=True)
                shown = " or ".join(f"{o:.6g}" for o in options)
                raise MetadbError(f"{at(path, r)}: {pair(r)} {col} {df[col][i]} is not the {name} of its folds "
                                  f"({shown})", f"fix the {col} column or the folds; metadb stores the folds")


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
    """source,target,value[,metric,fold,seed,run_id,status,architecture,pretraining,protocol,hyperparameters].

    The value column may be named like the metric (`AUC` with --metric auc). Any other column
    (`freeze`, `lr`) is a setting of the run: it is kept in `hyperparameters` (typed: numbers stay
    numbers, keys sorted), so runs that differ in it are never taken for duplicates and
    best-source can rank per setting (`--by freeze`). A pandas index column is ignored, said so.
    """
    df, blank = drop_blank(read_csv(path))
    notes: list[str] = []
    if "value" not in df.columns and metric:
        named = [c for c in df.columns if c.lower() == metric.lower()]
        if len(named) == 1:
            df = df.rename({named[0]: "value"})
            notes.append(f"{path}: value column {named[0]} (named like --metric {metric})")
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
    extra.update({c: df[c] for c in ("architecture", "pretraining", "protocol", "run_id", "status")
                  if c in df.columns})
    index = [c for c in df.columns if c in INDEX_COLUMNS or c.startswith("Unnamed")]
    settings = sorted(c for c in df.columns if c not in LONG_COLUMNS and c != "file_row" and c not in index)
    if index:
        notes.append(f"{path}: ignored index column {', '.join(repr(c) for c in index)}")
    if settings:
        notes.append(f"{path}: kept as hyperparameters: {', '.join(settings)} "
                     f"(best-source --by {settings[0]} ranks per setting)")
    if "hyperparameters" in df.columns:
        json_objects(df, "hyperparameters", path)
    if settings or "hyperparameters" in df.columns:
        extra["hyperparameters"] = _merged_hyperparameters(df, settings)
    if "run_id" in extra:
        refuse_duplicates(df.with_columns(run_id=extra["run_id"]).filter(pl.col("run_id").is_not_null()),
                          ["run_id"], path, "run id")
    return Parsed(_provenance(frame.with_columns(**extra), path), {BLANK: blank}, notes)


def _merged_hyperparameters(df: pl.DataFrame, settings: list[str]) -> pl.Series:
    """One JSON object per row: the `hyperparameters` cell plus the setting columns, keys sorted."""
    typed = _hyperparameters(df.select(settings), set(), everything=True) if settings else None
    given = df["hyperparameters"] if "hyperparameters" in df.columns else None
    out = []
    for i in range(df.height):
        merged = json.loads(given[i]) if given is not None and given[i] else {}
        if typed is not None:
            merged.update({k: v for k, v in json.loads(typed[i]).items() if v is not None})
        out.append(json.dumps(merged, sort_keys=True, separators=(",", ":")) if merged else None)
    return pl.Series("hyperparameters", out, dtype=pl.Utf8)


def _hyperparameters(df: pl.DataFrame, exclude: set[str], everything: bool = False) -> pl.Series | None:
    """The run's configuration as a JSON object; numbers stay numbers (`{"lr":0.001,"batch_size":256}`).

    MLflow exports: the known hyperparameter and `params.*` columns; `everything`: all columns given.
    """
    cols = [c for c in df.columns if (everything or c in HYPERPARAMETERS or c.startswith("params."))
            and c not in exclude and c not in ("params.source_flag", "params.target_flag")]
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
            "params.target_flag", "target", metric, f"metrics.{metric}", *(c for k in RUN_KEYS for c in RUN_KEYS[k])}
    if select:
        used |= {select[1], f"metrics.{select[1]}"}
    df = read_csv(path, wanted=lambda c: c in used or c in HYPERPARAMETERS or c.startswith("params."))
    found = {"_run": first_column(df, "Run ID", "run_id"),
             "_source": first_column(df, "source_flag", "params.source_flag", "source"),
             "_target": first_column(df, "target_flag", "params.target_flag", "target"),
             "_value": first_column(df, metric, f"metrics.{metric}")}
    shown = {"_run": "Run ID", "_source": "source_flag", "_target": "target_flag", "_value": metric}
    require(df, path, [shown[k] for k, c in found.items() if c is None],
            "expected an MLflow run export (Run ID, source_flag, target_flag and the --metric column)")
    if select:
        found["_key"] = first_column(df, select[1], f"metrics.{select[1]}")
        if found["_key"] is None:
            raise MetadbError(f"{path}: no column {select[1]} for --select {select[0]}:{select[1]}",
                              "name a logged metric, e.g. min:val_loss or max:val_auc")
    found["_status"] = first_column(df, "Status", "status")
    renamed = df.select([pl.col(c).alias(k) for k, c in found.items() if c is not None]
                        + [pl.col(c) for c in df.columns if c not in found.values()])
    return renamed.with_columns(_file=pl.lit(str(path)))


def _read_mlflow(paths: list[Path], metric: str, select: tuple[str, str] | None = None) -> list[Parsed]:
    """MLflow run exports, validated together: every run is kept; `select` marks each pair's ground truth.

    The files of one import are checked as one frame (a few polars passes for 20k runs, not a
    few per file); run ids must be unique across them. The selected run of a (source, target)
    is chosen at commit time among all stored runs (metadb.imports.selection). Blank lines and runs that logged no value for
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
        **{k: integers(df, c, None).cast(pl.Int32) if c else pl.lit(None, pl.Int32)
           for k, c in ((k, first_column(df, *RUN_KEYS[k])) for k in ("seed", "fold"))},
    )
    arch = first_column(df, *RUN_KEYS["architecture"])
    if arch:  # --architecture, when given, still applies to every run
        given = df[arch].str.strip_chars()
        frame = frame.with_columns(architecture=pl.when(given != "").then(given))
    no_value = frame["value"].is_null()
    without = dict(frame.filter(no_value).group_by("_file").len().iter_rows())
    frame = frame.filter(~no_value)
    rule = f"{select[0]}:{select[1]}" if select else None
    frame = frame.with_columns(is_selected=pl.lit(select is None), selection=pl.lit(rule, pl.Utf8),
                               selection_value=pl.col("_key"), imported_at=pl.lit(now())).drop("_key")
    parts = {file: part for (file,), part in frame.partition_by("_file", as_dict=True).items()}
    parsed = [Parsed(parts.get(str(p), frame.clear()).rename({"_file": "file"}),
                     {f"runs without {metric}": without.get(str(p), 0), BLANK: blank_lines.get(str(p), 0)})
              for p in paths]
    if select is None and frame.select(pl.struct("source", "target").is_duplicated().any()).item():
        parsed[0].notes.append("no --select: every run of a pair counts as its outcome (best-source averages "
                               "them); pass --select min:val_loss to keep one run per pair")
    return parsed


OUTCOME_FORMATS: dict[str, Callable[..., Any]] = {
    "long": _read_long,
    "matrix": _read_matrix,
    "folds": _read_folds,
    "mlflow": _read_mlflow,  # reads all files of the import together
}
