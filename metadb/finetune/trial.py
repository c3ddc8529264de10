"""One fine-tuning (or pretraining) trial: `run_trial(spec) -> TrialRecord`, a pure function of its spec.

This is the executor seam: a trial reads its target through the dataset's loader, trains, writes
its own artifacts (best checkpoint and per-epoch curves, each via a temporary file and a rename)
and returns a record. It never touches the store; the driver alone writes rows, so trials can run
in this process, a process pool or a cluster without changing anything here.

Same code on CPU and GPU: on CUDA the model is channels_last, batches come through pinned memory
and worker processes, and the forward pass runs under float16 autocast with a gradient scaler.
With a seed on one device, a trial is reproducible (the same AUC to 1e-6 on CPU).
"""

from __future__ import annotations

import copy
import hashlib
import json
import math
import os
import platform
import random
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from metadb.errors import MetadbError
from metadb.finetune import data as D
from metadb.finetune.protocol import Protocol


@dataclass(frozen=True)
class SourceModel:
    """Where a trial's weights start: a registered model, or `random` initialisation of an architecture."""

    name: str
    architecture: str
    weights_ref: str            # random-init, file:<path>, package:<name>, hf-cache:<path>
    weights_sha256: str | None
    imagenet: bool = False      # pretrained on ImageNet (normalize = by-source picks ImageNet statistics)


@dataclass(frozen=True)
class TrialSpec:
    run_id: str
    kind: str                   # finetune or pretrain
    source: SourceModel
    target: str
    layout: str                 # the target's loader, as ingest recorded it
    root: str
    loader_params: str          # JSON
    label_type: str
    protocol: Protocol
    fold: int                   # 1-based; 0 for pretraining's single split
    artifacts_dir: str
    device: str | None = None
    workers: int | None = None
    exclude_paths: tuple[str, ...] = ()   # images ingest could not decode
    progress: bool | None = None
    confounder: Any = None      # metadb.confound.variant.Confounder: a read-time confounded variant of the target


@dataclass
class TrialRecord:
    run_id: str
    status: str                 # finished or diverged
    best_epoch: int | None
    epochs_run: int
    val_auc: float | None
    val_loss: float | None
    test_auc: float | None
    test_loss: float | None
    n_train: int
    n_val: int
    n_test: int
    wall_s: float
    device: str
    versions: dict[str, str]
    classes: list[str]
    curves: list[dict[str, float]] = field(default_factory=list)
    curves_path: str | None = None
    checkpoint_path: str | None = None
    checkpoint_sha256: str | None = None
    n_outputs: int = 0
    extra_tests: dict[str, tuple[float, float]] = field(default_factory=dict)  # name -> (loss, AUC), e.g. confounded


