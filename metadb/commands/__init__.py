"""CLI command modules: each module here lists its click commands in `COMMANDS`.

`metadb.cli` adds every one to the `metadb` group, so a new capability brings its own command
file and edits nothing else. Modules import heavy libraries (torch, timm, sklearn) inside their
functions so `metadb --help` stays fast.
"""

from __future__ import annotations

import importlib
import pkgutil

import click

db_option = click.option("--db", envvar="METADB_DB", type=click.Path(dir_okay=False), default=None,
                         help="Store file (default ./metadb.duckdb, or $METADB_DB).")

executor_option = click.option(
    "--executor", envvar="METADB_SCHEDULER", default=None,
    help="Where tasks run: local (process pool, default), local-cluster:N (a Dask LocalCluster of N workers) "
         "or dask://host:port (a running Dask scheduler; also $METADB_SCHEDULER). Dask needs metadb[cluster].")


def all_commands() -> list[click.Command]:
    found: list[click.Command] = []
    for mod in pkgutil.iter_modules(__path__):
        found.extend(getattr(importlib.import_module(f"{__name__}.{mod.name}"), "COMMANDS", []))
    return found
