"""FU, the feature-reuse half of Juodelyte et al. 2024's LP x FU metric (torch).

How much would fine-tuning change the earliest layers? Juodelyte et al. pass the target images
through the pretrained model (its classification head removed, in eval mode), put a triplet
loss on the pooled embeddings, and compare the gradient norms of the first block's convolution
and of the stem convolution: FU = mean over batches of ||grad W_first_block|| / mean over batches
of ||grad W_stem||. A model whose early filters already suit the target needs little change there.

As their code (DovileDo/transferability-in-medical-imaging `src/metrics.py` `FU_Score`, with
pytorch-metric-learning's `TripletMarginLoss()` defaults): L2-normalised embeddings, Euclidean
distances, every (anchor, positive, negative) triplet of a batch, loss relu(d_ap - d_an + 0.05)
averaged over the triplets with a positive loss, batches of floor(N / 6) images in order. The loss
is computed anchor block by anchor block, so no B^3 triplet index is built, and gradients are
taken with `torch.autograd.grad`, so the model's `.grad` fields are left untouched.

FU needs the model, not an array of its outputs, so it is not in the `metrics` registry (whose
functions take features, source probabilities or pseudo-labels); call it directly.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from metadb.errors import MetadbError
from metadb.metrics import check_labels


def default_layers(model) -> tuple[Any, Any]:
    """The stem and first-block convolutions: the first two `nn.Conv2d` in module order.

    That is the pair Juodelyte et al. pick by hand for each of their architectures (ResNet's
    conv1 and layer1[0].conv1, DenseNet's conv0 and denselayer1.conv1, VGG's first two
    convolutions, EfficientNet, MobileNet, MnasNet, ConvNeXt, ShuffleNet, GoogLeNet).
    """
    import torch

    convs = [m for m in model.modules() if isinstance(m, torch.nn.Conv2d)]
    if len(convs) < 2:
        raise MetadbError(f"model: {type(model).__name__} has {len(convs)} Conv2d layer(s); "
                          "FU needs a stem and a first-block convolution (pass first= and second=)")
    return convs[0], convs[1]


def triplet_margin_loss(embeddings, labels, margin: float = 0.05, block: int = 64):
    """pytorch-metric-learning's TripletMarginLoss() (all triplets, AvgNonZeroReducer), in anchor blocks."""
    import torch

    e = torch.nn.functional.normalize(embeddings, p=2, dim=1)
    dist = torch.cdist(e, e, p=2)
    same = labels[:, None] == labels[None, :]
    n = len(labels)
    total = dist.new_zeros(())
    count = 0
    for start in range(0, n, block):
        a = slice(start, min(start + block, n))
        pos = same[a].clone()
        pos[torch.arange(pos.shape[0]), torch.arange(start, start + pos.shape[0])] = False  # a != p
        valid = pos[:, :, None] & ~same[a][:, None, :]  # (anchor, positive, negative)
        viol = torch.relu(dist[a][:, :, None] - dist[a][:, None, :] + margin)
        hit = valid & (viol > 0)
        total = total + viol[hit].sum()
        count += int(hit.sum())
    return total / count if count else (embeddings * 0).sum()


def fu(model, images, labels, first=None, second=None, batch_size: int | None = None,
       margin: float = 0.05, device: str | None = None) -> float:
    """FU: mean ||grad first-block conv|| / mean ||grad stem conv|| under a triplet loss on the embeddings.

    `model` maps images (N, 3, H, W) to embeddings (its classifier replaced by identity, as
    Juodelyte et al. do); `first` is the stem convolution and `second` the first block's
    (default: the first two Conv2d modules). Batches hold floor(N / 6) images unless
    `batch_size` says otherwise.
    """
    import torch

    x = torch.as_tensor(np.asarray(images) if not isinstance(images, torch.Tensor) else images)
    if x.ndim != 4 or len(x) < 2:
        raise MetadbError(f"images: shape {tuple(x.shape)}; expected (N, C, H, W) with N >= 2")
    y = torch.as_tensor(check_labels(labels, len(x)))
    if first is None or second is None:
        d_first, d_second = default_layers(model)
        first = d_first if first is None else first
        second = d_second if second is None else second
    bs = batch_size or max(len(x) // 6, 2)
    dev = torch.device(device or "cpu")
    was_training = model.training
    model.eval()
    model.to(dev)
    stem, block, positive = [], [], False
    try:
        for start in range(0, len(x), bs):
            xb, yb = x[start:start + bs].to(dev, torch.float32), y[start:start + bs].to(dev)
            loss = triplet_margin_loss(model(xb), yb, margin)
            positive = positive or bool(loss.detach() > 0)
            g_first, g_second = torch.autograd.grad(loss, [first.weight, second.weight], allow_unused=True)
            if g_first is not None:
                stem.append(float(torch.linalg.vector_norm(g_first)))
            if g_second is not None:
                block.append(float(torch.linalg.vector_norm(g_second)))
    finally:
        model.train(was_training)
    if not positive:
        raise MetadbError(f"images: every triplet of every batch of {bs} already meets the margin {margin} "
                          "(the loss is 0), so FU is undefined; give more images per class or larger batches")
    if not stem or not block or np.mean(stem) == 0:
        raise MetadbError("model: the triplet loss gives no gradient to the stem or first-block convolution; "
                          "pass the convolutions the embeddings depend on as first= and second=")
    return float(np.mean(block) / np.mean(stem))
