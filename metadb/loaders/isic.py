"""`isic`: ISIC 2018 Task 3 images with the one-hot ground-truth CSV (MEL,NV,BCC,AKIEC,BKL,DF,VASC)."""

from __future__ import annotations

from pathlib import Path
from typing import Iterator

from metadb.errors import MetadbError
from metadb.loaders.base import Loader, read_csv_text, register_loader
from metadb.records import Record

PARTS = (("Training", "train"), ("Validation", "validation"), ("Test", "test"))


@register_loader("isic")
class Isic2018(Loader):
    """ISIC2018_Task3_<Part>_Input/*.jpg labelled by ISIC2018_Task3_<Part>_GroundTruth.csv."""

    def _truth(self, part: str) -> Path | None:
        name = f"ISIC2018_Task3_{part}_GroundTruth.csv"
        for p in (self.root / f"ISIC2018_Task3_{part}_GroundTruth" / name, self.root / name):
            if p.exists():
                return p
        return None

    def _parts(self) -> list[tuple[str, str, Path, Path]]:
        found = []
        for part, split in PARTS:
            truth, images = self._truth(part), self.root / f"ISIC2018_Task3_{part}_Input"
            if truth and images.is_dir():
                found.append((part, split, truth, images))
        return found

    def check(self) -> None:
        if not (self.root / "ISIC2018_Task3_Training_Input").is_dir():
            raise MetadbError(f"{self.root / 'ISIC2018_Task3_Training_Input'} not found; expected "
                              "ISIC2018_Task3_Training_Input/*.jpg and ISIC2018_Task3_Training_GroundTruth.csv")
        if self._truth("Training") is None:
            raise MetadbError(f"{self.root / 'ISIC2018_Task3_Training_GroundTruth' / 'ISIC2018_Task3_Training_GroundTruth.csv'} not found; "
                              "expected the one-hot ground truth image,MEL,NV,BCC,AKIEC,BKL,DF,VASC")
        for _, _, truth, _ in self._parts():
            header = (read_csv_text(truth) or [[]])[0]
            if not header or header[0] != "image" or len(header) < 3:
                raise MetadbError(f"{truth}: header {','.join(header) or '(empty)'}; expected image,MEL,NV,BCC,AKIEC,BKL,DF,VASC")

    def input_files(self) -> list[Path]:
        return [p for _, _, truth, images in self._parts() for p in (truth, *sorted(images.glob("*.jpg")))]

    def class_names(self) -> list[str]:
        return read_csv_text(self._truth("Training"))[0][1:]

    def read(self) -> Iterator[Record]:
        for _, split, truth, images in self._parts():
            rows = read_csv_text(truth)
            classes = rows[0][1:]
            for line, row in enumerate(rows[1:], start=2):
                if row:
                    yield self._record(truth, line, row, classes, split, images)

    def _record(self, truth: Path, line: int, row: list[str], classes: list[str], split: str, images: Path) -> Record:
        try:
            hot = [c for c, v in zip(classes, row[1:]) if float(v) == 1.0]
        except ValueError:
            raise MetadbError(f"{truth} line {line}: non-numeric one-hot cell in {','.join(row)}") from None
        if len(hot) != 1 or len(row) != len(classes) + 1:
            raise MetadbError(f"{truth} line {line}: expected exactly one 1.0 among {','.join(classes)}; got {','.join(row[1:])}")
        f = images / f"{row[0]}.jpg"
        if not f.exists():
            raise MetadbError(f"{f} not found (listed in {truth} line {line})")
        rel = f.relative_to(self.root).as_posix()
        return Record(row[0], rel, (hot[0],), split, file=f)
