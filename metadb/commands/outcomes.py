"""`metadb outcomes import`, `metadb scores import|combine`, `metadb similarity import`, `metadb predict`."""

from __future__ import annotations

from pathlib import Path

import click

from metadb.commands import db_option


def _echo(results) -> None:
    """The import's notes (names mapped, stubs, columns kept), then one line per file and a total line."""
    for r in results:
        for note in r.notes:
            click.echo(note)
    for r in results:
        click.echo(r.summary())
    if len(results) > 1:
        added = [r for r in results if r.status == "imported"]
        click.echo(f"{len(added)} of {len(results)} files imported, {sum(r.rows for r in added):,} rows "
                   f"(one transaction)")


@click.group()
def outcomes() -> None:
    """Fine-tuning outcomes: import published or in-house results."""


@outcomes.command("import")
@click.argument("pattern")
@click.option("--format", "fmt", type=click.Choice(["long", "matrix", "folds", "mlflow"]), default="long",
              show_default=True, help="long: source,target,value[,metric,fold,seed,...]; matrix: source x target; "
                                      "folds: source,target,fold_1..fold_k; mlflow: an MLflow run export.")
@click.option("--metric", help="Metric of the values (auc, test_auc, accuracy, ...): default auc for matrix and "
                               "folds; mlflow: the logged column that is the outcome (required).")
@click.option("--select", help="mlflow: which run is the pair's ground truth, e.g. min:val_loss or max:val_auc "
                               "(all runs are kept; the others have is_selected = false).")
@click.option("--architecture", help="Architecture fine-tuned (e.g. resnet50).")
@click.option("--pretraining", help="How the source model was pretrained (supervised, simclr, ...).")
@click.option("--protocol", help="fine-tune (default) or linear-probe.")
@click.option("--names", "names_file", type=click.Path(dir_okay=False),
              help="CSV of name,dataset rows: what the names in the files mean (applied before catalog aliases).")
@click.option("--no-catalog-names", is_flag=True,
              help="Keep names as written: do not map catalog aliases (e.g. breast -> breastmnist).")
@db_option
def outcomes_import(pattern: str, fmt: str, metric, select, architecture, pretraining, protocol, names_file,
                    no_catalog_names: bool, db) -> None:
    """Import outcomes from files matching PATTERN (quote globs): all files in one transaction, or none.

    CSV, CSV.gz and Parquet files are read. Prints what it mapped (names), which datasets became
    stubs and which columns it kept as hyperparameters, then one line per file.
    """
    from metadb.outcomes import import_outcomes

    _echo(import_outcomes(db, pattern, fmt, metric, select, architecture, protocol, pretraining,
                          catalog_names=not no_catalog_names, names_file=names_file))


@click.group()
def scores() -> None:
    """Transferability scores: import published ones, combine them."""


@scores.command("import")
@click.argument("pattern")
@click.option("--metric", required=True, help="Name of the score (logme, leep, ...).")
@click.option("--format", "fmt", type=click.Choice(["matrix", "long"]), default="matrix", show_default=True,
              help="matrix: a source column then one column per target; long: source (or model),target,value.")
@db_option
def scores_import(pattern: str, metric: str, fmt: str, db) -> None:
    """Import scores of one metric from files matching PATTERN."""
    from metadb.outcomes import import_scores

    _echo(import_scores(db, pattern, metric, fmt))


@scores.command("combine")
@click.option("--metrics", required=True, help="Comma-separated scores, e.g. lp,fu.")
@click.option("--as", "name", required=True, help="Name of the combined score, e.g. lpfu.")
@db_option
def scores_combine(metrics: str, name: str, db) -> None:
    """Store the product of min-max normalised scores per target (Juodelyte et al.'s LP x FU)."""
    from metadb.outcomes import store_combination

    click.echo(f"{name}: {store_combination(db, [m.strip() for m in metrics.split(',')], name)} scores stored")


@click.command("import")
@click.argument("pattern")
@click.option("--measure", required=True, help="Name of the distance measure (expert, task2vec, ...).")
@click.option("--format", "fmt", type=click.Choice(["long", "matrix", "cats-scans"]), default="long", show_default=True,
              help="long: target;source;distance or a,b,distance; cats-scans: per-fold distance_1..k columns.")
@db_option
def similarity_import_command(pattern: str, measure: str, fmt: str, db) -> None:
    """Import user-supplied distances (lower = more alike) as a named measure."""
    from metadb.outcomes import import_similarities

    _echo(import_similarities(db, pattern, measure, fmt))


COMMANDS = [outcomes, scores]

if not Path(__file__).with_name("similarity.py").exists():  # else that module's group adds the command
    @click.group("similarity")
    def similarity() -> None:
        """Distances between datasets (lower = more alike)."""

    similarity.add_command(similarity_import_command)
    COMMANDS.append(similarity)

