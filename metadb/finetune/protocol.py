"""Fine-tuning protocols as data: one TOML file per study, loaded into a frozen dataclass.

Like timm's pretrained configs, a protocol is plain data (`protocols/<name>.toml`, with comments
saying where in the study's own code each value was found). Every field can be overridden from the
command line (`--epochs 3 --image-size 64`) and varied in a grid (`--grid lr=1e-4,1e-3`); values
are parsed to the field's declared type, and an unknown field or a wrong-typed value is a one-line
error. Every run stores the resolved protocol, so what ran is never in doubt.
"""

from __future__ import annotations

import dataclasses
import itertools
import tomllib
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable

from metadb.errors import MetadbError

PROTOCOL_DIR = Path(__file__).resolve().parent / "protocols"

CHOICES: dict[str, tuple[str, ...]] = {
    "optimizer": ("adam", "sgd"),
    "scheduler": ("none", "cosine"),
    "binary_head": ("single-logit", "two-logit"),
    "class_weights": ("none", "balanced"),
    "normalize": ("imagenet", "half", "by-source"),
    "fold_scheme": ("stratified-kfold", "sampled"),
    "early_stopping": ("none", "val_auc", "val_loss"),
    "auc": ("ovr-weighted", "ovr-macro", "micro"),
}


@dataclass(frozen=True)
class Protocol:
    """Everything that decides a fine-tuning trial except the source model, target, fold and seed."""

    name: str
    architecture: str          # timm name; the default for `random` and `pretrain` (a registered model brings its own)
    image_size: int
    epochs: int
    batch_size: int
    optimizer: str
    lr: float
    momentum: float
    nesterov: bool             # applied only when momentum > 0 (torch refuses Nesterov without momentum)
    weight_decay: float
    scheduler: str             # none, or cosine annealing over `epochs`, stepped per epoch
    dropout: float             # before the new linear head
    binary_head: str           # single-logit (sigmoid + BCE) or two-logit (softmax + CE) for two classes
    class_weights: str         # balanced: per-sample loss weights n / (C * n_c), averaged over the batch (Keras)
    rotation_min: float        # degrees
    rotation_max: float
    shift: float               # fraction of the side, each direction
    shear: float               # degrees
    zoom: float                # scale in [1 - zoom, 1 + zoom]
    horizontal_flip: bool
    random_resized_crop: bool
    sharpness: bool
    autocontrast: bool
    equalize: bool
    normalize: str             # imagenet mean/std, half (0.5/0.5), or by-source (imagenet for ImageNet models)
    fold_scheme: str           # stratified-kfold over the (non-test) images, or sampled from train/val splits
    folds: int                 # how many folds (a sampled scheme replays its seeded draws up to this one)
    fold_seed: int
    train_per_class: int       # sampled folds: draw train_per_class x C training images (uniformly, not stratified)
    val_per_class: int         # ... and val_per_class x C validation images (the whole split if it is smaller)
    test_split: str            # the split giving test AUC; '' = no test set (the outcome is validation AUC)
    early_stopping: str        # criterion for the kept (best) epoch; none = the last epoch
    patience: int              # epochs without improvement before stopping (0 = never stop early)
    auc: str                   # multi-class AUC: one-vs-rest weighted or macro, or micro over one-hot cells
    seed: int
    pretrain_val_fraction: float
    pretrain_test_fraction: float

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def replace(self, **changes: Any) -> "Protocol":
        return dataclasses.replace(self, **changes)


FIELD_TYPES: dict[str, type] = typing.get_type_hints(Protocol)


def available() -> list[str]:
    return sorted(p.stem for p in PROTOCOL_DIR.glob("*.toml"))


