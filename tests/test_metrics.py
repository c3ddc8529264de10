"""Transferability metrics against the authors' implementations and closed forms.

Reference figures were produced by running the published code (thuml/LogME at commit 56551ca:
LogME.py fixed-point `LogME().fit`, LEEP.py `LEEP`, NCE.py `NCE`) on the inputs `problem` makes.
"""

from __future__ import annotations

import numpy as np
import pytest

from metadb.errors import MetadbError
from metadb.metrics import gbc, hscore, leep, logme, lp, metrics, nce, nleep, parc, sfda, shrinkage_hscore
from metadb.metrics.gbc import bhattacharyya_coefficient


def problem(n=200, d=32, c=4, seed=0):
    rng = np.random.default_rng(seed)
    y = np.arange(n) % c
    f = rng.normal(size=(c, d))[y] + rng.normal(size=(n, d))
    w = rng.normal(size=(d, 10)) / np.sqrt(d)
    logits = f @ w * 3
    p = np.exp(logits - logits.max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)
    return f, y, p, p.argmax(1)


# (n, d, c, seed): LogME, LEEP, NCE from thuml/LogME (commit 56551ca)
REFERENCE = {
    (200, 32, 4, 0): (0.09889450294955202, -0.7120082142415146, -0.71765427611732),
    (40, 64, 3, 1): (2.0470678778088343, -0.5165512047163193, -0.4278414730237422),  # N < D
}


@pytest.mark.parametrize("args", REFERENCE)
def test_against_the_authors_implementation(args):
    f, y, p, z = problem(*args)
    ref_logme, ref_leep, ref_nce = REFERENCE[args]
    assert logme(f, y) == pytest.approx(ref_logme, rel=1e-10)
    assert leep(p, y) == pytest.approx(ref_leep, rel=1e-12)
    assert nce(z, y) == pytest.approx(ref_nce, rel=1e-12)


# (n, d, c, seed): SFDA_Score and PARC_Score of TencentARC/SFDA metrics.py (PCA random_state 1919)
REFERENCE_SFDA_REPO = {
    (200, 32, 4, 0): (0.9643884187531074, 23.91496050713673),
    (40, 64, 3, 1): (1.0, 8.980871230041904),  # SFDA saturates when N < D, as in Juodelyte et al.'s tables
}


@pytest.mark.parametrize("args", REFERENCE_SFDA_REPO)
def test_sfda_and_parc_against_the_official_code(args):
    f, y, *_ = problem(*args)
    ref_sfda, ref_parc = REFERENCE_SFDA_REPO[args]
    assert sfda(f, y) == pytest.approx(ref_sfda, rel=1e-10)
    assert parc(f, y) == pytest.approx(ref_parc, rel=1e-10)


# (n, d, c, seed) with extra noise: LP_Score of DovileDo/transferability-in-medical-imaging src/metrics.py
REFERENCE_LP = {(60, 64, 3, 1): 0.64, (120, 80, 4, 2): 0.5833333333333334}


@pytest.mark.parametrize("args", REFERENCE_LP)
def test_lp_against_juodelyte_et_al_code(args):
    f, y, *_ = problem(*args)
    f = f + 4 * np.random.default_rng(9).normal(size=f.shape)
    assert lp(f, y) == pytest.approx(REFERENCE_LP[args], rel=1e-12)


# noisy (n, d, c, seed): NLEEP of Juodelyte et al.'s src/metrics.py with its GMM seeded (random_state=0)
REFERENCE_NLEEP = {(200, 32, 4, 0): 0.3971988691133428, (120, 80, 4, 2): 0.4268861231361232}


@pytest.mark.parametrize("args", REFERENCE_NLEEP)
def test_nleep_against_juodelyte_et_al_code(args):
    f, y, *_ = problem(*args)
    f = f + 4 * np.random.default_rng(9).normal(size=f.shape)
    assert nleep(f, y, juodelyte=True) == pytest.approx(REFERENCE_NLEEP[args], rel=1e-10)
    assert nleep(f, y) <= np.log(nleep(f, y, juodelyte=True)) + 1e-12  # Jensen: mean log <= log mean


