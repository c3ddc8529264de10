"""NCTI (Wang et al., ICCV 2023): how far a model's features are from neural collapse on the target.

Neural collapse is the end state of training a classifier: features of a class shrink to their
class mean, the class means spread out, and the nearest-class-centre rule agrees with the head.
NCTI measures how close a pretrained model already is to that state on the target data, with
three terms computed on the features reduced by PCA to 64 dimensions and projected by a
(shrinkage) linear discriminant, exactly as the official code (BUserName/NCTI `NCTI_Score`):

- S_seli, the nuclear norm of the centred discriminant projection (how spread the classes are);
- S_ncc, the mean discriminant probability of each image's own class (how nearest-centre-like);
- S_vc, the log of the summed per-class nuclear norms of those probabilities (within-class
  variability: small when each class's predictions are collapsed onto one pattern).

The terms are on different scales, so the authors min-max normalise each across the candidate
models for one target and score S_seli + S_ncc - S_vc (`variant="wang"`, the sign of their
evaluation script). Juodelyte et al. 2024 (DovileDo/transferability-in-medical-imaging) add the
third term instead: S_seli + S_ncc + S_vc (`variant="juodelyte"`).

`ncti_terms` gives the three raw terms of one model, `ncti_scores` the normalised NCTI of every
candidate of a target at once, and the registered `ncti` the score of one model: normalised
among `others` (the other candidates' features on the same images) when given, otherwise the
raw combination of its terms, which only compares models of similar scale.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
from sklearn.decomposition import PCA
from sklearn.discriminant_analysis import LinearDiscriminantAnalysis

from metadb.errors import MetadbError
from metadb.metrics import check_labels, check_matrix, check_min_per_class, register_metric

VARIANTS = {"wang": -1.0, "juodelyte": 1.0}  # sign of the within-class variability term
SHRINKAGE_FLOOR = 1e-10  # at the floor the official code switches to the unshrunk SVD solver


def _nuclear_norm(a: np.ndarray) -> float:
    return float(np.linalg.svd(a, compute_uv=False).sum())


def ncti_terms(features, labels, n_components: int = 64, seed: int = 42) -> tuple[float, float, float]:
    """(S_seli, S_ncc, S_vc) of one model on the target: the three raw NCTI terms of Wang et al. 2023.

    PCA keeps min(n_components, N, D) dimensions (64 in the official code, seeded with
    `seed` as Juodelyte et al. do: PCA is randomized on large inputs); the discriminant's shrinkage
    is exp(-(variance of the first 32 components)), floored at 1e-10 where the unshrunk SVD solver
    is used instead, as the official code does.
    """
    f = check_matrix(features, "features")
    y = check_labels(labels, len(f))
    check_min_per_class(y, 2, "ncti")
    pca = PCA(n_components=min(n_components, *f.shape), random_state=seed)
    x_low = pca.fit_transform(f)
    shrinkage = max(float(np.exp(-pca.explained_variance_[:32].sum())), SHRINKAGE_FLOOR)
    if shrinkage == SHRINKAGE_FLOOR:
        lda = LinearDiscriminantAnalysis(solver="svd")
    else:
        lda = LinearDiscriminantAnalysis(solver="eigen", shrinkage=shrinkage)
    projected = lda.fit_transform(x_low, y)
    seli = _nuclear_norm(projected - projected.mean(axis=0, keepdims=True))
    prob = lda.predict_proba(x_low)
    ncc = float(prob[np.arange(len(y)), y].mean())
    vc = float(np.log(sum(_nuclear_norm(prob[y == c]) for c in range(y.max() + 1))))
    return seli, ncc, vc


def degenerate(n_images: int, n_features: int, n_components: int = 64) -> str | None:
    """Why NCTI's terms cannot be trusted on these features, or None.

    With N <= min(64, D) the PCA keeps as many components as there are images, though centred
    data has rank N - 1: the discriminant then works on a singular scatter, and the terms follow
    summation order (on 60 digit images, 1 vs 2 BLAS threads moved them by up to 46 and the
    normalised NCTI by 0.84, reordering four models). The official code does the same, so the
    algebra stays and the score is flagged.
    """
    kept = min(n_components, n_images, n_features)
    if kept < n_images:
        return None
    return (f"N = {n_images} images <= the {kept} PCA components NCTI keeps: its terms depend on summation "
            f"order; use more than {min(n_components, n_features)} images")


def combine_terms(terms: np.ndarray, variant: str = "wang") -> np.ndarray:
    """NCTI of each candidate from its raw terms (M x 3): each term min-max normalised over the M candidates."""
    if variant not in VARIANTS:
        raise MetadbError(f"variant: {variant!r}; expected one of {', '.join(VARIANTS)}")
    t = np.asarray(terms, dtype=np.float64)
    span = t.max(axis=0) - t.min(axis=0)
    norm = np.divide(t - t.min(axis=0), span, out=np.zeros_like(t), where=span > 0)
    return norm[:, 0] + norm[:, 1] + VARIANTS[variant] * norm[:, 2]


def ncti_scores(features: Sequence, labels, variant: str = "wang", n_components: int = 64,
                seed: int = 42) -> np.ndarray:
    """NCTI of every candidate model (one feature matrix each, same images and labels), normalised among them.

    This is the score the authors rank models by: each term min-max normalised over the
    candidates (a term equal for all candidates contributes 0), then S_seli + S_ncc -/+ S_vc.
    """
    if len(features) < 2:
        raise MetadbError(f"features: {len(features)} candidate(s); NCTI normalises over candidates and needs 2 or more")
    terms = np.array([ncti_terms(f, labels, n_components, seed) for f in features])
    return combine_terms(terms, variant)


@register_metric("ncti", version="1", needs="features")
def ncti(features, labels, variant: str = "wang", others: Sequence = (), n_components: int = 64,
         seed: int = 42) -> float:
    """NCTI (Wang et al. 2023): neural-collapse score S_seli + S_ncc - S_vc, normalised among `others` when given.

    `variant="juodelyte"` adds S_vc instead of subtracting it, as Juodelyte et al. 2024.
    Without `others` the raw terms are combined unnormalised.
    """
    if variant not in VARIANTS:
        raise MetadbError(f"variant: {variant!r}; expected one of {', '.join(VARIANTS)}")
    if len(others):
        return float(ncti_scores([features, *others], labels, variant, n_components, seed)[0])
    seli, ncc, vc = ncti_terms(features, labels, n_components, seed)
    return seli + ncc + VARIANTS[variant] * vc
