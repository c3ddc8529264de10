"""What every loader provides, and the fingerprint that makes re-ingest a no-op.

A loader reads one published on-disk layout. Its constructor only stores arguments (the
scikit-learn contract); `check()` validates the layout and raises a one-line `MetadbError` naming
the expected path; `records()` streams `Record`s without holding the dataset in memory.

What a loader cannot use (a file or folder name that is not UTF-8, a folder it may not list, a
second symlink to a folder already read, a path a CSV lists twice) is not silently dropped: it
goes to `skipped` as (path, reason), which ingest stores in `ingest_errors`; choices it made
(following a symlinked folder) go to `notes`.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import os
from abc import ABC, abstractmethod
from itertools import islice
from pathlib import Path
from typing import Any, ClassVar, Iterable, Iterator

from metadb.errors import MetadbError
from metadb.records import Record
from metadb.registry import Registry

IMAGE_SUFFIXES = frozenset(
    {".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp", ".gif", ".webp", ".ppm", ".pgm"}
)


class Loader(ABC):
    """Base class: subclasses set `label_type` and implement `check`, `read`, `input_files`."""

    label_type: ClassVar[str] = "single-label"  # or "multi-label", "ordinal"

    def __init__(self, root: str | Path, **params: Any):
        self.root = Path(root).expanduser()
        self.params = params
        self.skipped: list[tuple[str, str]] = []  # (path, reason), filled while records() runs
        self.notes: list[str] = []

    @abstractmethod
    def check(self) -> None:
        """Raise MetadbError naming the missing path and the expected layout."""

    @abstractmethod
    def read(self) -> Iterator[Record]:
        """Stream the layout's records in a deterministic order (report unusable entries with skip())."""

    def records(self) -> Iterator[Record]:
        """The dataset's images; entries whose names are not UTF-8 go to `skipped` instead."""
        self.skipped, self.notes = [], []
        for r in self.read():
            texts = (r.image_id, r.path, r.split or "", *r.labels)
            if any(not _is_utf8(t) for t in texts):
                self.skip(r.path, "file or folder name is not valid UTF-8; rename it "
                                  "(e.g. convmv -f latin1 -t utf8 --notest -r FOLDER)")
                continue
            yield r

    def count(self) -> int:
        """How many records `records()` yields (a listing pass; containers may answer from a header)."""
        return sum(1 for _ in self.records())

    def shard(self, i: int, n: int, total: int | None = None) -> "Loader":
        """The i-th of n contiguous, near-equal slices of `records()`, as a loader of its own.

        A worker given a shard decodes only its slice; `total` (the driver's count) saves it a
        counting pass. Containers that can seek (HDF5, NPZ) override `read_range` to skip straight there.
        """
        if not 0 <= i < n:
            raise MetadbError(f"shard {i} of {n} does not exist; expected 0 <= i < n")
        lo, hi = shard_range(i, n, self.count() if total is None else total)
        return _Slice(self, lo, hi)

    def read_range(self, lo: int, hi: int) -> Iterator[Record]:
        """Records lo..hi-1 of `records()`; the default walks the listing and keeps the slice."""
        return islice(self.records(), lo, hi)

    def skip(self, path: str, reason: str) -> None:
        self.skipped.append((shown(path), reason))

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
            h.update(os.fsencode(os.path.relpath(f, base)) + f"\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
        return h.hexdigest()[:16]

    def require(self, path: Path, what: str) -> Path:
        if not path.exists():
            raise MetadbError(f"{path} not found: expected {what}")
        return path


def shard_range(i: int, n: int, total: int) -> tuple[int, int]:
    """[lo, hi) of shard i of n over `total` records: contiguous, sizes differ by at most one."""
    return i * total // n, (i + 1) * total // n


class _Slice(Loader):
    """One shard of a loader: reads only records lo..hi-1; skipped entries stay with the whole listing."""

    def __init__(self, parent: Loader, lo: int, hi: int):
        super().__init__(parent.root, **parent.params)
        self.parent, self.lo, self.hi = parent, lo, hi
        self.label_type = parent.label_type

    def check(self) -> None:
        self.parent.check()

    def read(self) -> Iterator[Record]:
        return self.parent.read_range(self.lo, self.hi)

    def records(self) -> Iterator[Record]:
        return self.read()

    def input_files(self) -> Iterable[Path]:
        return self.parent.input_files()


loaders: Registry[type[Loader]] = Registry("layout")


def register_loader(name: str, version: str = "1"):
    """Register a Loader subclass under a layout name (`--layout NAME`)."""
    return loaders.register(name, version)


def image_files(folder: Path) -> list[Path]:
    """Image files below `folder`, sorted, skipping hidden files (e.g. macOS ._ forks)."""
    return walk_images(folder)[0]


def walk_images(folder: Path) -> tuple[list[Path], list[tuple[Path, str]], list[str]]:
    """(image files, (folder, reason) for folders that could not be used, notes).

    Symlinked folders are followed (a note says so), but a folder reached twice (two links to one
    folder, or a link back up the tree) is read once, and the second path is reported.
    """
    files: list[str] = []
    problems: list[tuple[Path, str]] = []
    notes: list[str] = []
    first: dict[str, str] = {}  # real path -> the path it was first reached by
    stack = [str(folder)]
    while stack:
        top = stack.pop()
        real = os.path.realpath(top)
        if real in first:
            problems.append((Path(top), f"same folder as {shown(first[real])} (symlink); its images are read once"))
            continue
        first[real] = top
        if top != str(folder) and os.path.islink(top):
            notes.append(f"followed symlinked folder {shown(top)} -> {shown(real)}")
        try:
            entries = sorted(os.scandir(top), key=lambda e: e.name)
        except OSError as e:
            problems.append((Path(top), f"cannot list folder ({e.strerror}); its images were not read"))
            continue
        subdirs = []
        for e in entries:  # DirEntry types come from the directory listing: no stat per regular file
            if e.is_dir():
                subdirs.append(e.path)
            elif e.is_file():
                if os.path.splitext(e.name)[1].lower() in IMAGE_SUFFIXES and not e.name.startswith("."):
                    files.append(e.path)
            elif e.is_symlink():  # a dangling link (to a class folder or an image)
                problems.append((Path(e.path), f"broken symlink to {shown(os.readlink(e.path))}; not read"))
        stack.extend(reversed(subdirs))
    return sorted(map(Path, files)), problems, notes


def shown(path: str | Path) -> str:
    """A path as text that can be printed and stored: undecodable bytes become \\xNN escapes."""
    return os.fsencode(str(path)).decode("utf-8", "backslashreplace")


def _is_utf8(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def read_csv_text(path: Path) -> list[list[str]]:
    """A CSV's rows; a file that is not UTF-8 gets a one-line error naming the line, not a traceback."""
    data = path.read_bytes()
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        line = data[:e.start].count(b"\n") + 1
        raise MetadbError(f"{path} line {line}: byte 0x{data[e.start]:02x} is not UTF-8 (the file looks like "
                          "Latin-1 or Windows-1252)", f"save it as UTF-8, e.g. iconv -f latin1 -t utf-8 {path.name} > fixed.csv") from None
    return list(csv.reader(io.StringIO(text, newline="")))
