"""Every loader on a small fixture written in exactly its dataset's published layout and format.

Pixel content comes from real images that scikit-image and scikit-learn ship.
"""

from __future__ import annotations

import os
from pathlib import Path

import h5py
import numpy as np
import pytest
from PIL import Image

from conftest import real_patches
from metadb import api, catalog
from metadb.errors import MetadbError
from metadb.loaders import create_loader, loaders


def _jpeg(path: Path, pixels: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pixels).save(path, "JPEG", quality=92)


# --- kimia -------------------------------------------------------------------------------------
def kimia_fixture(root: Path) -> Path:
    root.mkdir(parents=True)
    patches = real_patches("immunohistochemistry", 64, 6)
    for k, letter in enumerate("ABT"):
        for n in (1, 2):
            Image.fromarray(patches[2 * k + n - 1]).save(root / f"{letter}{n}.tif")
    (root / "Thumbs.db").write_bytes(b"\0" * 10)  # not an image: ignored
    return root


def test_kimia_labels_are_the_leading_letter(tmp_path):
    loader = create_loader("kimia", kimia_fixture(tmp_path / "KimiaPath960"))
    loader.check()
    recs = list(loader.records())
    assert [(r.image_id, r.labels) for r in recs] == [
        ("A1.tif", ("A",)), ("A2.tif", ("A",)), ("B1.tif", ("B",)), ("B2.tif", ("B",)), ("T1.tif", ("T",)), ("T2.tif", ("T",))]
    assert loader.class_names() == ["A", "B", "T"]


def test_kimia_refuses_a_badly_named_file(tmp_path):
    root = kimia_fixture(tmp_path / "k")
    Image.fromarray(real_patches("cell", 32, 1)[0]).save(root / "slide_3.tif")
    with pytest.raises(MetadbError, match=r"slide_3.tif: not a KimiaPath960 name"):
        create_loader("kimia", root).check()


# --- chest -------------------------------------------------------------------------------------
def chest_fixture(root: Path) -> Path:
    xray = real_patches("camera", 64, 8)
    k = 0
    for split in ("train", "val", "test"):
        for cls in ("NORMAL", "PNEUMONIA"):
            n = 2 if split == "train" else 1
            for i in range(n):
                _jpeg(root / "chest_xray" / split / cls / f"{cls.lower()}-{i}.jpeg", xray[k])
                k += 1
    (root / "chest_xray" / "train" / "NORMAL" / ".DS_Store").write_bytes(b"Bud1")
    _jpeg(root / "chest_xray" / "__MACOSX" / "train" / "NORMAL" / "._x.jpeg", xray[0])
    return root


def test_chest_split_and_label_from_the_path(tmp_path):
    info = catalog.get("chest")
    loader = create_loader("chest", info.locate(chest_fixture(tmp_path)))
    loader.check()
    recs = list(loader.records())
    assert len(recs) == 8
    assert {(r.split, r.labels[0]) for r in recs} == {(s, c) for s in ("train", "val", "test") for c in ("NORMAL", "PNEUMONIA")}
    assert sum(r.split == "train" for r in recs) == 4
    assert recs[0].path == "train/NORMAL/normal-0.jpeg"


def test_chest_end_to_end_ingest(tmp_path, db):
    chest_fixture(tmp_path / "data")
    result = api.ingest(db, dataset="chest", root=tmp_path / "data", workers=1)
    assert (result.images_ok, result.images_failed) == (8, 0)
    cols, rows = api.sql("SELECT split, label, count(*) FROM images GROUP BY ALL ORDER BY ALL", db)
    assert rows == [("test", "NORMAL", 1), ("test", "PNEUMONIA", 1), ("train", "NORMAL", 2), ("train", "PNEUMONIA", 2),
                    ("val", "NORMAL", 1), ("val", "PNEUMONIA", 1)]
    assert api.sql("SELECT modality, label_type, source_url FROM datasets", db)[1] == [
        ("xray", "single-label", "https://data.mendeley.com/datasets/rscbjbr9sj/2")]


