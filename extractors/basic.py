"""`basic`: size, class counts, imbalance and label entropy — no pixels needed."""

from __future__ import annotations

from collections import Counter
from typing import Any

import numpy as np

from metadb.extract import Extractor, Partial, entropy_bits, register_extractor


@register_extractor
class Basic(Extractor):
    """Number of images and classes, class counts, imbalance ratio and class entropy."""

    name = "basic"
    version = "1"
    needs_pixels = False

    def new_partial(self) -> Partial:
        return {"n_images": 0, "class_counts": Counter(), "n_unlabelled": 0, "label_cardinality": 0}

    def update(self, partial: Partial, image: Any, record: Any) -> dict[str, Any]:
        partial["n_images"] += 1
        partial["class_counts"].update(record.labels)
        partial["n_unlabelled"] += not record.labels
        partial["label_cardinality"] += len(record.labels)
        return {}

    def finalize(self, partial: Partial) -> dict[str, float]:
        counts = np.array(sorted(partial["class_counts"].values()), dtype=np.float64)
        n = partial["n_images"]
        out = {"n_images": float(n), "n_classes": float(len(counts))}
        if len(counts):
            out["imbalance_ratio"] = float(counts.max() / counts.min())
            out["class_entropy"] = entropy_bits(counts)
            # 1.0 for perfectly balanced classes, whatever their number
            out["class_entropy_norm"] = float(out["class_entropy"] / np.log2(len(counts))) if len(counts) > 1 else 0.0
            out["min_class_count"] = float(counts.min())
            out["max_class_count"] = float(counts.max())
        out["label_cardinality"] = partial["label_cardinality"] / n if n else 0.0
        out["unlabelled_fraction"] = partial["n_unlabelled"] / n if n else 0.0
        return out
