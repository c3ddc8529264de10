"""The Python API the CLI is a thin layer over: every command is one call here."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from metadb import catalog, queries, store
from metadb.errors import MetadbError
from metadb.ingest import IngestResult, ingest  # noqa: F401  (re-exported)

Rows = tuple[list[str], list[tuple]]


def _select(db: str | Path | None, sql: str, params: list[Any] | None = None) -> Rows:
    con = store.connect(db, read_only=True)
    try:
        return store.fetch(con.execute(sql, params or []))
    finally:
        con.close()


def datasets(db: str | Path | None = None) -> Rows:
    return _select(db, """SELECT name, title, modality, domain, label_type, n_images, n_classes,
                                 derived_from, ingested_at FROM datasets WHERE NOT is_stub ORDER BY name""")


def known_datasets() -> Rows:
    cols = ["name", "title", "modality", "anatomy", "domain", "label_type", "layout", "derived_from", "licence", "url"]
    rows = [(d.name, d.title, d.modality, d.anatomy, d.domain, d.label_type, d.layout or "", list(d.derived_from),
             d.licence, d.url) for d in catalog.known()]
    return cols, rows


def show(name: str, db: str | Path | None = None) -> Rows:
    con = store.connect(db, read_only=True)
    try:
        if not con.execute("SELECT 1 FROM datasets WHERE name = ?", [name]).fetchone():
            names = [r[0] for r in con.execute("SELECT name FROM datasets ORDER BY name").fetchall()]
            raise MetadbError(f"dataset {name!r} is not in the store", f"ingested: {', '.join(names) or 'none'}")
        rel = con.execute("""SELECT extractor, version, name, value FROM meta_features
                             WHERE dataset = ? ORDER BY extractor, name""", [name])
        return [d[0] for d in rel.description], rel.fetchall()
    finally:
        con.close()


# Statements that write files: refused on a read-only handle even inside the store's own folders.
_WRITES_FILES = {"COPY", "COPY_DATABASE", "EXPORT"}
# DuckDB 1.5.6 lets even a locked-down handle send its log to a file (and aborts the process
# when that file is outside the allowed folders), so the logging functions are refused by name.
_LOGGING = re.compile(r"\b(enable_logging|disable_logging|truncate_duckdb_logs)\b", re.I)
_READ_ONLY_HINT = ("`metadb sql` reads only the store and its own folders; --write opens it read-write, "
                   "with DuckDB's usual access to other files")


def sql(statement: str, db: str | Path | None = None, write: bool = False) -> Rows:
    """Run SQL; without `write` the handle is read-only and locked down (see store.lock_down)."""
    import duckdb

    con = store.connect(db, read_only=not write)
    try:
        if not write:
            _refuse_file_writes(con, statement)
            return store.fetch(con.execute(statement))
        rows = store.fetch(con.execute(statement))
        _rederive(con)
        return rows
    except duckdb.Error as e:
        first = str(e).splitlines()[0]
        hint = None
        if "read-only" in first.lower():
            hint = "writing needs --write"
        elif isinstance(e, duckdb.PermissionException) or "configuration has been locked" in first:
            hint = _READ_ONLY_HINT
        raise MetadbError(f"SQL error: {first}", hint) from None
    finally:
        con.close()


def _rederive(con) -> None:
    """What writers keep derived from `outcomes` (the selection, best_source's summary), recomputed
    after hand-written SQL, which can change rows in place where no importer would."""
    from metadb.imports import outcome_summary
    from metadb.imports.selection import reselect

    with store.transaction(con):
        reselect(con)
        outcome_summary.refresh_all(con)


def _refuse_file_writes(con, statement: str) -> None:
    kinds = {s.type.name for s in con.extract_statements(statement)}
    if kinds & _WRITES_FILES or _LOGGING.search(statement):
        what = ", ".join(sorted(kinds & _WRITES_FILES)) or "logging to a file"
        raise MetadbError(f"SQL error: {what} writes files, and this handle is read-only", _READ_ONLY_HINT)


def query(name: str, db: str | Path | None = None, **params: Any) -> Rows:
    con = store.connect(db, read_only=True)
    try:
        return queries.run(con, name, **params)
    finally:
        con.close()


def migrate(db: str | Path | None = None) -> list[int]:
    con = store.connect(db)
    try:
        return [r[0] for r in con.execute("SELECT version FROM schema_migrations ORDER BY version").fetchall()]
    finally:
        con.close()
