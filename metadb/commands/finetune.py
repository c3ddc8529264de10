"""`metadb finetune`, `metadb pretrain`, `metadb runs`: metadb's own transfer experiments."""

from __future__ import annotations

import click

from metadb.commands import db_option, executor_option
from metadb.output import output_options, render

EXTRAS = {"ignore_unknown_options": True, "allow_extra_args": True}
OVERRIDE_HELP = ("Any protocol field can be overridden after the options, e.g. `--epochs 3 --image-size 64 "
                 "--lr 1e-4`; `--grid lr=1e-4,1e-3 momentum=0,0.9` runs every combination.")


def _protocol_option(fn):
    from metadb.finetune.protocol import available

    return click.option("--protocol", required=True, type=click.Choice(available()),
                        help="Protocol file: the study whose training recipe to follow.")(fn)


def _progress(quiet: bool) -> bool | None:
    return False if quiet else None  # None: tqdm shows bars on a terminal only


@click.command(context_settings=EXTRAS, epilog=OVERRIDE_HELP)
@click.option("--target", required=True, help="Ingested target dataset.")
@click.option("--sources", required=True, help="Comma-separated registered models, random, or all.")
@_protocol_option
@click.option("--device", help="cpu, cuda, cuda:N or mps (default: CUDA when present).")
@click.option("--workers", type=int, help="Decoding processes per trial (default: 0 on CPU, up to 8 on GPU).")
@click.option("--quiet", is_flag=True, help="No progress bars.")
@click.option("--mlflow", "mlflow_uri", metavar="URI",
              help="Also log each trial as an MLflow run (e.g. file:./mlruns); needs pip install metadb[mlflow].")
@executor_option
@db_option
@click.pass_context
def finetune(ctx, target, sources, protocol, device, workers, quiet, mlflow_uri, executor, db) -> None:
    """Fine-tune sources on a target under a protocol; every trial becomes a run and an outcome.

    Rerunning the same command skips stored trials (a killed one starts over).
    """
    from metadb.finetune.protocol import parse_overrides
    from metadb.finetune.runner import finetune as run, trial_line

    overrides, grid = parse_overrides(ctx.args)
    summary = run(db, target, sources.split(","), protocol, overrides, grid, device, workers, _progress(quiet),
                  on_record=lambda spec, rec: click.echo(trial_line(spec, rec)), mlflow=mlflow_uri, executor=executor)
    click.echo(summary.line())


@click.command(context_settings=EXTRAS, epilog=OVERRIDE_HELP)
@click.option("--dataset", required=True, help="Ingested dataset to pretrain on.")
@click.option("--arch", help="timm architecture (default: the protocol's).")
@_protocol_option
@click.option("--name", help="Name to register the model under (default: <dataset>-<arch>).")
@click.option("--device", help="cpu, cuda, cuda:N or mps (default: CUDA when present).")
@click.option("--workers", type=int, help="Decoding processes (default: 0 on CPU, up to 8 on GPU).")
@click.option("--quiet", is_flag=True, help="No progress bar.")
@db_option
@click.pass_context
def pretrain(ctx, dataset, arch, protocol, name, device, workers, quiet, db) -> None:
    """Train a source model from scratch on a dataset and register it for `metadb finetune`."""
    from metadb.finetune.protocol import parse_overrides
    from metadb.finetune.runner import pretrain as run

    overrides, grid = parse_overrides(ctx.args)
    if grid:
        raise click.UsageError("pretrain trains one model; --grid is for finetune")
    model, rec = run(db, dataset, arch, protocol, overrides, name, device, workers, _progress(quiet))
    if rec is None:
        click.echo(f"{model}: already pretrained and registered; nothing to do")
    else:
        click.echo(f"{model}: {rec.n_outputs}-output {protocol} model trained on {dataset} ({rec.n_train} images), "
                   f"val AUC {rec.val_auc:.4f}, test AUC {rec.test_auc:.4f}, best epoch {rec.best_epoch}, "
                   f"{rec.wall_s:.1f} s on {rec.device}; registered as model {model}")


@click.command()
@click.option("--target", help="Only this target's runs.")
@db_option
@output_options
def runs(target, db, fmt) -> None:
    """List fine-tuning and pretraining runs: status, what varied, best epoch, AUCs, time, device."""
    from metadb.finetune.runner import list_runs

    render(*list_runs(db, target), fmt=fmt)


@click.command("protocols")
@output_options
def protocols(fmt) -> None:
    """List fine-tuning protocols side by side: every field (overridable as --field VALUE) and its value."""
    from metadb.finetune.protocol import available, load

    loaded = [load(n).as_dict() for n in available()]
    fields = [f for f in loaded[0] if f != "name"]
    render(["field", *available()], [[f.replace("_", "-"), *(p[f] for p in loaded)] for f in fields], fmt=fmt)


COMMANDS = [finetune, pretrain, runs, protocols]