# --- isic --------------------------------------------------------------------------------------
ISIC_CLASSES = ["MEL", "NV", "BCC", "AKIEC", "BKL", "DF", "VASC"]


def isic_fixture(root: Path, rows: list[tuple[str, str]] | None = None) -> Path:
    rows = rows or [("ISIC_0024306", "NV"), ("ISIC_0024307", "MEL"), ("ISIC_0024308", "NV"), ("ISIC_0024309", "VASC")]
    skin = real_patches("chelsea", 64, 4)
    for (name, _), px in zip(rows, skin):
        _jpeg(root / "ISIC2018_Task3_Training_Input" / f"{name}.jpg", px)
    gt = root / "ISIC2018_Task3_Training_GroundTruth" / "ISIC2018_Task3_Training_GroundTruth.csv"
    gt.parent.mkdir(parents=True)
    lines = ["image," + ",".join(ISIC_CLASSES)]
    lines += [name + "," + ",".join("1.0" if c == label else "0.0" for c in ISIC_CLASSES) for name, label in rows]
    gt.write_text("\n".join(lines) + "\n")
    return root


def test_isic_one_hot_ground_truth(tmp_path):
    loader = create_loader("isic", isic_fixture(tmp_path))
    loader.check()
    assert [(r.image_id, r.labels[0], r.split) for r in loader.records()] == [
        ("ISIC_0024306", "NV", "train"), ("ISIC_0024307", "MEL", "train"), ("ISIC_0024308", "NV", "train"),
        ("ISIC_0024309", "VASC", "train")]
    assert loader.class_names() == ISIC_CLASSES


def test_isic_row_with_two_ones_names_the_line(tmp_path):
    root = isic_fixture(tmp_path)
    gt = root / "ISIC2018_Task3_Training_GroundTruth" / "ISIC2018_Task3_Training_GroundTruth.csv"
    lines = gt.read_text().splitlines()
    lines[2] = "ISIC_0024307,1.0,1.0,0.0,0.0,0.0,0.0,0.0"
    gt.write_text("\n".join(lines) + "\n")
    with pytest.raises(MetadbError, match=r"GroundTruth.csv line 3: expected exactly one 1.0"):
        list(create_loader("isic", root).records())


def test_isic_missing_image_and_bad_header(tmp_path):
    root = isic_fixture(tmp_path)
    (root / "ISIC2018_Task3_Training_Input" / "ISIC_0024308.jpg").unlink()
    with pytest.raises(MetadbError, match=r"ISIC_0024308.jpg not found \(listed in .* line 4\)"):
        list(create_loader("isic", root).records())
    gt = root / "ISIC2018_Task3_Training_GroundTruth" / "ISIC2018_Task3_Training_GroundTruth.csv"
    gt.write_text("name,MEL\nx,1.0\n")
    with pytest.raises(MetadbError, match="header name,MEL; expected image,MEL,NV"):
        create_loader("isic", root).check()


# --- pcam --------------------------------------------------------------------------------------
def pcam_fixture(root: Path, n_train: int = 40) -> tuple[Path, np.ndarray, np.ndarray]:
    root.mkdir(parents=True, exist_ok=True)
    tissue = np.stack((real_patches("immunohistochemistry", 96, 25) + real_patches("retina", 96, 196))[:n_train + 8])
    labels = (np.arange(len(tissue)) % 3 == 0).astype(np.uint8)
    for split, sl in (("train", slice(0, n_train)), ("valid", slice(n_train, n_train + 4)),
                      ("test", slice(n_train + 4, n_train + 8))):
        with h5py.File(root / f"camelyonpatch_level_2_split_{split}_x.h5", "w") as h:
            h.create_dataset("x", data=tissue[sl], chunks=(min(8, len(tissue[sl])), 96, 96, 3), compression="gzip")
        with h5py.File(root / f"camelyonpatch_level_2_split_{split}_y.h5", "w") as h:
            h.create_dataset("y", data=labels[sl].reshape(-1, 1, 1, 1))
    return root, tissue, labels


