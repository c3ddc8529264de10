"""`metadb demo`: the main job on real shipped images, end to end, into the default store."""

from __future__ import annotations

from pathlib import Path

import click

from metadb import api
from metadb.commands import db_option
from metadb.demo import DEMO, write
from metadb.output import render

SUMMARY = """SELECT d.name, d.n_images, d.n_classes, w.imbalance_ratio, w.intensity_mean, w.intensity_std,
                    w.histogram_entropy, w.intensity_skewness, w.sharpness_mean, w.width_median
             FROM datasets d JOIN meta_features_wide w ON w.dataset = d.name
             WHERE d.name LIKE 'demo-%' ORDER BY d.name"""


@click.command()
@click.option("--data", "data_dir", type=click.Path(file_okay=False), default="demo-data", show_default=True,
              help="Where to write the demo images.")
@db_option
def demo(data_dir: str, db: str | None) -> None:
    """Ingest real images shipped by scikit-learn and scikit-image, then print their meta-features."""
    paths = write(Path(data_dir))
    for d in DEMO:
        result = api.ingest(db, path=paths[d.name], name=d.name, layout=d.layout, modality=d.modality,
                            command="metadb demo")
        click.echo(result.summary())
    click.echo()
    render(*api.sql(SUMMARY, db))


COMMANDS = [demo]
