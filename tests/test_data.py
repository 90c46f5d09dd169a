"""Datasets, validation, augmentation, batching and k-fold splits in jopt.data."""

import os
import random

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jopt import data as jdata
from jopt.data import Dataset

X = np.random.default_rng(0).normal(size=(12, 3)).astype(np.float32)
Y = np.array([0, 1, 2, 0, 1, 2, 0, 1, 2, 0, 1, 2], np.int32)


# ------------------------------------------------------------------------------ Dataset


def test_dataset_infers_num_classes_and_sizes():
    data = Dataset(X, Y, X[:4], np.array([0, 1, 3, 0]))
    assert data.num_classes == 4
    assert (data.n_train, data.n_test) == (12, 4)
    assert Dataset(X, Y.astype(np.float32), X, Y.astype(np.float32)).num_classes is None


@pytest.mark.parametrize(
    "arrays, error, match",
    [
        ((X, Y[:5], X, Y), ValueError, "x_train has 12 examples but y_train has 5"),
        ((X, Y, X[:3], Y), ValueError, "x_test has 3 examples but y_test has 12"),
        ((np.where(X > 1, np.nan, X), Y, X, Y), ValueError, "x_train holds .* NaN or inf"),
        ((X, Y, np.where(X > 1, np.inf, X), Y), ValueError, "x_test holds .* NaN or inf"),
        ((X, Y.astype(bool), X, Y), TypeError, "y_train must hold integer"),
        ((X, np.float32(1.0), X, Y), ValueError, "leading example axis"),
    ],
)
def test_dataset_rejects_bad_arrays(arrays, error, match):
    with pytest.raises(error, match=match):
        Dataset(*arrays)


def test_dataset_rejects_labels_out_of_range():
    with pytest.raises(ValueError, match=r"y_test holds labels in \[0, 2\].*\[0, 2\)"):
        Dataset(X, Y % 2, X, Y, num_classes=2)
    with pytest.raises(ValueError, match="y_train holds labels in"):
        Dataset(X, Y - 1, X, Y, num_classes=3)
    with pytest.raises(TypeError, match="classification labels must be integers"):
        Dataset(X, Y.astype(np.float32), X, Y, num_classes=3)


def test_dataset_is_a_pytree_that_jit_and_vmap_accept():
    data = Dataset(X, Y, X, Y)
    doubled = jax.jit(lambda d: d.replace(x_train=2 * d.x_train))(data)
    np.testing.assert_allclose(doubled.x_train, 2 * X)
    assert doubled.num_classes == 3
    stacked = jax.tree.map(lambda a: jnp.stack([a, a]), data)
    sums = jax.vmap(lambda d: d.x_train.sum())(stacked)
    np.testing.assert_allclose(sums, [X.sum()] * 2, rtol=1e-6)


# ------------------------------------------------------------------------------ datasets


@pytest.fixture(scope="module")
def mnist():
    return jdata.mnist1d()


def test_mnist1d_shapes_dtypes_and_no_side_effects(mnist, tmp_path, monkeypatch):
    assert mnist.x_train.shape == (4000, 40) and mnist.x_test.shape == (1000, 40)
    assert mnist.y_train.shape == (4000,) and mnist.y_test.shape == (1000,)
    assert mnist.x_train.dtype == jnp.float32 and mnist.y_train.dtype == jnp.int32
    assert mnist.num_classes == 10
    assert set(np.unique(mnist.y_train).tolist()) == set(range(10))
    # the dataset is standardized as a whole (mean 0, std 1) by the reference code
    x = np.concatenate([mnist.x_train, mnist.x_test])
    assert abs(x.mean()) < 1e-4 and abs(x.std() - 1) < 1e-4
    # cached, deterministic, and generated without touching the CWD or the global RNGs
    monkeypatch.chdir(tmp_path)
    np.random.seed(123)  # noqa: NPY002
    random.seed(123)
    expected = (np.random.rand(), random.random())  # noqa: NPY002
    np.random.seed(123)  # noqa: NPY002
    random.seed(123)
    again = jdata.mnist1d()
    assert (np.random.rand(), random.random()) == expected  # noqa: NPY002
    np.testing.assert_array_equal(again.x_train, mnist.x_train)
    assert os.listdir(tmp_path) == []


