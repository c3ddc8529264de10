"""Every registered extractor honours the map/reduce contract: partials merge to the one-pass answer."""

from __future__ import annotations

import numpy as np
import pytest

import extractors  # noqa: F401
from conftest import real_patches
from metadb.extract import create_extractor, extractors as registry
from metadb.imageio import decode
from metadb.records import Record
from metadb.registry import Registry


def _records() -> list[Record]:
    images = real_patches("astronaut", 48, 6) + real_patches("camera", 40, 5)
    return [Record(f"i{k}", f"i{k}", ("a" if k % 3 else "b",), pixels=img) for k, img in enumerate(images)]


def _fold(ext, records):
    p = ext.new_partial()
    rows = [ext.update(p, decode(r, 256) if ext.needs_pixels else None, r) for r in records]
    return p, rows


@pytest.mark.parametrize("name", registry.names())
def test_split_partials_merge_to_the_single_pass_answer(name):
    ext = create_extractor(name)
    assert type(ext).__doc__ and type(ext).version
    records = _records()
    whole, rows = _fold(ext, records)
    left, rows_l = _fold(ext, records[:4])
    right, rows_r = _fold(ext, records[4:])
    merged = ext.merge(left, right)
    assert rows_l + rows_r == rows
    a, b = ext.finalize(whole), ext.finalize(merged)
    assert a.keys() == b.keys()
    for k in a:
        assert b[k] == pytest.approx(a[k], rel=1e-12, abs=1e-15), k
        assert np.isfinite(a[k]), k
    for col in type(ext).image_columns:
        assert all(col in r for r in rows)


def test_phash_finds_the_same_image_after_recompression_but_not_another_image():
    from extractors.phash import phash64
    from PIL import Image
    import io

    a, b = real_patches("astronaut", 128, 2)
    buf = io.BytesIO()
    Image.fromarray(a).save(buf, "JPEG", quality=70)
    same = phash64(Image.open(buf).convert("RGB"))
    assert bin(phash64(Image.fromarray(a)) ^ same).count("1") <= 4
    assert bin(phash64(Image.fromarray(a)) ^ phash64(Image.fromarray(b))).count("1") > 16


def test_registry_lists_with_patterns_in_natural_order_and_suggests_names():
    reg: Registry[object] = Registry("thing")
    for n in ("resnet101", "resnet18", "resnet50", "vit_base"):
        reg.register(n)(lambda: n)
    assert reg.names("resnet*") == ["resnet18", "resnet50", "resnet101"]
    assert reg.names("*", exclude=["vit*"]) == ["resnet18", "resnet50", "resnet101"]
    with pytest.raises(KeyError, match="unknown thing 'resnet5'; did you mean resnet50"):
        reg.entry("resnet5")
    with pytest.raises(ValueError, match="registered twice"):
        reg.register("vit_base")(lambda: None)
