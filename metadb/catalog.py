"""Known datasets: their metadata, lineage and where their published layout lives on disk.

Entries are frozen dataclasses (data, not code), like timm's pretrained configs. `layout` names the
loader; `folders` are the names the dataset is published under (what its archive unpacks to, and
what the studies' code calls it), looked for under `--root` before `--root` itself. Entries without
a layout (imagenet, radimagenet) are sources known only by their published outcomes.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from metadb.errors import MetadbError
from metadb.registry import Registry


@dataclass(frozen=True)
class DatasetInfo:
    name: str
    title: str
    modality: str
    anatomy: str
    domain: str  # "medical" or "natural"
    label_type: str  # "single-label", "multi-label" or "ordinal"
    licence: str
    url: str
    layout: str | None = None
    folders: tuple[str, ...] = ()  # published folder names, tried in order under --root, then --root itself
    expected: str = ""  # the published layout, shown when files are missing
    params: tuple[tuple[str, Any], ...] = ()
    derived_from: tuple[str, ...] = ()
    aliases: tuple[str, ...] = field(default=())

    def loader_params(self) -> dict[str, Any]:
        return dict(self.params)

    def locate(self, root: Path) -> Path:
        """The dataset folder: the first published folder name under `root` that holds the layout."""
        return self.find(root)[0]

    def find(self, root: Path) -> tuple[Path, list[Path]]:
        """(the folder used, other folders that also hold the layout).

        Tried in order: root/<each published name>, root/<its last parts> (root is a parent folder
        inside the published path, e.g. dtd/ for dtd/images), then root itself. A folder counts
        only when the layout's loader accepts it; root itself as a plain imagefolder counts only
        under a published name, since any folder of folders of images would pass.
        """
        from metadb.loaders import create_loader

        root = Path(root).expanduser()
        if self.layout is None:
            raise MetadbError(f"{self.name} has no on-disk layout metadb can read; it is known only by published results")
        tried: list[Path] = []
        for name in self.folders:
            parts = Path(name).parts
            tried += [root.joinpath(*parts[k:]) for k in range(len(parts))]
        tried = list(dict.fromkeys(tried))
        names = {Path(n).name for n in self.folders}
        if self.layout != "imagefolder" or root.name in names:
            tried.append(root)
        found: list[Path] = []
        broken: list[MetadbError] = []  # published folders that exist but do not hold the layout
        for folder in (f for f in tried if f.exists()):
            try:
                create_loader(self.layout, folder, **self.loader_params()).check()
                found.append(folder)
            except MetadbError as e:
                if folder != root:
                    broken.append(e)
        if not found and broken:
            raise broken[0]  # the loader's own message names the missing file and the layout
        if not found:
            raise MetadbError(
                f"{self.name}: not found under {root} (looked in {', '.join(map(str, tried))}); expected {self.expected}",
                f"download it from {self.url} and pass its parent folder (or the folder itself) with --root",
            )
        return found[0], found[1:]

    @property
    def subdir(self) -> str:
        """The canonical published folder name ('' when the files sit directly in --root)."""
        return self.folders[0] if self.folders else ""


catalog: Registry[DatasetInfo] = Registry("dataset")


def add(info: DatasetInfo) -> DatasetInfo:
    catalog.register(info.name)(lambda: info)
    for alias in info.aliases:
        catalog.register(alias)(lambda: info)
    return info


def get(name: str) -> DatasetInfo:
    return catalog.entry(name).factory()


def known() -> list[DatasetInfo]:
    seen: dict[str, DatasetInfo] = {}
    for e in catalog.entries():
        info = e.factory()
        seen.setdefault(info.name, info)
    return list(seen.values())


# --- "Cats, not CAT scans" sources and targets -------------------------------------------------
add(DatasetInfo(
    "kimia", "KimiaPath960", "histopathology", "various tissues", "medical", "single-label",
    "research use", "https://kimialab.uwaterloo.ca/kimia/index.php/data-and-code-2/kimia-path-960/",
    layout="kimia", folders=("kimia_path_960", "KimiaPath960"),
    expected="a flat folder of 960 TIFF patches A1.tif … T48.tif (label = the letter)",
))
add(DatasetInfo(
    "chest", "Chest X-ray pneumonia (Kermany et al. 2018)", "xray", "chest", "medical", "single-label",
    "CC BY 4.0", "https://data.mendeley.com/datasets/rscbjbr9sj/2",
    layout="chest", folders=("chest_xray",),
    expected="chest_xray/{train,val,test}/{NORMAL,PNEUMONIA}/*.jpeg",
))
add(DatasetInfo(
    "isic", "ISIC 2018 Task 3 (HAM10000)", "dermoscopy", "skin", "medical", "single-label",
    "CC BY-NC 4.0", "https://challenge.isic-archive.com/data/#2018",
    layout="isic", folders=("ISIC2018",),
    expected="ISIC2018_Task3_Training_Input/*.jpg and ISIC2018_Task3_Training_GroundTruth/ISIC2018_Task3_Training_GroundTruth.csv (one-hot MEL,NV,BCC,AKIEC,BKL,DF,VASC)",
))
add(DatasetInfo(
    "pcam", "PatchCamelyon", "histopathology", "lymph node", "medical", "single-label",
    "CC0", "https://github.com/basveeling/pcam",
    layout="pcam", folders=("pcam", "PCam"),
    expected="camelyonpatch_level_2_split_{train,valid,test}_{x,y}.h5",
))
add(DatasetInfo(
    "pcam-small", "PatchCamelyon, seeded 10k subset", "histopathology", "lymph node", "medical",
    "single-label", "CC0", "https://github.com/basveeling/pcam",
    layout="pcam", folders=("pcam", "PCam"), expected="camelyonpatch_level_2_split_{train,valid,test}_{x,y}.h5",
    params=(("subset", 10_000), ("seed", 0)), derived_from=("pcam",),
))
add(DatasetInfo(
    "pcam-middle", "PatchCamelyon, seeded 100k subset", "histopathology", "lymph node", "medical",
    "single-label", "CC0", "https://github.com/basveeling/pcam",
    layout="pcam", folders=("pcam", "PCam"), expected="camelyonpatch_level_2_split_{train,valid,test}_{x,y}.h5",
    params=(("subset", 100_000), ("seed", 0)), derived_from=("pcam",),
))
add(DatasetInfo(
    "stl10", "STL-10", "photo", "none", "natural", "single-label", "research use",
    "https://cs.stanford.edu/~acoates/stl10/", layout="stl10", folders=("stl10_binary",),
    expected="stl10_binary/{train,test}_{X,y}.bin and class_names.txt",
))
add(DatasetInfo(
    "textures", "Describable Textures Dataset (DTD)", "photo", "none", "natural", "single-label",
    "research use", "https://www.robots.ox.ac.uk/~vgg/data/dtd/", layout="imagefolder",
    folders=("dtd/images",), expected="dtd/images/<class>/*.jpg", aliases=("dtd",),
))
add(DatasetInfo(
    "imagenet", "ImageNet-1k (ILSVRC 2012)", "photo", "none", "natural", "single-label",
    "research use", "https://image-net.org/",
))
add(DatasetInfo(
    "sti10", "STI-10 (sketches, cats-scans)", "sketch", "none", "natural", "single-label",
    "research use", "https://github.com/vcheplygina/cats-scans",
))
add(DatasetInfo(
    "radimagenet", "RadImageNet", "ct/mr/ultrasound", "various", "medical", "single-label",
    "research use", "https://www.radimagenet.com/",
))
add(DatasetInfo(
    "medmnist", "MedMNIST leave-target-out pretraining (Juodelyte et al. 2024)", "various",
    "various", "medical", "single-label", "CC BY 4.0", "https://medmnist.com/",
))

# --- MedMNIST v2 2D (Yang et al. 2023) --------------------------------------------------------
_MEDMNIST = [
    # flag, title, modality, anatomy, label type, licence, derived from
    ("pathmnist", "PathMNIST (NCT-CRC-HE-100K)", "histopathology", "colon", "single-label", "CC BY 4.0", ()),
    ("chestmnist", "ChestMNIST (NIH ChestX-ray14)", "xray", "chest", "multi-label", "CC0 1.0", ()),
    ("dermamnist", "DermaMNIST (HAM10000)", "dermoscopy", "skin", "single-label", "CC BY-NC 4.0", ("isic",)),
    ("octmnist", "OCTMNIST (Kermany et al. 2018)", "oct", "retina", "single-label", "CC BY 4.0", ()),
    ("pneumoniamnist", "PneumoniaMNIST (Kermany et al. 2018)", "xray", "chest", "single-label", "CC BY 4.0", ("chest",)),
    ("retinamnist", "RetinaMNIST (DeepDRiD)", "fundus", "retina", "ordinal", "CC BY 4.0", ()),
    ("breastmnist", "BreastMNIST (breast ultrasound)", "ultrasound", "breast", "single-label", "CC BY 4.0", ()),
    ("bloodmnist", "BloodMNIST (blood cell microscopy)", "microscopy", "blood", "single-label", "CC BY 4.0", ()),
    ("tissuemnist", "TissueMNIST (BBBC051 kidney cortex)", "microscopy", "kidney", "single-label", "CC BY 4.0", ()),
    ("organamnist", "OrganAMNIST (LiTS axial CT)", "ct", "abdomen", "single-label", "CC BY 4.0", ()),
    ("organcmnist", "OrganCMNIST (LiTS coronal CT)", "ct", "abdomen", "single-label", "CC BY 4.0", ()),
    ("organsmnist", "OrganSMNIST (LiTS sagittal CT)", "ct", "abdomen", "single-label", "CC BY 4.0", ()),
]
for _flag, _title, _mod, _anat, _lt, _lic, _from in _MEDMNIST:
    add(DatasetInfo(
        _flag, _title, _mod, _anat, "medical", _lt, _lic, "https://zenodo.org/records/10519652",
        layout="medmnist", folders=("medmnist", ".medmnist"), params=(("flag", _flag),), derived_from=_from,
        expected=f"{_flag}.npz or {_flag}_{{64,128,224}}.npz with train_images, train_labels, val_*, test_* arrays",
        aliases=(_flag.removesuffix("mnist"),) if _flag not in ("chestmnist", "pathmnist") else (),
    ))
