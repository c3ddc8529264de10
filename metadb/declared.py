"""What is published about each known dataset, as data: image counts per split, classes, channels, size.

Predictors need meta-features for datasets whose images were never ingested (ImageNet and
RadImageNet are known only by their outcomes). These are the figures the datasets' own papers
publish, each row with its citation. Names match what ingest's extractors store (n_images,
n_classes, channels_mode, width_median, height_median), so `meta_features()` can let an ingested
value win over a declared one and say which it used. An empty field means the paper does not
give it (or it varies per image): it stays unknown, never guessed.
"""

from __future__ import annotations

from dataclasses import dataclass

MEDMNIST_V2 = ("Yang et al. 2023, MedMNIST v2, Scientific Data 10:41, Table 1 (28x28 release; "
               "split counts equal the medmnist 3.0.2 package's INFO)")


@dataclass(frozen=True)
class Declared:
    dataset: str
    n_train: int | None
    n_val: int | None
    n_test: int | None
    n_classes: int | None
    channels: int | None  # 1 grayscale, 3 colour; None when mixed
    width: int | None  # published image size in pixels; None when it varies per image
    height: int | None
    citation: str
    note: str = ""

    @property
    def n_images(self) -> int | None:
        """All labelled images the paper publishes (the splits it gives, summed)."""
        known = [n for n in (self.n_train, self.n_val, self.n_test) if n is not None]
        return sum(known) if known else None

    def features(self) -> dict[str, float]:
        """The declared values under the names ingest stores them, unknown ones left out."""
        values = {"n_images": self.n_images, "n_classes": self.n_classes, "channels_mode": self.channels,
                  "width_median": self.width, "height_median": self.height}
        return {k: float(v) for k, v in values.items() if v is not None}


_MEDMNIST = [  # flag, train, val, test, classes (label columns for multi-label chest), channels
    ("pathmnist", 89_996, 10_004, 7_180, 9, 3),
    ("chestmnist", 78_468, 11_219, 22_433, 14, 1),
    ("dermamnist", 7_007, 1_003, 2_005, 7, 3),
    ("octmnist", 97_477, 10_832, 1_000, 4, 1),
    ("pneumoniamnist", 4_708, 524, 624, 2, 1),
    ("retinamnist", 1_080, 120, 400, 5, 3),
    ("breastmnist", 546, 78, 156, 2, 1),
    ("bloodmnist", 11_959, 1_712, 3_421, 8, 3),
    ("tissuemnist", 165_466, 23_640, 47_280, 8, 1),
    ("organamnist", 34_561, 6_491, 17_778, 11, 1),
    ("organcmnist", 12_975, 2_392, 8_216, 11, 1),
    ("organsmnist", 13_932, 2_452, 8_827, 11, 1),
]

DECLARED: dict[str, Declared] = {d.dataset: d for d in [
    *(Declared(flag, tr, va, te, k, ch, 28, 28, MEDMNIST_V2) for flag, tr, va, te, k, ch in _MEDMNIST),
    Declared("medmnist", sum(r[1] for r in _MEDMNIST), sum(r[2] for r in _MEDMNIST), sum(r[3] for r in _MEDMNIST),
             None, None, 28, 28, MEDMNIST_V2,
             "the 12 MedMNIST v2 2D sets together; Juodelyte et al. 2024 pretrain on the 11 other than the target, "
             "so this count is an upper bound; classes and channels are mixed"),
    Declared("imagenet", 1_281_167, 50_000, None, 1000, 3, None, None,
             "Russakovsky et al. 2015, ImageNet Large Scale Visual Recognition Challenge, IJCV 115:211 (ILSVRC 2012)",
             "the 100,000 test images are unlabelled and not counted"),
    Declared("radimagenet", 1_350_000, None, None, 165, 1, None, None,
             "Mei et al. 2022, RadImageNet, Radiology: Artificial Intelligence 4(5):e210315",
             "published as 1.35 million CT, MR and ultrasound images (rounded), 165 classes; no split counts given"),
    Declared("chest", 5_216, 16, 624, 2, 1, None, None,
             "Kermany et al. 2018, Cell 172(5):1122 (Mendeley data v2, chest_xray/{train,val,test})"),
    Declared("isic", 10_015, 193, 1_512, 7, 3, 600, 450,
             "Codella et al. 2019, ISIC 2018 challenge, arXiv 1902.03368; Tschandl et al. 2018, HAM10000, "
             "Scientific Data 5:180161"),
    Declared("pcam", 262_144, 32_768, 32_768, 2, 3, 96, 96,
             "Veeling et al. 2018, Rotation equivariant CNNs for digital pathology, MICCAI (PatchCamelyon)"),
    Declared("pcam-small", 10_000, None, None, 2, 3, 96, 96,
             "van den Brandt et al. 2021, Cats, not CAT scans, arXiv 2107.05940 (10k PCam subset)"),
    Declared("pcam-middle", 100_000, None, None, 2, 3, 96, 96,
             "van den Brandt et al. 2021, Cats, not CAT scans, arXiv 2107.05940 (100k PCam subset)"),
    Declared("stl10", 5_000, None, 8_000, 10, 3, 96, 96,
             "Coates et al. 2011, An analysis of single-layer networks in unsupervised feature learning, AISTATS",
             "the 100,000 unlabelled images are not counted"),
    Declared("textures", 1_880, 1_880, 1_880, 47, 3, None, None,
             "Cimpoi et al. 2014, Describing textures in the wild, CVPR (DTD, one of its ten splits)",
             "5,640 images of 300x300 to 640x640 pixels"),
    Declared("kimia", 960, None, None, 20, None, 308, 168,
             "Kumar et al. 2017, A comparative study of CNN, BoVW and LBP for classification of histopathological "
             "images, IEEE SSCI (KimiaPath960)"),
]}


def meta_features(con) -> tuple[dict[str, dict[str, float]], dict[str, dict[str, str]]]:
    """Per dataset: meta-feature values, and where each came from ('ingested' or 'declared').

    Ingested values win: they describe the images actually in the store (a subset, a resize),
    while the declared ones describe the published release.
    """
    values = {name: d.features() for name, d in DECLARED.items()}
    source = {name: dict.fromkeys(v, "declared") for name, v in values.items()}
    for dataset, name, value in con.execute(
            "SELECT dataset, name, max(value) FROM meta_features WHERE value IS NOT NULL GROUP BY ALL").fetchall():
        values.setdefault(dataset, {})[name] = float(value)
        source.setdefault(dataset, {})[name] = "ingested"
    return values, source
