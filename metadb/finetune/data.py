"""A target's images for training: read through the dataset's own loader, split into folds as a protocol says.

No second copy of the data is written: a trial re-opens the loader recorded by ingest (layout,
root, parameters), keeps the records (paths, or pixel arrays for container layouts) and decodes
each image when the DataLoader asks for it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from metadb.errors import MetadbError
from metadb.finetune.protocol import Protocol
from metadb.loaders import create_loader

VAL_NAMES = frozenset({"val", "valid", "validation"})


@dataclass
class Items:
    """Records with their targets: `y` is class indices (n,) or multi-hot (n, C) for multi-label sets."""

    records: list[Any]
    y: np.ndarray
    classes: list[str]
    multi_label: bool
    splits: np.ndarray  # normalised split name per record ('' when the layout has none)

    @property
    def n_outputs(self) -> int:
        return len(self.classes)


def read_items(layout: str, root: str, params: dict[str, Any], label_type: str, dataset: str) -> Items:
    """Every labelled record of a dataset, in the loader's deterministic order."""
    records = [r for r in create_loader(layout, root, **params).records() if r.labels or label_type == "multi-label"]
    if not records:
        raise MetadbError(f"{dataset}: no labelled images", "ingest a dataset with class labels")
    multi = label_type == "multi-label"
    classes = sorted({lab for r in records for lab in r.labels})
    if len(classes) < 2:
        raise MetadbError(f"{dataset}: {len(classes)} class; fine-tuning needs at least two")
    index = {c: i for i, c in enumerate(classes)}
    if multi:
        y = np.zeros((len(records), len(classes)), dtype=np.float32)
        for i, r in enumerate(records):
            y[i, [index[lab] for lab in r.labels]] = 1.0
    else:
        y = np.array([index[r.labels[0]] for r in records], dtype=np.int64)
    splits = np.array([_split_name(r.split) for r in records])
    return Items(records, y, classes, multi, splits)


def _split_name(split: str | None) -> str:
    s = (split or "").lower()
    return "val" if s in VAL_NAMES else s


def _strata(items: Items, idx: np.ndarray) -> np.ndarray:
    """Stratification labels: the class, or for multi-label sets the label combination."""
    if not items.multi_label:
        return items.y[idx]
    return np.array(["|".join(map(str, np.flatnonzero(row))) for row in items.y[idx]])


