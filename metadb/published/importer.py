"""Import a pack into a store through the same importers as users' files (metadb.outcomes).

Every row gets `origin = 'published:<pack>@<version>'`. The importers record each file's sha256
with its options, so importing a pack twice adds nothing. All packs asked for are checked
against their manifests before anything is imported: a damaged file imports nothing.
"""

from __future__ import annotations

import glob
from dataclasses import replace
from pathlib import Path
from typing import Any, Iterator

from metadb import outcomes
from metadb.outcomes import ImportResult
from metadb.published.packs import Pack, all_packs, get


def import_table(db: str | Path | None, pack: Pack, table: dict[str, Any]) -> list[ImportResult]:
    """One table through the importer its manifest names; results name the file as <pack>/<file>."""
    spec = table["import"]
    pattern = glob.escape(str(pack.path(table)))  # a literal path, even in a folder named like a glob
    if spec["kind"] == "outcomes":
        results = outcomes.import_outcomes(db, pattern, fmt=spec["format"], metric=spec.get("metric"),
                                           select=spec.get("select"), architecture=spec.get("architecture"),
                                           origin=pack.origin)
    elif spec["kind"] == "scores":
        results = outcomes.import_scores(db, pattern, metric=spec["metric"], fmt=spec["format"], origin=pack.origin)
    else:
        results = outcomes.import_similarities(db, pattern, measure=spec["measure"], fmt=spec["format"],
                                               origin=pack.origin)
    return [replace(r, file=f"{pack.name}/{table['file']}") for r in results]


def import_packs(db: str | Path | None,
                 names: list[str] | None = None) -> Iterator[tuple[Pack, list[ImportResult]]]:
    """Import the named packs (default: all), yielding each as it is committed.

    The checksums of every pack asked for are verified before this returns, so a damaged file
    is refused before anything is imported; each table is then its own import (and transaction).
    """
    packs = [get(n) for n in names] if names else all_packs()
    for pack in packs:
        pack.check()
    return ((pack, [r for table in pack.tables if table.get("import") for r in import_table(db, pack, table)])
            for pack in packs)
