"""Known datasets: their metadata, lineage and where their published layout lives on disk.

Entries are frozen dataclasses (data, not code), like timm's pretrained configs. `layout` names the
loader; `subdir` is the folder the dataset unpacks to, looked for under `--root`. Entries without a
layout (imagenet, radimagenet) are sources known only by their published outcomes.
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
    subdir: str = ""
    expected: str = ""  # the published layout, shown when files are missing
    params: tuple[tuple[str, Any], ...] = ()
    derived_from: tuple[str, ...] = ()
    aliases: tuple[str, ...] = field(default=())

    def loader_params(self) -> dict[str, Any]:
        return dict(self.params)

    def locate(self, root: Path) -> Path:
        """The dataset folder under `root`: root/subdir, or root itself when it is that folder."""
        root = Path(root).expanduser()
        if self.layout is None:
            raise MetadbError(f"{self.name} has no on-disk layout metadb can read; it is known only by published results")
        if (root / self.subdir).exists():
            return root / self.subdir
        if self.subdir and root.name == Path(self.subdir).name and root.exists():
            return root  # --root points at the dataset folder itself
        raise MetadbError(
            f"{self.name}: {root / self.subdir} not found; expected {self.expected}",
            f"download it from {self.url} and pass its parent folder with --root",
        )


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
    layout="kimia", subdir="KimiaPath960",
    expected="a flat folder of 960 TIFF patches A1.tif … T48.tif (label = the letter)",
))
add(DatasetInfo(
    "chest", "Chest X-ray pneumonia (Kermany et al. 2018)", "xray", "chest", "medical", "single-label",
    "CC BY 4.0", "https://data.mendeley.com/datasets/rscbjbr9sj/2",
    layout="chest", subdir="chest_xray",
    expected="chest_xray/{train,val,test}/{NORMAL,PNEUMONIA}/*.jpeg",
))
add(DatasetInfo(
    "isic", "ISIC 2018 Task 3 (HAM10000)", "dermoscopy", "skin", "medical", "single-label",
    "CC BY-NC 4.0", "https://challenge.isic-archive.com/data/#2018",
    layout="isic", subdir="",
    expected="ISIC2018_Task3_Training_Input/*.jpg and ISIC2018_Task3_Training_GroundTruth/ISIC2018_Task3_Training_GroundTruth.csv (one-hot MEL,NV,BCC,AKIEC,BKL,DF,VASC)",
))
add(DatasetInfo(
    "pcam", "PatchCamelyon", "histopathology", "lymph node", "medical", "single-label",
    "CC0", "https://github.com/basveeling/pcam",
    layout="pcam", subdir="pcam",
    expected="camelyonpatch_level_2_split_{train,valid,test}_{x,y}.h5",
))
add(DatasetInfo(
    "pcam-small", "PatchCamelyon, seeded 10k subset", "histopathology", "lymph node", "medical",
    "single-label", "CC0", "https://github.com/basveeling/pcam",
    layout="pcam", subdir="pcam", expected="camelyonpatch_level_2_split_{train,valid,test}_{x,y}.h5",
    params=(("subset", 10_000), ("seed", 0)), derived_from=("pcam",),
))
add(DatasetInfo(
    "pcam-middle", "PatchCamelyon, seeded 100k subset", "histopathology", "lymph node", "medical",
    "single-label", "CC0", "https://github.com/basveeling/pcam",
    layout="pcam", subdir="pcam", expected="camelyonpatch_level_2_split_{train,valid,test}_{x,y}.h5",
    params=(("subset", 100_000), ("seed", 0)), derived_from=("pcam",),
))
add(DatasetInfo(
    "stl10", "STL-10", "photo", "none", "natural", "single-label", "research use",
    "https://cs.stanford.edu/~acoates/stl10/", layout="stl10", subdir="stl10_binary",
    expected="stl10_binary/{train,test}_{X,y}.bin and class_names.txt",
))
add(DatasetInfo(
    "textures", "Describable Textures Dataset (DTD)", "photo", "none", "natural", "single-label",
    "research use", "https://www.robots.ox.ac.uk/~vgg/data/dtd/", layout="imagefolder",
    subdir="dtd/images", expected="dtd/images/<class>/*.jpg", aliases=("dtd",),
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
        layout="medmnist", subdir="", params=(("flag", _flag),), derived_from=_from,
        expected=f"{_flag}.npz or {_flag}_{{64,128,224}}.npz with train_images, train_labels, val_*, test_* arrays",
        aliases=(_flag.removesuffix("mnist"),) if _flag not in ("chestmnist", "pathmnist") else (),
    ))
