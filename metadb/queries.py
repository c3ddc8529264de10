"""Query modules: one `queries/*.sql` file per question, installed as DuckDB table macros.

Each file opens with a header (name, question, params, columns) and then one
`CREATE OR REPLACE MACRO name(...) AS TABLE ...`. The same macro answers
`metadb query name --param value` and `SELECT * FROM name(...)` in the DuckDB CLI.
Questions that need Python (scipy statistics, fitted predictors) register a function with the
same metadata through `register_python_query`.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field
from typing import Any, Callable

from metadb.errors import MetadbError
from metadb.registry import Registry
from metadb.resources import sql_files

TEMPLATE = """/*
name: my_question
question: What does this query answer, in one sentence?
params:
  target VARCHAR            the dataset asked about (no default: required)
  k INTEGER = 10            how many rows to return
columns:
  name VARCHAR              what the column means
*/
CREATE OR REPLACE MACRO my_question(target, k := 10) AS TABLE
SELECT name FROM datasets WHERE name <> target LIMIT k;"""

_PARAM = re.compile(r"^\s+(\w+)\s+([A-Z][A-Z0-9_]*(?:\[\])?)(?:\s*=\s*('[^']*'|\S+))?\s*(.*)$")
_COLUMN = re.compile(r"^\s+(\w+)\s+([A-Z][A-Z0-9_]*(?:\[\])?)\s*(.*)$")


@dataclass(frozen=True)
class Param:
    name: str
    type: str
    default: str | None  # SQL literal, None when required
    help: str

    @property
    def required(self) -> bool:
        return self.default is None


@dataclass(frozen=True)
class Column:
    name: str
    type: str
    help: str


@dataclass(frozen=True)
class Query:
    name: str
    question: str
    params: tuple[Param, ...]
    columns: tuple[Column, ...]
    sql: str = ""  # the CREATE MACRO statement; empty for Python queries
    run: Callable[..., Any] | None = field(default=None, compare=False)  # Python queries only
    source: str = ""

    @property
    def comment(self) -> str:
        ps = ", ".join(f"{p.name} {p.type}" + ("" if p.required else f" = {p.default}") for p in self.params)
        return f"{self.question} Params: {ps or 'none'}."


def parse_query(text: str, source: str) -> Query:
    """Parse a query file; a file without a valid header fails with a template to copy."""
    m = re.match(r"\s*/\*(.*?)\*/(.*)$", text, re.S)
    if not m:
        raise MetadbError(f"{source}: no header comment; a query file starts like this:\n{TEMPLATE}")
    header, sql = m.group(1), m.group(2).strip()
    meta: dict[str, str] = {}
    params: list[Param] = []
    columns: list[Column] = []
    section = None
    for line in header.splitlines():
        if not line.strip():
            continue
        key = re.match(r"^(\w+):\s*(.*)$", line)
        if key and not line[0].isspace():
            section = key.group(1)
            meta[section] = key.group(2).strip()
            continue
        if section == "params" and (p := _PARAM.match(line)):
            params.append(Param(p.group(1), p.group(2), p.group(3), p.group(4).strip()))
        elif section == "columns" and (c := _COLUMN.match(line)):
            columns.append(Column(c.group(1), c.group(2), c.group(3).strip()))
        elif section == "question":
            meta["question"] += " " + line.strip()
        else:
            raise MetadbError(f"{source}: cannot read header line {line.strip()!r}; expected:\n{TEMPLATE}")
    name = meta.get("name", "")
    if not name or "question" not in meta or not columns:
        raise MetadbError(f"{source}: header needs name, question and columns; expected:\n{TEMPLATE}")
    if not re.search(rf"CREATE\s+OR\s+REPLACE\s+MACRO\s+\"?{re.escape(name)}\"?\s*\(", sql, re.I):
        raise MetadbError(f"{source}: body must be `CREATE OR REPLACE MACRO {name}(...) AS TABLE ...`")
    return Query(name, meta["question"], tuple(params), tuple(columns), sql, source=source)


queries: Registry[Query] = Registry("query")


def load_sql_queries() -> list[Query]:
    found = [parse_query(f.read_text(), str(f)) for f in sql_files("queries")]
    for q in found:
        if q.name not in queries:
            queries.register(q.name)(lambda q=q: q)
    return found


def register_python_query(name: str, question: str, params: list[Param], columns: list[Column]):
    """Decorator for a query answered in Python: fn(con, **params) -> (columns, rows)."""

    def decorate(fn: Callable[..., Any]) -> Callable[..., Any]:
        q = Query(name, question, tuple(params), tuple(columns), run=fn, source=fn.__module__)
        queries.register(name)(lambda: q)
        fn.columns = [c.name for c in columns]  # type: ignore[attr-defined]
        return fn

    return decorate


def sql_fingerprint() -> str:
    h = hashlib.sha256()
    for f in sql_files("queries"):
        h.update(f.name.encode() + b"\0" + f.read_bytes())
    return h.hexdigest()[:16]


def install(con, temporary: bool = False) -> None:
    """Create every SQL query's macro (persistent, or TEMP on a read-only handle) with its comment."""
    for q in load_sql_queries():
        sql = q.sql
        if temporary:
            sql = re.sub(r"CREATE\s+OR\s+REPLACE\s+MACRO", "CREATE OR REPLACE TEMP MACRO", sql, count=1, flags=re.I)
        con.execute(sql)
        if not temporary:
            con.execute(f'COMMENT ON MACRO TABLE "{q.name}" IS ' + _literal(q.comment))


