"""`csv`: a labels.csv with columns path,label[,split]; paths relative to the CSV's folder."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Iterator

from metadb.errors import MetadbError
from metadb.loaders.base import Loader, read_csv_text, register_loader
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
        header = (read_csv_text(self.csv_file) or [[]])[0]
        missing = {"path", "label"} - {h.strip().lower() for h in header}
        if missing:
            raise MetadbError(
                f"{self.csv_file}: missing column(s) {', '.join(sorted(missing))}; "
                f"found {', '.join(header) or 'no header'}; expected path,label[,split]"
            )

    def _rows(self) -> Iterator[tuple[int, dict[str, str]]]:
        """(line number, row) with lower-case column names, values stripped."""
        rows = read_csv_text(self.csv_file)
        header = [h.strip().lower() for h in (rows[0] if rows else [])]
        for line, values in enumerate(rows[1:], start=2):
            if any(v.strip() for v in values):
                yield line, {k: v.strip() for k, v in zip(header, values) if k}

    def input_files(self) -> list[Path]:
        return [self.csv_file] + [self.base / r["path"] for _, r in self._rows() if (self.base / r["path"]).exists()]

    def read(self) -> Iterator[Record]:
        seen: dict[str, tuple[int, str, str]] = {}  # normalised path -> (line, label, split)
        for line, row in self._rows():
            if not row.get("path") or not row.get("label"):
                raise MetadbError(f"{self.csv_file} line {line}: empty path or label")
            key = os.path.normpath(row["path"])
            here = (line, row["label"], row.get("split") or "")
            if key in seen:
                first = seen[key]
                if first[1:] != here[1:]:
                    raise MetadbError(
                        f"{self.csv_file} lines {first[0]} and {line} both list {row['path']}, as "
                        f"{'/'.join(filter(None, first[1:]))} and {'/'.join(filter(None, here[1:]))}",
                        "keep the row that is right and remove the other")
                self.skip(row["path"], f"listed twice in {self.csv_file.name} (lines {first[0]} and {line}); counted once")
                continue
            seen[key] = here
            yield Record(row["path"], row["path"], (row["label"],), row.get("split") or None,
                         file=self.base / row["path"])
