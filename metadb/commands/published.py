"""`metadb published list|show|import|verify`: the evidence packs that ship with metadb."""

from __future__ import annotations

import click

from metadb.commands import db_option
from metadb.errors import MetadbError
from metadb.output import output_options, render


@click.group()
def published() -> None:
    """Published evidence: the studies' result tables that ship with metadb, with citations."""


@published.command("list")
@output_options
def published_list(fmt: str) -> None:
    """List the evidence packs: study, what they hold, size, licence, citation."""
    from metadb.published import listing

    render(*listing(), fmt=fmt)


@published.command("show")
@click.argument("name")
@click.option("--names", "show_names", is_flag=True, help="How the study's dataset names map onto metadb's catalog.")
@output_options
def published_show(name: str, show_names: bool, fmt: str) -> None:
    """A pack's tables (rows, units, meaning, what they import as), or with --names its name mapping."""
    from metadb.published import describe, names

    render(*(names(name) if show_names else describe(name)), fmt=fmt)


def _names(names: tuple[str, ...], all_: bool) -> list[str] | None:
    if all_ and names:
        raise MetadbError("name packs or pass --all, not both")
    if not all_ and not names:
        raise MetadbError("name a pack to import, or pass --all", "see `metadb published list`")
    return None if all_ else list(names)


def echo_imports(db: str | None, names: list[str] | None) -> None:
    """Import packs: per pack, one line per table, its manifest's note and a total; one line if nothing was new."""
    from metadb.published import import_packs

    for pack, results in import_packs(db, names):
        added = [r for r in results if r.status == "imported"]
        if not added:
            click.echo(f"{pack.name}: already imported as {pack.origin}; nothing added")
            continue
        for r in results:
            click.echo(r.summary())
        if pack.manifest.get("note"):
            click.echo(f"note: {pack.manifest['note']}")
        click.echo(f"{pack.name}: {sum(r.rows for r in added):,} rows from {len(added)} of {len(results)} tables "
                   f"imported as {pack.origin} (cite {pack.manifest['citation']})")


@published.command("import")
@click.argument("names", nargs=-1)
@click.option("--all", "all_", is_flag=True, help="Import every pack metadb ships.")
@db_option
def published_import(names: tuple[str, ...], all_: bool, db: str | None) -> None:
    """Import evidence packs into the store (checksums verified first; importing twice adds nothing)."""
    echo_imports(db, _names(names, all_))


@published.command("verify")
@click.argument("names", nargs=-1)
@click.option("--all", "all_", is_flag=True, help="Verify every pack metadb ships.")
@output_options
def published_verify(names: tuple[str, ...], all_: bool, fmt: str) -> None:
    """Recompute a study's headline figures from its pack, beside the published values (a scratch store)."""
    from metadb.published import all_packs, verify

    chosen = _names(names, all_) or [p.folder.name for p in all_packs()]
    cols, rows = [], []
    for name in chosen:
        cols, part = verify(name)
        rows += part
    render(cols, rows, fmt=fmt)
    differ = [r for r in rows if r[-1] != "yes"]
    if differ:
        raise MetadbError(f"{len(differ)} of {len(rows)} figures differ from the published values: "
                          + "; ".join(f"{r[0]} {r[1]}" for r in differ))


COMMANDS = [published]
