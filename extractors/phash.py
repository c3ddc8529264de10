"""`phash`: a 64-bit perceptual hash per image, so shared images are found with a SQL join."""

from __future__ import annotations

from typing import Any

import imagehash
import numpy as np

from metadb.extract import Extractor, Partial, register_extractor


def phash64(image) -> int:
    """imagehash's DCT pHash as a signed 64-bit integer (DuckDB BIGINT; xor + bit_count work)."""
    bits = imagehash.phash(image).hash.flatten()
    return int(np.packbits(bits).view(">i8")[0])


@register_extractor
class PHash(Extractor):
    """Perceptual hash (DCT pHash, 64 bits) per image; per-image only, overlap is a SQL join."""

    name = "phash"
    version = "1"
    image_columns = {"phash": "BIGINT"}

    def update(self, partial: Partial, image: Any, record: Any) -> dict[str, Any]:
        return {"phash": phash64(image.pil)}

    def finalize(self, partial: Partial) -> dict[str, float]:
        return {}