def test_gbc_closed_forms():
    m, v = np.zeros(3), np.ones(3)
    assert bhattacharyya_coefficient(m, v, m, v) == pytest.approx(1.0)
    # equal variances: D_B = |m1 - m2|^2 / (8 sigma^2)
    assert bhattacharyya_coefficient(m, v, m + 2, v) == pytest.approx(np.exp(-12 / 8))
    f, y, *_ = problem()
    assert -12 <= gbc(f, y) <= 0  # 4 classes: 12 ordered pairs, each coefficient in [0, 1]
    noisy = f + 4 * np.random.default_rng(9).normal(size=f.shape)
    assert gbc(f, y) > gbc(noisy, y)  # more overlap, lower score


def test_leep_with_one_hot_source_predictions_is_minus_the_conditional_entropy():
    f, y, p, z = problem()
    onehot = np.eye(10)[z]
    # with deterministic source labels, LEEP = mean log P(y|z) = -H(Y|Z) = NCE
    assert leep(onehot, y) == pytest.approx(nce(z, y), rel=1e-12)


def test_nce_on_a_hand_computed_table():
    z = np.array([0, 0, 0, 0, 1, 1])
    y = np.array([0, 0, 1, 1, 1, 1])
    # H(Y|Z=0) = ln 2 with P(z=0) = 4/6; H(Y|Z=1) = 0
    assert nce(z, y) == pytest.approx(-(4 / 6) * np.log(2), rel=1e-12)


def test_hscore_closed_form_and_invariances():
    f, y, *_ = problem()
    g = np.zeros_like(f)
    fc = f - f.mean(0)
    for c in range(4):
        g[y == c] = fc[y == c].mean(0)
    expected = np.trace(np.linalg.inv(np.cov(fc, rowvar=False, bias=True)) @ np.cov(g, rowvar=False, bias=True))
    assert hscore(f, y) == pytest.approx(expected, rel=1e-9)
    a = np.random.default_rng(3).normal(size=(32, 32))  # invertible linear maps leave it unchanged
    assert hscore(f @ a, y) == pytest.approx(hscore(f, y), rel=1e-6)
    assert hscore(f, y) <= 3 + 1e-9  # at most C - 1
    big_f, big_y, *_ = problem(n=20_000, d=8)  # plenty of samples: almost no shrinkage
    assert shrinkage_hscore(big_f, big_y) == pytest.approx(hscore(big_f, big_y), rel=5e-3)


def test_logme_prefers_separable_features_and_handles_multi_label():
    f, y, *_ = problem()
    noise = np.random.default_rng(5).normal(size=f.shape)
    assert logme(f, y) > logme(noise, y)
    multi = np.stack([y == 0, (y == 1) | (y == 2)], axis=1).astype(int)
    assert np.isfinite(logme(f, multi))


@pytest.mark.parametrize("call,message", [
    (lambda: logme(np.ones((5, 3)), [0, 1, 0]), r"labels: shape \(3,\); expected \(5,\)"),
    (lambda: logme(np.ones((4, 3)), [1, 1, 1, 1]), "a single class"),
    (lambda: logme([[np.nan, 1], [1, 2]], [0, 1]), "features: contains NaN"),
    (lambda: leep(np.full((4, 2), 0.9), [0, 1, 0, 1]), "rows must be probabilities"),
    (lambda: nce(np.array([0.2, 0.5]), [0, 1]), "expected \\(N,\\) integers"),
])
def test_bad_input_is_one_line(call, message):
    with pytest.raises(MetadbError, match=message):
        call()


@pytest.mark.parametrize("name", metrics.names())
def test_every_metric_is_documented_and_finite(name):
    fn = metrics.entry(name).factory
    assert fn.__doc__ and fn.needs in ("features", "source_probs", "pseudo_labels")
    f, y, p, z = problem()
    arg = {"features": f, "source_probs": p, "pseudo_labels": z}[fn.needs]
    assert np.isfinite(fn(arg, y))
