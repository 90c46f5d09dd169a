"""Datasets that need no download, normalization, augmentation, batching and k-fold splits.

Everything here returns or consumes a :class:`Dataset`, a pytree of four arrays
(``x_train``, ``y_train``, ``x_test``, ``y_test``) plus a static ``num_classes``. Because it
is a pytree, a dataset can be passed to ``jit``-ed functions and ``vmap``-ed over: the
output of :func:`kfold` carries a leading fold axis, and ``jax.vmap(train)(folds, keys)``
trains one model per fold.

The augmentation and batching functions are pure JAX functions of an explicit key, so they
run on device inside a compiled training loop; :func:`batch_indices` is a pure function of
the step number, so a resumed run sees the same batches as an uninterrupted one.
"""

from __future__ import annotations

import functools
import random
from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import struct

Array = jax.Array
ArrayLike = jax.typing.ArrayLike

BATCH_MODES = ("shuffle", "replacement", "sequential")
SHIFT_MODES = ("pad", "roll")


# ------------------------------------------------------------------------------------------
# Dataset
# ------------------------------------------------------------------------------------------


def _is_concrete(x: Any) -> bool:
    """Whether ``x`` is an array whose values can be read now (not a tracer or a spec)."""
    return isinstance(x, (np.ndarray, jax.Array)) and not isinstance(x, jax.core.Tracer)


def _check_dataset(data: Dataset) -> None:
    """Checks shapes always, and values where the arrays are concrete.

    Raises:
      ValueError: x/y lengths differ, x holds NaN/inf, or labels are out of range.
      TypeError: labels are neither integers nor floats.
    """
    names = ("x_train", "y_train", "x_test", "y_test")
    leaves = [getattr(data, name) for name in names]
    if not all(hasattr(leaf, "shape") and hasattr(leaf, "dtype") for leaf in leaves):
        return  # e.g. a Dataset of vmap in_axes ints, or of None placeholders
    for split in ("train", "test"):
        x, y = getattr(data, f"x_{split}"), getattr(data, f"y_{split}")
        if len(x.shape) == 0 or len(y.shape) == 0:
            raise ValueError(
                f"x_{split} and y_{split} must have a leading example axis, got shapes "
                f"{tuple(x.shape)} and {tuple(y.shape)}"
            )
        if x.shape[0] != y.shape[0]:
            raise ValueError(
                f"x_{split} has {x.shape[0]} examples but y_{split} has {y.shape[0]}; "
                "they must be equal"
            )
        if not (jnp.issubdtype(y.dtype, jnp.integer) or jnp.issubdtype(y.dtype, jnp.floating)):
            raise TypeError(
                f"y_{split} must hold integer class labels or float regression targets, "
                f"got dtype {y.dtype}"
            )
        if data.num_classes is not None and not jnp.issubdtype(y.dtype, jnp.integer):
            raise TypeError(
                f"num_classes={data.num_classes} was given but y_{split} has dtype {y.dtype}; "
                "classification labels must be integers"
            )
    if not all(_is_concrete(leaf) for leaf in leaves):
        return
    for name in names:
        leaf = np.asarray(getattr(data, name))
        if jnp.issubdtype(leaf.dtype, jnp.floating) and not np.all(np.isfinite(leaf)):
            bad = int(np.size(leaf) - np.count_nonzero(np.isfinite(leaf)))
            raise ValueError(f"{name} holds {bad} NaN or inf values; all values must be finite")
    if data.num_classes is not None:
        for name in ("y_train", "y_test"):
            y = np.asarray(getattr(data, name))
            if y.size and (y.min() < 0 or y.max() >= data.num_classes):
                raise ValueError(
                    f"{name} holds labels in [{y.min()}, {y.max()}] but labels must lie in "
                    f"[0, num_classes) = [0, {data.num_classes})"
                )