def _literal(s: str) -> str:
    return "'" + s.replace("'", "''") + "'"


def get(name: str) -> Query:
    load_sql_queries()
    _load_python_queries()
    return queries.entry(name.replace("-", "_")).factory()


def all_queries() -> list[Query]:
    load_sql_queries()
    _load_python_queries()
    return [e.factory() for e in queries.entries()]


def _load_python_queries() -> None:
    import metadb.analyses  # noqa: F401  (registers Python queries)


DATASET_PARAMS = {"target", "to", "dataset", "source"}


def _canonical(name: str) -> str:
    """Dataset parameters accept catalog aliases (blood -> bloodmnist)."""
    from metadb import catalog

    return catalog.get(name).name if name in catalog.catalog else name


def _stored(con, name: str) -> bool:
    """A dataset of that exact name is in the store (imported with --no-catalog-names, say)."""
    return con.execute("SELECT count(*) FROM datasets WHERE name = ?", [name]).fetchone()[0] > 0


def run(con, name: str, **kwargs: Any) -> tuple[list[str], list[tuple]]:
    """Run a query by name; kwargs are its params (None = the declared default)."""
    q = get(name)
    unknown = set(kwargs) - {p.name for p in q.params}
    if unknown:
        raise MetadbError(f"query {q.name} has no parameter {', '.join(sorted(unknown))}; "
                          f"it takes {', '.join(p.name for p in q.params) or 'none'}")
    for p in q.params:
        if p.required and kwargs.get(p.name) is None:
            raise MetadbError(f"query {q.name} needs --{p.name.replace('_', '-')} ({p.help})")
    for key in DATASET_PARAMS & kwargs.keys():
        if isinstance(kwargs[key], str) and not _stored(con, kwargs[key]):  # a stored name means itself
            kwargs[key] = _canonical(kwargs[key])
    if q.run is not None:
        return q.run(con, **{k: v for k, v in kwargs.items() if v is not None})
    args, values = [], []
    for p in q.params:
        v = kwargs.get(p.name)
        if p.required:
            args.append("?")
            values.append(v)
        elif v is not None:
            args.append(f'"{p.name}" := ?')  # quoted: a parameter may be a keyword (best_source's `by`)
            values.append(v)
    import duckdb

    try:
        rel = con.execute(f"SELECT * FROM {q.name}({', '.join(args)})", values)
        return [d[0] for d in rel.description], rel.fetchall()
    except duckdb.InvalidInputException as e:  # a query's own error('...') on a bad parameter value
        raise MetadbError(f"query {q.name}: {str(e).removeprefix('Invalid Input Error: ')}") from None