def test_pcam_reads_all_splits_with_exact_pixels(tmp_path):
    root, tissue, labels = pcam_fixture(tmp_path / "pcam")
    loader = create_loader("pcam", root)
    loader.check()
    recs = list(loader.records())
    assert [r.split for r in recs].count("train") == 40 and len(recs) == 48
    for k, r in enumerate(recs):
        assert np.array_equal(r.pixels, tissue[k]) and r.labels == (str(labels[k]),)


def test_pcam_seeded_subset_is_deterministic(tmp_path):
    root, tissue, labels = pcam_fixture(tmp_path / "pcam")
    a = create_loader("pcam", root, subset=10, seed=0)
    a.check()
    ids = [r.image_id for r in a.records()]
    assert len(ids) == 10 and all(i.startswith("train/") for i in ids)
    assert ids == [r.image_id for r in create_loader("pcam", root, subset=10, seed=0).records()]
    assert ids != [r.image_id for r in create_loader("pcam", root, subset=10, seed=1).records()]
    expected = np.sort(np.random.default_rng(0).choice(40, size=10, replace=False))
    assert ids == [f"train/{i}" for i in expected]
    for r in a.records():
        assert np.array_equal(r.pixels, tissue[int(r.image_id.split("/")[1])])
    with pytest.raises(MetadbError, match="subset=100 but .* holds 40 patches"):
        create_loader("pcam", root, subset=100).check()


def test_pcam_subsets_are_catalogued_as_derived(tmp_path):
    assert catalog.get("pcam-small").loader_params() == {"subset": 10_000, "seed": 0}
    assert catalog.get("pcam-middle").derived_from == ("pcam",)
    with pytest.raises(MetadbError, match=r"camelyonpatch_level_2_split_train_x.h5 not found"):
        create_loader("pcam", tmp_path).check()


# --- stl10 -------------------------------------------------------------------------------------
STL_NAMES = ["airplane", "bird", "car", "cat", "deer", "dog", "horse", "monkey", "ship", "truck"]


def stl10_fixture(root: Path) -> tuple[Path, np.ndarray]:
    root.mkdir(parents=True)
    photos = np.stack(real_patches("astronaut", 96, 25)[:12])  # HxWxC upright
    for split, sl in (("train", slice(0, 8)), ("test", slice(8, 12))):
        # the published format: each image 3x96x96, column-major
        photos[sl].transpose(0, 3, 2, 1).astype(np.uint8).tofile(root / f"{split}_X.bin")
        (np.arange(sl.start, sl.stop) % 10 + 1).astype(np.uint8).tofile(root / f"{split}_y.bin")
    (root / "class_names.txt").write_text("\n".join(STL_NAMES) + "\n")
    return root, photos


def test_stl10_images_come_back_upright_with_their_class_names(tmp_path):
    root, photos = stl10_fixture(tmp_path / "stl10_binary")
    loader = create_loader("stl10", root)
    loader.check()
    recs = list(loader.records())
    assert len(recs) == 12 and [r.split for r in recs] == ["train"] * 8 + ["test"] * 4
    for k, r in enumerate(recs):
        assert np.array_equal(r.pixels, photos[k])  # orientation exact, not transposed
        assert r.labels == (STL_NAMES[k % 10],)


def test_stl10_truncated_binary_is_a_one_line_error(tmp_path):
    root, _ = stl10_fixture(tmp_path / "stl10_binary")
    with (root / "train_X.bin").open("r+b") as fh:
        fh.truncate(27648 * 8 - 100)
    with pytest.raises(MetadbError, match=r"train_X.bin: 221084 bytes is not a whole number of 27648-byte images"):
        create_loader("stl10", root).check()


