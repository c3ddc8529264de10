"""`metadb similarity`: all-pairs distances under a measure, cached; `import` for supplied ones."""

from __future__ import annotations

import click

from metadb.commands import db_option
from metadb.output import output_options, render


@click.group(invoke_without_command=True)
@click.option("--measure", help="frechet, mmd, mixture-w2, otdd, task2vec or meta (see `metadb similarity --list`).")
@click.option("--backbone", help="Backbone whose embeddings are compared: an identity (resnet50.3fa9c1d2) or an "
                                 "architecture name, meaning the identity most datasets share (not needed for meta).")
@click.option("--shrinkage", type=click.Choice(["oas", "none"]),
              help="Covariance shrinkage when n < D, for frechet and mixture-w2 (default oas).")
@click.option("--plot", type=click.Path(dir_okay=False), help="Also write a clustered heatmap PNG here.")
@click.option("--force", is_flag=True, help="Recompute even cached pairs.")
@click.option("--list", "list_measures", is_flag=True, help="List the registered measures.")
@db_option
@output_options
@click.pass_context
def similarity(ctx, measure, backbone, shrinkage, plot, force, list_measures, db, fmt) -> None:
    """Distances between every pair of datasets (lower = more alike); cached until inputs change."""
    if ctx.invoked_subcommand:
        return
    from metadb.measures import measures

    if list_measures:
        render(["name", "version", "summary"], [(e.name, e.version, e.summary) for e in measures.entries()], fmt=fmt)
        return
    if not measure:
        raise click.UsageError("give --measure (or --list)")
    from metadb.similarity import compute, plot as draw

    result = compute(db, measure, backbone, force=force, shrinkage=shrinkage)
    for note in result.notes:
        click.echo(note, err=True)
    render(result.columns, result.rows, fmt=fmt)
    if plot:
        draw(result.rows, plot, f"{measure}" + (f" ({result.backbone})" if result.backbone else ""))
        click.echo(f"heatmap written to {plot}", err=True)


try:
    from metadb.commands.outcomes import similarity_import_command

    similarity.add_command(similarity_import_command)
except ImportError:  # outcomes module absent: no import subcommand
    pass

COMMANDS = [similarity]