def test_mnist1d_shuffled_positions_and_label_noise(mnist):
    shuffled = jdata.mnist1d(shuffle_positions=True)
    perm = np.random.RandomState(42).permutation(40)  # = np.random.seed(42); permutation(40)
    np.testing.assert_array_equal(shuffled.x_train, np.asarray(mnist.x_train)[:, perm])
    np.testing.assert_array_equal(shuffled.x_test, np.asarray(mnist.x_test)[:, perm])
    noisy = jdata.mnist1d(label_noise=0.2)
    changed = np.mean(np.asarray(noisy.y_train) != np.asarray(mnist.y_train))
    assert 0.15 < changed < 0.2  # 20% redrawn, a tenth of them to the same label
    np.testing.assert_array_equal(noisy.y_test, mnist.y_test)
    with pytest.raises(ValueError, match="label_noise"):
        jdata.mnist1d(label_noise=1.5)
    with pytest.raises(ValueError, match="unknown mnist1d dataset argument 'bogus'"):
        jdata.mnist1d(bogus=1)


def test_digits_split_and_scale():
    data = jdata.digits()
    assert data.x_train.shape == (1437, 64) and data.x_test.shape == (360, 64)
    assert data.x_train.dtype == jnp.float32 and data.y_train.dtype == jnp.int32
    assert float(data.x_train.min()) == 0.0 and float(data.x_train.max()) == 1.0
    # stratified: every class keeps its share of the test set (about 36 each)
    counts = np.bincount(np.asarray(data.y_test), minlength=10)
    assert counts.min() >= 35 and counts.max() <= 37


def test_regression_noise_level():
    data = jdata.regression(n_train=2000, n_test=10, dim=5, noise=0.3, seed=1)
    x, y = np.asarray(data.x_train, np.float64), np.asarray(data.y_train, np.float64)
    w, *_ = np.linalg.lstsq(x, y, rcond=None)
    assert abs(np.std(y - x @ w) - 0.3) < 0.02
    assert abs(np.var(x @ w) - 1.0) < 0.5  # unit-variance signal (w ~ N(0, I/dim))
    assert data.num_classes is None


def test_standardize_uses_train_statistics():
    x_train = np.array([[1.0, 5.0], [3.0, 5.0], [5.0, 5.0]], np.float32)
    x_test = np.array([[3.0, 6.0]], np.float32)
    y = np.zeros(3, np.float32)
    out = jdata.standardize(Dataset(x_train, y, x_test, y[:1]))
    std = np.std([1.0, 3.0, 5.0])
    np.testing.assert_allclose(out.x_train[:, 0], [-2 / std, 0, 2 / std], rtol=1e-6)
    np.testing.assert_allclose(out.x_train[:, 1], [0, 0, 0])  # constant feature: centered
    np.testing.assert_allclose(out.x_test, [[0.0, 1.0]], atol=1e-6)
    scalar = jdata.standardize(Dataset(x_train, y, x_test, y[:1]), per_feature=False)
    assert abs(float(scalar.x_train.mean())) < 1e-6
    assert abs(float(scalar.x_train.std()) - 1) < 1e-6


# ------------------------------------------------------------------------------ augmentation


