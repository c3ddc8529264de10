"""Read-time confounders against materialised copies: what the lazy variant costs per image read.

The study writes a second copy of every image per confounder and rate (include_*.py copy the
whole folder, then overwrite the confounded ones). metadb draws the confounder as each image is
decoded. The fair baseline is reading such a copy: decode a PNG that already holds the confounded
image. Measured on the same images, whole call included (open, decode, RGB, confounder); the copy
is what a materialised variant reads, so its decode time is the baseline; the copies' disk space
is reported too. Reads alternate (lazy, copy, lazy, ...) over rounds and medians are compared.

    python bench/bench_confound.py [--images 200] [--side 512] [--rounds 5]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def main() -> None:
    from PIL import Image
    from skimage import data

    from metadb.confound.variant import Alter

    ap = argparse.ArgumentParser()
    ap.add_argument("--images", type=int, default=200)
    ap.add_argument("--side", type=int, default=512)
    ap.add_argument("--rounds", type=int, default=5)
    args = ap.parse_args()
    rng = np.random.default_rng(0)
    photo = np.asarray(Image.fromarray(data.camera()).resize((args.side, args.side), Image.BILINEAR))
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        originals = []
        for i in range(args.images):  # real photograph, shifted per image so files differ
            f = root / f"{i}.png"
            Image.fromarray(np.roll(photo, int(rng.integers(0, args.side)), axis=1)).save(f)
            originals.append(f)
        print(f"{args.images} PNGs of {args.side} px (scikit-image camera); median of {args.rounds} rounds")
        print(f"{'kind':8} {'lazy ms/img':>12} {'copy ms/img':>12} {'ratio':>7} {'copy MB':>8}")
        for kind in ("tag", "lowpass", "noise"):
            alter = Alter(kind, frozenset(range(args.images)), 42, kind == "noise")
            copies = []
            for i, f in enumerate(originals):
                c = root / f"{kind}-{i}.png"
                alter(i, Image.open(f).convert("RGB")).save(c)
                copies.append(c)
            lazy, copy = [], []
            for _ in range(args.rounds):
                t0 = time.perf_counter()
                for i, f in enumerate(originals):
                    alter(i, Image.open(f).convert("RGB")).load()
                lazy.append((time.perf_counter() - t0) / args.images)
                t0 = time.perf_counter()
                for c in copies:
                    Image.open(c).convert("RGB").load()
                copy.append((time.perf_counter() - t0) / args.images)
            lz, cp = statistics.median(lazy), statistics.median(copy)
            mb = sum(c.stat().st_size for c in copies) / 1e6
            print(f"{kind:8} {lz * 1e3:12.3f} {cp * 1e3:12.3f} {lz / cp:7.2f} {mb:8.1f}")


if __name__ == "__main__":
    main()
