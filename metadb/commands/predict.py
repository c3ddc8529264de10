"""`metadb predict fit|evaluate`: learn outcomes from pair features; check it beats every single metric."""

from __future__ import annotations

import click

from metadb.commands import db_option
from metadb.output import output_options, render

# The names of metadb.predictors' registries, spelt here so `metadb --help` does not import scikit-learn
# (tests/test_predictors.py checks they agree).
FEATURE_SETS = ("meta", "scores", "distances", "record")
MODELS = ("ridge", "pairwise", "forest", "boosting")
NORMALISATIONS = ("rank", "z", "none")

_features = click.option("--features", default=",".join(FEATURE_SETS), show_default=True,
                         help="Feature sets to use, comma-separated: meta (source size and classes, ingested or "
                              "declared; shared modality), scores, distances, record (the source's results on "
                              "other targets).")
_normalise = click.option("--normalise", type=click.Choice(NORMALISATIONS), default="rank", show_default=True,
                          help="Put scores, distances and outcomes on one scale per target: rank, z-score, or none.")


@click.group()
def predict() -> None:
    """Predict outcomes for pairs never fine-tuned."""


@predict.command("fit")
@click.option("--model", type=click.Choice(list(MODELS)), default="ridge", show_default=True,
              help="ridge (alpha by leave-one-out on the training rows), pairwise (a ranking objective), forest, "
                   "boosting; each an ensemble over the combinations of the feature sets.")
@click.option("--metric", help="Outcome metric to learn (default: the most reported one).")
@click.option("--seed", type=int, default=0, show_default=True)
@_features
@_normalise
@db_option
def predict_fit(model: str, metric, seed: int, features: str, normalise: str, db) -> None:
    """Fit on every observed pair; store the model and predictions for every pair with enough known features."""
    from metadb.predictors import fit

    click.echo(fit(db, model, metric, seed, features, normalise).summary(model))


@predict.command("evaluate")
@click.option("--model", "models", type=click.Choice(list(MODELS)), multiple=True,
              help="Model(s) to evaluate (repeatable; default: ridge).")
@click.option("--cv", type=click.Choice(["leave-one-target-out"]), default="leave-one-target-out", show_default=True)
@click.option("--metric", help="Outcome metric (default: the most reported one).")
@click.option("--seed", type=int, default=0, show_default=True)
@_features
@_normalise
@click.option("--exclude-target", "exclude", multiple=True, help="Leave a target out of the evaluation (repeatable).")
@click.option("--per-target", is_flag=True, help="One row per method and held-out target, then the means.")
@db_option
@output_options
def predict_evaluate(models, cv: str, metric, seed: int, features: str, normalise: str, exclude, per_target: bool,
                     db, fmt: str) -> None:
    """Leave-one-target-out weighted tau, top-1 hit and regret of each model, beside every stored score and distance."""
    from metadb.predictor_evaluation import evaluate

    render(*evaluate(db, models or ("ridge",), metric, seed, features, normalise, exclude, per_target), fmt=fmt)


COMMANDS = [predict]
