"""`medmnist`: MedMNIST v2 2D sets, <flag>.npz or <flag>_{64,128,224}.npz.

Each npz holds train/val/test `_images` (uint8 N x H x W [x 3]) and `_labels` (N x 1 class index,
or N x 14 for multi-label ChestMNIST). The arrays are streamed straight out of the zip member
(npy header, then fixed-size reads), compressed or not, so a 165k-image TissueMNIST at 224 px
never sits in memory. Class names are MedMNIST's own INFO labels.
"""

from __future__ import annotations

import zipfile
from pathlib import Path
from typing import IO, Iterator

import numpy as np
from numpy.lib import format as npy

from metadb.errors import MetadbError
from metadb.loaders.base import Loader, register_loader
from metadb.records import Record

_ORGAN = ("bladder", "femur-left", "femur-right", "heart", "kidney-left", "kidney-right", "liver",
          "lung-left", "lung-right", "pancreas", "spleen")
LABELS: dict[str, tuple[str, ...]] = {
    "pathmnist": ("adipose", "background", "debris", "lymphocytes", "mucus", "smooth muscle",
                  "normal colon mucosa", "cancer-associated stroma", "colorectal adenocarcinoma epithelium"),
    "chestmnist": ("atelectasis", "cardiomegaly", "effusion", "infiltration", "mass", "nodule", "pneumonia",
                   "pneumothorax", "consolidation", "edema", "emphysema", "fibrosis", "pleural", "hernia"),
    "dermamnist": ("actinic keratoses and intraepithelial carcinoma", "basal cell carcinoma",
                   "benign keratosis-like lesions", "dermatofibroma", "melanoma", "melanocytic nevi",
                   "vascular lesions"),
    "octmnist": ("choroidal neovascularization", "diabetic macular edema", "drusen", "normal"),
    "pneumoniamnist": ("normal", "pneumonia"),
    "retinamnist": ("0", "1", "2", "3", "4"),
    "breastmnist": ("malignant", "normal, benign"),
    "bloodmnist": ("basophil", "eosinophil", "erythroblast",
                   "immature granulocytes(myelocytes, metamyelocytes and promyelocytes)", "lymphocyte",
                   "monocyte", "neutrophil", "platelet"),
    "tissuemnist": ("Collecting Duct, Connecting Tubule", "Distal Convoluted Tubule", "Glomerular endothelial cells",
                    "Interstitial endothelial cells", "Leukocytes", "Podocytes", "Proximal Tubule Segments",
                    "Thick Ascending Limb"),
    "organamnist": _ORGAN, "organcmnist": _ORGAN, "organsmnist": _ORGAN,
}
SPLITS = ("train", "val", "test")
CHUNK = 1024


@register_loader("medmnist")
class MedMnist(Loader):
    """MedMNIST v2 2D (params: flag, optional size 28/64/128/224)."""

    @property
    def flag(self) -> str:
        return self.params.get("flag") or self.root.stem.split("_")[0]

    @property
    def label_type(self) -> str:  # type: ignore[override]
        return {"chestmnist": "multi-label", "retinamnist": "ordinal"}.get(self.flag, "single-label")

    def npz(self) -> Path:
        """The chosen file: the requested size, else 28 px, else the smallest present."""
        folder = self.root if self.root.is_dir() else self.root.parent
        size = self.params.get("size")
        names = [f"{self.flag}.npz" if size in (None, 28) else f"{self.flag}_{size}.npz"]
        if size is None:
            names += [f"{self.flag}_{s}.npz" for s in (64, 128, 224)]
        for n in names:
            if (folder / n).exists():
                return folder / n
        raise MetadbError(f"{folder / names[0]} not found; expected {self.flag}.npz or {self.flag}_{{64,128,224}}.npz "
                          "with train_images, train_labels, val_*, test_* arrays")

    def check(self) -> None:
        if self.flag not in LABELS:
            raise MetadbError(f"unknown MedMNIST flag {self.flag!r}; known: {', '.join(LABELS)}")
        f = self.npz()
        try:
            members = set(zipfile.ZipFile(f).namelist())
        except (zipfile.BadZipFile, OSError) as e:
            raise MetadbError(f"{f}: not a readable .npz ({e})") from None
        for split in SPLITS:
            has_images, has_labels = f"{split}_images.npy" in members, f"{split}_labels.npy" in members
            if (split == "train" or has_images or has_labels) and not (has_images and has_labels):
                raise MetadbError(f"{f}: no {split}_images/{split}_labels pair; "
                                  "expected train_images, train_labels, val_*, test_* arrays")

    def input_files(self) -> list[Path]:
        return [self.npz()]

    def class_names(self) -> list[str]:
        return list(LABELS[self.flag])

    def read(self) -> Iterator[Record]:
        f = self.npz()
        names = LABELS[self.flag]
        with zipfile.ZipFile(f) as z:
            for split in SPLITS:
                if f"{split}_images.npy" not in z.namelist():
                    continue
                with z.open(f"{split}_images.npy") as xi, z.open(f"{split}_labels.npy") as yi:
                    labels = _read_all(yi)  # N x 1 or N x 14 small integers: cheap
                    labels = labels.reshape(len(labels), -1)
                    for start, images in _stream(xi, f.name, split):
                        for k, img in enumerate(images):
                            i = start + k
                            yield Record(f"{split}/{i}", f"{f.name}#{split}/{i}",
                                         self._labels(labels[i], names, f, split, i), split, pixels=img)

    def _labels(self, row: np.ndarray, names: tuple[str, ...], f: Path, split: str, i: int) -> tuple[str, ...]:
        if self.label_type == "multi-label":
            return tuple(n for n, v in zip(names, row) if v)
        k = int(row[0])
        if not 0 <= k < len(names):
            raise MetadbError(f"{f}: {split}_labels[{i}] = {k} is not a {self.flag} class (0..{len(names) - 1})")
        return (names[k],)


def _header(fh: IO[bytes]) -> tuple[tuple[int, ...], bool, np.dtype]:
    version = npy.read_magic(fh)
    read = npy.read_array_header_1_0 if version == (1, 0) else npy.read_array_header_2_0
    return read(fh)


def _read_all(fh: IO[bytes]) -> np.ndarray:
    shape, fortran, dtype = _header(fh)
    a = np.frombuffer(fh.read(), dtype=dtype)
    return a.reshape(shape, order="F" if fortran else "C")


def _stream(fh: IO[bytes], name: str, split: str) -> Iterator[tuple[int, np.ndarray]]:
    shape, fortran, dtype = _header(fh)
    if fortran or dtype != np.uint8 or len(shape) not in (3, 4):
        raise MetadbError(f"{name}: {split}_images is {dtype} {shape}; expected C-ordered uint8 N x H x W [x 3]")
    per_image = int(np.prod(shape[1:]))
    for start in range(0, shape[0], CHUNK):
        n = min(CHUNK, shape[0] - start)
        raw = fh.read(per_image * n)
        if len(raw) != per_image * n:
            raise MetadbError(f"{name}: {split}_images ends after {start + len(raw) // per_image} of {shape[0]} images")
        yield start, np.frombuffer(raw, np.uint8).reshape((n, *shape[1:]))
