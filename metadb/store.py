"""The store: one DuckDB file. The only module that opens it.

`connect` pins connection settings, applies numbered migrations from `schema/` (each in one
transaction with its version row), refuses stores from a newer metadb, and installs the query
macros: persistent ones on write connections (so the DuckDB CLI sees them), TEMP ones on
read-only handles whose macros are stale. DuckDB allows one writer process or many readers; a
second writer gets a one-line StoreInUseError, or waits for the lock when asked to (`wait`).

Read-only handles are locked down with DuckDB's own switches ("Securing DuckDB"): the only files
they may open are the store's own folders beside it (`<store>.embeddings/`, `<store>.features/`,
...), then `enable_external_access=false`, no extension installs or loads, no persistent secrets,
and `lock_configuration=true`, so SQL cannot turn any of it back on. A read-only handle can then
neither read `/etc/passwd` nor overwrite the store with `COPY ... TO`.
"""

from __future__ import annotations

import os
import re
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import duckdb

from metadb import queries
from metadb.errors import MetadbError, StoreInUseError
from metadb.resources import sql_files

DEFAULT_DB = "metadb.duckdb"


def default_path() -> Path:
    return Path(os.environ.get("METADB_DB") or DEFAULT_DB)


def migrations() -> list[tuple[int, str, Path]]:
    out = []
    for f in sql_files("schema"):
        m = re.match(r"^(\d+)_(.+)\.sql$", f.name)
        if not m:
            raise MetadbError(f"{f}: migration files are named NNN_name.sql")
        out.append((int(m.group(1)), m.group(2), f))
    versions = [v for v, _, _ in out]
    if len(set(versions)) != len(versions):
        raise MetadbError(f"two migrations share a number in {out[0][2].parent}")
    return out


def latest_version() -> int:
    return max(v for v, _, _ in migrations())


def connect(path: str | Path | None = None, read_only: bool = False, wait: float | None = None,
            external_access: bool = False) -> duckdb.DuckDBPyConnection:
    """Open the store; write handles are migrated, read-only handles must already exist.

    `wait`: seconds to keep retrying while another process holds the store (default
    $METADB_WAIT, else 0: fail at once with StoreInUseError). `external_access`: let a read-only
    handle open files outside the store (off by default; write handles always may).
    """
    path = Path(path) if path is not None else default_path()
    if read_only and not path.exists():
        raise MetadbError(f"no store at {path}", "ingest a dataset first (metadb ingest ...) or pass --db")
    if not read_only and path.parent and not path.parent.exists():
        raise MetadbError(f"folder {path.parent} does not exist (for store {path})")
    con = _open(path, read_only, default_wait() if wait is None else wait)
    try:
        version = schema_version(con)
        if version > latest_version():
            raise MetadbError(
                f"store {path} has schema version {version}, newer than this metadb understands ({latest_version()})",
                "upgrade metadb (pip install -U metadb)",
            )
        if read_only:
            if version < latest_version():
                raise MetadbError(f"store {path} has schema version {version} < {latest_version()}",
                                  "run `metadb migrate` to upgrade it")
            if _meta(con, "queries_fingerprint") != queries.sql_fingerprint():
                queries.install(con, temporary=True)
            if not external_access:
                lock_down(con, path)
        else:
            migrate(con)
            if _meta(con, "queries_fingerprint") != queries.sql_fingerprint():
                with transaction(con):
                    queries.install(con)
                    _set_meta(con, "queries_fingerprint", queries.sql_fingerprint())
    except BaseException:
        con.close()
        raise
    return con


def default_wait() -> float:
    try:
        return float(os.environ.get("METADB_WAIT") or 0)
    except ValueError:
        raise MetadbError(f"METADB_WAIT={os.environ['METADB_WAIT']!r} is not a number of seconds") from None


def _open(path: Path, read_only: bool, wait: float) -> duckdb.DuckDBPyConnection:
    """duckdb.connect, retried with backoff for up to `wait` seconds while the file is locked."""
    deadline = time.monotonic() + max(wait, 0.0)
    pause = 0.05
    while True:
        try:
            return duckdb.connect(str(path), read_only=read_only, config={"python_enable_replacements": False})
        except duckdb.Error as e:
            err = _translate(e, path)
            left = deadline - time.monotonic()
            if not isinstance(err, StoreInUseError) or left <= 0:
                if isinstance(err, StoreInUseError) and wait > 0:
                    err = StoreInUseError(f"{err.message}, still after waiting {wait:g} s", err.hint)
                raise err from None
        time.sleep(min(pause, left))  # the last try falls on the deadline: the whole wait, never less
        pause = min(pause * 2, 1.0)


def data_folders(path: str | Path) -> list[Path]:
    """The store's own folders beside it (`<store>.embeddings`, `<store>.features`, ...), as
    absolute paths both as given and with symlinks resolved (SQL may name either)."""
    found: set[Path] = set()
    for p in {Path(os.path.abspath(path)), Path(path).resolve()}:
        if p.parent.is_dir():
            found.update(d for d in p.parent.iterdir() if d.name.startswith(p.name + ".") and d.is_dir())
    return sorted(found)


