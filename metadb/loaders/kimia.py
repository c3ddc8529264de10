"""`kimia`: KimiaPath960, a flat folder of 960 TIFF patches A1.tif … T48.tif (label = the letter)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Iterator

from metadb.errors import MetadbError
from metadb.loaders.base import IMAGE_SUFFIXES, Loader, register_loader
from metadb.records import Record

NAME = re.compile(r"^([A-Za-z]+)(\d+)$")


@register_loader("kimia")
class Kimia(Loader):
    """KimiaPath960: <letter><number>.tif, 20 tissue classes A..T of 48 patches each."""

    def check(self) -> None:
        if not self.root.is_dir():
            raise MetadbError(f"{self.root} is not a folder: expected KimiaPath960 patches A1.tif … T48.tif")
        if not self.input_files():
            raise MetadbError(f"no .tif patches in {self.root}: expected A1.tif … T48.tif")
        for f in self.input_files():
            if not NAME.match(f.stem):
                raise MetadbError(f"{f}: not a KimiaPath960 name; expected <letter><number>.tif such as A12.tif")

    def input_files(self) -> list[Path]:
        return sorted(p for p in self.root.iterdir()
                      if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES and not p.name.startswith("."))

    def read(self) -> Iterator[Record]:
        for f in sorted(self.input_files(), key=_natural):
            m = NAME.match(f.stem)
            if not m:
                raise MetadbError(f"{f}: not a KimiaPath960 name; expected <letter><number>.tif such as A12.tif")
            yield Record(f.name, f.name, (m.group(1).upper(),), None, file=f)

    def class_names(self) -> list[str]:
        return sorted({NAME.match(f.stem).group(1).upper() for f in self.input_files() if NAME.match(f.stem)})


def _natural(p: Path) -> tuple[str, int]:
    m = NAME.match(p.stem)
    return (m.group(1).upper(), int(m.group(2))) if m else (p.stem, 0)
