"""Fine-tuning runner overhead: metadb's per-epoch time against a bare PyTorch training loop.

Same run, same machine, same model (timm `test_resnet` + dropout + linear head, random init), same
data (real scikit-learn digits, 10 classes, PNGs in imagefolder layout, decoded per item with the
same torchvision transforms), same batch size, optimiser (Adam) and per-epoch validation AUC.
The baseline is the loop a user would write: torchvision ImageFolder, DataLoader, train, then a
validation pass with roc_auc_score. The runner's epoch is everything inside its loop (train, LR
schedule, validation loss and AUC, keeping the best epoch, progress bar). Trials alternate
(runner, bare, runner, ...) and the median epoch after the first is compared, so machine load
hits both alike.

    python bench/bench_finetune.py [--images-per-class 60] [--epochs 4] [--rounds 3] [--size 32]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def write_digits(root: Path, per_class: int) -> None:
    from PIL import Image
    from sklearn.datasets import load_digits

    d = load_digits()
    for label in range(10):
        idx = np.flatnonzero(d.target == label)[:per_class]
        for k, i in enumerate(idx):
            split = "val" if k % 5 == 0 else "train"
            folder = root / split / f"digit{label}"
            folder.mkdir(parents=True, exist_ok=True)
            Image.fromarray((d.images[i] * 16).clip(0, 255).astype(np.uint8)).save(folder / f"{i}.png")


def bare_loop(root: Path, p, epochs: int, seed: int) -> list[float]:
    """The baseline: a plain PyTorch loop on the same model, data, transforms and batch size."""
    import timm
    import torch
    import torch.nn as nn
    from sklearn.metrics import roc_auc_score
    from torchvision.datasets import ImageFolder

    from metadb.finetune.data import transforms

    torch.manual_seed(seed)
    backbone = timm.create_model(p.architecture, pretrained=False, num_classes=0)
    model = nn.Sequential(backbone, nn.Dropout(p.dropout), nn.Linear(backbone.num_features, 10))
    train = torch.utils.data.DataLoader(ImageFolder(str(root / "train"), transforms(p, True, False)),
                                        batch_size=p.batch_size, shuffle=True,
                                        generator=torch.Generator().manual_seed(seed))
    val = torch.utils.data.DataLoader(ImageFolder(str(root / "val"), transforms(p, False, False)),
                                      batch_size=p.batch_size)
    opt = torch.optim.Adam(model.parameters(), lr=p.lr)
    loss_fn = nn.CrossEntropyLoss()
    times = []
    for _ in range(epochs):
        t0 = time.perf_counter()
        model.train()
        for x, y in train:
            opt.zero_grad()
            loss = loss_fn(model(x), y)
            loss.backward()
            opt.step()
        model.eval()
        probs, ys = [], []
        with torch.inference_mode():
            for x, y in val:
                probs.append(model(x).softmax(-1).numpy())
                ys.append(y.numpy())
        roc_auc_score(np.concatenate(ys), np.concatenate(probs), multi_class="ovr")
        times.append(time.perf_counter() - t0)
    return times


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images-per-class", type=int, default=60)
    ap.add_argument("--epochs", type=int, default=4)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--size", type=int, default=32)
    ap.add_argument("--threads", type=int, default=1, help="torch intra-op threads (1: steadier on a shared machine)")
    args = ap.parse_args()

    import torch

    from metadb import api
    from metadb.finetune import runner
    from metadb.finetune.trial import run_trial

    torch.set_num_threads(args.threads)
    work = Path(tempfile.mkdtemp(prefix="bench_finetune_"))
    write_digits(work / "digits", args.images_per_class)
    db = str(work / "store.duckdb")
    api.ingest(db, path=work / "digits", name="digits", workers=1)
    # cats-scans recipe minus class weights (the bare loop has none): Adam, flip/rotate/shift, last epoch kept;
    # the ingested train/val splits stand in for folds so both loops see the same images.
    overrides = {"architecture": "test_resnet", "image_size": args.size, "epochs": args.epochs, "batch_size": 32,
                 "lr": 1e-3, "class_weights": "none", "folds": 1, "fold_scheme": "sampled",
                 "train_per_class": args.images_per_class * 4 // 5, "val_per_class": args.images_per_class // 5}
    spec = runner.plan(db, "digits", ["random"], "cats-scans", overrides, progress=False)[0]
    ours, bare = [], []
    for r in range(args.rounds):
        rec = run_trial(spec)
        ours += [c["seconds"] for c in rec.curves[1:]]
        bare += bare_loop(work / "digits", spec.protocol, args.epochs, spec.protocol.seed)[1:]
        print(f"round {r + 1}: runner {statistics.median(ours):.3f} s/epoch, bare {statistics.median(bare):.3f} s/epoch "
              f"(train {rec.n_train}, val {rec.n_val} images)", flush=True)
    m_ours, m_bare = statistics.median(ours), statistics.median(bare)
    print(f"per-epoch median over {len(ours)} epochs each: runner {m_ours:.3f} s, bare PyTorch loop {m_bare:.3f} s; "
          f"runner / bare = {m_ours / m_bare:.3f} (overhead {100 * (m_ours / m_bare - 1):+.1f} %)")


if __name__ == "__main__":
    main()