def run_trial(spec: TrialSpec) -> TrialRecord:
    """Train one trial to its protocol's end and evaluate its kept (best) epoch."""
    import torch
    from tqdm import tqdm

    from metadb.backbones import pick_device

    t0 = time.perf_counter()
    p = spec.protocol
    dev = pick_device(spec.device)
    cuda = dev.startswith("cuda")
    _seed_everything(p.seed)
    items = D.read_items(spec.layout, spec.root, json.loads(spec.loader_params or "{}"), spec.label_type, spec.target)
    if spec.exclude_paths:
        skip = set(spec.exclude_paths)
        keep = np.array([r.path not in skip for r in items.records])
        items = D.Items([r for r, k in zip(items.records, keep) if k], items.y[keep], items.classes,
                        items.multi_label, items.splits[keep])
    none = np.array([], dtype=np.int64)
    own_splits = spec.confounder is not None and spec.confounder.own_splits
    train_idx, val_idx, test_idx = (D.pretrain_indices(items, p) if spec.kind == "pretrain"
                                    else (none, none, none) if own_splits else D.fold_indices(items, p, spec.fold))
    bound = None
    if spec.confounder is not None:  # the confounder may choose its own splits (attribute) and alters images as read
        bound = spec.confounder.bind(items, (train_idx, val_idx, test_idx), spec.fold, p.folds)
        train_idx, val_idx, test_idx = bound.train, bound.val, bound.test
    single = not items.multi_label and items.n_outputs == 2 and p.binary_head == "single-logit"
    n_out = 1 if single else items.n_outputs
    model = build_model(spec.source, n_out, p.dropout).to(dev)
    if cuda:
        model = model.to(memory_format=torch.channels_last)
    loss_fn = Loss(items, train_idx, p, single)
    loaders = _loaders(items, (train_idx, val_idx, test_idx), p, spec, cuda, bound)
    opt, sched = _optimiser(model, p)
    scaler = torch.amp.GradScaler("cuda", enabled=cuda)
    best = Best(p.early_stopping)
    curves, status = [], "finished"
    bar = tqdm(range(1, p.epochs + 1), desc=f"{spec.source.name}->{spec.target} f{spec.fold}", unit="epoch",
               leave=False, disable=not spec.progress if spec.progress is not None else None)
    for epoch in bar:
        e0 = time.perf_counter()
        train_loss = _train_epoch(model, loaders[0], loss_fn, opt, scaler, dev, cuda)
        lr = opt.param_groups[0]["lr"]
        if sched is not None:
            sched.step()
        if not math.isfinite(train_loss):
            status = "diverged"
            curves.append({"epoch": epoch, "train_loss": train_loss, "val_loss": math.nan, "val_auc": math.nan,
                           "lr": lr, "seconds": time.perf_counter() - e0})
            break
        val_loss, val_auc = evaluate(model, loaders[1], loss_fn, items, p, single, dev, cuda)
        curves.append({"epoch": epoch, "train_loss": train_loss, "val_loss": val_loss, "val_auc": val_auc,
                       "lr": lr, "seconds": time.perf_counter() - e0})
        bar.set_postfix(loss=f"{train_loss:.3f}", val_auc=f"{val_auc:.3f}")
        stale = best.update(epoch, val_loss, val_auc, model)
        curves[-1]["seconds"] = time.perf_counter() - e0  # the whole epoch: train, evaluate, keep the best
        if stale and p.patience and epoch - best.epoch >= p.patience:
            break
    bar.close()
    out = Path(spec.artifacts_dir)
    out.mkdir(parents=True, exist_ok=True)
    rec = TrialRecord(spec.run_id, status, None, len(curves), None, None, None, None, len(train_idx), len(val_idx),
                      len(test_idx), 0.0, dev, versions(), items.classes, curves, n_outputs=n_out)
    rec.curves_path = str(_write_curves(out / f"{spec.run_id}.curves.parquet", curves))
    if status == "finished" and best.state is not None:
        model.load_state_dict(best.state)
        rec.best_epoch = best.epoch
        rec.val_loss, rec.val_auc = evaluate(model, loaders[1], loss_fn, items, p, single, dev, cuda)
        if loaders[2] is not None:
            rec.test_loss, rec.test_auc = evaluate(model, loaders[2], loss_fn, items, p, single, dev, cuda)
        for name, loader in (_extra_test_loaders(items, p, spec, cuda, bound) if bound else {}).items():
            rec.extra_tests[name] = evaluate(model, loader, loss_fn, items, p, single, dev, cuda)
        path = out / f"{spec.run_id}.pt"
        state = full_checkpoint(model, spec.source.architecture, n_out) if spec.kind == "pretrain" else model.state_dict()
        rec.checkpoint_path, rec.checkpoint_sha256 = str(path), _save(state, path)
    rec.wall_s = time.perf_counter() - t0
    return rec


def _seed_everything(seed: int) -> None:
    import torch

    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    out = {"python": platform.python_version()}
    for pkg in ("metadb", "torch", "torchvision", "timm", "scikit-learn", "numpy"):
        try:
            out[pkg] = version(pkg)
        except PackageNotFoundError:
            out[pkg] = "unknown"
    return out


