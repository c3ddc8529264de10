"""`imagefolder`: <root>/<class>/<image>, optionally under <root>/<split>/<class>/<image>."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Iterator

from metadb.errors import MetadbError
from metadb.loaders.base import Loader, image_files, register_loader, walk_images
from metadb.records import Record

SPLIT_NAMES = frozenset({"train", "val", "valid", "validation", "test"})


@register_loader("imagefolder")
class ImageFolder(Loader):
    """Folder per class (torchvision ImageFolder); a top level of train/val/test folders is a split."""

    def check(self) -> None:
        if not self.root.is_dir():
            raise MetadbError(f"{self.root} is not a folder: expected <root>/<class>/<image files>")
        if not self.input_files():
            raise MetadbError(f"no image files under {self.root}: expected <root>/<class>/<image files>")

    def _has_splits(self) -> bool:
        subdirs = {p.name.lower() for p in self.root.iterdir() if p.is_dir()}
        return bool(subdirs) and subdirs <= SPLIT_NAMES

    def input_files(self) -> list[Path]:
        return [p for p in image_files(self.root) if p.parent != self.root]

    def read(self) -> Iterator[Record]:
        files, problems, notes = walk_images(self.root)
        for path, reason in problems:
            self.skip(os.path.relpath(path, self.root), reason)
        self.notes += notes
        split_level = self._has_splits()
        for f in (f for f in files if f.parent != self.root):
            rel = f.relative_to(self.root)
            split = rel.parts[0] if split_level else None
            label = rel.parts[1] if split_level else rel.parts[0]
            yield Record(rel.as_posix(), rel.as_posix(), (label,), split, file=f)

    def class_names(self) -> list[str]:
        return sorted({r.labels[0] for r in self.records()})
