"""Lineage benchmark: the image_matches band join against all-pairs Hamming comparisons, same run.

Two datasets of N and M 64-bit hashes shaped like pHashes (exactly 32 bits set, as a pHash of an
image with distinct DCT coefficients has), with `--copies` images of the first planted in the
second after 1 or 2 coefficient swaps (Hamming 2 or 4), as a recompressed or resized copy moves.
All three methods must return the same pairs at Hamming <= t:

- metadb: `image_matches(max_distance := t)`, the pigeonhole band join in DuckDB (t + 1 bands;
  pairs within t share a band exactly, so an equi-join finds every candidate);
- naive DuckDB: the all-pairs join `ON bit_count(xor(a.h, b.h)) <= t` (N x M comparisons);
- numpy: all pairs in blocks with `np.bitwise_count` (vectorised popcount, N x M comparisons).

Usage: python bench/bench_lineage.py [--n 100000] [--m 100000] [--t 4] [--skip-naive]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import duckdb
import numpy as np

QUERY = Path(__file__).resolve().parent.parent / "queries" / "image_matches.sql"


def phash_like(n: int, rng: np.random.Generator) -> np.ndarray:
    """n random 64-bit hashes with exactly 32 bits set, as int64."""
    bits = np.zeros((n, 64), dtype=np.uint8)
    bits[:, :32] = 1
    bits = rng.permuted(bits, axis=1)
    return np.packbits(bits, axis=1).view(">u8").astype(np.uint64).reshape(-1).view(np.int64)


def swap_bits(h: np.ndarray, swaps: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Each hash with `swaps[i]` of its set bits cleared and as many clear bits set (Hamming 2 x swaps)."""
    out = h.view(np.uint64).copy()
    for i in range(len(out)):
        bits = np.array([(int(out[i]) >> k) & 1 for k in range(64)])
        on, off = rng.permutation(np.flatnonzero(bits))[: swaps[i]], rng.permutation(np.flatnonzero(1 - bits))[: swaps[i]]
        for k in [*on, *off]:
            out[i] ^= np.uint64(1) << np.uint64(k)
    return out.view(np.int64)


def store(a: np.ndarray, b: np.ndarray) -> duckdb.DuckDBPyConnection:
    """An in-memory DuckDB with metadb's images columns, its settings table and the image_matches macro."""
    import pyarrow as pa

    con = duckdb.connect()
    ids = pa.array([str(k) for k in range(len(a) + len(b))])
    frame = pa.table({"dataset": ["a"] * len(a) + ["b"] * len(b), "image_id": ids, "path": ids,
                      "phash": np.concatenate([a, b])})
    con.execute("CREATE TABLE images AS SELECT dataset, image_id, path, phash FROM frame")
    con.execute("CREATE TABLE settings (name VARCHAR, value VARCHAR, meaning VARCHAR)")
    con.execute(QUERY.read_text().split("*/", 1)[1])
    return con


def numpy_pairs(a: np.ndarray, b: np.ndarray, t: int, block: int = 2048) -> set[tuple[int, int]]:
    ua, ub = a.view(np.uint64), b.view(np.uint64)
    found = set()
    for s in range(0, len(ua), block):
        d = np.bitwise_count(ua[s:s + block, None] ^ ub[None, :])
        i, j = np.nonzero(d <= t)
        found.update(zip((i + s).tolist(), (j + len(a)).tolist()))
    return found


def timed(fn):
    t0 = time.perf_counter()
    out = fn()
    return time.perf_counter() - t0, out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=100_000)
    ap.add_argument("--m", type=int, default=100_000)
    ap.add_argument("--t", type=int, default=4)
    ap.add_argument("--copies", type=int, default=1_000)
    ap.add_argument("--skip-naive", action="store_true", help="skip the all-pairs DuckDB join (the slowest)")
    args = ap.parse_args()
    rng = np.random.default_rng(0)
    a = phash_like(args.n, rng)
    b = phash_like(args.m, rng)
    src = rng.choice(args.n, args.copies, replace=False)
    b[: args.copies] = swap_bits(a[src], rng.integers(1, 3, args.copies), rng)
    con = store(a, b)
    t = args.t
    print(f"image_matches N={args.n:,} x M={args.m:,} hashes, t={t}, {args.copies:,} planted copies")

    t_band, rows = timed(lambda: con.execute(
        "SELECT image_a::BIGINT, image_b::BIGINT FROM image_matches(max_distance := ?)", [t]).fetchall())
    band = set(rows)
    print(f"  metadb band join (DuckDB):       {t_band:8.2f} s  {len(band):,} pairs")
    t_np, np_pairs = timed(lambda: numpy_pairs(a, b, t))
    print(f"  numpy all pairs (bitwise_count): {t_np:8.2f} s  {len(np_pairs):,} pairs   ratio {t_np / t_band:.1f}x")
    assert band == np_pairs, "band join and all-pairs comparison disagree"
    if not args.skip_naive:
        t_naive, rows = timed(lambda: con.execute(
            "SELECT x.image_id::BIGINT, y.image_id::BIGINT FROM images x JOIN images y "
            "ON x.dataset = 'a' AND y.dataset = 'b' AND bit_count(xor(x.phash, y.phash)) <= ?", [t]).fetchall())
        print(f"  naive DuckDB all-pairs join:     {t_naive:8.2f} s  {len(rows):,} pairs   ratio {t_naive / t_band:.1f}x")
        assert set(rows) == band, "band join and naive join disagree"
    print(f"  planted copies found: {len({(int(s), k + args.n) for k, s in enumerate(src)} & band):,} of {args.copies:,}")


if __name__ == "__main__":
    main()
