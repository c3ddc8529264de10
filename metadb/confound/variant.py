"""A confounded variant of a binary target: which images carry the confounder, in which split.

A `Confounder` is the recipe (kind, rate, positive class, seed; for `attribute` the column, its
value, the patient column and each image's values). It is small, frozen and picklable, so it rides
on a `TrialSpec` to wherever the trial runs; there `bind` turns it into the trial's splits and the
read-time `Alter`s that draw the confounder on the chosen images as they are decoded. No image is
copied: the variant is the recipe plus the seed.

Image kinds (tag, lowpass, noise) keep the protocol's folds. In training and validation a share
`rate` of the positives carries the confounder (drawn separately in each, seeded by seed and fold);
the clean test is the test split as it is, and the confounded test is the same images with the
confounder on every negative. The study (include_*.py) draws its share with pandas
`.sample(frac=share)` over all positives at once, unseeded; metadb seeds the draw and takes the
share within each split so every fold gets exactly it.

`attribute` follows gender.py (ChestX-ray14, Atelectasis vs No Finding, attribute sex = F) with one
correction. The study puts every F positive in training and every F negative in the test set and
splits only the M positives by patient (GroupShuffleSplit(test_size=0.5, random_state=42)), so a
woman with both an Atelectasis and a No Finding image can be in both. metadb splits patients first
(GroupShuffleSplit over all images, test_size 0.5, random_state seed), so no patient is in two
splits. Training takes n = min(#A positives, #non-A positives) positives on the training side, a
share `rate` of them with the attribute (the study: 200 of each, `.sample(frac=p)` and
`.sample(frac=1-p)`), and every non-A negative; the confounded test is the non-A positives and the
A negatives of the test side (built the opposite way). The study has no clean test for this kind;
metadb's `auc_clean` is every test-side image. Validation: fold k is the k-th of `folds`
GroupShuffleSplit(test_size=0.15, random_state=seed) draws over the training set (the study's five
folds are such random draws, not a k-fold partition, so validation sets of two folds may overlap).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from metadb.confound import transforms as T
from metadb.errors import MetadbError

KINDS = ("tag", "lowpass", "noise", "attribute")
DEFAULT_SEED = 42           # gender.py's random_state (the image scripts draw unseeded)
ATTRIBUTE_TEST_FRACTION = 0.5   # gender.py: GroupShuffleSplit(test_size=0.5) of the M positives
ATTRIBUTE_VAL_FRACTION = 0.15   # gender.py: GroupShuffleSplit(n_splits=5, test_size=0.15)


@dataclass(frozen=True)
class Confounder:
    kind: str
    rate: float
    positive: str                       # the class whose training images carry the confounder
    seed: int = DEFAULT_SEED
    column: str | None = None           # attribute: labels-CSV column, the value that confounds, patient column
    value: str | None = None
    group: str | None = None
    attributes: tuple[tuple[str, str, str], ...] = field(default=(), repr=False)  # (path, value, group)

    @property
    def own_splits(self) -> bool:
        """attribute builds its own patient-disjoint splits; image kinds keep the protocol's folds."""
        return self.kind == "attribute"

    def recipe(self) -> dict[str, Any]:
        """What decides the variant, for provenance and trial identity (the attribute table by its hash)."""
        out: dict[str, Any] = {"kind": self.kind, "rate": self.rate, "positive": self.positive, "seed": self.seed}
        if self.kind == "attribute":
            table = json.dumps(sorted(self.attributes)).encode()
            out |= {"column": self.column, "value": self.value, "group": self.group,
                    "attributes_sha256": hashlib.sha256(table).hexdigest(),
                    "test_fraction": ATTRIBUTE_TEST_FRACTION, "val_fraction": ATTRIBUTE_VAL_FRACTION}
        else:
            out |= image_recipe(self.kind)
        return out

    def derived_name(self, target: str) -> str:
        """The variant's dataset name: chest+tag@0.5, chest+sex=F@0.5 (with #seedN when not the default)."""
        what = f"{self.column}={self.value}" if self.kind == "attribute" else self.kind
        seed = "" if self.seed == DEFAULT_SEED else f"#seed{self.seed}"
        return f"{target}+{what}@{self.rate:g}{seed}"

    def bind(self, items, idx: tuple[np.ndarray, np.ndarray, np.ndarray], fold: int, folds: int) -> "Bound":
        """The trial's splits and read-time alterations for fold `fold` (1-based)."""
        if items.multi_label or items.n_outputs != 2 or self.positive not in items.classes:
            raise MetadbError(f"confounding needs a binary target with class {self.positive!r}; "
                              f"it has {', '.join(items.classes)}")
        positive = np.asarray(items.y) == items.classes.index(self.positive)
        if self.kind == "attribute":
            return self._bind_attribute(items, positive, fold, folds)
        train, val, test = idx
        rng = np.random.default_rng([self.seed, fold])
        marked = [_share(train[positive[train]], self.rate, rng), _share(val[positive[val]], self.rate, rng)]
        marks = frozenset(int(i) for i in np.concatenate(marked))
        negatives = frozenset(int(i) for i in test[~positive[test]])
        noisy = self.kind == "noise"
        return Bound(train, val, test, {"confounded_negatives": (test, Alter(self.kind, negatives, self.seed, noisy))},
                     Alter(self.kind, marks, self.seed, noisy), Alter("none", frozenset(), self.seed, False))

    def _bind_attribute(self, items, positive: np.ndarray, fold: int, folds: int) -> "Bound":
        from sklearn.model_selection import GroupShuffleSplit

        table = {path: (value, group) for path, value, group in self.attributes}
        missing = [r.path for r in items.records if r.path not in table]
        if missing:
            raise MetadbError(f"attribute {self.column}: no row for {missing[0]} ({len(missing)} images)",
                              "give every image a value and a patient in the labels CSV")
        has = np.array([table[r.path][0] == self.value for r in items.records])
        groups = np.array([table[r.path][1] for r in items.records])
        every = np.arange(len(items.records))
        side = GroupShuffleSplit(n_splits=1, test_size=ATTRIBUTE_TEST_FRACTION, random_state=self.seed)
        train_side, test_side = next(side.split(every, groups=groups))
        pools = {name: s[m[s]] for name, s, m in (("A positives", train_side, positive & has),
                                                    ("other positives", train_side, positive & ~has),
                                                    ("other negatives", train_side, ~positive & ~has),
                                                    ("test other positives", test_side, positive & ~has),
                                                    ("test A negatives", test_side, ~positive & has))}
        empty = [k for k, v in pools.items() if len(v) == 0]
        if empty:
            raise MetadbError(f"attribute {self.column}={self.value}: no {empty[0]} after the patient split "
                              f"({', '.join(f'{k} {len(v)}' for k, v in pools.items())})",
                              "a confounded split needs images of every kind")
        rng = np.random.default_rng(self.seed)
        n = min(len(pools["A positives"]), len(pools["other positives"]))
        k = int(round(self.rate * n))
        pool = np.sort(np.concatenate([rng.choice(pools["A positives"], k, replace=False),
                                       rng.choice(pools["other positives"], n - k, replace=False),
                                       pools["other negatives"]]))
        splits = list(GroupShuffleSplit(n_splits=folds, test_size=ATTRIBUTE_VAL_FRACTION,
                                        random_state=self.seed).split(pool, groups=groups[pool]))
        tr, va = splits[fold - 1]
        confounded = np.sort(np.concatenate([pools["test other positives"], pools["test A negatives"]]))
        plain = Alter("none", frozenset(), self.seed, False)
        return Bound(pool[tr], pool[va], np.sort(test_side), {"confounded_negatives": (confounded, plain)}, plain, plain)


