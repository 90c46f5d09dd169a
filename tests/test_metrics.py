"""Tests for jopt.metrics: every metric against scikit-learn on the same data."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from numpy.testing import assert_allclose, assert_array_equal
from sklearn import metrics as skm

from jopt import metrics

C = 5  # classes; class 3 never occurs in y_true or y_pred below


def _labels(seed: int, n: int = 60) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    classes = np.array([0, 1, 2, 4])
    y_true = rng.choice(classes, size=n)
    y_pred = np.where(rng.random(n) < 0.6, y_true, rng.choice(classes, size=n))
    return y_true, y_pred


Y_TRUE, Y_PRED = _labels(0)
# Class 2 is never predicted either, so its precision is 0/0.
Y_PRED_NO2 = np.where(Y_PRED == 2, 0, Y_PRED)

_SK_PRF = {"precision": skm.precision_score, "recall": skm.recall_score, "f1": skm.f1_score}


def test_accuracy_matches_sklearn():
    got = metrics.accuracy(Y_TRUE, Y_PRED)
    assert got.dtype == jnp.float32 and got.shape == ()
    assert_allclose(got, skm.accuracy_score(Y_TRUE, Y_PRED), rtol=1e-6)


def test_confusion_matrix_matches_sklearn():
    got = metrics.confusion_matrix(Y_TRUE, Y_PRED, C)
    assert got.dtype == jnp.int32
    assert_array_equal(got, skm.confusion_matrix(Y_TRUE, Y_PRED, labels=list(range(C))))
    assert int(got[3].sum() + got[:, 3].sum()) == 0  # the absent class


@pytest.mark.parametrize("name", ["precision", "recall", "f1"])
@pytest.mark.parametrize("average", ["macro", "micro", "weighted", None])
@pytest.mark.parametrize("y_pred", [Y_PRED, Y_PRED_NO2], ids=["pred", "pred_no2"])
def test_prf_matches_sklearn(name, average, y_pred):
    got = getattr(metrics, name)(Y_TRUE, y_pred, C, average=average)
    want = _SK_PRF[name](Y_TRUE, y_pred, labels=list(range(C)), average=average, zero_division=0)
    assert got.shape == np.shape(want)
    assert_allclose(got, want, rtol=1e-6, atol=1e-7)


def test_hand_computed_values():
    y_true, y_pred = jnp.array([0, 1, 1, 2]), jnp.array([0, 0, 1, 1])
    assert_allclose(metrics.precision(y_true, y_pred, 3, average=None), [0.5, 0.5, 0.0])
    assert_allclose(metrics.recall(y_true, y_pred, 3, average=None), [1.0, 0.5, 0.0])
    assert_allclose(metrics.f1(y_true, y_pred, 3, average=None), [2 / 3, 0.5, 0.0], rtol=1e-6)
    assert_allclose(metrics.f1(y_true, y_pred, 3, average="micro"), 0.5)


def test_logits_and_probabilities_input():
    rng = np.random.default_rng(1)
    logits = rng.normal(size=(Y_TRUE.size, C)).astype(np.float32)
    labels = logits.argmax(-1)
    assert_allclose(metrics.accuracy(Y_TRUE, logits), skm.accuracy_score(Y_TRUE, labels))
    probs = jax.nn.softmax(logits)
    assert_array_equal(
        metrics.confusion_matrix(Y_TRUE, probs, C),
        skm.confusion_matrix(Y_TRUE, labels, labels=list(range(C))),
    )
    assert_allclose(
        metrics.f1(Y_TRUE, logits, C),
        skm.f1_score(Y_TRUE, labels, labels=list(range(C)), average="macro", zero_division=0),
        rtol=1e-6,
    )


def test_regression_matches_sklearn():
    rng = np.random.default_rng(2)
    y = rng.normal(size=50).astype(np.float32)
    y_hat = (y + 0.3 * rng.normal(size=50)).astype(np.float32)
    assert_allclose(metrics.mse(y, y_hat), skm.mean_squared_error(y, y_hat), rtol=1e-5)
    assert_allclose(metrics.mae(y, y_hat), skm.mean_absolute_error(y, y_hat), rtol=1e-5)
    assert_allclose(metrics.r2(y, y_hat), skm.r2_score(y, y_hat), rtol=1e-5)
    # Multi-output: uniform average over columns.
    y2, y2_hat = y.reshape(25, 2), y_hat.reshape(25, 2)
    assert_allclose(metrics.r2(y2, y2_hat), skm.r2_score(y2, y2_hat), rtol=1e-5)
    assert_allclose(metrics.mse(y2, y2_hat), skm.mean_squared_error(y2, y2_hat), rtol=1e-5)
    # Constant targets: 1 for a perfect fit, else 0 (sklearn's force_finite).
    const = np.full(4, 2.0, np.float32)
    assert float(metrics.r2(const, const)) == skm.r2_score(const, const) == 1.0
    assert float(metrics.r2(const, const + 1)) == skm.r2_score(const, const + 1) == 0.0


def test_jit_and_vmap_match_sklearn():
    sets = [_labels(seed, n=30) for seed in range(3)]
    y_true = jnp.stack([t for t, _ in sets])  # (3, 30)
    y_pred = jnp.stack([p for _, p in sets])

    @jax.jit
    @jax.vmap
    def all_metrics(t, p):
        return {
            "accuracy": metrics.accuracy(t, p),
            "cm": metrics.confusion_matrix(t, p, C),
            "precision": metrics.precision(t, p, C),
            "recall": metrics.recall(t, p, C, average="micro"),
            "f1": metrics.f1(t, p, C, average=None),
            "r2": metrics.r2(t, p),
        }

    got = all_metrics(y_true, y_pred)
    kw = {"labels": list(range(C)), "zero_division": 0}
    for i, (t, p) in enumerate(sets):
        assert_allclose(got["accuracy"][i], skm.accuracy_score(t, p), rtol=1e-6)
        assert_array_equal(got["cm"][i], skm.confusion_matrix(t, p, labels=list(range(C))))
        assert_allclose(got["precision"][i], skm.precision_score(t, p, average="macro", **kw))
        assert_allclose(got["recall"][i], skm.recall_score(t, p, average="micro", **kw))
        assert_allclose(got["f1"][i], skm.f1_score(t, p, average=None, **kw), rtol=1e-6)
        assert_allclose(got["r2"][i], skm.r2_score(t, p), rtol=1e-5)


@pytest.mark.parametrize("average", ["binary", "samples", "Macro", 1])
def test_bad_average_raises(average):
    with pytest.raises(ValueError, match="average must be one of"):
        metrics.f1(Y_TRUE, Y_PRED, C, average=average)


@pytest.mark.parametrize(
    ("num_classes", "error"),
    [(0, ValueError), (-2, ValueError), (2.5, TypeError), (True, TypeError)],
)
def test_bad_num_classes_raises(num_classes, error):
    with pytest.raises(error, match="num_classes must be a positive int"):
        metrics.precision(Y_TRUE, Y_PRED, num_classes)


def test_shape_mismatch_raises_under_jit():
    with pytest.raises(ValueError, match="different shapes"):
        jax.jit(metrics.accuracy)(jnp.zeros(4, jnp.int32), jnp.zeros(5, jnp.int32))
    with pytest.raises(ValueError, match="one more trailing axis"):
        metrics.accuracy(jnp.zeros(4, jnp.int32), jnp.zeros((4, 3, 2)))
    with pytest.raises(ValueError, match="different shapes"):
        metrics.confusion_matrix(jnp.zeros(4, jnp.int32), jnp.zeros((5, 3)), 3)
    with pytest.raises(ValueError, match="different shapes"):
        metrics.mse(jnp.zeros(4), jnp.zeros((4, 1)))