@struct.dataclass
class Dataset:
    """A train/test split as a pytree of four arrays.

    Constructing a ``Dataset`` from concrete arrays checks it: ``x`` and ``y`` of each split
    must have the same number of examples, ``x`` must be finite and labels must be
    integers in ``[0, num_classes)`` (or floats, for regression). Inside ``jit``/``vmap``
    (tracers) only the shapes are checked.

    Attributes:
      x_train: inputs, shape ``(n_train, *features)``.
      y_train: integer labels ``(n_train,)`` or float targets ``(n_train, *targets)``.
      x_test: inputs, shape ``(n_test, *features)``.
      y_test: labels or targets for ``x_test``.
      num_classes: the number of classes (static, not a pytree leaf). ``None`` for
        regression; inferred as ``max(label) + 1`` over both splits when the labels are
        concrete integers and it is not given.

    Examples:
      >>> import numpy as np
      >>> from jopt.data import Dataset
      >>> x = np.zeros((4, 3), np.float32)
      >>> data = Dataset(x, np.array([0, 1, 2, 1]), x[:2], np.array([0, 2]))
      >>> data.num_classes, data.n_train, data.n_test
      (3, 4, 2)
      >>> Dataset(x, np.array([0, 1]), x, np.array([0, 1, 0, 1]))
      Traceback (most recent call last):
      ...
      ValueError: x_train has 4 examples but y_train has 2; they must be equal
    """

    x_train: Any
    y_train: Any
    x_test: Any
    y_test: Any
    num_classes: int | None = struct.field(pytree_node=False, default=None)

    def __post_init__(self):
        # Also runs when JAX rebuilds the pytree (with tracers or placeholders): the
        # checks skip what they cannot see.
        y_train, y_test = self.y_train, self.y_test
        if (
            self.num_classes is None
            and _is_concrete(y_train)
            and _is_concrete(y_test)
            and jnp.issubdtype(y_train.dtype, jnp.integer)
            and jnp.issubdtype(y_test.dtype, jnp.integer)
            and len(y_train.shape) >= 1
        ):
            labels = [np.asarray(y) for y in (y_train, y_test) if np.size(y)]
            if labels:
                object.__setattr__(self, "num_classes", int(max(y.max() for y in labels)) + 1)
        _check_dataset(self)

    @property
    def n_train(self) -> int:
        """The number of training examples (``x_train.shape[0]``)."""
        return self.x_train.shape[0]

    @property
    def n_test(self) -> int:
        """The number of test examples (``x_test.shape[0]``)."""
        return self.x_test.shape[0]


# ------------------------------------------------------------------------------------------
# Datasets
# ------------------------------------------------------------------------------------------