def load(name: str, overrides: dict[str, Any] | None = None) -> Protocol:
    """The named protocol with `overrides` (raw strings or typed values) applied and checked."""
    path = PROTOCOL_DIR / f"{name}.toml"
    if not path.exists():
        raise MetadbError(f"unknown protocol {name!r}", f"known protocols: {', '.join(available())}")
    with open(path, "rb") as fh:
        data = tomllib.load(fh)
    missing = set(FIELD_TYPES) - {"name"} - set(data)
    extra = set(data) - set(FIELD_TYPES)
    if missing or extra:
        raise MetadbError(f"{path}: fields missing {sorted(missing)} or unknown {sorted(extra)}")
    values = {k: coerce(k, v, where=str(path)) for k, v in data.items()}
    values.update({k: coerce(k, v) for k, v in (overrides or {}).items()})
    return Protocol(name=name, **values)


def coerce(field: str, value: Any, where: str = "") -> Any:
    """`value` (a string from the command line, or a TOML value) as the field's type; one-line errors."""
    field = field.replace("-", "_")
    if field not in FIELD_TYPES or field == "name":
        names = ", ".join(f"--{f.replace('_', '-')}" for f in FIELD_TYPES if f != "name")
        raise MetadbError(f"protocol has no field {field.replace('_', '-')!r}", f"fields: {names}")
    kind = FIELD_TYPES[field]
    flag = where or f"--{field.replace('_', '-')}"
    try:
        if kind is bool:
            out = _bool(value)
        elif kind is int:
            if isinstance(value, bool) or (isinstance(value, float) and not value.is_integer()):
                raise ValueError
            out = int(value) if not isinstance(value, str) else int(value.strip())
        elif kind is float:
            if isinstance(value, bool):
                raise ValueError
            out = float(value)
        else:
            out = str(value)
    except (TypeError, ValueError):
        raise MetadbError(f"{flag} {value!r}: expected {_kind_name(kind)} for protocol field {field}") from None
    if field in CHOICES and out not in CHOICES[field]:
        raise MetadbError(f"{flag} {out!r}: expected one of {', '.join(CHOICES[field])}")
    if kind in (int, float) and out < 0 and field not in ("rotation_min", "rotation_max"):
        raise MetadbError(f"{flag} {value!r}: must not be negative")
    return out


def _bool(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    s = str(value).strip().lower()
    if s in ("true", "1", "yes", "on"):
        return True
    if s in ("false", "0", "no", "off"):
        return False
    raise ValueError(value)


def _kind_name(kind: type) -> str:
    return {bool: "true or false", int: "an integer", float: "a number", str: "text"}[kind]


def parse_overrides(args: Iterable[str]) -> tuple[dict[str, str], dict[str, list[str]]]:
    """Command-line extras: `--field value` / `--field=value` overrides, and `--grid k=v1,v2 k2=...` entries.

    Returns the raw strings; `load` and `grid` type them, so errors name the flag and the field.
    """
    overrides: dict[str, str] = {}
    grid: dict[str, list[str]] = {}
    tokens = list(args)
    i, in_grid = 0, False
    while i < len(tokens):
        tok = tokens[i]
        if tok == "--grid":
            in_grid = True
        elif tok.startswith("--"):
            in_grid = False
            key, eq, val = tok[2:].partition("=")
            if not eq:
                if i + 1 >= len(tokens):
                    raise MetadbError(f"--{key}: needs a value")
                i += 1
                val = tokens[i]
            overrides[key.replace("-", "_")] = val
        elif "=" in tok and (in_grid or not tok.startswith("-")):
            key, _, vals = tok.partition("=")
            grid[key.strip().replace("-", "_")] = [v.strip() for v in vals.split(",") if v.strip()]
        else:
            raise MetadbError(f"unexpected argument {tok!r}", "overrides are --field VALUE; a grid is --grid lr=1e-4,1e-3")
        i += 1
    return overrides, grid


def expand_grid(base: Protocol, grid: dict[str, list[str]]) -> list[Protocol]:
    """The protocol for every combination of grid values (in the order given), each value typed."""
    typed = {}
    for key, values in grid.items():
        if not values:
            raise MetadbError(f"--grid {key}=: no values", "e.g. --grid lr=1e-4,1e-3")
        typed[key.replace("-", "_")] = [coerce(key, v, where=f"--grid {key}=") for v in values]
    keys = list(typed)
    return [base.replace(**dict(zip(keys, combo))) for combo in itertools.product(*(typed[k] for k in keys))] or [base]