def test_random_shift_roll_preserves_rows_and_pad_shifts_in_zeros():
    key = jax.random.PRNGKey(0)
    x = np.asarray(jax.random.normal(key, (64, 20))) + 5.0  # no zeros in the data

    @jax.jit
    def shifted(key, x):
        traced_max = jax.vmap(lambda m: jdata.random_shift(key, x, m, mode="roll"))
        return (
            jdata.random_shift(key, x, 3, mode="roll"),
            jdata.random_shift(key, x, 3),  # mode="pad"; the same key draws the same shifts
            traced_max(jnp.array([0, 2])),  # max_shift may be traced
            jdata.random_shift(key, jnp.stack([x, x], -1), 3),  # channels last
        )

    rolled, padded, traced, channels = (np.asarray(a) for a in shifted(key, x))
    np.testing.assert_array_equal(np.sort(rolled, axis=1), np.sort(x, axis=1))
    zeros = np.sum(padded == 0, axis=1)
    assert zeros.max() == 3 and (zeros == 0).any()  # |shift| <= 3, some unshifted
    for row in range(64):
        shift = [s for s in range(-3, 4) if np.array_equal(np.roll(x[row], s), rolled[row])]
        assert len(shift) == 1
        expected = np.roll(x[row], shift[0])
        if shift[0] > 0:
            expected[: shift[0]] = 0
        elif shift[0] < 0:
            expected[shift[0] :] = 0
        np.testing.assert_array_equal(padded[row], expected)
    np.testing.assert_array_equal(traced[0], x)
    np.testing.assert_array_equal(channels[..., 1], padded)


def test_random_shift_2d_and_random_crop():
    key = jax.random.PRNGKey(1)
    images = np.asarray(jax.random.uniform(key, (16, 8, 8, 1))) + 1.0
    rolled = np.asarray(jdata.random_shift_2d(key, images, 2, mode="roll"))
    np.testing.assert_array_equal(
        np.sort(rolled.reshape(16, -1), axis=1), np.sort(images.reshape(16, -1), axis=1)
    )
    crops = np.asarray(jdata.random_crop(key, images[..., 0], (5, 6)))
    assert crops.shape == (16, 5, 6)
    for image, crop in zip(images[..., 0], crops):
        windows = [image[i : i + 5, j : j + 6] for i in range(4) for j in range(3)]
        assert any(np.array_equal(crop, w) for w in windows)
    padded = np.asarray(jdata.random_crop(key, images, padding=2))
    assert padded.shape == images.shape
    assert (padded == 0).any() and np.isin(padded[padded != 0], images).all()
    with pytest.raises(ValueError, match="size must lie in"):
        jdata.random_crop(key, images, (13, 9))
    with pytest.raises(ValueError, match="mode must be one of"):
        jdata.random_shift_2d(key, images, 1, mode="reflect")


def test_gaussian_noise_statistics():
    x = jnp.full((200, 500), 3.0)
    noisy = jax.jit(jdata.gaussian_noise)(jax.random.PRNGKey(0), x, 0.25)
    assert abs(float(noisy.mean()) - 3.0) < 0.003
    assert abs(float(noisy.std()) - 0.25) < 0.003
    with pytest.raises(ValueError, match="std must be >= 0"):
        jdata.gaussian_noise(jax.random.PRNGKey(0), x, -1.0)


# ------------------------------------------------------------------------------ batching


def test_shuffle_covers_each_epoch_exactly_once():
    key = jax.random.PRNGKey(0)
    indices = jax.jit(jax.vmap(lambda s: jdata.batch_indices(key, s, 12, 4)), static_argnums=())(
        jnp.arange(9)
    )
    epochs = np.asarray(indices).reshape(3, 12)
    for epoch in epochs:
        np.testing.assert_array_equal(np.sort(epoch), np.arange(12))
    assert not np.array_equal(epochs[0], epochs[1])  # a fresh permutation per epoch
    np.testing.assert_array_equal(epochs[1], jdata.epoch_permutation(key, 1, 12))
    # n % batch_size examples of each epoch's permutation are dropped
    partial = np.concatenate([jdata.batch_indices(key, s, 10, 3) for s in range(3)])
    assert len(set(partial.tolist())) == 9


@pytest.mark.parametrize("n", [1, 2, 3, 7, 64, 65, 4000, 4097])
def test_epoch_permutation_is_a_bijection(n):
    perms = jax.vmap(lambda e: jdata.epoch_permutation(jax.random.PRNGKey(3), e, n))(jnp.arange(4))
    for perm in np.asarray(perms):
        np.testing.assert_array_equal(np.sort(perm), np.arange(n))
    if n >= 64:
        assert not np.array_equal(perms[0], perms[1])
        assert np.mean(perms[0] == np.arange(n)) < 0.1  # not near the identity


