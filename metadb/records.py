"""The unit that flows from a loader to the extractors: one labelled image."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np


@dataclass(frozen=True, slots=True)
class Record:
    """One image of a dataset, as its on-disk layout describes it.

    File layouts set `file` (decoded later, in a worker, at a bounded working resolution);
    container layouts (HDF5, NPZ, STL-10 binaries) set `pixels`, already read as uint8 arrays,
    because re-opening the container per image would dominate the cost.
    """

    image_id: str
    path: str  # relative to the dataset root; "container#index" for container layouts
    labels: tuple[str, ...]  # one label for single-label/ordinal; the positives for multi-label
    split: str | None = None
    file: Path | None = None
    pixels: np.ndarray | None = None

    @property
    def label(self) -> str | None:
        """Single label, or the sorted positives joined by '|' (None when there is none)."""
        return "|".join(self.labels) if self.labels else None