@functools.lru_cache(maxsize=8)
def _mnist1d_arrays(
    num_samples: int, train_split: float, seed: int, overrides: tuple[tuple[str, Any], ...]
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Generates MNIST-1D with the reference code; cached, read-only numpy arrays."""
    try:
        from mnist1d.data import get_dataset_args, make_dataset
    except ImportError as e:  # pragma: no cover - depends on the environment
        raise ImportError(
            "jopt.data.mnist1d needs the mnist1d package: pip install 'jopt[data]'"
        ) from e
    args = get_dataset_args()  # an ObjectView; make_dataset never downloads nor writes files
    args.num_samples, args.train_split, args.seed = num_samples, train_split, seed
    for name, value in overrides:
        setattr(args, name, list(value) if isinstance(value, tuple) else value)
    # make_dataset seeds the global numpy and `random` generators; give them back untouched.
    np_state, py_state = np.random.get_state(), random.getstate()  # noqa: NPY002
    try:
        raw = make_dataset(args)
    finally:
        np.random.set_state(np_state)  # noqa: NPY002
        random.setstate(py_state)
    arrays = (
        raw["x"].astype(np.float32),
        raw["y"].astype(np.int32),
        raw["x_test"].astype(np.float32),
        raw["y_test"].astype(np.int32),
    )
    for a in arrays:
        a.setflags(write=False)
    return arrays


def mnist1d(
    num_samples: int = 5000,
    train_split: float = 0.8,
    seed: int = 42,
    *,
    shuffle_positions: bool = False,
    label_noise: float = 0.0,
    **dataset_args: Any,
) -> Dataset:
    """The MNIST-1D dataset (Greydanus 2020), generated offline.

    Ten 1-D templates (one per digit) are padded, sheared, translated, scaled and
    noised into signals of length 40 by the reference ``mnist1d`` package
    (``mnist1d.data.make_dataset``); nothing is downloaded or written to disk. With the
    defaults the result equals the published dataset: 4000 training and 1000 test
    examples of 40 float32 values, labels 0..9 as int32. The generated arrays are cached
    in-process, so later calls are free.

    Args:
      num_samples: total number of examples; ``num_samples // 10`` are made per class.
      train_split: fraction of the examples that go to the training split.
      seed: the generator's seed (``42`` gives the published dataset).
      shuffle_positions: apply one fixed permutation to the 40 positions of every
        signal (``np.random.seed(42); np.random.permutation(40)``), the paper's
        spatially shuffled control: it destroys locality but keeps the information.
      label_noise: fraction of the *training* labels replaced by labels drawn uniformly
        from the 10 classes (so about a tenth of them keep their value), as in the
        double-descent experiments (Nakkiran et al. 2019). Seeded by ``seed``; the test
        labels stay clean.
      **dataset_args: overrides of other keys of ``mnist1d.data.get_dataset_args()``, e.g.
        ``iid_noise_scale=0.05`` or ``final_seq_length=60``.

    Returns:
      A :class:`Dataset` with ``num_classes=10``.

    Examples:
      >>> import jopt
      >>> data = jopt.data.mnist1d()
      >>> data.x_train.shape, data.x_test.shape, data.y_train.dtype
      ((4000, 40), (1000, 40), dtype('int32'))

    References:
      Greydanus, `Scaling down deep learning <https://arxiv.org/abs/2011.14439>`_, 2020.
    """
    if not 0.0 < train_split < 1.0:
        raise ValueError(f"train_split must lie in (0, 1), got {train_split}")
    if num_samples < 10:
        raise ValueError(f"num_samples must be at least 10 (one per class), got {num_samples}")
    if not 0.0 <= label_noise <= 1.0:
        raise ValueError(f"label_noise must lie in [0, 1], got {label_noise}")
    try:
        from mnist1d.data import get_dataset_args
    except ImportError as e:  # pragma: no cover - depends on the environment
        raise ImportError(
            "jopt.data.mnist1d needs the mnist1d package: pip install 'jopt[data]'"
        ) from e
    known = vars(get_dataset_args())
    for name in dataset_args:
        if name not in known or name in ("num_samples", "train_split", "seed", "url"):
            raise ValueError(
                f"unknown mnist1d dataset argument {name!r}; allowed: "
                f"{sorted(set(known) - {'num_samples', 'train_split', 'seed', 'url'})}"
            )
    overrides = tuple(
        sorted((k, tuple(v) if isinstance(v, list) else v) for k, v in dataset_args.items())
    )
    x_train, y_train, x_test, y_test = _mnist1d_arrays(
        int(num_samples), float(train_split), int(seed), overrides
    )
    if shuffle_positions:
        perm = np.random.RandomState(42).permutation(x_train.shape[-1])
        x_train, x_test = x_train[:, perm], x_test[:, perm]
    if label_noise > 0:
        rng = np.random.default_rng(seed)
        noisy = rng.choice(len(y_train), size=round(label_noise * len(y_train)), replace=False)
        y_train = y_train.copy()
        y_train[noisy] = rng.integers(0, 10, size=len(noisy))
    return Dataset(
        jnp.asarray(x_train),
        jnp.asarray(y_train),
        jnp.asarray(x_test),
        jnp.asarray(y_test),
        num_classes=10,
    )


def digits(test_size: float = 0.2, seed: int = 0) -> Dataset:
    """scikit-learn's bundled 8x8 handwritten digits (UCI), split and scaled to [0, 1].

    1797 images of 64 pixels with values 0..16 (shipped with scikit-learn, nothing is
    downloaded), divided by 16 and flattened to float32 vectors of shape ``(n, 64)``. The
    split is stratified and fixed by ``seed``: with the defaults 1437 training and 360
    test examples. A 2-D CNN reshapes a batch with ``x.reshape(-1, 8, 8, 1)``.

    Args:
      test_size: fraction of the examples in the test split.
      seed: ``random_state`` of ``sklearn.model_selection.train_test_split``.

    Returns:
      A :class:`Dataset` with ``num_classes=10``.

    Examples:
      >>> import jopt
      >>> data = jopt.data.digits()
      >>> data.x_train.shape, data.x_test.shape, float(data.x_train.max())
      ((1437, 64), (360, 64), 1.0)
    """
    if not 0.0 < test_size < 1.0:
        raise ValueError(f"test_size must lie in (0, 1), got {test_size}")
    try:
        from sklearn.datasets import load_digits
        from sklearn.model_selection import train_test_split
    except ImportError as e:  # pragma: no cover - depends on the environment
        raise ImportError("jopt.data.digits needs scikit-learn: pip install 'jopt[data]'") from e
    x, y = load_digits(return_X_y=True)
    x_train, x_test, y_train, y_test = train_test_split(
        x, y, test_size=test_size, random_state=seed, stratify=y
    )
    return Dataset(
        jnp.asarray(x_train / 16.0, jnp.float32),
        jnp.asarray(y_train, jnp.int32),
        jnp.asarray(x_test / 16.0, jnp.float32),
        jnp.asarray(y_test, jnp.int32),
        num_classes=10,
    )


def regression(
    n_train: int = 100, n_test: int = 1000, dim: int = 20, noise: float = 0.1, seed: int = 0
) -> Dataset:
    """A synthetic linear regression task: ``y = x @ w + noise * eps``.

    Inputs ``x ~ N(0, I_dim)``, teacher weights ``w ~ N(0, I_dim / dim)`` (so ``x @ w`` has
    unit variance) and ``eps ~ N(0, 1)``, all drawn from ``numpy.random.default_rng(seed)``.
    With ``n_train`` near ``dim`` it shows double descent for least squares.

    Args:
      n_train: number of training examples.
      n_test: number of test examples.
      dim: input dimension.
      noise: standard deviation of the label noise.
      seed: seed of the generator.

    Returns:
      A :class:`Dataset` with float32 ``x`` of shape ``(n, dim)``, float32 ``y`` of
      shape ``(n,)`` and ``num_classes=None``.

    Examples:
      >>> import jopt
      >>> data = jopt.data.regression(n_train=50, n_test=10, dim=5)
      >>> data.x_train.shape, data.y_train.shape, data.num_classes
      ((50, 5), (50,), None)
    """
    for name, value in (("n_train", n_train), ("n_test", n_test), ("dim", dim)):
        if int(value) != value or value < 1:
            raise ValueError(f"{name} must be a positive integer, got {value}")
    if noise < 0:
        raise ValueError(f"noise must be >= 0, got {noise}")
    rng = np.random.default_rng(seed)
    w = rng.normal(size=dim) / np.sqrt(dim)
    x = rng.normal(size=(n_train + n_test, dim))
    y = x @ w + noise * rng.normal(size=n_train + n_test)
    x, y = x.astype(np.float32), y.astype(np.float32)
    return Dataset(
        jnp.asarray(x[:n_train]),
        jnp.asarray(y[:n_train]),
        jnp.asarray(x[n_train:]),
        jnp.asarray(y[n_train:]),
    )


def standardize(data: Dataset, *, per_feature: bool = True) -> Dataset:
    """Centers and scales the inputs with the *training* split's mean and std.

    The statistics come from ``x_train`` only and are applied to both splits, so nothing
    leaks from the test set. Features with zero variance (e.g. the blank border pixels of
    :func:`digits`) are only centered. For a k-fold dataset use
    ``jax.vmap(standardize)(folds)`` so each fold uses its own training statistics.

    Args:
      data: the dataset.
      per_feature: one mean/std per feature (like ``sklearn.preprocessing.StandardScaler``);
        ``False`` uses one scalar mean/std over all training inputs.

    Returns:
      The dataset with standardized ``x_train`` and ``x_test``; labels unchanged.

    Examples:
      >>> import jopt
      >>> data = jopt.data.standardize(jopt.data.regression(n_train=200, dim=3))
      >>> print(data.x_train.mean(0).round(4) + 0.0, data.x_train.std(0).round(4))
      [0. 0. 0.] [1. 1. 1.]
    """
    x_train = jnp.asarray(data.x_train)
    axis = 0 if per_feature else None
    mean = jnp.mean(x_train, axis=axis)
    std = jnp.std(x_train, axis=axis)
    std = jnp.where(std > 0, std, 1.0)
    return data.replace(
        x_train=(x_train - mean) / std, x_test=(jnp.asarray(data.x_test) - mean) / std
    )


# ------------------------------------------------------------------------------------------
# Augmentation: pure functions of (key, batch), jit- and vmap-able
# ------------------------------------------------------------------------------------------


def _check_shift_mode(mode: str) -> None:
    if mode not in SHIFT_MODES:
        raise ValueError(f"mode must be one of {SHIFT_MODES}, got {mode!r}")


def _check_nonnegative(name: str, value: Any) -> None:
    if not isinstance(value, jax.core.Tracer) and np.any(np.asarray(value) < 0):
        raise ValueError(f"{name} must be >= 0, got {value}")


def _shift_axis(x: Array, shift: Array, axis: int, mode: str) -> Array:
    """Shifts one example ``x`` by ``shift`` positions along ``axis``."""
    length = x.shape[axis]
    source = jnp.arange(length) - shift  # position i takes the value from i - shift
    out = jnp.take(x, source % length, axis=axis)
    if mode == "pad":
        inside = (source >= 0) & (source < length)
        inside = jnp.expand_dims(inside, [d for d in range(x.ndim) if d != axis])
        out = jnp.where(inside, out, jnp.zeros((), x.dtype))
    return out


def random_shift(key: Array, x: Array, max_shift: int | Array, *, mode: str = "pad") -> Array:
    """Shifts each 1-D signal of a batch by a random number of positions.

    Each example gets its own integer shift ``s ~ U{-max_shift, ..., max_shift}`` along
    axis 1 (the length axis). ``mode="pad"`` fills the vacated positions with zeros (the
    values shifted out are lost); ``mode="roll"`` wraps them around, so every row keeps the
    same multiset of values.

    Args:
      key: a PRNG key.
      x: a batch of signals, shape ``(batch, length)`` or ``(batch, length, channels)``.
      max_shift: largest shift in either direction; an int or a traced scalar.
      mode: ``"pad"`` or ``"roll"``.

    Returns:
      The shifted batch, same shape and dtype as ``x``.

    Examples:
      >>> import jax, jax.numpy as jnp
      >>> from jopt.data import random_shift
      >>> x = jnp.arange(6.0).reshape(1, 6)
      >>> y = random_shift(jax.random.PRNGKey(3), x, 2, mode="roll")
      >>> sorted(y[0].tolist()) == sorted(x[0].tolist())
      True
    """
    _check_shift_mode(mode)
    _check_nonnegative("max_shift", max_shift)
    x = jnp.asarray(x)
    if x.ndim < 2:
        raise ValueError(f"x must be a batch (batch, length[, channels]), got shape {x.shape}")
    return _random_shift(key, x, max_shift, mode=mode)


@functools.partial(jax.jit, static_argnames=("mode",))
def _random_shift(key: Array, x: Array, max_shift: int | Array, mode: str) -> Array:
    shifts = jax.random.randint(key, (x.shape[0],), -max_shift, max_shift + 1)
    return jax.vmap(lambda xi, s: _shift_axis(xi, s, 0, mode))(x, shifts)


def random_shift_2d(key: Array, x: Array, max_shift: int | Array, *, mode: str = "pad") -> Array:
    """Shifts each image of a batch by random vertical and horizontal offsets.

    Each example gets independent shifts ``dy, dx ~ U{-max_shift, ..., max_shift}``.
    With ``mode="pad"`` this is the usual pad-and-crop augmentation (zeros come in);
    ``mode="roll"`` wraps the image around.

    Args:
      key: a PRNG key.
      x: a batch of images, shape ``(batch, height, width)`` or
        ``(batch, height, width, channels)``.
      max_shift: largest shift in either direction, in pixels.
      mode: ``"pad"`` or ``"roll"``.

    Returns:
      The shifted batch, same shape and dtype as ``x``.

    Examples:
      >>> import jax, jax.numpy as jnp
      >>> from jopt.data import random_shift_2d
      >>> x = jnp.ones((2, 8, 8, 1))
      >>> random_shift_2d(jax.random.PRNGKey(0), x, 2).shape
      (2, 8, 8, 1)
    """
    _check_shift_mode(mode)
    _check_nonnegative("max_shift", max_shift)
    x = jnp.asarray(x)
    if x.ndim < 3:
        raise ValueError(f"x must be a batch of images (batch, H, W[, C]), got shape {x.shape}")
    return _random_shift_2d(key, x, max_shift, mode=mode)


@functools.partial(jax.jit, static_argnames=("mode",))
def _random_shift_2d(key: Array, x: Array, max_shift: int | Array, mode: str) -> Array:
    shifts = jax.random.randint(key, (x.shape[0], 2), -max_shift, max_shift + 1)

    def shift_one(image, shift):
        image = _shift_axis(image, shift[0], 0, mode)
        return _shift_axis(image, shift[1], 1, mode)

    return jax.vmap(shift_one)(x, shifts)


def random_crop(
    key: Array, x: Array, size: Sequence[int] | None = None, *, padding: int = 0
) -> Array:
    """Takes a random ``size`` crop of each image, after optional zero padding.

    ``random_crop(key, x, padding=4)`` is the CIFAR recipe (pad by 4, crop back to the
    original size); ``random_crop(key, x, (6, 6))`` takes random 6x6 windows.

    Args:
      key: a PRNG key.
      x: a batch of images, shape ``(batch, height, width)`` or
        ``(batch, height, width, channels)``.
      size: ``(crop_height, crop_width)``; defaults to the input's ``(height, width)``.
      padding: zeros added on every side before cropping (a static int).

    Returns:
      The crops, shape ``(batch, crop_height, crop_width[, channels])``.

    Examples:
      >>> import jax, jax.numpy as jnp
      >>> from jopt.data import random_crop
      >>> random_crop(jax.random.PRNGKey(0), jnp.ones((2, 8, 8)), (6, 6)).shape
      (2, 6, 6)
    """
    x = jnp.asarray(x)
    if x.ndim < 3:
        raise ValueError(f"x must be a batch of images (batch, H, W[, C]), got shape {x.shape}")
    if isinstance(padding, bool) or int(padding) != padding or padding < 0:
        raise ValueError(f"padding must be a non-negative int, got {padding}")
    height, width = x.shape[1] + 2 * padding, x.shape[2] + 2 * padding
    crop_h, crop_w = (x.shape[1], x.shape[2]) if size is None else (int(v) for v in size)
    if not (0 < crop_h <= height and 0 < crop_w <= width):
        raise ValueError(
            f"size must lie in [1, {height}] x [1, {width}] (the padded image), got {size}"
        )
    return _random_crop(key, x, (crop_h, crop_w), int(padding))


@functools.partial(jax.jit, static_argnums=(2, 3))
def _random_crop(key: Array, x: Array, size: tuple[int, int], padding: int) -> Array:
    pad = [(0, 0), (padding, padding), (padding, padding)] + [(0, 0)] * (x.ndim - 3)
    x = jnp.pad(x, pad)
    height, width = x.shape[1], x.shape[2]
    crop_h, crop_w = size
    key_y, key_x = jax.random.split(key)
    top = jax.random.randint(key_y, (x.shape[0],), 0, height - crop_h + 1)
    left = jax.random.randint(key_x, (x.shape[0],), 0, width - crop_w + 1)

    def crop_one(image, top, left):
        start = (top, left) + (0,) * (image.ndim - 2)
        return jax.lax.dynamic_slice(image, start, (crop_h, crop_w, *image.shape[2:]))

    return jax.vmap(crop_one)(x, top, left)


def gaussian_noise(key: Array, x: Array, std: float | Array) -> Array:
    """Adds i.i.d. Gaussian noise: ``x + std * N(0, 1)``.

    Args:
      key: a PRNG key.
      x: any array (e.g. a batch of inputs).
      std: the noise standard deviation; a float or a traced scalar.

    Returns:
      The noisy array, same shape and dtype as ``x``.

    Examples:
      >>> import jax, jax.numpy as jnp
      >>> from jopt.data import gaussian_noise
      >>> noisy = gaussian_noise(jax.random.PRNGKey(0), jnp.zeros((1000, 100)), 0.5)
      >>> round(float(noisy.std()), 2)
      0.5
    """
    _check_nonnegative("std", std)
    return _gaussian_noise(key, jnp.asarray(x), std)


@jax.jit
def _gaussian_noise(key: Array, x: Array, std: float | Array) -> Array:
    return x + jnp.asarray(std, x.dtype) * jax.random.normal(key, x.shape, x.dtype)


# ------------------------------------------------------------------------------------------
# Batching inside a compiled loop
# ------------------------------------------------------------------------------------------


_SHUFFLE_ROUNDS = 6


def _mix32(x: Array) -> Array:
    """murmur3's 32-bit finalizer: a cheap hash in which each input bit flips half the output."""
    x = x ^ (x >> 16)
    x = x * np.uint32(0x85EBCA6B)
    x = x ^ (x >> 13)
    x = x * np.uint32(0xC2B2AE35)
    return x ^ (x >> 16)


def shuffled_positions(key: Array, epoch: int | Array, positions: Array, n: int) -> Array:
    """``epoch_permutation(key, epoch, n)[positions]``, computed for ``positions`` alone.

    The epoch's permutation is a keyed pseudo-random bijection of ``[0, n)``: a balanced
    Feistel network of 6 rounds on ``2h >= log2(n)`` bits, with round keys
    ``jax.random.bits(fold_in(key, epoch), (6,))`` and murmur3's finalizer as the round
    function, restricted to ``[0, n)`` by cycle walking (apply it again while the value is
    ``>= n``, which keeps it a bijection). It costs O(len(positions)) elementwise integer
    work and no sort, so a training loop gets each minibatch of a shuffled epoch without
    materializing the permutation, and nothing becomes a per-step sort under ``vmap`` with
    a batched step (XLA's CPU sort of a few thousand keys takes milliseconds).

    Args:
      key: a PRNG key (the same for the whole run).
      epoch: the epoch index, an int or a traced integer.
      positions: int array of positions in ``[0, n)``.
      n: the number of examples (static).

    Returns:
      An int32 array shaped like ``positions``: the example at each position of the epoch.

    Examples:
      >>> import jax, jax.numpy as jnp
      >>> from jopt.data import epoch_permutation, shuffled_positions
      >>> key = jax.random.PRNGKey(0)
      >>> bool((shuffled_positions(key, 2, jnp.arange(3, 6), 10)
      ...       == epoch_permutation(key, 2, 10)[3:6]).all())
      True
    """
    half = max(1, (max(n - 1, 1).bit_length() + 1) // 2)
    mask = np.uint32((1 << half) - 1)
    round_keys = jax.random.bits(jax.random.fold_in(key, epoch), (_SHUFFLE_ROUNDS,), jnp.uint32)

    def encrypt(x):
        left, right = x >> half, x & mask
        for r in range(_SHUFFLE_ROUNDS):
            left, right = right, left ^ (_mix32(right ^ round_keys[r]) & mask)
        return (left << half) | right

    x = encrypt(jnp.asarray(positions).astype(jnp.uint32))
    x = jax.lax.while_loop(lambda x: jnp.any(x >= n), lambda x: jnp.where(x >= n, encrypt(x), x), x)
    return x.astype(jnp.int32)


def epoch_permutation(key: Array, epoch: int | Array, n: int) -> Array:
    """The shuffled order of the ``n`` training examples in epoch ``epoch``.

    A fresh pseudo-random permutation per epoch (see :func:`shuffled_positions`): a pure
    function of ``(key, epoch)``, so any epoch can be recomputed after a restart.

    Args:
      key: a PRNG key (the same for the whole run).
      epoch: the epoch index, an int or a traced integer.
      n: the number of examples (static).

    Returns:
      An int32 array of shape ``(n,)`` holding each index once.

    Examples:
      >>> import jax
      >>> from jopt.data import epoch_permutation
      >>> sorted(epoch_permutation(jax.random.PRNGKey(0), 3, 5).tolist())
      [0, 1, 2, 3, 4]
    """
    return _epoch_permutation(key, epoch, n)


@functools.partial(jax.jit, static_argnums=2)
def _epoch_permutation(key: Array, epoch: int | Array, n: int) -> Array:
    return shuffled_positions(key, epoch, jnp.arange(n), n)


def batch_indices(
    key: Array, step: int | Array, n: int, batch_size: int, mode: str = "shuffle"
) -> Array:
    """The example indices of the minibatch used at ``step``; pure in ``step``.

    Three ways to draw batches, all pure functions of ``(key, step)`` so a resumed run
    draws exactly the batches of an uninterrupted one:

    - ``"shuffle"``: shuffled epochs without replacement. An epoch is
      ``n // batch_size`` batches (the last ``n % batch_size`` examples of each epoch's
      permutation are dropped) and every epoch has its own permutation
      (:func:`epoch_permutation`), evaluated at the batch's positions only
      (:func:`shuffled_positions`: O(batch_size) work, no sort).
    - ``"replacement"``: ``batch_size`` indices drawn uniformly with replacement, with key
      ``fold_in(key, step)``.
    - ``"sequential"``: no randomness, ``(step * batch_size + arange(batch_size)) % n``.
      This reproduces the MNIST-1D notebook (``bix = step * batch_size % n;
      x[bix:bix + batch_size]``) whenever ``batch_size`` divides ``n``; otherwise the
      batch wraps around to the start instead of coming out short.

    Args:
      key: a PRNG key (the same for the whole run).
      step: the training step, an int or a traced integer.
      n: the number of training examples (static).
      batch_size: the batch size (static), ``1 <= batch_size <= n``.
      mode: ``"shuffle"``, ``"replacement"`` or ``"sequential"``.

    Returns:
      An int32 array of shape ``(batch_size,)``.

    Examples:
      >>> import jax
      >>> from jopt.data import batch_indices
      >>> batch_indices(jax.random.PRNGKey(0), 3, 10, 4, mode="sequential").tolist()
      [2, 3, 4, 5]
      >>> key = jax.random.PRNGKey(0)
      >>> epoch = [batch_indices(key, s, 6, 2).tolist() for s in range(3)]
      >>> sorted(sum(epoch, []))
      [0, 1, 2, 3, 4, 5]
    """
    if mode not in BATCH_MODES:
        raise ValueError(f"mode must be one of {BATCH_MODES}, got {mode!r}")
    if not 1 <= batch_size <= n:
        raise ValueError(f"batch_size must lie in [1, n] = [1, {n}], got {batch_size}")
    return _batch_indices(key, step, n, batch_size, mode)


@functools.partial(jax.jit, static_argnums=(2, 3, 4))
def _batch_indices(key: Array, step: int | Array, n: int, batch_size: int, mode: str) -> Array:
    step = jnp.asarray(step, jnp.int32)
    if mode == "sequential":
        return (step * batch_size + jnp.arange(batch_size, dtype=jnp.int32)) % n
    if mode == "replacement":
        return jax.random.randint(jax.random.fold_in(key, step), (batch_size,), 0, n)
    epoch, position = jnp.divmod(step, n // batch_size)
    positions = position * batch_size + jnp.arange(batch_size, dtype=jnp.int32)
    return shuffled_positions(key, epoch, positions, n)


# ------------------------------------------------------------------------------------------
# k-fold cross-validation
# ------------------------------------------------------------------------------------------


def validation_split(data: Dataset, fraction: float = 0.2) -> Dataset:
    """Holds out the first ``fraction`` of the training set as the held-out split.

    ``fit`` evaluates on a dataset's held-out split (``x_test``, ``y_test``) and records it
    as ``"val_loss"``/``"val_accuracy"``; to choose hyperparameters without looking at the
    test set, fit on ``validation_split(data)`` and evaluate the chosen configuration on
    ``data.x_test`` at the end. The first ``int(n_train * fraction)`` examples are held out,
    in their order (no shuffle: MNIST-1D and ``digits`` are already shuffled), so the split
    is the same on every call.

    Args:
      data: a dataset; its test split is not used.
      fraction: the held-out share of the training set, in ``(0, 1)``; at least one example
        must land on each side.

    Returns:
      ``Dataset(x_train[m:], y_train[m:], x_train[:m], y_train[:m])`` with
      ``m = int(n_train * fraction)``, keeping ``num_classes``.

    Examples:
      >>> import jopt
      >>> full = jopt.data.digits()
      >>> train_val = jopt.data.validation_split(full)
      >>> full.n_train, train_val.n_train, train_val.n_test
      (1437, 1150, 287)
    """
    n = data.n_train
    if isinstance(fraction, bool) or not 0 < float(fraction) < 1:
        raise ValueError(f"fraction must be in (0, 1), got {fraction!r}.")
    held_out = int(n * float(fraction))
    if not 1 <= held_out < n:
        raise ValueError(
            f"fraction={fraction} of n_train={n} holds out {held_out} examples; each side needs "
            "at least one."
        )
    x, y = data.x_train, data.y_train
    return Dataset(
        x[held_out:], y[held_out:], x[:held_out], y[:held_out], num_classes=data.num_classes
    )


def kfold(data: Dataset, k: int, seed: int = 0) -> Dataset:
    """Splits the training set into ``k`` folds, stacked on a new leading axis.

    The training examples are shuffled with ``numpy.random.default_rng(seed)`` and cut
    into ``k`` folds of ``n_train // k`` examples; the last ``n_train % k`` shuffled
    examples are dropped so that every fold, and so every leaf, has the same shape. Fold
    ``i`` tests on fold ``i`` and trains on the ``k - 1`` others. The original test split
    is not used (keep it for the final model). Each fold copies its training data, so the
    result takes about ``k`` times the memory of ``x_train``.

    Args:
      data: a dataset; only ``x_train`` and ``y_train`` are used.
      k: number of folds, ``2 <= k <= n_train``.
      seed: seed of the shuffle.

    Returns:
      A :class:`Dataset` whose leaves have a leading axis of size ``k``:
      ``x_train`` ``(k, (k - 1) * m, ...)`` and ``x_test`` ``(k, m, ...)`` with
      ``m = n_train // k``; map over it with ``jax.vmap``.

    Examples:
      >>> import jax, jopt
      >>> folds = jopt.data.kfold(jopt.data.digits(), k=5)
      >>> folds.x_train.shape, folds.x_test.shape
      ((5, 1148, 64), (5, 287, 64))
      >>> jax.vmap(lambda d: d.y_test.shape[0])(folds).tolist()
      [287, 287, 287, 287, 287]
    """
    n = data.n_train
    if isinstance(k, bool) or int(k) != k or not 2 <= k <= n:
        raise ValueError(f"k must be an integer in [2, n_train] = [2, {n}], got {k}")
    k = int(k)
    size = n // k
    folds = np.random.default_rng(seed).permutation(n)[: k * size].reshape(k, size)
    train_idx = np.stack([np.concatenate(np.delete(folds, i, axis=0)) for i in range(k)])
    x, y = jnp.asarray(data.x_train), jnp.asarray(data.y_train)
    return Dataset(x[train_idx], y[train_idx], x[folds], y[folds], num_classes=data.num_classes)
