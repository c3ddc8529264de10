"""The demo: real images that registry packages ship, written in the layouts users keep on disk.

No network and no generated noise: scikit-learn's 1,797 labelled handwritten digits (CSV layout)
and patches of scikit-image's sample photographs (ImageFolder layout): textures (brick, grass,
gravel) and medical images (fundus, immunohistochemistry, cell microscopy).
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image


@dataclass(frozen=True)
class DemoDataset:
    name: str
    layout: str
    modality: str
    folder: str


DEMO = (
    DemoDataset("demo-digits", "csv", "photo", "digits"),
    DemoDataset("demo-textures", "imagefolder", "photo", "textures"),
    DemoDataset("demo-medical", "imagefolder", "mixed", "medical"),
)


def _patches(img: np.ndarray, size: int, limit: int) -> list[np.ndarray]:
    h, w = img.shape[:2]
    return [img[i:i + size, j:j + size] for i in range(0, h - size + 1, size)
            for j in range(0, w - size + 1, size)][:limit]


def _write_folder(root: Path, classes: dict[str, np.ndarray], size: int, limit: int) -> None:
    for cls, img in classes.items():
        (root / cls).mkdir(parents=True, exist_ok=True)
        for k, p in enumerate(_patches(img, size, limit)):
            Image.fromarray(np.ascontiguousarray(p)).save(root / cls / f"{cls}_{k:03d}.png")


def _write_digits(root: Path) -> None:
    from sklearn.datasets import load_digits

    digits = load_digits()
    (root / "images").mkdir(parents=True, exist_ok=True)
    with (root / "labels.csv").open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["path", "label", "split"])
        for k, (img, label) in enumerate(zip(digits.images, digits.target)):
            rel = f"images/{k:04d}.png"
            # digits are 0..16 grey levels; scale to 8 bits without changing them otherwise
            Image.fromarray((img * 255 / 16).round().astype(np.uint8)).save(root / rel)
            w.writerow([rel, str(label), "train" if k % 5 else "test"])


def write(base: Path) -> dict[str, Path]:
    """Write the demo datasets under `base` (once); returns name -> path to ingest."""
    import skimage.data as data

    base = Path(base)
    paths = {"demo-digits": base / "digits" / "labels.csv",
             "demo-textures": base / "textures", "demo-medical": base / "medical"}
    if not paths["demo-digits"].exists():
        _write_digits(base / "digits")
    if not paths["demo-textures"].exists():
        _write_folder(paths["demo-textures"], {n: getattr(data, n)() for n in ("brick", "grass", "gravel")}, 64, 64)
    if not paths["demo-medical"].exists():
        _write_folder(paths["demo-medical"], {"fundus": data.retina(), "ihc": data.immunohistochemistry(),
                                              "cell": data.cell()}, 96, 36)
    return paths