# --- medmnist ----------------------------------------------------------------------------------
def medmnist_fixture(root: Path, flag: str, n_train: int, rgb: bool = False, size: int = 28, compressed: bool = True) -> dict:
    root.mkdir(parents=True, exist_ok=True)
    from sklearn.datasets import load_digits

    d = load_digits()
    if rgb:
        base = np.stack([np.asarray(Image.fromarray(p).resize((size, size))) for p in real_patches("coffee", 64, 45)])
    else:
        base = np.stack([np.asarray(Image.fromarray((im * 15).astype(np.uint8)).resize((size, size))) for im in d.images[:300]])
    rng = np.random.default_rng(0)
    arrays = {}
    for split, n in (("train", n_train), ("val", 5), ("test", 7)):
        imgs = base[rng.integers(0, len(base), n)]
        if flag == "chestmnist":
            labels = (rng.random((n, 14)) < 0.2).astype(np.uint8)
        else:
            labels = rng.integers(0, 4, (n, 1)).astype(np.uint8)
        arrays[f"{split}_images"], arrays[f"{split}_labels"] = imgs, labels
    name = f"{flag}.npz" if size == 28 else f"{flag}_{size}.npz"
    (np.savez_compressed if compressed else np.savez)(root / name, **arrays)
    return arrays


@pytest.mark.parametrize("compressed", [True, False])
def test_medmnist_streams_every_image_exactly(tmp_path, compressed, monkeypatch):
    import metadb.loaders.medmnist as mm

    monkeypatch.setattr(mm, "CHUNK", 16)  # several chunks per split
    arrays = medmnist_fixture(tmp_path, "octmnist", 50, compressed=compressed)
    monkeypatch.setattr(np, "load", lambda *a, **k: pytest.fail("the whole npz must not be loaded"))
    loader = create_loader("medmnist", tmp_path, flag="octmnist")
    loader.check()
    recs = list(loader.records())
    assert len(recs) == 62
    names = mm.LABELS["octmnist"]
    k = 0
    for split in ("train", "val", "test"):
        for i in range(len(arrays[f"{split}_images"])):
            r = recs[k]
            assert (r.split, r.image_id) == (split, f"{split}/{i}")
            assert np.array_equal(r.pixels, arrays[f"{split}_images"][i])
            assert r.labels == (names[arrays[f"{split}_labels"][i, 0]],)
            k += 1
    assert loader.label_type == "single-label"


def test_chestmnist_is_multi_label(tmp_path, db):
    arrays = medmnist_fixture(tmp_path, "chestmnist", 30)
    loader = create_loader("medmnist", tmp_path, flag="chestmnist")
    recs = list(loader.records())
    names = loader.class_names()
    assert len(names) == 14 and loader.label_type == "multi-label"
    first = arrays["train_labels"][0]
    assert recs[0].labels == tuple(n for n, v in zip(names, first) if v)
    api.ingest(db, dataset="chestmnist", root=tmp_path, workers=1)
    assert api.sql("SELECT label_type FROM datasets", db)[1] == [("multi-label",)]
    positives = int(sum(arrays[f"{s}_labels"].sum() for s in ("train", "val", "test")))
    assert api.sql("SELECT sum(count) FROM classes", db)[1] == [(positives,)]


def test_medmnist_size_choice_and_rgb(tmp_path):
    medmnist_fixture(tmp_path, "bloodmnist", 10, rgb=True, size=64)
    loader = create_loader("medmnist", tmp_path, flag="bloodmnist")
    assert loader.npz().name == "bloodmnist_64.npz"
    assert next(loader.records()).pixels.shape == (64, 64, 3)
    with pytest.raises(MetadbError, match=r"bloodmnist_224.npz not found; expected bloodmnist.npz or"):
        create_loader("medmnist", tmp_path, flag="bloodmnist", size=224).npz()
    with pytest.raises(MetadbError, match=r"pathmnist.npz not found"):
        create_loader("medmnist", tmp_path, flag="pathmnist").check()


# --- all layouts -------------------------------------------------------------------------------
def test_fingerprint_changes_when_a_file_changes(tmp_path):
    root = kimia_fixture(tmp_path / "k")
    first = create_loader("kimia", root).fingerprint()
    assert create_loader("kimia", root).fingerprint() == first
    os.utime(root / "A1.tif", ns=(1, 1))
    assert create_loader("kimia", root).fingerprint() != first


def test_every_catalog_layout_is_a_registered_loader():
    for info in catalog.known():
        if info.layout:
            assert info.layout in loaders, info.name
        assert info.domain in ("medical", "natural") and info.label_type in ("single-label", "multi-label", "ordinal")


