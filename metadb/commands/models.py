"""`metadb models add|list` and `metadb score`: candidate pretrained models and their scores."""

from __future__ import annotations

import click

from metadb.commands import db_option, executor_option
from metadb.output import output_options, render


@click.group()
def models() -> None:
    """Pretrained models to rank for a target."""


@models.command("add")
@click.argument("name")
@click.option("--arch", required=True, help="timm architecture, e.g. resnet18.")
@click.option("--weights", type=click.Path(dir_okay=False), help="Local weights file (else shipped or cached weights).")
@click.option("--source", help="Pretraining source dataset (imagenet, radimagenet, ...).")
@click.option("--method", default="supervised", show_default=True, help="supervised, simclr, swav, dino, ...")
@click.option("--random-init", is_flag=True, help="Untrained weights (a baseline).")
@db_option
def models_add(name, arch, weights, source, method, random_init, db) -> None:
    """Register a model (its weights are loaded and checked now)."""
    from metadb.models import add

    m = add(db, name, arch, weights, source, method, random_init)
    click.echo(f"{m['name']}: {m['architecture']} with {m['weights']} weights, {m['source_classes']}-class source head")


@models.command("list")
@db_option
@output_options
def models_list(db, fmt) -> None:
    """List registered models."""
    from metadb.models import list_models

    render(*list_models(db), fmt=fmt)


@click.command()
@click.option("--target", required=True, help="Ingested target dataset.")
@click.option("--models", "model_names", default="all", show_default=True, help="Comma-separated models, or all.")
@click.option("--metrics", "metric_names", default="logme", show_default=True,
              help="Comma-separated metrics, or all: logme, leep, nce, hscore, shrinkage_hscore, sfda, parc, lp, "
                   "nleep, gbc, ncti, fu, lpfu.")
@click.option("--split", default="train", show_default=True, help="Target split scored ('' for every image).")
@click.option("--device", help="cpu, cuda, cuda:N or mps (default: CUDA when present).")
@click.option("--saturated", type=click.Choice(["flag", "pca"]), default="flag", show_default=True,
              help="A score at its bound because the features fit any labelling (H-score, SFDA when N <= D): "
                   "store it flagged, or score it on PCA features.")
@executor_option
@click.option("--workers", type=click.IntRange(min=1),
              help="Processes of the local pool (default: one per model, up to the cores; one torch thread each "
                   "when several share the cores).")
@db_option
@output_options
def score(target, model_names, metric_names, split, device, saturated, executor, workers, db, fmt) -> None:
    """Score models on a target with transferability metrics (features extracted once, cached).

    Each model is one task (outputs, every metric, FU) on --executor; the store is written once, at the end.
    """
    from metadb.scoring import score as run

    names = None if model_names == "all" else [m.strip() for m in model_names.split(",")]
    result = run(db, target, names, [m.strip() for m in metric_names.split(",")], split, device,
                 saturated=saturated, executor=executor, workers=workers)
    render(result.columns, result.rows, fmt=fmt)
    for why in result.skipped:
        click.echo(f"skipped {why}", err=True)
    for why in result.warnings:
        click.echo(f"warning: {why}", err=True)


COMMANDS = [models, score]
