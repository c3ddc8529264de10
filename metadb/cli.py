"""The `metadb` command: parses options, calls metadb.api, renders. No domain logic here."""

from __future__ import annotations

import os
import sys
from typing import Any

import click
import duckdb

from metadb import api, queries
from metadb.commands import all_commands, db_option, executor_option
from metadb.commands.embed import backbone_options
from metadb.errors import MetadbError
from metadb.output import output_options, render



class Group(click.Group):
    """Turns MetadbError into a one-line error and Ctrl-C into a clean exit; no tracebacks."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except MetadbError as e:
            raise click.ClickException(str(e)) from None
        except duckdb.Error as e:
            raise click.ClickException(f"database error: {str(e).splitlines()[0]}") from None
        except (click.exceptions.Exit, click.ClickException, click.Abort):
            raise
        except KeyboardInterrupt:
            click.echo("interrupted; the store is unchanged", err=True)
            ctx.exit(130)
        except BrokenPipeError:  # output piped into `head`: not an error
            sys.stderr.close()
            ctx.exit(0)
        except Exception as e:  # a bug, not bad input: one line, traceback on request
            if os.environ.get("METADB_DEBUG"):
                raise
            raise click.ClickException(
                f"internal error {type(e).__name__}: {e}; rerun with METADB_DEBUG=1 for the traceback") from None


@click.group(cls=Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="metadb")
def cli() -> None:
    """Dataset meta-features, similarity and transfer outcomes for medical image classification."""


@cli.command()
@click.option("--dataset", help="A known dataset (see `metadb datasets --known`), read from its published layout.")
@click.option("--root", type=click.Path(file_okay=False), help="Folder holding known datasets (default $METADB_DATA or ~/data).")
@click.option("--path", type=click.Path(), help="Your own dataset: a folder or a labels CSV.")
@click.option("--name", help="Name for a --path dataset (default: the folder name).")
@click.option("--layout", help="Layout of a --path dataset: imagefolder (default) or csv; see `metadb layouts`.")
@click.option("--modality", help="Modality of a --path dataset (xray, ct, histopathology, ...).")
@click.option("--extractors", "extractor_names", default="basic,image_stats,phash", show_default=True,
              help="Comma-separated extractors; see `metadb extractors`.")
@click.option("--working-size", type=int, default=256, show_default=True,
              help="Longest side images are decoded at for statistics.")
@click.option("--workers", type=int, help="Decoding processes (default: one per core).")
@click.option("--force", is_flag=True, help="Recompute even when the data has not changed.")
@click.option("--strict", is_flag=True, help="Fail on the first unreadable image instead of skipping it.")
@click.option("--wait", type=click.FloatRange(min=0), envvar="METADB_WAIT",
              help="Seconds to wait while another process holds the store (default 0: fail at once). "
                   "The store is locked only to commit, never while images decode.")
@click.option("--backbone", help="Also embed it with this timm backbone (see `metadb embed`).")
@backbone_options
@executor_option
@db_option
def ingest(extractor_names: str, db: str | None, backbone: str | None, weights, device, random_init: bool,
           **kw: Any) -> None:
    """Compute a dataset's meta-features and store them (atomic: all or nothing)."""
    result = api.ingest(db, extractor_names=[e.strip() for e in extractor_names.split(",") if e.strip()],
                        command=" ".join(["metadb", *sys.argv[1:]]), **kw)
    click.echo(result.summary())
    for note in result.notes:
        click.echo(f"  note: {note}", err=True)
    for path, reason in result.errors[:5]:
        click.echo(f"  skipped {path}: {reason}", err=True)
    if backbone:
        from metadb.embeddings import embed

        click.echo(embed(db, result.dataset, backbone, weights, device, random_init=random_init,
                         executor=kw["executor"]).summary())


@cli.command()
@click.option("--known", is_flag=True, help="List the catalog of known datasets instead.")
@db_option
@output_options
def datasets(known: bool, db: str | None, fmt: str) -> None:
    """List ingested datasets (or, with --known, every dataset metadb knows how to read)."""
    render(*(api.known_datasets() if known else api.datasets(db)), fmt=fmt)


@cli.command()
@click.argument("name")
@db_option
@output_options
def show(name: str, db: str | None, fmt: str) -> None:
    """Show a dataset's meta-features."""
    render(*api.show(name, db), fmt=fmt)


@cli.command()
@click.argument("statement")
@click.option("--write", is_flag=True,
              help="Open the store read-write, with DuckDB's usual access to other files. Without it the "
                   "store is read-only and SQL can open no file outside the store and its own folders.")
@db_option
@output_options
def sql(statement: str, write: bool, db: str | None, fmt: str) -> None:
    """Run SQL against the store (read-only and locked down unless --write)."""
    cols, rows = api.sql(statement, db, write)
    if cols:
        render(cols, rows, fmt=fmt)


@cli.command()
@db_option
def migrate(db: str | None) -> None:
    """Create or upgrade the store's schema."""
    click.echo(f"schema versions applied: {', '.join(map(str, api.migrate(db)))}")


class QueryGroup(Group):
    """`metadb query NAME`: one subcommand per query module, options from its header."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return [q.name.replace("_", "-") for q in queries.all_queries()]

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        try:
            q = queries.get(name)
        except MetadbError:
            return None
        return _query_command(q)


def _query_command(q: queries.Query) -> click.Command:
    def callback(db: str | None, fmt: str, **params: Any) -> None:
        render(*api.query(q.name, db, **params), fmt=fmt)

    cmd = click.Command(q.name.replace("_", "-"), callback=callback, help=q.question, short_help=q.question[:70])
    _PY_TYPES = {"INTEGER": int, "BIGINT": int, "DOUBLE": float, "BOOLEAN": bool}
    for p in q.params:
        flag = {"is_flag": False, "flag_value": True} if p.type == "BOOLEAN" else {}  # --x, --x false, or absent
        cmd.params.append(click.Option([f"--{p.name.replace('_', '-')}", p.name], type=_PY_TYPES.get(p.type, str),
                                       default=None, help=p.help + ("" if p.required else f" [default: {p.default}]"),
                                       **flag))
    db_option(cmd)
    output_options(cmd)
    return cmd


@cli.group(cls=QueryGroup)
def query() -> None:
    """Ask a question of the store; `metadb queries` lists them."""


@cli.command("queries")
@output_options
def list_queries(fmt: str) -> None:
    """List query modules: name, question and parameters."""
    render(["name", "question", "params"],
           [(q.name.replace("_", "-"), q.question, ", ".join(p.name for p in q.params)) for q in queries.all_queries()],
           fmt=fmt)


@cli.command("extractors")
@output_options
def list_extractors(fmt: str) -> None:
    """List registered extractors."""
    import extractors  # noqa: F401
    from metadb.extract import extractors as registry

    render(["name", "version", "summary"], [(e.name, e.version, e.summary) for e in registry.entries()], fmt=fmt)


@cli.command("layouts")
@output_options
def list_layouts(fmt: str) -> None:
    """List on-disk layouts metadb can read."""
    from metadb.loaders import loaders

    render(["name", "version", "summary"], [(e.name, e.version, e.summary) for e in loaders.entries()], fmt=fmt)


for _command in all_commands():
    cli.add_command(_command)


def main() -> None:
    cli(prog_name="metadb")


if __name__ == "__main__":
    main()