def fold_indices(items: Items, p: Protocol, fold: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(train, val, test) record indices of fold `fold` (1-based) under the protocol's scheme."""
    if not 1 <= fold <= p.folds:
        raise MetadbError(f"fold {fold} outside 1..{p.folds}")
    test = np.flatnonzero(items.splits == p.test_split) if p.test_split else np.array([], dtype=np.int64)
    if p.test_split and len(test) == 0:
        have = sorted(set(items.splits) - {""}) or ["none"]
        raise MetadbError(f"no {p.test_split!r} split in the target (its splits: {', '.join(have)})",
                          "pass --test-split '' to use validation AUC as the outcome, or --test-split NAME")
    if p.fold_scheme == "sampled":
        return (*_sampled(items, p, fold), test)
    from sklearn.model_selection import KFold, StratifiedKFold

    pool = np.setdiff1d(np.arange(len(items.records)), test)
    if p.folds < 2:
        raise MetadbError(f"--folds {p.folds}: a k-fold scheme needs at least 2 folds")
    strata = _strata(items, pool)
    _, counts = np.unique(strata, return_counts=True)
    if counts.min() >= p.folds:
        splitter = StratifiedKFold(n_splits=p.folds, shuffle=True, random_state=p.fold_seed)
        parts = list(splitter.split(np.zeros(len(pool)), strata))
    elif items.multi_label:  # rare label combinations cannot be stratified; said in the run's hyperparameters
        parts = list(KFold(n_splits=p.folds, shuffle=True, random_state=p.fold_seed).split(pool))
    else:
        raise MetadbError(f"a class has only {counts.min()} images, fewer than --folds {p.folds}",
                          "lower --folds or ingest more images")
    train, val = parts[fold - 1]
    return pool[train], pool[val], test


def _sampled(items: Items, p: Protocol, fold: int) -> tuple[np.ndarray, np.ndarray]:
    """Juodelyte et al.'s data_split.py: one legacy RandomState(fold_seed) stream, drawn fold after fold."""
    train_pool = np.flatnonzero(items.splits == "train")
    val_pool = np.flatnonzero(items.splits == "val")
    if len(train_pool) == 0 or len(val_pool) == 0:
        raise MetadbError("a sampled fold scheme draws from the target's train and val splits, and it has "
                          f"{len(train_pool)} train and {len(val_pool)} val images",
                          "use --fold-scheme stratified-kfold, or ingest a layout with train/val splits")
    c = items.n_outputs
    n_train, n_val = c * p.train_per_class, c * p.val_per_class
    if n_train > len(train_pool):
        raise MetadbError(f"--train-per-class {p.train_per_class} x {c} classes = {n_train} training images, "
                          f"but the train split has {len(train_pool)}", "lower --train-per-class")
    rs = np.random.RandomState(p.fold_seed)
    for _ in range(fold):
        train = train_pool[rs.choice(len(train_pool), n_train, replace=False)]
        val = val_pool[rs.choice(len(val_pool), n_val, replace=False)] if len(val_pool) > n_val else val_pool
    return train, val


def pretrain_indices(items: Items, p: Protocol) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """cats-scans source pretraining: stratified shuffled split, test then val, each a fraction of the whole."""
    from sklearn.model_selection import train_test_split

    idx = np.arange(len(items.records))
    n_test = round(len(idx) * p.pretrain_test_fraction)
    n_val = round(len(idx) * p.pretrain_val_fraction)
    if n_test < 1 or n_val < 1:
        raise MetadbError(f"{len(idx)} images leave no room for a {p.pretrain_val_fraction:g} validation and "
                          f"{p.pretrain_test_fraction:g} test split", "ingest more images")
    strat = None if items.multi_label else items.y
    try:
        rest, test = train_test_split(idx, test_size=n_test, shuffle=True, random_state=p.fold_seed, stratify=strat)
        train, val = train_test_split(rest, test_size=n_val, shuffle=True, random_state=p.fold_seed,
                                      stratify=None if strat is None else strat[rest])
    except ValueError as e:
        raise MetadbError(f"cannot make a stratified {p.pretrain_val_fraction:g}/{p.pretrain_test_fraction:g} split: {e}") from None
    return train, val, test


def transforms(p: Protocol, train: bool, imagenet_source: bool):
    """torchvision v2 pipelines: the protocol's augmentation for training, resize + normalise otherwise."""
    import torch
    from torchvision.transforms import v2

    size = (p.image_size, p.image_size)
    steps: list[Any] = [v2.ToImage()]
    if train and p.random_resized_crop:
        steps.append(v2.RandomResizedCrop(size, antialias=True))
    else:
        steps.append(v2.Resize(size, antialias=True))
    if train:
        if p.horizontal_flip:
            steps.append(v2.RandomHorizontalFlip())
        affine = p.shift > 0 or p.shear > 0 or p.zoom > 0
        if affine:
            steps.append(v2.RandomAffine(degrees=(p.rotation_min, p.rotation_max),
                                         translate=(p.shift, p.shift) if p.shift > 0 else None,
                                         scale=(1 - p.zoom, 1 + p.zoom) if p.zoom > 0 else None,
                                         shear=p.shear if p.shear > 0 else None))
        elif p.rotation_min != 0 or p.rotation_max != 0:
            steps.append(v2.RandomRotation(degrees=(p.rotation_min, p.rotation_max)))
        if p.sharpness:
            steps.append(v2.RandomAdjustSharpness(sharpness_factor=2))
        if p.autocontrast:
            steps.append(v2.RandomAutocontrast())
        if p.equalize:
            steps.append(v2.RandomEqualize())
    imagenet = p.normalize == "imagenet" or (p.normalize == "by-source" and imagenet_source)
    mean, std = ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225)) if imagenet else ((0.5,) * 3, (0.5,) * 3)
    steps += [v2.ToDtype(torch.float32, scale=True), v2.Normalize(mean, std)]
    return v2.Compose(steps)


class ImageSet:
    """A map-style dataset over chosen records; decodes each image on access (in a worker when there are any)."""

    def __init__(self, items: Items, idx: np.ndarray, transform, alter=None):
        self.records = [items.records[i] for i in idx]
        self.y = items.y[idx]
        self.transform = transform
        self.idx = np.asarray(idx)
        self.alter = alter  # optional read-time derivation (alter(record index, RGB image) -> image), e.g. a confounder

    def __len__(self) -> int:
        return len(self.records)

    def __getitem__(self, i: int):
        from PIL import Image

        r = self.records[i]
        try:
            im = (Image.fromarray(r.pixels) if r.pixels is not None else Image.open(r.file)).convert("RGB")
            if self.alter is not None:
                im = self.alter(int(self.idx[i]), im)
            x = self.transform(im)
        except (OSError, ValueError, SyntaxError) as e:
            raise MetadbError(f"{r.path}: cannot decode for training ({type(e).__name__})",
                              "re-ingest the dataset; ingest skips unreadable images") from None
        return x, self.y[i]
