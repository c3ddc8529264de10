"""`image_stats`: resolution, channels, bit depth and intensity statistics.

Dataset-level moments come from exact sums (float64) and a 256-bin intensity histogram, so
chunks merge exactly. Skewness, kurtosis, MAD and histogram entropy follow the statistical
meta-features of "Cats, not CAT scans" (computed on the grey-level intensities).
"""

from __future__ import annotations

from collections import Counter
from typing import Any

import numpy as np
from scipy import ndimage

from metadb.extract import Extractor, Partial, counter_quantile, entropy_bits, histogram_quantile, register_extractor
from metadb.imageio import Decoded

BINS = 256


@register_extractor
class ImageStats(Extractor):
    """Resolution and aspect ratio, channels, bit depth, intensity moments, entropy, sharpness."""

    name = "image_stats"
    version = "1"
    image_columns = {
        "intensity_mean": "DOUBLE", "intensity_std": "DOUBLE", "entropy": "DOUBLE",
        "sharpness": "DOUBLE", "dynamic_range": "DOUBLE",
    }

    def new_partial(self) -> Partial:
        return {
            "n": 0, "n_px": 0, "rgb_sum": np.zeros(3), "rgb_sumsq": np.zeros(3),
            "moments": np.zeros(4), "hist": np.zeros(BINS, dtype=np.int64),
            "widths": Counter(), "heights": Counter(), "aspect_sum": 0.0, "aspect_sumsq": 0.0,
            "channels": Counter(), "bit_depth": Counter(),
            "sharpness_sum": 0.0, "dynamic_range_sum": 0.0, "entropy_sum": 0.0,
        }

    def update(self, partial: Partial, image: Decoded, record: Any) -> dict[str, Any]:
        g = image.gray.astype(np.float64)
        hist = np.bincount(np.clip((image.gray * (BINS - 1) + 0.5).astype(np.int32), 0, BINS - 1).ravel(),
                           minlength=BINS)
        sharp = float(ndimage.laplace(image.gray).var())
        drange = histogram_quantile(hist, 0.99) - histogram_quantile(hist, 0.01)
        ent = entropy_bits(hist)
        px = image.rgb.reshape(-1, 3).astype(np.float64)
        aspect = image.width / image.height
        partial["n"] += 1
        partial["n_px"] += px.shape[0]
        partial["rgb_sum"] += np.einsum("ij->j", px)  # 4x faster than px.sum(axis=0) over N x 3
        partial["rgb_sumsq"] += np.einsum("ij,ij->j", px, px)
        gf = g.ravel()
        g2 = gf * gf
        partial["moments"] += (gf.sum(), g2.sum(), (g2 * gf).sum(), (g2 * g2).sum())
        partial["hist"] += hist
        partial["widths"][image.width] += 1
        partial["heights"][image.height] += 1
        partial["aspect_sum"] += aspect
        partial["aspect_sumsq"] += aspect * aspect
        partial["channels"][image.channels] += 1
        partial["bit_depth"][image.bit_depth] += 1
        partial["sharpness_sum"] += sharp
        partial["dynamic_range_sum"] += drange
        partial["entropy_sum"] += ent
        return {"intensity_mean": float(gf.mean()), "intensity_std": float(gf.std()), "entropy": ent,
                "sharpness": sharp, "dynamic_range": drange}

    def finalize(self, partial: Partial) -> dict[str, float]:
        n, n_px = partial["n"], partial["n_px"]
        if n == 0:
            return {}
        mean_c = partial["rgb_sum"] / n_px
        std_c = np.sqrt(np.maximum(partial["rgb_sumsq"] / n_px - mean_c**2, 0.0))
        m1, m2, m3, m4 = partial["moments"] / n_px
        var = max(m2 - m1**2, 0.0)
        sd = np.sqrt(var)
        mu3 = m3 - 3 * m1 * m2 + 2 * m1**3
        mu4 = m4 - 4 * m1 * m3 + 6 * m1**2 * m2 - 3 * m1**4
        hist = partial["hist"]
        median = histogram_quantile(hist, 0.5)
        centres = (np.arange(BINS) + 0.5) / BINS
        dev = np.abs(centres - median)
        order = np.argsort(dev)
        mad = float(dev[order][np.searchsorted(np.cumsum(hist[order]), hist.sum() / 2)])
        aspect_mean = partial["aspect_sum"] / n
        out = {
            "width_min": float(min(partial["widths"])), "width_median": counter_quantile(partial["widths"], 0.5),
            "width_max": float(max(partial["widths"])), "height_min": float(min(partial["heights"])),
            "height_median": counter_quantile(partial["heights"], 0.5), "height_max": float(max(partial["heights"])),
            "aspect_mean": aspect_mean,
            "aspect_std": float(np.sqrt(max(partial["aspect_sumsq"] / n - aspect_mean**2, 0.0))),
            "channels_mode": float(partial["channels"].most_common(1)[0][0]),
            "bit_depth_max": float(max(partial["bit_depth"])),
            "intensity_mean": float(m1), "intensity_std": float(sd),
            "intensity_skewness": float(mu3 / sd**3) if sd > 0 else 0.0,
            "intensity_kurtosis": float(mu4 / var**2 - 3.0) if var > 0 else 0.0,
            "intensity_mad": mad, "histogram_entropy": entropy_bits(hist),
            "sharpness_mean": partial["sharpness_sum"] / n,
            "dynamic_range_mean": partial["dynamic_range_sum"] / n,
            "image_entropy_mean": partial["entropy_sum"] / n,
        }
        for c, ch in enumerate("rgb"):
            out[f"intensity_mean_{ch}"] = float(mean_c[c])
            out[f"intensity_std_{ch}"] = float(std_c[c])
        return out
