"""Lineage by perceptual hash: near-duplicates across datasets found within a Hamming distance.

Real images only: patches of scikit-image's sample photographs, written as PNG and recompressed
as JPEG, as a dataset copied and re-saved by another group would be.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from conftest import real_patches, write_imagefolder
from metadb import api, outcomes
from metadb.errors import MetadbError

FLAT_HASHES = (0, -(2**63))  # see queries/image_matches.sql: black, and any other uniform grey


def write_jpeg_copy(src: Path, dst: Path, quality: int = 75) -> Path:
    """Every PNG under src re-saved as JPEG under dst, same class folders."""
    for png in src.rglob("*.png"):
        out = dst / png.relative_to(src).with_suffix(".jpg")
        out.parent.mkdir(parents=True, exist_ok=True)
        Image.open(png).convert("RGB").save(out, "JPEG", quality=quality)
    return dst


def add_uniform_image(folder: Path, cls: str, grey: int) -> None:
    (folder / cls).mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (64, 64), (grey, grey, grey)).save(folder / cls / "blank.png")


def hamming(a: int, b: int) -> int:
    return bin((a ^ b) & (2**64 - 1)).count("1")


def test_flat_images_hash_to_the_values_the_queries_ignore():
    from extractors.phash import phash64

    for grey in (0, 1, 37, 128, 255):
        for size in ((28, 28), (96, 96), (224, 160)):
            assert phash64(Image.new("RGB", size, (grey,) * 3)) in FLAT_HASHES
    # a real image hashes far from them: its DCT has as many coefficients above the median as below
    patch = Image.fromarray(real_patches("astronaut", 64, 1)[0])
    assert min(hamming(phash64(patch), h) for h in FLAT_HASHES) > 20


@pytest.fixture
def copied(db, tmp_path):
    """'orig': PNG patches of two real photographs; 'copy': the same patches as JPEG (quality 75)."""
    orig = write_imagefolder(tmp_path / "orig", {"a": "astronaut", "b": "coffee"}, n=5)
    api.ingest(db, path=orig, name="orig", workers=1)
    api.ingest(db, path=write_jpeg_copy(orig, tmp_path / "copy"), name="copy", workers=1)
    api.ingest(db, path=write_imagefolder(tmp_path / "other", {"c": "camera", "d": "chelsea"}, n=5), name="other",
               workers=1)
    return db


def test_a_real_image_and_its_jpeg_recompression_match(copied):
    db = copied
    exact = api.sql("SELECT count(*) FROM images a JOIN images b ON a.phash = b.phash "
                    "WHERE a.dataset = 'orig' AND b.dataset = 'copy'", db)[1][0][0]
    cols, rows = api.query("image_matches", db, dataset="orig")
    assert cols == ["dataset_a", "image_a", "path_a", "dataset_b", "image_b", "path_b", "distance"]
    # every image pairs with its own recompressed copy, by path, and with nothing in 'other'
    assert sorted((r[2], r[5]) for r in rows) == sorted((f"{c}/{k}.png", f"{c}/{k}.jpg") for c in "ab" for k in range(5))
    assert {r[3] for r in rows} == {"copy"}
    distances = [r[6] for r in rows]
    assert max(distances) <= 4 and exact < len(rows)  # exact equality misses the copies that moved a few bits
    assert api.query("overlap", db)[1] == [("copy", "orig", 10, 1.0, 1.0, 4)]
    # the threshold is recorded and can be set: per call, or for every query through settings
    assert len(api.query("image_matches", db, dataset="orig", max_distance=0)[1]) == exact
    api.sql("UPDATE settings SET value = '0' WHERE name = 'lineage_max_hamming'", db, write=True)
    assert api.query("overlap", db)[1] == [("copy", "orig", exact, exact / 10, exact / 10, 0)]


def test_best_source_excludes_a_recompressed_copy_of_the_target(copied, tmp_path):
    db = copied
    outcomes.import_outcomes(db, str(_csv(tmp_path, "source,target,value\ncopy,orig,0.9\nother,orig,0.8\n")), "long",
                             metric="auc")
    best = lambda x: [r[1] for r in api.query("best_source", db, target="orig", exclude_lineage=x)[1]]  # noqa: E731
    assert best(False) == ["copy", "other"]
    assert best(True) == ["other"]


def test_two_different_uniform_images_do_not_exclude_a_source(db, tmp_path):
    target = write_imagefolder(tmp_path / "target", {"a": "astronaut"}, n=4)
    source = write_imagefolder(tmp_path / "source", {"c": "camera"}, n=4)
    add_uniform_image(target, "a", grey=30)  # a blank slide in one, a white frame in the other
    add_uniform_image(source, "c", grey=240)
    api.ingest(db, path=target, name="target", workers=1)
    api.ingest(db, path=source, name="source", workers=1)
    assert api.sql("SELECT count(DISTINCT phash) FROM images WHERE image_id LIKE '%blank%'", db)[1] == [(1,)]
    outcomes.import_outcomes(db, str(_csv(tmp_path, "source,target,value\nsource,target,0.9\n")), "long",
                             metric="auc")
    assert [r[1] for r in api.query("best_source", db, target="target", exclude_lineage=True)[1]] == ["source"]
    assert api.query("overlap", db)[1] == [] and api.query("image_matches", db)[1] == []


def test_bad_threshold_is_one_line(copied):
    with pytest.raises(MetadbError, match=r"max_distance: 33; expected 0\.\.20") as err:
        api.query("image_matches", copied, max_distance=33)
    assert "\n" not in str(err.value)


def _csv(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "outcomes.csv"
    p.write_text(text)
    return p


def test_band_join_finds_exactly_the_pairs_of_an_all_pairs_comparison():
    """The pigeonhole band join against numpy's all-pairs popcount on real hashes, at every threshold."""
    import duckdb

    from extractors.phash import phash64

    def jpeg(a: np.ndarray) -> Image.Image:
        buf = io.BytesIO()
        Image.fromarray(a).save(buf, "JPEG", quality=50)
        return Image.open(buf).convert("RGB")

    x = real_patches("astronaut", 32, 150)  # dataset x; dataset y: 60 of them recompressed, 90 others
    images = [Image.fromarray(p) for p in x] + [jpeg(p) for p in x[:60]] + [Image.fromarray(p) for p in
                                                                             real_patches("coffee", 32, 90)]
    hashes = np.array([phash64(im) for im in images], dtype=np.int64)
    half = len(x)
    con = duckdb.connect()
    con.execute("CREATE TABLE images (dataset VARCHAR, image_id VARCHAR, path VARCHAR, phash BIGINT)")
    con.executemany("INSERT INTO images VALUES (?, ?, ?, ?)",
                    [["x" if k < half else "y", str(k), str(k), int(h)] for k, h in enumerate(hashes)])
    con.execute("CREATE TABLE settings (name VARCHAR, value VARCHAR, meaning VARCHAR)")
    con.execute((Path(__file__).parent.parent / "queries" / "image_matches.sql").read_text().split("*/", 1)[1])
    u = hashes.view(np.uint64)
    dist = np.unpackbits((u[:half, None] ^ u[None, half:]).view(np.uint8), axis=-1).reshape(half, -1, 64).sum(-1)
    flat = np.array([min(hamming(int(h), f) for f in FLAT_HASHES) for h in hashes])
    for t in (0, 2, 4, 8, 12):
        got = con.execute("SELECT image_a::INT, image_b::INT, distance FROM image_matches(max_distance := ?)",
                          [t]).fetchall()
        i, j = np.nonzero((dist <= t) & (flat[:half, None] > t) & (flat[None, half:] > t))
        assert sorted(got) == sorted(zip(i.tolist(), (j + half).tolist(), dist[i, j].tolist())), t
        assert len(got) >= (30 if t >= 4 else 1)  # the comparison is not vacuous
