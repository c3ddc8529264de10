"""One renderer for every listing: a table for people, CSV, JSON or NDJSON for programs."""

from __future__ import annotations

import csv
import json
import math
import sys
from datetime import date, datetime
from decimal import Decimal
from typing import Any, Callable, Iterable, Sequence, TextIO

import click
from tabulate import tabulate

FORMATS = ("table", "csv", "json", "nl")


def output_options(fn: Callable) -> Callable:
    """Adds --table/--csv/--json/--nl (one of them) to a command, as `fmt`."""
    fn = click.option("--nl", "fmt", flag_value="nl", help="Newline-delimited JSON, one object per row.")(fn)
    fn = click.option("--json", "fmt", flag_value="json", help="A JSON array of objects.")(fn)
    fn = click.option("--csv", "fmt", flag_value="csv", help="CSV with a header row.")(fn)
    fn = click.option("--table", "fmt", flag_value="table", default=True, help="An aligned table (default).")(fn)
    return fn


def _jsonable(v: Any) -> Any:
    if isinstance(v, float) and not math.isfinite(v):
        return None
    if isinstance(v, (datetime, date)):
        return v.isoformat()
    if isinstance(v, Decimal):
        return float(v)
    if isinstance(v, (list, tuple)):
        return [_jsonable(x) for x in v]
    if isinstance(v, dict):
        return {str(k): _jsonable(x) for k, x in v.items()}
    return v


def _cell(v: Any) -> Any:
    if isinstance(v, (list, tuple)):
        return ", ".join(str(x) for x in v)
    if isinstance(v, float):
        return f"{v:.6g}"
    return v


def render(columns: Sequence[str], rows: Iterable[Sequence[Any]], fmt: str = "table", out: TextIO | None = None) -> None:
    out = out or sys.stdout
    if fmt == "csv":
        w = csv.writer(out, lineterminator="\n")
        w.writerow(columns)
        for r in rows:
            w.writerow([json.dumps(_jsonable(v)) if isinstance(v, (list, dict)) else v for v in r])
    elif fmt == "json":
        out.write(json.dumps([dict(zip(columns, map(_jsonable, r))) for r in rows], indent=2) + "\n")
    elif fmt == "nl":
        for r in rows:
            out.write(json.dumps(dict(zip(columns, map(_jsonable, r)))) + "\n")
    else:
        rows = [[_cell(v) for v in r] for r in rows]
        out.write((tabulate(rows, headers=list(columns), disable_numparse=True) if rows else "(no rows)") + "\n")
