"""`csv`: a labels.csv with columns path,label[,split]; paths relative to the CSV's folder."""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Iterator

from metadb.errors import MetadbError
from metadb.loaders.base import Loader, register_loader
from metadb.records import Record


@register_loader("csv")
class CsvLayout(Loader):
    """path,label[,split] rows in <root>/labels.csv (or the CSV file given as root)."""

    @property
    def csv_file(self) -> Path:
        return self.root if self.root.suffix.lower() == ".csv" else self.root / "labels.csv"

    @property
    def base(self) -> Path:
        return self.csv_file.parent

    def check(self) -> None:
        self.require(self.csv_file, "a CSV with columns path,label[,split]")
        with self.csv_file.open(newline="", encoding="utf-8-sig") as fh:
            header = next(csv.reader(fh), [])
        missing = {"path", "label"} - {h.strip().lower() for h in header}
        if missing:
            raise MetadbError(
                f"{self.csv_file}: missing column(s) {', '.join(sorted(missing))}; "
                f"found {', '.join(header) or 'no header'}; expected path,label[,split]"
            )

    def _rows(self) -> Iterator[dict[str, str]]:
        with self.csv_file.open(newline="", encoding="utf-8-sig") as fh:
            for row in csv.DictReader(fh):
                yield {k.strip().lower(): (v or "").strip() for k, v in row.items() if k}

    def input_files(self) -> list[Path]:
        return [self.csv_file] + [self.base / r["path"] for r in self._rows() if (self.base / r["path"]).exists()]

    def records(self) -> Iterator[Record]:
        for line, row in enumerate(self._rows(), start=2):
            if not row.get("path") or not row.get("label"):
                raise MetadbError(f"{self.csv_file} line {line}: empty path or label")
            yield Record(row["path"], row["path"], (row["label"],), row.get("split") or None,
                         file=self.base / row["path"])
