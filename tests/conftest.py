"""Shared fixtures: a store path per test, the CLI runner, the published reference tables,
and patches of real images that registry packages ship (never generated noise)."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

ROOT = Path(__file__).resolve().parent.parent
REFERENCE = Path(os.environ.get("METADB_REFERENCE", ROOT.parent / "shared" / "reference"))


@pytest.fixture
def db(tmp_path: Path) -> str:
    return str(tmp_path / "store.duckdb")


@pytest.fixture
def runner() -> CliRunner:
    return CliRunner()


@pytest.fixture(scope="session")
def reference() -> Path:
    """../shared/reference: the published result tables (see its README)."""
    assert (REFERENCE / "README.md").exists(), f"published reference tables not found at {REFERENCE}"
    return REFERENCE


def real_patches(name: str, size: int, n: int) -> list[np.ndarray]:
    """n non-overlapping size x size uint8 patches of a real scikit-image sample image."""
    import skimage.data

    img = getattr(skimage.data, name)()
    h, w = img.shape[:2]
    per_row = w // size
    out = []
    for k in range(n):
        i, j = divmod(k, per_row)
        if (i + 1) * size > h:
            raise ValueError(f"{name} has room for only {k} patches of {size}px")
        out.append(np.ascontiguousarray(img[i * size:(i + 1) * size, j * size:(j + 1) * size]))
    return out


def write_imagefolder(root: Path, classes: dict[str, str], size: int = 64, n: int = 6, fmt: str = "png") -> Path:
    """<root>/<class>/<k>.<fmt> with patches of the named real image per class."""
    from PIL import Image

    for cls, image_name in classes.items():
        (root / cls).mkdir(parents=True, exist_ok=True)
        for k, patch in enumerate(real_patches(image_name, size, n)):
            Image.fromarray(patch).save(root / cls / f"{k}.{fmt}")
    return root