# --- published folder names (issue 9, item 16) -------------------------------------------------
def _write_layout(name: str, folder: Path) -> None:
    """`folder` holds the dataset in exactly its published layout."""
    if name == "kimia":
        kimia_fixture(folder)
    elif name == "chest":
        assert folder.name == "chest_xray"
        chest_fixture(folder.parent)
    elif name == "isic":
        isic_fixture(folder)
    elif name == "pcam":
        pcam_fixture(folder)
    elif name == "stl10":
        stl10_fixture(folder)
    elif name == "textures":
        from conftest import write_imagefolder

        write_imagefolder(folder, {"banded": "brick", "braided": "grass"}, n=2, fmt="jpg")
    else:
        medmnist_fixture(folder, name, 10)


PUBLISHED_FOLDERS = [  # (dataset, folder name): what its download unpacks to and what the studies' code reads
    ("kimia", "kimia_path_960"),  # cats-scans src/io/data_paths.py
    ("kimia", "KimiaPath960"),
    ("chest", "chest_xray"),  # the Mendeley archive and cats-scans
    ("isic", "ISIC2018"),  # cats-scans: {home}/ISIC2018/ISIC2018_Task3_Training_Input
    ("pcam", "pcam"),
    ("pcam", "PCam"),  # cats-scans src/io/pcam_converter.py reads the .h5 files from PCam/
    ("stl10", "stl10_binary"),  # the STL-10 tarball and cats-scans
    ("textures", "dtd/images"),  # the DTD tarball and cats-scans
    ("bloodmnist", ".medmnist"),  # the medmnist package's download folder
]


@pytest.mark.parametrize("name,folder", PUBLISHED_FOLDERS)
def test_known_dataset_is_found_under_its_published_folder_name_or_as_root_itself(tmp_path, name, folder):
    data = tmp_path / "data"
    _write_layout(name, data / folder)
    info = catalog.get(name)
    assert info.locate(data) == data / folder  # --root is the parent folder
    assert info.locate(data / folder) == data / folder  # --root is the dataset folder itself


def test_kimia_ingests_from_the_folder_name_the_study_uses(tmp_path, db):
    kimia_fixture(tmp_path / "data" / "kimia_path_960")
    result = api.ingest(db, dataset="kimia", root=tmp_path / "data", workers=1)
    assert (result.images_ok, result.notes) == (6, [])
    assert api.sql("SELECT root FROM datasets", db)[1] == [(str(tmp_path / "data" / "kimia_path_960"),)]


def test_two_copies_under_published_names_are_reported_and_the_first_used(tmp_path, db):
    kimia_fixture(tmp_path / "kimia_path_960")
    kimia_fixture(tmp_path / "KimiaPath960")
    result = api.ingest(db, dataset="kimia", root=tmp_path, workers=1)
    assert result.notes == [f"kimia: read {tmp_path / 'kimia_path_960'}; also found {tmp_path / 'KimiaPath960'} "
                            "(pass it as --root to use it)"]


def test_files_directly_in_root_still_work_and_a_folder_of_other_images_is_not_a_known_dataset(tmp_path):
    isic_fixture(tmp_path / "isic")
    assert catalog.get("isic").locate(tmp_path / "isic") == tmp_path / "isic"
    medmnist_fixture(tmp_path / "mm", "bloodmnist", 10)
    assert catalog.get("blood").locate(tmp_path / "mm") == tmp_path / "mm"
    from conftest import write_imagefolder

    write_imagefolder(tmp_path / "photos" / "mine", {"a": "brick"}, n=1)
    with pytest.raises(MetadbError, match=r"textures: not found under .*photos \(looked in .*photos/dtd/images, .*photos/images\)"):
        catalog.get("textures").locate(tmp_path / "photos")


def test_a_published_folder_without_the_layout_gets_the_loaders_own_message(tmp_path):
    (tmp_path / "chest_xray" / "train" / "NORMAL").mkdir(parents=True)
    with pytest.raises(MetadbError, match=r"chest_xray/train/PNEUMONIA not found; expected chest_xray/train/"):
        catalog.get("chest").locate(tmp_path)
