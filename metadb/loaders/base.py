"""What every loader provides, and the fingerprint that makes re-ingest a no-op.

A loader reads one published on-disk layout. Its constructor only stores arguments (the
scikit-learn contract); `check()` validates the layout and raises a one-line `MetadbError` naming
the expected path; `records()` streams `Record`s without holding the dataset in memory.
"""

from __future__ import annotations

import hashlib
import json
import os
from abc import ABC, abstractmethod
from pathlib import Path
from typing import Any, ClassVar, Iterable, Iterator

from metadb.errors import MetadbError
from metadb.records import Record
from metadb.registry import Registry

IMAGE_SUFFIXES = frozenset(
    {".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp", ".gif", ".webp", ".ppm", ".pgm"}
)


class Loader(ABC):
    """Base class: subclasses set `label_type` and implement `check`, `records`, `input_files`."""

    label_type: ClassVar[str] = "single-label"  # or "multi-label", "ordinal"

    def __init__(self, root: str | Path, **params: Any):
        self.root = Path(root).expanduser()
        self.params = params

    @abstractmethod
    def check(self) -> None:
        """Raise MetadbError naming the missing path and the expected layout."""

    @abstractmethod
    def records(self) -> Iterator[Record]:
        """Stream the dataset's images in a deterministic order."""

    @abstractmethod
    def input_files(self) -> Iterable[Path]:
        """The files whose names, sizes and mtimes define the fingerprint."""

    def class_names(self) -> list[str] | None:
        """Declared class names in label order, when the layout declares them."""
        return None

    def fingerprint(self) -> str:
        """Changes when any input file is added, removed, resized or touched, or params change."""
        h = hashlib.sha256()
        h.update(json.dumps([type(self).__name__, self.params], sort_keys=True, default=str).encode())
        base = self.root if self.root.is_dir() else self.root.parent
        for f in sorted(self.input_files()):
            st = f.stat()
            h.update(f"{os.path.relpath(f, base)}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
        return h.hexdigest()[:16]

    def require(self, path: Path, what: str) -> Path:
        if not path.exists():
            raise MetadbError(f"{path} not found: expected {what}")
        return path


loaders: Registry[type[Loader]] = Registry("layout")


def register_loader(name: str, version: str = "1"):
    """Register a Loader subclass under a layout name (`--layout NAME`)."""
    return loaders.register(name, version)


def image_files(folder: Path) -> list[Path]:
    """Image files below `folder`, sorted, skipping hidden files (e.g. macOS ._ forks)."""
    return sorted(
        p for p in folder.rglob("*")
        if p.suffix.lower() in IMAGE_SUFFIXES and not p.name.startswith(".") and p.is_file()
    )