# --- model -------------------------------------------------------------------------------------
def build_model(source: SourceModel, n_out: int, dropout: float):
    """The source's feature extractor (its own head removed) -> dropout -> a new linear head."""
    from collections import OrderedDict

    import timm
    import torch.nn as nn

    if source.weights_ref == "random-init":
        backbone = timm.create_model(source.architecture, pretrained=False, num_classes=0)
    elif source.weights_ref.startswith("file:"):
        backbone = _from_file(source)
    else:
        from metadb.models import load

        backbone = load(source.name, source.architecture, source.weights_ref, with_head=False).model
    width = getattr(backbone, "head_hidden_size", None) or backbone.num_features
    head = nn.Sequential(nn.Dropout(dropout), nn.Linear(width, n_out))
    return nn.Sequential(OrderedDict(backbone=backbone, head=head))


def _from_file(source: SourceModel):
    """A checkpoint's feature extractor: any classifier in it is dropped, every other tensor must fit."""
    import timm

    from metadb.backbones import load_state_dict

    path = Path(source.weights_ref.split(":", 1)[1])
    if not path.exists():
        raise MetadbError(f"model {source.name}: its weights file {path} is gone",
                          f"put it back, or re-add the model: metadb models add {source.name} --arch "
                          f"{source.architecture} --weights FILE")
    backbone = timm.create_model(source.architecture, pretrained=False, num_classes=0)
    classifier = backbone.pretrained_cfg.get("classifier") or ""
    state = {k: v for k, v in load_state_dict(path).items() if not (classifier and k.startswith(classifier + "."))}
    try:
        missing, unexpected = backbone.load_state_dict(state, strict=False)
    except RuntimeError as e:
        bad = str(e).split("size mismatch for ", 1)[-1].split("\n")[0][:120]
        raise MetadbError(f"model {source.name}: checkpoint {path} does not fit {source.architecture} ({bad})") from None
    if missing or unexpected:
        what = f"missing {missing[:3]}" if missing else f"unexpected {unexpected[:3]}"
        raise MetadbError(f"model {source.name}: checkpoint {path} does not fit {source.architecture} "
                          f"({len(missing)} tensors missing, {len(unexpected)} unexpected; {what})")
    return backbone


def full_checkpoint(model, architecture: str, n_out: int) -> dict[str, Any]:
    """A pretrained model as timm's own architecture with an n_out-class classifier (the new head's Linear)."""
    import timm

    backbone, linear = model.backbone, model.head[1]
    full = timm.create_model(architecture, pretrained=False, num_classes=n_out)
    state = dict(backbone.state_dict())
    classifier = full.pretrained_cfg.get("classifier") or "fc"
    state[f"{classifier}.weight"], state[f"{classifier}.bias"] = linear.weight, linear.bias
    try:
        full.load_state_dict(state)
    except RuntimeError:
        return dict(backbone.state_dict())  # a classifier that is not one Linear: keep the features only
    return full.state_dict()


def _save(state: dict[str, Any], path: Path) -> str:
    import torch

    tmp = path.with_suffix(".tmp")
    torch.save({k: v.detach().cpu() for k, v in state.items()}, tmp)
    digest = hashlib.sha256(tmp.read_bytes()).hexdigest()
    tmp.replace(path)
    return digest


def _write_curves(path: Path, curves: list[dict[str, float]]) -> Path:
    import pyarrow as pa
    import pyarrow.parquet as pq

    cols = ("epoch", "train_loss", "val_loss", "val_auc", "lr", "seconds")
    table = pa.table({c: [row[c] for row in curves] for c in cols},
                     schema=pa.schema([("epoch", pa.int32())] + [(c, pa.float64()) for c in cols[1:]]))
    tmp = path.with_suffix(".tmp")
    pq.write_table(table, tmp)
    tmp.replace(path)
    return path


