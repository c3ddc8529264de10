"""`metadb report`: the store as one self-contained HTML page."""

from __future__ import annotations

import click

from metadb.commands import db_option


@click.command()
@click.option("--out", type=click.Path(dir_okay=False), default="report.html", show_default=True,
              help="HTML file to write (one file: figures, styles and script inline).")
@click.option("--target", help="One target's view: its best sources, metric agreement and the datasets involved.")
@db_option
def report(out: str, target: str | None, db: str | None) -> None:
    """Write an HTML report of the store: datasets, similarity heatmaps, best source per target, metric
    agreement, predictor evaluation, runs and provenance (each section only when the store has its data)."""
    from metadb.report import write

    path, size = write(out, db, target)
    click.echo(f"report written to {path} ({size / 1e6:.2f} MB)")


COMMANDS = [report]