def _share(candidates: np.ndarray, rate: float, rng: np.random.Generator) -> np.ndarray:
    return rng.choice(candidates, int(round(rate * len(candidates))), replace=False)


def image_recipe(kind: str) -> dict[str, Any]:
    """The figures a kind draws with (fractions of the image side), stored with every run."""
    if kind == "tag":
        return {"text": T.TAG_TEXT, "font_fraction": T.TAG_FONT_FRACTION, "xy_fraction": T.TAG_XY_FRACTION,
                "font": "matplotlib DejaVuSans.ttf", "fill": "white"}
    if kind == "lowpass":
        return {"diameter_fraction": T.LOWPASS_DIAMETER_FRACTION}
    if kind == "noise":
        return {"photons_base": T.PHOTONS_BASE, "photons_confounded": T.PHOTONS_CONFOUNDED,
                "side_fraction": T.NOISE_SIDE_FRACTION, "mu_water": T.MU_WATER, "mu_air": T.MU_AIR,
                "display_window": list(T.DISPLAY_WINDOW)}
    raise MetadbError(f"--kind {kind!r}: expected one of {', '.join(KINDS)}")


@dataclass(frozen=True)
class Alter:
    """Applied to each decoded image of a split: the confounder on `marked` record indices.

    Noise variants noise every image (at the base photon count unless marked), as the study does.
    """

    kind: str
    marked: frozenset[int]
    seed: int
    noise_all: bool

    def __call__(self, index: int, im):
        if self.kind == "noise" and (self.noise_all or index in self.marked):
            photons = T.PHOTONS_CONFOUNDED if index in self.marked else T.PHOTONS_BASE
            return T.noise(im, photons, np.random.default_rng([self.seed, index]))
        if index not in self.marked:
            return im
        return T.tag(im) if self.kind == "tag" else T.lowpass(im)


@dataclass(frozen=True)
class Bound:
    """A confounded trial's record indices and what happens to each split's images as they are read."""

    train: np.ndarray
    val: np.ndarray
    test: np.ndarray                    # the clean test, read as it is
    tests: dict[str, tuple[np.ndarray, Alter]]  # further test sets: name -> (indices, alteration)
    alter_train: Alter                  # training and validation images
    alter_test: Alter                   # the clean test