# --- training ----------------------------------------------------------------------------------
class Loss:
    """Per-sample loss, class-weighted like Keras' class_weight (weights times losses, mean over the batch)."""

    def __init__(self, items: D.Items, train_idx: np.ndarray, p: Protocol, single: bool):
        self.multi, self.single = items.multi_label, single
        self.weights = None
        if p.class_weights == "balanced" and not items.multi_label:
            from sklearn.utils.class_weight import compute_class_weight

            y = items.y[train_idx]
            present = np.unique(y)
            w = np.ones(items.n_outputs)
            w[present] = compute_class_weight("balanced", classes=present, y=y)
            self.weights = w

    def __call__(self, logits, y, weighted: bool = True):
        import torch
        import torch.nn.functional as F

        logits = logits.float()
        if self.multi:
            per = F.binary_cross_entropy_with_logits(logits, y.float(), reduction="none").mean(1)
        elif self.single:
            per = F.binary_cross_entropy_with_logits(logits[:, 0], y.float(), reduction="none")
        else:
            per = F.cross_entropy(logits, y.long(), reduction="none")
        if weighted and self.weights is not None:
            per = per * torch.as_tensor(self.weights, dtype=per.dtype, device=per.device)[y.long()]
        return per.mean()


class Best:
    """Keeps the state of the best epoch under the protocol's criterion (strict improvement; none = last)."""

    def __init__(self, criterion: str):
        self.criterion, self.epoch, self.value, self.state = criterion, 0, None, None

    def update(self, epoch: int, val_loss: float, val_auc: float, model) -> bool:
        """Record the epoch; True when it did not improve (counts towards patience)."""
        if self.criterion == "none":  # the last epoch is kept: the model itself, no copy needed
            self.epoch, self.state = epoch, model.state_dict()
            return False
        value = {"val_auc": val_auc, "val_loss": -val_loss}[self.criterion]
        if math.isfinite(value) and (self.value is None or value > self.value):
            self.epoch, self.value, self.state = epoch, value, copy.deepcopy(model.state_dict())
            return False
        if self.state is None:  # keep something even if the criterion is undefined so far
            self.epoch, self.state = epoch, copy.deepcopy(model.state_dict())
        return True


def _loaders(items: D.Items, idx, p: Protocol, spec: TrialSpec, cuda: bool, bound=None):
    import torch

    workers = spec.workers if spec.workers is not None else (min(8, os.cpu_count() or 1) if cuda else 0)
    gen = torch.Generator().manual_seed(p.seed)
    common = {"batch_size": p.batch_size, "num_workers": workers, "pin_memory": cuda,
              "persistent_workers": workers > 0}
    alter_fit, alter_test = (bound.alter_train, bound.alter_test) if bound else (None, None)
    train_set = D.ImageSet(items, idx[0], D.transforms(p, True, spec.source.imagenet), alter_fit)
    if len(train_set) == 0 or len(idx[1]) == 0:
        raise MetadbError(f"{spec.target}: empty training or validation set ({len(train_set)} / {len(idx[1])} images)")
    train = torch.utils.data.DataLoader(train_set, shuffle=True, generator=gen,
                                        drop_last=len(train_set) % p.batch_size == 1, **common)
    plain = D.transforms(p, False, spec.source.imagenet)
    val = torch.utils.data.DataLoader(D.ImageSet(items, idx[1], plain, alter_fit), shuffle=False, **common)
    test = (torch.utils.data.DataLoader(D.ImageSet(items, idx[2], plain, alter_test), shuffle=False, **common)
            if len(idx[2]) else None)
    return train, val, test


def _extra_test_loaders(items: D.Items, p: Protocol, spec: TrialSpec, cuda: bool, bound) -> dict[str, Any]:
    """A confounder's further test sets (e.g. the test images with the confounder on the negatives)."""
    import torch

    plain = D.transforms(p, False, spec.source.imagenet)
    return {name: torch.utils.data.DataLoader(D.ImageSet(items, idx, plain, alter), batch_size=p.batch_size,
                                              shuffle=False, num_workers=0)
            for name, (idx, alter) in bound.tests.items() if len(idx)}


