"""`chest`: Kermany et al. chest X-rays, chest_xray/{train,val,test}/{NORMAL,PNEUMONIA}/*.jpeg."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Iterator

from metadb.errors import MetadbError
from metadb.loaders.base import Loader, image_files, register_loader, walk_images
from metadb.records import Record

SPLITS = ("train", "val", "test")
CLASSES = ("NORMAL", "PNEUMONIA")


@register_loader("chest")
class ChestXray(Loader):
    """Split and label from the path; the archive's __MACOSX copies and .DS_Store files are ignored."""

    def check(self) -> None:
        present = [s for s in SPLITS if (self.root / s).is_dir()]
        if not present:
            raise MetadbError(f"{self.root}: no train/val/test folders; expected chest_xray/{{train,val,test}}/{{NORMAL,PNEUMONIA}}/*.jpeg")
        for s in present:
            for c in CLASSES:
                if not (self.root / s / c).is_dir():
                    raise MetadbError(f"{self.root / s / c} not found; expected chest_xray/{s}/{{NORMAL,PNEUMONIA}}/*.jpeg")

    def input_files(self) -> list[Path]:
        return [f for s in SPLITS for c in CLASSES if (self.root / s / c).is_dir()
                for f in image_files(self.root / s / c)]

    def read(self) -> Iterator[Record]:
        for s in SPLITS:
            for c in CLASSES:
                if not (self.root / s / c).is_dir():
                    continue
                files, problems, notes = walk_images(self.root / s / c)
                for path, reason in problems:
                    self.skip(os.path.relpath(path, self.root), reason)
                self.notes += notes
                for f in files:
                    rel = f.relative_to(self.root)
                    yield Record(rel.as_posix(), rel.as_posix(), (rel.parts[1],), rel.parts[0], file=f)

    def class_names(self) -> list[str]:
        return list(CLASSES)
