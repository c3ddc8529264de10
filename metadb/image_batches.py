"""Images of a dataset to a backbone, one batch at a time: decode, preprocess, forward.

Shared by everything that runs a backbone over a target (embed, its shards, score's outputs and
FU, Task2Vec's probe), so every path decodes and preprocesses an image the same way and a
non-finite feature is the same one-line error everywhere.
"""

from __future__ import annotations

import numpy as np
import torch

from metadb.errors import ImageError, MetadbError


class ImageStream(torch.utils.data.IterableDataset):
    """An IterableDataset over a loader's records (those `where` keeps), sharded across DataLoader workers."""

    def __init__(self, loader, transform, where=None):
        super().__init__()
        self.loader, self.transform, self.where = loader, transform, where

    def __iter__(self):
        info = torch.utils.data.get_worker_info()
        shard, shards = (info.id, info.num_workers) if info else (0, 1)
        records = self.loader.records()
        for i, r in enumerate(records if self.where is None else filter(self.where, records)):
            if i % shards != shard:
                continue
            yield transformed(r, self.transform)


def transformed(r, transform):
    """(tensor or None, image id, label, ok): one record decoded and preprocessed for the backbone."""
    from PIL import Image

    try:
        if r.pixels is not None:
            im = Image.fromarray(r.pixels)
        else:
            im = Image.open(r.file)
            im.draft("RGB", (512, 512))  # decode JPEGs near the model's input size
        return transform(im.convert("RGB")), r.image_id, r.label or "", True
    except (OSError, ValueError, SyntaxError, ImageError):
        return None, r.image_id, r.label or "", False


def collate(items):
    ok = [it for it in items if it[3]]
    bad = [it[1] for it in items if not it[3]]
    x = torch.stack([it[0] for it in ok]) if ok else None
    return x, [it[1] for it in ok], [it[2] for it in ok], bad


def forward(model, x, dev: str, precision: str, where: str, name: str) -> np.ndarray:
    """Features of one batch as float32 (N x D); NaN or inf is a one-line error naming the batch."""
    x = x.to(dev, non_blocking=True)
    if dev.startswith("cuda"):
        x = x.to(memory_format=torch.channels_last)
    with torch.inference_mode(), torch.autocast(dev.split(":")[0], dtype=torch.bfloat16, enabled=precision == "amp"):
        f = model(x)
    f = f.float().cpu().numpy()
    if not np.isfinite(f).all():
        raise MetadbError(f"backbone {name} produced NaN or inf features in {where}",
                          "check the weights (--weights) and the preprocessing")
    return f
