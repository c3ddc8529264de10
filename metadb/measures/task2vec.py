"""`task2vec`: Achille et al.'s Task2Vec (ICCV 2019), as awslabs/aws-cv-task2vec computes it by default.

A task is embedded by the diagonal Fisher information of a probe network's weights. The probe is
the backbone the dataset was embedded with (its exact weights, re-created and hash-checked) plus
a linear head trained on the dataset. Following the authors' default `montecarlo` method:
  - features of the images are cached and the head alone is fitted on them (Adam, lr 4e-4,
    weight decay 1e-4, 10 epochs of 10,000 class-balanced draws, batches of 64);
  - the Fisher is E[(grad_w log p(y|x))^2] with the label drawn from the model's own prediction,
    y ~ softmax(f(x)), not the dataset's label, over class-balanced draws of images;
  - every weighted module except the head (convolutions, batch norms, inner linears) contributes
    the mean of its squared gradients over each output filter;
  - tasks are compared by their normalised cosine distance,
    d(Fa, Fb) = cos-dist(Fa / (Fa + Fb + 1e-8), Fb / (Fa + Fb + 1e-8)).
Deliberate differences, recorded in params: a seeded sample of images (default 256) and 256
Fisher draws instead of 10,000 (CPU-sized); squared gradients per draw (`fisher_batch=1`, the
paper's definition) where the authors square the gradient of each batch of 64's mean loss, which
has expectation F/64 (the same direction, so the same distances in the limit) but 64 times fewer
terms per draw: at 256 draws their estimate is noise-dominated and distances sit near 0.5, the
value of unrelated embeddings (`fisher_batch=64` reproduces it); the network in eval mode
(batch-norm running statistics fixed, no dropout), which the authors' code comment states as the
intent while their code leaves it in train mode.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from metadb.errors import MetadbError
from metadb.measures import Measure, register_measure

DEFAULTS: dict[str, Any] = {"sample": 256, "seed": 0, "head_epochs": 10, "head_draws": 10_000, "lr": 4e-4,
                            "weight_decay": 1e-4, "batch_size": 64, "fisher_draws": 256, "fisher_batch": 1}


def _balanced_loader(tensors, labels, draws: int, batch_size: int, generator):
    """Class-balanced draws with replacement (the authors' WeightedRandomSampler), full batches only."""
    import torch

    counts = np.bincount(labels)
    weights = torch.as_tensor(1.0 / counts[labels], dtype=torch.double)
    sampler = torch.utils.data.WeightedRandomSampler(weights, num_samples=draws, generator=generator)
    return torch.utils.data.DataLoader(torch.utils.data.TensorDataset(*tensors), sampler=sampler,
                                       batch_size=batch_size, drop_last=True)


def fit_head(features, labels: np.ndarray, n_classes: int, p: dict[str, Any], generator):
    """A linear head on cached features, as the authors' `_fit_classifier` trains it."""
    import torch

    head = torch.nn.Linear(features.shape[1], n_classes)
    opt = torch.optim.Adam(head.parameters(), lr=p["lr"], weight_decay=p["weight_decay"])
    y = torch.as_tensor(labels)
    for _ in range(p["head_epochs"]):
        for xb, yb in _balanced_loader((features, y), labels, p["head_draws"], p["batch_size"], generator):
            opt.zero_grad()
            torch.nn.functional.cross_entropy(head(xb), yb).backward()
            opt.step()
    return head


def task2vec_embedding(body, images, labels: np.ndarray, **params: Any) -> np.ndarray:
    """Per-filter diagonal Fisher of `body`'s weights (probe = body + a head trained on the task).

    `body` maps images to pooled features; `images` are already preprocessed (N x C x H x W);
    `labels` are integer classes 0..C-1.
    """
    import torch

    p = {**DEFAULTS, **params}
    labels = np.asarray(labels)
    n_classes = int(labels.max()) + 1
    if len(np.unique(labels)) < 2:
        raise MetadbError("task2vec needs a dataset with at least 2 classes")
    with torch.random.fork_rng():
        torch.manual_seed(p["seed"])
        gen = torch.Generator().manual_seed(p["seed"])
        body.eval()
        with torch.no_grad():
            features = torch.cat([body(chunk) for chunk in torch.split(images, p["batch_size"])])
        head = fit_head(features, labels, n_classes, p, gen)
        probe = torch.nn.Sequential(body, head).eval()
        squares = {name: torch.zeros_like(w) for name, w in probe.named_parameters()}
        batches = 0
        for xb, in _balanced_loader((images,), labels, p["fisher_draws"], p["fisher_batch"], gen):
            out = probe(xb)
            y = torch.multinomial(torch.softmax(out.detach(), dim=-1), 1, generator=gen).view(-1)
            probe.zero_grad()
            torch.nn.functional.cross_entropy(out, y).backward()
            for name, w in probe.named_parameters():
                if w.grad is not None:
                    squares[name] += w.grad.detach() ** 2
            batches += 1
    if batches == 0:
        raise MetadbError(f"task2vec: fisher_draws={p['fisher_draws']} is less than one batch of {p['fisher_batch']}")
    per_filter = []
    for name, module in body.named_modules():
        weight = getattr(module, "weight", None)
        if isinstance(weight, torch.nn.Parameter) and weight.grad is not None:
            g2 = squares[f"0.{name}.weight" if name else "0.weight"] / batches
            per_filter.append(g2.reshape(g2.shape[0], -1).mean(dim=1).numpy())
    return np.concatenate(per_filter).astype(np.float64)


def task2vec_distance(fa: np.ndarray, fb: np.ndarray) -> float:
    """The normalised cosine distance of Achille et al. (their code's `cosine`, with its 1e-8)."""
    from scipy.spatial.distance import cosine

    total = fa + fb + 1e-8
    return float(cosine(fa / total, fb / total))


def probe_body(con, backbone: str):
    """The exact network the dataset was embedded with (its backbone identity), hash-checked."""
    from metadb.backbones import model_for, resolve, stored

    ident = stored(con, resolve(con, backbone))
    if ident.weights_source == "random-init":
        raise MetadbError(f"task2vec needs a trained probe network, but {ident.name} has random weights",
                          "embed with real weights (--weights FILE or a package)")
    return model_for(con, ident.name)


def dataset_images(con, dataset: str, transform, sample: int, seed: int):
    """A seeded sample of a dataset's labelled images, decoded through its own loader and `transform`."""
    import torch

    from metadb.embeddings import loader_for
    from metadb.image_batches import ImageStream, collate

    loader = loader_for(con, dataset)
    records = [(r.image_id, r.label) for r in loader.records() if r.label]
    if not records:
        raise MetadbError(f"task2vec needs labelled images; {dataset} has none")
    rng = np.random.default_rng(seed)
    chosen = {records[i][0] for i in rng.choice(len(records), size=min(sample, len(records)), replace=False)}
    data = torch.utils.data.DataLoader(ImageStream(loader, transform, where=lambda r: r.image_id in chosen),
                                       batch_size=64, collate_fn=collate, num_workers=0)
    xs, labels = [], []
    for x, _, lab, _ in data:
        if x is not None:
            xs.append(x)
            labels += lab
    classes = sorted(set(labels))
    return torch.cat(xs), np.array([classes.index(v) for v in labels])


@register_measure
class Task2Vec(Measure):
    """Achille et al.'s Task2Vec: Fisher of the probe network's weights with sampled labels, normalised cosine."""

    name = "task2vec"
    version = "2"

    def params(self) -> dict[str, Any]:
        return {**DEFAULTS, **self._params, "method": "montecarlo", "network_mode": "eval",
                "distance": "normalized cosine (eps 1e-8)"}

    def pairwise(self, con, pairs, backbone):
        p = {**DEFAULTS, **self._params}
        b = probe_body(con, backbone)
        transform = b.transform()
        emb: dict[str, np.ndarray] = {}
        for d in sorted({d for pair in pairs for d in pair if pair[0] != pair[1]}):
            images, labels = dataset_images(con, d, transform, p["sample"], p["seed"])
            emb[d] = task2vec_embedding(b.model, images, labels, **p)
        return {(a, c): 0.0 if a == c else task2vec_distance(emb[a], emb[c]) for a, c in pairs}
