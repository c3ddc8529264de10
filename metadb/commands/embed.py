"""`metadb embed`: pretrained-backbone embedding statistics of an ingested dataset."""

from __future__ import annotations

import click

from metadb.commands import db_option, executor_option


def backbone_options(fn):
    fn = click.option("--random-init", is_flag=True, help="Untrained weights (recorded as such); for tests and baselines.")(fn)
    fn = click.option("--device", help="cpu, cuda, cuda:N or mps (default: CUDA when present, else CPU).")(fn)
    fn = click.option("--weights", type=click.Path(dir_okay=False),
                      help="Local weights: a state_dict, or a checkpoint holding one under state_dict/model/net.")(fn)
    return fn


@click.command()
@click.argument("dataset")
@click.option("--backbone", default="tf_efficientnet_lite0", show_default=True, help="Any timm model name.")
@backbone_options
@click.option("--per-image/--no-per-image", default=True, show_default=True,
              help="Also write every image's embedding to Parquet beside the store.")
@click.option("--batch-size", type=int, help="Images per forward pass (default 32 on CPU, 128 on GPU).")
@click.option("--precision", type=click.Choice(["fp32", "amp"]),
              help="fp32, or amp (bfloat16 autocast); default amp on CUDA, fp32 elsewhere. Part of the identity.")
@click.option("--force", is_flag=True, help="Recompute even when data and weights are unchanged.")
@executor_option
@db_option
def embed(dataset: str, backbone: str, weights, device, random_init: bool, per_image: bool, batch_size, precision,
          force: bool, executor, db) -> None:
    """Embed an ingested dataset: per-class mean and covariance, and per-image vectors.

    The embedding is stored under a backbone identity (arch.tag: weights, preprocessing, device
    class, precision); only embeddings of one identity are ever compared.
    """
    from metadb.embeddings import embed as run

    click.echo(run(db, dataset, backbone, weights, device, per_image, batch_size, random_init, force=force,
                   precision=precision, executor=executor).summary())


COMMANDS = [embed]