def _optimiser(model, p: Protocol):
    import torch

    if p.optimizer == "adam":
        opt = torch.optim.Adam(model.parameters(), lr=p.lr, weight_decay=p.weight_decay)
    else:
        opt = torch.optim.SGD(model.parameters(), lr=p.lr, momentum=p.momentum,
                              nesterov=p.nesterov and p.momentum > 0, weight_decay=p.weight_decay)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=p.epochs) if p.scheduler == "cosine" else None
    return opt, sched


def _train_epoch(model, loader, loss_fn, opt, scaler, dev: str, cuda: bool) -> float:
    import torch

    model.train()
    total, n = 0.0, 0
    for x, y in loader:
        x, y = x.to(dev, non_blocking=True), y.to(dev, non_blocking=True)
        if cuda:
            x = x.contiguous(memory_format=torch.channels_last)
        opt.zero_grad(set_to_none=True)
        with torch.autocast("cuda", dtype=torch.float16, enabled=cuda):
            loss = loss_fn(model(x), y)
        scaler.scale(loss).backward()
        scaler.step(opt)
        scaler.update()
        total += float(loss.detach()) * len(x)
        n += len(x)
    return total / max(n, 1)


def evaluate(model, loader, loss_fn, items: D.Items, p: Protocol, single: bool, dev: str, cuda: bool):
    """(mean unweighted loss, AUC) over a loader, in eval mode."""
    import torch

    model.eval()
    probs, ys, total, n = [], [], 0.0, 0
    with torch.inference_mode():
        for x, y in loader:
            x, y = x.to(dev, non_blocking=True), y.to(dev, non_blocking=True)
            if cuda:
                x = x.contiguous(memory_format=torch.channels_last)
            with torch.autocast("cuda", dtype=torch.float16, enabled=cuda):
                logits = model(x).float()
            total += float(loss_fn(logits, y, weighted=False)) * len(x)
            n += len(x)
            probs.append((logits.sigmoid() if items.multi_label or single else logits.softmax(-1)).cpu().numpy())
            ys.append(y.cpu().numpy())
    return total / max(n, 1), auc(np.concatenate(ys), np.concatenate(probs), items.multi_label, p.auc)


def auc(y: np.ndarray, probs: np.ndarray, multi_label: bool, average: str) -> float:
    """Binary AUC; multi-class one-vs-rest (weighted or macro) or micro; multi-label mean per-label AUC.

    NaN when undefined (a validation set holding one class only).
    """
    from sklearn.metrics import roc_auc_score
    from sklearn.preprocessing import label_binarize

    if multi_label:
        per = [roc_auc_score(y[:, j], probs[:, j]) for j in range(y.shape[1]) if 0 < y[:, j].sum() < len(y)]
        return float(np.mean(per)) if per else math.nan
    if len(np.unique(y)) < 2:
        return math.nan
    n_classes = max(probs.shape[1], 2)
    if n_classes == 2:
        if average == "micro" and probs.shape[1] == 2:
            return float(roc_auc_score(label_binarize(y, classes=[0, 1, 2])[:, :2], probs, average="micro"))
        return float(roc_auc_score(y, probs[:, -1]))
    if average == "micro":
        return float(roc_auc_score(label_binarize(y, classes=list(range(n_classes))), probs, average="micro"))
    present = np.unique(y)
    if len(present) < n_classes:  # scikit-learn needs every class present; score the ones that are
        p = probs[:, present] / probs[:, present].sum(1, keepdims=True)
        y = np.searchsorted(present, y)
        if len(present) == 2:
            return float(roc_auc_score(y, p[:, 1]))
        probs = p
    return float(roc_auc_score(y, probs, multi_class="ovr", average="weighted" if average == "ovr-weighted" else "macro"))
