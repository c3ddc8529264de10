"""`stl10`: STL-10 binaries, stl10_binary/{train,test}_{X,y}.bin and class_names.txt.

Each image is 3x96x96 uint8 stored column-major; labels are 1..10. Images are read 512 at a time
(27,648 bytes each), never the whole file. `unlabeled_X.bin` has no labels and is skipped.
"""

from __future__ import annotations

from pathlib import Path
from typing import Iterator

import numpy as np

from metadb.errors import MetadbError
from metadb.loaders.base import Loader, register_loader
from metadb.records import Record

SIDE = 96
IMAGE_BYTES = 3 * SIDE * SIDE
CHUNK = 512


@register_loader("stl10")
class Stl10(Loader):
    """STL-10 labelled train (5,000) and test (8,000) images of 10 classes."""

    def _splits(self) -> list[str]:
        return [s for s in ("train", "test") if (self.root / f"{s}_X.bin").exists()]

    def check(self) -> None:
        names = self.root / "class_names.txt"
        if not (self.root / "train_X.bin").exists() or not names.exists():
            raise MetadbError(f"{self.root / 'train_X.bin'} or class_names.txt not found; expected "
                              "stl10_binary/{train,test}_{X,y}.bin and class_names.txt")
        for s in self._splits():
            x, y = self.root / f"{s}_X.bin", self.root / f"{s}_y.bin"
            if not y.exists():
                raise MetadbError(f"{y} not found; it holds the labels of {x.name}")
            size = x.stat().st_size
            if size % IMAGE_BYTES:
                raise MetadbError(f"{x}: {size} bytes is not a whole number of {IMAGE_BYTES}-byte images; the file is truncated")
            if y.stat().st_size != size // IMAGE_BYTES:
                raise MetadbError(f"{y}: {y.stat().st_size} labels for {size // IMAGE_BYTES} images in {x.name}")

    def input_files(self) -> list[Path]:
        return [self.root / "class_names.txt"] + [self.root / f"{s}_{p}.bin" for s in self._splits() for p in "Xy"]

    def class_names(self) -> list[str]:
        return [n.strip() for n in (self.root / "class_names.txt").read_text().splitlines() if n.strip()]

    def read(self) -> Iterator[Record]:
        names = self.class_names()
        for split in self._splits():
            labels = np.fromfile(self.root / f"{split}_y.bin", dtype=np.uint8)  # 1 byte per image
            with (self.root / f"{split}_X.bin").open("rb") as fh:
                for start in range(0, len(labels), CHUNK):
                    raw = fh.read(IMAGE_BYTES * min(CHUNK, len(labels) - start))
                    # column-major 3x96x96 -> upright HxWxC
                    images = np.frombuffer(raw, np.uint8).reshape(-1, 3, SIDE, SIDE).transpose(0, 3, 2, 1)
                    for k, img in enumerate(images):
                        i = start + k
                        label = int(labels[i])
                        if not 1 <= label <= len(names):
                            raise MetadbError(f"{self.root / f'{split}_y.bin'}: label {label} at image {i} is not in 1..{len(names)}")
                        yield Record(f"{split}/{i}", f"{split}_X.bin#{i}", (names[label - 1],), split, pixels=img)