def lock_down(con: duckdb.DuckDBPyConnection, path: str | Path) -> None:
    """No file access outside the store's own folders, and no way for SQL to undo that."""
    if con.execute("SELECT current_setting('lock_configuration')").fetchone()[0]:
        return  # another handle in this process shares the database instance and locked it already
    con.execute("SET allowed_directories = ?", [[str(d) + os.sep for d in data_folders(path)]])
    for setting in ("enable_external_access", "autoinstall_known_extensions", "autoload_known_extensions",
                    "allow_community_extensions", "allow_persistent_secrets"):
        con.execute(f"SET {setting} = false")
    con.execute("SET lock_configuration = true")


def _translate(e: duckdb.Error, path: Path) -> MetadbError:
    msg = str(e)
    if "Could not set lock" in msg or "Conflicting lock" in msg:
        pid = re.search(r"PID (\d+)", msg)
        who = f" (PID {pid.group(1)})" if pid else ""
        return StoreInUseError(f"store {path} is in use by another metadb process{who}",
                               "wait for it to finish, or use another --db")
    if "version number" in msg or "not a valid DuckDB database" in msg or "Serialization" in msg:
        return MetadbError(f"{path} is not a DuckDB {duckdb.__version__} store ({msg.splitlines()[0][:120]})",
                           "pass another --db, or open it with the DuckDB version that wrote it")
    return MetadbError(f"cannot open store {path}: {msg.splitlines()[0]}")


def fetch(rel: duckdb.DuckDBPyConnection) -> tuple[list[str], list[tuple]]:
    """Column names and rows of an executed statement.

    DuckDB's Python client needs pytz to turn TIMESTAMP WITH TIME ZONE values into Python objects
    (`SELECT now()` fails without it); such results go through Arrow, which does not.
    """
    if not rel.description:
        return [], []
    cols = [d[0] for d in rel.description]
    if not any("WITH TIME ZONE" in str(d[1]) for d in rel.description):
        return cols, rel.fetchall()
    table = rel.to_arrow_table()
    return cols, list(zip(*(c.to_pylist() for c in table.columns))) if table.num_rows else []


def schema_version(con: duckdb.DuckDBPyConnection) -> int:
    exists = con.execute(
        "SELECT count(*) FROM duckdb_tables() WHERE table_name = 'schema_migrations' AND NOT temporary"
    ).fetchone()[0]
    if not exists:
        return 0
    return con.execute("SELECT coalesce(max(version), 0) FROM schema_migrations").fetchone()[0]


def migrate(con: duckdb.DuckDBPyConnection) -> list[int]:
    """Apply pending migrations in order; each commits together with its version row."""
    con.execute("""CREATE TABLE IF NOT EXISTS schema_migrations
                   (version INTEGER PRIMARY KEY, name VARCHAR, applied_at TIMESTAMP DEFAULT current_timestamp)""")
    con.execute("CREATE TABLE IF NOT EXISTS metadb_meta (key VARCHAR PRIMARY KEY, value VARCHAR)")
    current = schema_version(con)
    applied = []
    for version, name, f in migrations():
        if version <= current:
            continue
        with transaction(con):
            con.execute(f.read_text())
            con.execute("INSERT INTO schema_migrations (version, name) VALUES (?, ?)", [version, name])
        applied.append(version)
    return applied


@contextmanager
def transaction(con: duckdb.DuckDBPyConnection) -> Iterator[duckdb.DuckDBPyConnection]:
    """BEGIN ... COMMIT, or ROLLBACK on any error (including KeyboardInterrupt)."""
    con.execute("BEGIN TRANSACTION")
    try:
        yield con
    except BaseException:
        con.execute("ROLLBACK")
        raise
    con.execute("COMMIT")


def _meta(con: duckdb.DuckDBPyConnection, key: str) -> str | None:
    row = con.execute("SELECT value FROM metadb_meta WHERE key = ?", [key]).fetchone()
    return row[0] if row else None


def _set_meta(con: duckdb.DuckDBPyConnection, key: str, value: str) -> None:
    con.execute("INSERT OR REPLACE INTO metadb_meta VALUES (?, ?)", [key, value])


def refresh_wide_view(con: duckdb.DuckDBPyConnection) -> None:
    """meta_features_wide: one row per dataset, one column per meta-feature name.

    DuckDB cannot store a dynamic PIVOT in a view, so the view is regenerated (inside the
    writer's transaction) whenever the set of names may have changed.
    """
    names = [r[0] for r in con.execute("SELECT DISTINCT name FROM meta_features ORDER BY name").fetchall()]
    cols = "".join(
        f", max(value) FILTER (WHERE name = {queries._literal(n)}) AS \"{n.replace(chr(34), '')}\"" for n in names
    )
    con.execute(f"CREATE OR REPLACE VIEW meta_features_wide AS SELECT dataset{cols} FROM meta_features GROUP BY dataset")
