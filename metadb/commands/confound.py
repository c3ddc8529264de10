"""`metadb confound`: fine-tune sources on confounded variants of a binary target ("Source Matters")."""

from __future__ import annotations

import click

from metadb.commands import db_option
from metadb.commands.finetune import EXTRAS, OVERRIDE_HELP, _progress, _protocol_option


@click.command(context_settings=EXTRAS, epilog=OVERRIDE_HELP.split(";")[0] + ".")
@click.option("--target", required=True, help="Ingested binary target dataset.")
@click.option("--kind", required=True, type=click.Choice(["tag", "lowpass", "noise", "attribute"]),
              help="tag: a white R; lowpass: FFT circular low-pass; noise: Poisson photon noise; "
                   "attribute: a labels-CSV column (e.g. sex) correlated with the label.")
@click.option("--rate", required=True, help="Comma-separated shares of training positives that carry the confounder, "
                                            "e.g. 0,0.2,0.5,0.8,1.")
@click.option("--sources", required=True, help="Comma-separated registered models, random, or all.")
@_protocol_option
@click.option("--positive", help="Class that carries the confounder in training (default: the last class by name).")
@click.option("--column", help="attribute: the labels-CSV column (e.g. sex).")
@click.option("--value", help="attribute: its value that confounds (e.g. F).")
@click.option("--group", help="attribute: the patient column (default: one named patient, patient_id, pid, subject or "
                   "subject_id); no patient is in two splits.")
@click.option("--seed", type=int, default=42, show_default=True, help="Seed of which images carry the confounder.")
@click.option("--device", help="cpu, cuda, cuda:N or mps (default: CUDA when present).")
@click.option("--workers", type=int, help="Decoding processes per trial (default: 0 on CPU, up to 8 on GPU).")
@click.option("--quiet", is_flag=True, help="No progress bars.")
@db_option
@click.pass_context
def confound(ctx, target, kind, rate, sources, protocol, positive, column, value, group, seed, device, workers, quiet,
             db) -> None:
    """Fine-tune sources on a target whose positives carry a confounder; test clean and with confounded negatives.

    Each rate is a derived dataset (TARGET+KIND@RATE, lineage and recipe stored); each source x rate x fold
    trial stores outcomes auc_clean and auc_confounded_negatives. Rerunning skips stored trials.
    Then: metadb query robustness --target TARGET.
    """
    from metadb.confound import study
    from metadb.finetune.protocol import parse_overrides

    overrides, grid = parse_overrides(ctx.args)
    if grid:
        from metadb.errors import MetadbError

        raise MetadbError("--grid: confound varies --rate only", "give other protocol fields one value each")
    recipes = study.confounders(db, target, kind, study.parse_rates(rate), positive, seed, column, value, group)
    summary = study.run(db, target, sources.split(","), protocol, recipes, overrides, device, workers,
                        _progress(quiet), on_record=lambda spec, rec: click.echo(study.trial_line(spec, rec)))
    click.echo(summary.line())


COMMANDS = [confound]
