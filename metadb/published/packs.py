"""The evidence packs that ship with metadb: find them, describe them, check their files.

A pack is a folder under metadb/published/data/ holding Parquet tables and a manifest.json
written by `python -m metadb.published.build` (citation, licence, what each table means, how its
names map to the catalog, each file's sha256). Nothing here writes to a store.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

from metadb.errors import MetadbError

DATA = Path(__file__).resolve().parent / "data"
REINSTALL = "the installed copy is damaged: reinstall metadb (pip install --force-reinstall metadb)"


@dataclass(frozen=True)
class Pack:
    folder: Path

    @cached_property
    def manifest(self) -> dict[str, Any]:
        path = self.folder / "manifest.json"
        try:
            return json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as e:
            raise MetadbError(f"evidence pack {self.folder.name}: unreadable manifest {path} ({e})", REINSTALL) from None

    @property
    def name(self) -> str:
        return self.manifest["name"]

    @property
    def version(self) -> str:
        return self.manifest["version"]

    @property
    def origin(self) -> str:
        """What every imported row's `origin` says: the pack and its version."""
        return f"published:{self.name}@{self.version}"

    @property
    def tables(self) -> list[dict[str, Any]]:
        return self.manifest["tables"]

    @property
    def size(self) -> int:
        return sum(t["bytes"] for t in self.tables)

    def path(self, table: dict[str, Any]) -> Path:
        return self.folder / table["file"]

    def check(self) -> None:
        """Every file the manifest lists is present with its recorded sha256, else a one-line error."""
        for table in self.tables:
            path = self.path(table)
            if not path.is_file():
                raise MetadbError(f"evidence pack {self.name}: {table['file']} is missing ({path})", REINSTALL)
            got = hashlib.sha256(path.read_bytes()).hexdigest()
            if got != table["sha256"]:
                raise MetadbError(f"evidence pack {self.name}: {table['file']} does not match its manifest checksum "
                                  f"(sha256 {got[:12]}..., expected {table['sha256'][:12]}...); nothing imported",
                                  REINSTALL)


def all_packs() -> list[Pack]:
    return [Pack(m.parent) for m in sorted(DATA.glob("*/manifest.json"))]


def get(name: str) -> Pack:
    for pack in all_packs():
        if pack.folder.name == name:
            return pack
    shipped = ", ".join(p.folder.name for p in all_packs()) or "none"
    raise MetadbError(f"no evidence pack named {name!r}", f"metadb ships: {shipped} (see `metadb published list`)")


def human_size(n: int) -> str:
    return f"{n / 1e6:.1f} MB" if n >= 1e6 else f"{n / 1e3:.1f} kB" if n >= 1e3 else f"{n} bytes"


def listing() -> tuple[list[str], list[tuple]]:
    """One row per pack: what `metadb published list` prints."""
    cols = ["pack", "version", "study", "what", "size", "licence", "citation"]
    rows = [(p.name, p.version, p.manifest["study"], p.manifest["what"], human_size(p.size), p.manifest["licence"],
             p.manifest["citation"]) for p in all_packs()]
    return cols, rows


def describe(name: str) -> tuple[list[str], list[tuple]]:
    """One row per table of a pack: what it holds, its units, and what metadb imports it as."""
    pack = get(name)
    cols = ["file", "rows", "imported_as", "units", "meaning", "from"]
    rows = []
    for t in pack.tables:
        spec = t.get("import") or {}
        what = spec.get("metric") or spec.get("measure") or ""
        imported = f"{spec['kind']} ({spec['format']}{', ' + what if what else ''})" if spec else "not imported"
        kind, path = ("tree", t["from"].rsplit("/", 1)[0]) if "*" in t["from"] else ("blob", t["from"])
        rows.append((t["file"], t["rows"], imported, t["units"], t["meaning"],
                     f"{pack.manifest['repository']}/{kind}/{pack.manifest['commit']}/{path}"))
    return cols, rows


def names(name: str) -> tuple[list[str], list[tuple]]:
    """How the study's dataset names map onto metadb's catalog."""
    return ["study", "catalog", "is"], [(n["study"], n["catalog"], n["is"]) for n in get(name).manifest["names"]]
