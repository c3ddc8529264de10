"""Build the evidence packs from the published tables: `python -m metadb.published.build`.

The one source of truth is ../shared/reference (the studies' files, copied unchanged from their
repositories). This script reads them, keeps the numbers as published (no rounding, no derived
values), writes each table as one Parquet file under metadb/published/data/<pack>/, and writes
the pack's manifest.json: the study's citation and what every table means (PACKS below), plus
each file's row count and sha256, which `metadb published import` checks before importing.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
from pathlib import Path
from typing import Any, Callable

import polars as pl

DATA = Path(__file__).resolve().parent / "data"
DEFAULT_REFERENCE = Path(os.environ.get("METADB_REFERENCE",
                                        Path(__file__).resolve().parents[3] / "shared" / "reference"))
JUODELYTE_SCORES = ("logme", "leep", "nleep", "parc", "sfda", "ncti", "lp", "fu")
RUN_COLUMNS = {  # MLflow export column -> pack column; the GPU counters and bookkeeping are left out.
    # Hyperparameters in the exports' (alphabetical) order, so an import stores the same JSON as from the CSVs.
    "Run ID": "run_id", "source_flag": "source", "target_flag": "target", "batch_size": "batch_size",
    "epochs": "epochs", "lr": "lr", "momentum": "momentum", "wd": "wd", "Status": "status", "val_loss": "val_loss",
    "val_auc": "val_auc", "test_auc": "test_auc",
}
INTEGER_RUN_COLUMNS = ("batch_size", "epochs")
TEXT_RUN_COLUMNS = ("run_id", "source", "target", "status")


# --- readers: one published file -> one table, numbers as published ----------------------------
def _floats(df: pl.DataFrame, keep_text: tuple[str, ...]) -> pl.DataFrame:
    return df.with_columns(pl.col(c).cast(pl.Float64) for c in df.columns if c not in keep_text)


def cats_folds(ref: Path) -> pl.DataFrame:
    """auc_folds_means_std.csv; the three pairs not run are `nan` rows (kept, as nulls)."""
    df = pl.read_csv(ref / "cats-scans" / "auc_folds_means_std.csv", null_values=["nan"], infer_schema_length=0)
    return _floats(df, ("source", "target"))


def cats_experts(ref: Path) -> pl.DataFrame:
    """experts_clean.csv: `;`-separated, BOM-prefixed; expert distances are whole numbers 0..6."""
    df = pl.read_csv(ref / "cats-scans" / "experts_clean.csv", separator=";", encoding="utf8-lossy",
                     infer_schema_length=0)
    df = df.rename({c: c.lstrip("\ufeff").strip() for c in df.columns})
    return df.select("target", "source", pl.col("distance").cast(pl.Int64))


def cats_task2vec(ref: Path) -> pl.DataFrame:
    """The per-fold Task2Vec distances of aucs_scores_distances_experts.csv (distance_1..distance_5)."""
    df = pl.read_csv(ref / "cats-scans" / "aucs_scores_distances_experts.csv", infer_schema_length=0)
    return _floats(df.select("source", "target", *[f"distance_{i}" for i in range(1, 6)]), ("source", "target"))


def juodelyte_matrix(name: str) -> Callable[[Path], pl.DataFrame]:
    """A results/<name>_dataset.csv matrix: the pandas index column dropped, empty cells (self pairs) null."""
    def read(ref: Path) -> pl.DataFrame:
        df = pl.read_csv(ref / "juodelyte-2024" / "results" / f"{name}_dataset.csv", infer_schema_length=0)
        return _floats(df.drop(""), ("source",))
    return read


def juodelyte_runs(ref: Path) -> pl.DataFrame:
    """The 12 MLflow exports as one table of runs, in file then row order (selection breaks ties by order).

    Blank lines (all cells empty) are dropped; every other run is kept, whatever its status.
    """
    frames = []
    for path in sorted((ref / "juodelyte-2024" / "finetuned_AUCs").glob("fined_*.csv")):
        df = pl.read_csv(path, infer_schema_length=0, columns=list(RUN_COLUMNS)).select(list(RUN_COLUMNS))
        df = df.rename(RUN_COLUMNS)
        frames.append(df.filter(~pl.all_horizontal(pl.all().is_null())))
    runs = pl.concat(frames)
    return runs.with_columns([pl.col(c).cast(pl.Int64) for c in INTEGER_RUN_COLUMNS]
                             + [pl.col(c).cast(pl.Float64) for c in runs.columns
                                if c not in TEXT_RUN_COLUMNS + INTEGER_RUN_COLUMNS])


# --- the packs: citation, name mapping, tables (what each means, how it is imported) -----------
def _name(study: str, catalog: str, what: str) -> dict[str, str]:
    return {"study": study, "catalog": catalog, "is": what}


SAME_SIZE_OTHER_IMAGES = ("stored under metadb's catalog name {0}, whose own seeded subset has the same size but "
                          "not the same images")
CATS_NAMES = [
    _name("imagenet", "imagenet", "ImageNet-1k (ILSVRC 2012); Keras ResNet-50 ImageNet weights"),
    _name("stl10", "stl10", "STL-10"),
    _name("sti10", "sti10", "the study's own subset of ImageNet, STI-10 (src/io/data_import.py, import_STI10)"),
    _name("textures", "textures", "the Describable Textures Dataset (DTD)"),
    _name("isic", "isic", "ISIC 2018 Task 3 training set (HAM10000)"),
    _name("chest", "chest", "the chest X-ray pneumonia set of Kermany et al. 2018 (Kaggle chest-xray-pneumonia)"),
    _name("kimia", "kimia", "KimiaPath960"),
    _name("pcam-middle", "pcam-middle",
          "the study's own 100,000-image subset of PatchCamelyon (pandas sample, random_state=2, over its PNG "
          "conversion of PCam; src/io/data_import.py); " + SAME_SIZE_OTHER_IMAGES.format("pcam-middle")),
    _name("pcam-small", "pcam-small",
          "the study's own 10,000-image subset of PatchCamelyon (pandas sample, random_state=22); "
          + SAME_SIZE_OTHER_IMAGES.format("pcam-small")),
]
MEDMNIST = ("bloodmnist", "breastmnist", "chestmnist", "dermamnist", "octmnist", "organamnist", "organcmnist",
            "organsmnist", "pathmnist", "pneumoniamnist", "retinamnist", "tissuemnist")
JUODELYTE_NAMES = [
    _name("imagenet", "imagenet", "ImageNet-1k; torchvision ResNet18 weights"),
    _name("radimagenet", "radimagenet", "RadImageNet; ResNet18 pretrained on it by the authors"),
    _name("medmnist", "medmnist", "leave-target-out pretraining on the 11 other MedMNIST sets"),
    *[_name(f.removesuffix("mnist"), f,
            f"MedMNIST v2 {f} at 224x224 (flag `{f.removesuffix('mnist')}` in fined_{f.removesuffix('mnist')}.csv, "
            f"`{f}` in its rows); as a target, the study's subset of 100 training images per class")
      for f in MEDMNIST],
]

PACKS: list[dict[str, Any]] = [
    {
        "name": "cats-scans",
        "version": "1",
        "study": "Cats, not CAT scans: a study of dataset similarity in transfer learning for 2D medical image "
                 "classification",
        "authors": ["Irma van den Brandt", "Floris Fok", "Bas Mulders", "Joaquin Vanschoren", "Veronika Cheplygina"],
        "year": 2021,
        "arxiv": "2107.05940",
        "citation": "van den Brandt et al. 2021, arXiv:2107.05940",
        "repository": "https://github.com/vcheplygina/cats-scans",
        "commit": "9bc5d8a",
        "licence": "none stated",
        "licence_note": "the repository has no licence file; only src/task2vec_fullcode, the vendored Task2Vec code, "
                        "carries one (Apache-2.0)",
        "what": "per-fold AUCs of 24 source->target pairs (ResNet-50, 5-fold CV), expert distances, per-fold "
                "Task2Vec distances",
        "setting": "Keras ResNet-50 pretrained on a source dataset, then fully fine-tuned on a target; 5-fold "
                   "stratified cross-validation on the target; 24 of 27 pairs were run",
        "names": CATS_NAMES,
        "note": "pcam-small and pcam-middle are the study's own PCam subsets (10,000 images, random_state=22; "
                "100,000, random_state=2), stored under metadb's catalog names, whose own seeded subsets hold "
                "other images",
        "tables": [
            {"file": "auc_folds.parquet", "from": "results/auc_folds_means_std.csv", "read": cats_folds,
             "meaning": "target ROC AUC of a ResNet-50 pretrained on `source` and fine-tuned on `target`, per fold "
                        "of 5-fold stratified CV (binary for chest and pcam-middle, one-vs-rest weighted for isic); "
                        "mean and std (ddof=0) over folds as published; all-null rows = pairs not run",
             "units": "AUC, 0..1",
             "import": {"kind": "outcomes", "format": "folds", "metric": "auc", "architecture": "resnet50"}},
            {"file": "experts.parquet", "from": "results/experts_clean.csv", "read": cats_experts,
             "meaning": "expert-judged distance between the target's and the source's domain, per (target, source); "
                        "0 = same domain",
             "units": "ordinal, 0..6",
             "import": {"kind": "similarities", "format": "long", "measure": "expert"}},
            {"file": "task2vec_folds.parquet", "from": "results/aucs_scores_distances_experts.csv",
             "read": cats_task2vec,
             "meaning": "Task2Vec cosine distance (Achille et al.'s code) between the source and the target subset "
                        "of fold i; imported as their mean over folds",
             "units": "normalised cosine distance, 0..1",
             "import": {"kind": "similarities", "format": "cats-scans", "measure": "task2vec"}},
        ],
        "figures": [
            {"figure": "targets whose best source is imagenet (isic, chest, pcam-middle)", "published": "3",
             "check": "best_source", "params": {"source": "imagenet", "targets": ["isic", "chest", "pcam-middle"]}},
            {"figure": "Task2Vec distance vs relative AUC gain, Pearson r", "published": "-0.11",
             "query": "correlate", "params": {"measure": "task2vec", "outcome": "relative_gain"},
             "column": "pearson_r"},
            {"figure": "Task2Vec distance vs relative AUC gain, p", "published": "0.61",
             "query": "correlate", "params": {"measure": "task2vec", "outcome": "relative_gain"},
             "column": "pearson_p"},
            {"figure": "expert distance vs relative AUC gain, Pearson r", "published": "0.24",
             "query": "correlate", "params": {"measure": "expert", "outcome": "relative_gain"},
             "column": "pearson_r"},
            {"figure": "expert distance vs relative AUC gain, p", "published": "0.26",
             "query": "correlate", "params": {"measure": "expert", "outcome": "relative_gain"},
             "column": "pearson_p"},
        ],
        "figures_source": "the paper's abstract (ImageNet is the source leading to the highest performances) and its "
                          "figures of transferability vs Task2Vec and expert distance "
                          "(figures/transferability_task2vec.png, figures/trasferability_experts.png)",
    },
    {
        "name": "juodelyte-2024",
        "version": "1",
        "study": "On dataset transferability in medical image classification",
        "authors": ["Dovile Juodelyte", "Enzo Ferrante", "Yucheng Lu", "Prabhant Singh", "Joaquin Vanschoren",
                    "Veronika Cheplygina"],
        "year": 2024,
        "arxiv": "2412.20172",
        "citation": "Juodelyte et al. 2024, arXiv:2412.20172",
        "repository": "https://github.com/DovileDo/transferability-in-medical-imaging",
        "commit": "7e308c4",
        "licence": "MIT",
        "what": "20,157 fine-tuning runs (15 sources x 12 MedMNIST targets x 120 configurations), the selected "
                "runs' AUC matrix, 8 transferability metric score tables",
        "setting": "ResNet18 sources fine-tuned on 12 MedMNIST 2D targets at 224x224 (100 training images per "
                   "class); 120-configuration hyperparameter grid per (source, target); a pair's ground truth is "
                   "the test AUC of its run with the lowest validation loss",
        "names": JUODELYTE_NAMES,
        "tables": [
            {"file": "runs.parquet", "from": "finetuned_AUCs/fined_*.csv", "read": juodelyte_runs,
             "meaning": "every fine-tuning run of the MLflow exports: run id, source, target, hyperparameters "
                        "(batch_size, epochs, lr, momentum, wd), status, validation loss and AUC, test AUC; "
                        "blank lines dropped, GPU counters and bookkeeping columns left out",
             "units": "lr, momentum, wd as given to SGD; loss: cross-entropy; AUC 0..1",
             "import": {"kind": "outcomes", "format": "mlflow", "metric": "test_auc", "select": "min:val_loss",
                        "architecture": "resnet18"}},
            {"file": "aucs.parquet", "from": "results/AUCs_dataset.csv", "read": juodelyte_matrix("AUCs"),
             "meaning": "ground truth per pair: test AUC of the run with the lowest validation loss (rows = "
                        "sources, columns = targets, null = self); not imported: import recomputes it from "
                        "runs.parquet, and verify checks the two agree",
             "units": "AUC, 0..1", "import": None},
            *[{"file": f"{m}.parquet", "from": f"results/{m}_dataset.csv", "read": juodelyte_matrix(m),
               "meaning": f"{m} transferability score of each source (row) for each target (column), on the "
                          "target's training subset; null = self",
               "units": "the metric's own (higher = more transferable)",
               "import": {"kind": "scores", "format": "matrix", "metric": m}} for m in JUODELYTE_SCORES],
        ],
        "combine": {"metrics": ["lp", "fu"], "as": "lpfu"},
        "figures": [
            {"figure": "selected runs reproduce the published AUC matrix (pairs)", "published": "168",
             "check": "selection"},
            *[{"figure": f"mean weighted Kendall tau, {label}", "published": value, "query": "metric_agreement",
               "params": {"metric": m}, "column": "weighted_tau", "row": "last"}
              for m, label, value in (("logme", "LogME", "0.335"), ("leep", "LEEP", "0.351"),
                                      ("nleep", "N-LEEP", "0.411"), ("parc", "PARC", "0.297"),
                                      ("sfda", "SFDA (9 targets)", "0.267"), ("ncti", "NCTI", "0.183"),
                                      ("lpfu", "LP x FU", "0.52"))],
        ],
        "figures_source": "the paper's table of mean weighted Kendall tau over the MedMNIST targets "
                          "(scipy.stats.weightedtau, chestmnist excluded)",
    },
]


# --- writing -----------------------------------------------------------------------------------
def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def build(reference: Path = DEFAULT_REFERENCE, out: Path = DATA) -> list[Path]:
    """Write every pack under `out`; returns the manifests written."""
    if not (reference / "README.md").exists():
        raise SystemExit(f"{reference}: not the published reference folder (no README.md); pass --reference")
    written = []
    for spec in PACKS:
        folder = out / spec["name"]
        folder.mkdir(parents=True, exist_ok=True)
        tables = []
        for table in spec["tables"]:
            path = folder / table["file"]
            frame = table["read"](reference)
            frame.write_parquet(path, compression="zstd", compression_level=19, statistics=False)
            entry = {k: v for k, v in table.items() if k != "read"}
            tables.append({**entry, "rows": frame.height, "columns": frame.columns, "bytes": path.stat().st_size,
                           "sha256": sha256(path)})
        manifest = {**spec, "tables": tables}
        (folder / "manifest.json").write_text(json.dumps(manifest, indent=2, ensure_ascii=False) + "\n")
        written.append(folder / "manifest.json")
    return written


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reference", type=Path, default=DEFAULT_REFERENCE, help="the published tables folder")
    parser.add_argument("--out", type=Path, default=DATA, help="where the packs go (default: the package's data/)")
    args = parser.parse_args()
    for manifest in build(args.reference, args.out):
        print(f"wrote {manifest.parent} ({sum(p.stat().st_size for p in manifest.parent.iterdir()):,} bytes)")


if __name__ == "__main__":
    main()