def test_epoch_permutation_is_uniform_enough():
    # where element i lands over 3000 epochs: every (element, position) pair of a 10-element
    # shuffle has probability 1/10; chi-square over the 10x10 table (81 dof, 99.9% at 131)
    n, epochs = 10, 3000
    perms = np.asarray(
        jax.vmap(lambda e: jdata.epoch_permutation(jax.random.PRNGKey(0), e, n))(jnp.arange(epochs))
    )
    counts = np.zeros((n, n))
    for perm in perms:
        counts[perm, np.arange(n)] += 1
    expected = epochs / n
    chi2 = float(((counts - expected) ** 2 / expected).sum())
    assert chi2 < 131, chi2
    # consecutive positions are not correlated: the pair (perm[0], perm[1]) covers all 90
    assert len({(a, b) for a, b in perms[:, :2].tolist()}) == n * (n - 1)


def test_shuffled_positions_slices_the_permutation_under_vmap():
    key = jax.random.PRNGKey(1)
    perm = np.asarray(jdata.epoch_permutation(key, 5, 300))
    steps = jnp.arange(3) + 5 * 3  # epoch 5 of 3 batches of 100
    batches = jax.vmap(lambda s: jdata.batch_indices(key, s, 300, 100))(steps)
    np.testing.assert_array_equal(np.asarray(batches).ravel(), perm)


def test_sequential_is_the_notebook_and_replacement_is_pure():
    n, batch_size = 4000, 100
    for step in (0, 1, 39, 40, 1234):
        bix = (step * batch_size) % n
        np.testing.assert_array_equal(
            jdata.batch_indices(None, step, n, batch_size, mode="sequential"),
            np.arange(n)[bix : bix + batch_size],
        )
    key = jax.random.PRNGKey(0)
    a = jdata.batch_indices(key, 7, 50, 30, mode="replacement")
    np.testing.assert_array_equal(a, jdata.batch_indices(key, 7, 50, 30, mode="replacement"))
    assert len(set(a.tolist())) < 30 and a.min() >= 0 and a.max() < 50  # repeats expected
    with pytest.raises(ValueError, match="mode must be one of"):
        jdata.batch_indices(key, 0, 10, 2, mode="random")
    with pytest.raises(ValueError, match=r"batch_size must lie in \[1, n\] = \[1, 10\]"):
        jdata.batch_indices(key, 0, 10, 11)


# ------------------------------------------------------------------------------ k-fold


def test_kfold_shapes_disjoint_and_vmappable():
    x = np.arange(23, dtype=np.float32)[:, None] * np.ones((1, 2), np.float32)
    y = np.arange(23, dtype=np.int32) % 3
    folds = jdata.kfold(Dataset(x, y, x[:2], y[:2]), k=5, seed=0)
    assert folds.x_train.shape == (5, 16, 2) and folds.x_test.shape == (5, 4, 2)
    assert folds.y_train.shape == (5, 16) and folds.num_classes == 3
    ids_train = np.asarray(folds.x_train[..., 0]).astype(int)
    ids_test = np.asarray(folds.x_test[..., 0]).astype(int)
    kept = np.sort(ids_test.ravel())
    assert len(set(kept.tolist())) == 20  # the test folds partition 20 of the 23 examples
    for i in range(5):
        assert not set(ids_train[i]) & set(ids_test[i])
        np.testing.assert_array_equal(np.sort(np.r_[ids_train[i], ids_test[i]]), kept)
        np.testing.assert_array_equal(folds.y_test[i], ids_test[i] % 3)
    means = jax.vmap(lambda d: d.x_test.mean())(folds)
    np.testing.assert_allclose(means, ids_test.mean(axis=1))
    with pytest.raises(ValueError, match=r"k must be an integer in \[2, n_train\]"):
        jdata.kfold(Dataset(x, y, x, y), k=1)
