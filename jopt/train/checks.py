"""Checks of fit's arguments: Python, on concrete values, before anything compiles."""

from __future__ import annotations

import functools
import math
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax

from jopt.data import BATCH_MODES, Dataset
from jopt.train.step import LOSSES, is_classification


def _check_int(name: str, value: Any, low: int, high: int | None = None) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"{name} must be an int, got {value!r} ({type(value).__name__})")
    if value < low or (high is not None and value > high):
        allowed = f"in [{low}, {high}]" if high is not None else f">= {low}"
        raise ValueError(f"{name} must be {allowed}, got {value}")


def as_dataset(data: Any) -> Dataset:
    """``data`` as a :class:`Dataset`: one already, or a tuple of its four arrays."""
    if isinstance(data, Dataset):
        return data
    how = "build one with jopt.data.Dataset(x_train, y_train, x_test, y_test)"
    if isinstance(data, dict):
        raise TypeError(
            f"data must be a jopt.data.Dataset, got a dict with keys {sorted(map(str, data))}; "
            f"{how}"
        )
    if not isinstance(data, (tuple, list)) or len(data) != 4:
        got = type(data).__name__
        if isinstance(data, (tuple, list)):
            got = f"a {got} of length {len(data)}"
        raise TypeError(
            f"data must be a jopt.data.Dataset or a tuple (x_train, y_train, x_test, y_test), "
            f"got {got}; {how}"
        )
    return Dataset(*data)


def check_tx(tx: Any) -> None:
    """Checks that ``tx`` is an optax transformation (anything with ``init`` and ``update``).

    Args:
      tx: the optimizer given to :func:`jopt.train.fit`.

    Raises:
      TypeError: ``tx`` has no callable ``init`` and ``update`` (e.g. a learning rate
        passed in its place); the message shows what was given.

    Examples:
      >>> import optax
      >>> from jopt.train.checks import check_tx
      >>> check_tx(optax.sgd(0.1))  # an optimizer: nothing happens
      >>> check_tx(0.1)
      Traceback (most recent call last):
        ...
      TypeError: tx must be an optax GradientTransformation (e.g. jopt.adam(1e-3) or
      optax.adam(1e-3)), got 0.1 (float)
    """
    if isinstance(tx, optax.GradientTransformation) or (
        callable(getattr(tx, "init", None)) and callable(getattr(tx, "update", None))
    ):
        return
    shown = repr(tx) if len(repr(tx)) <= 60 else repr(tx)[:57] + "..."
    raise TypeError(
        f"tx must be an optax GradientTransformation (e.g. jopt.adam(1e-3) or "
        f"optax.adam(1e-3)), got {shown} ({type(tx).__name__})"
    )


def _check_data_shapes(data: Dataset, loss: Any) -> None:
    """Shapes and dtypes only (concrete also under jit/vmap)."""
    x_train, y_train, x_test, y_test = data.x_train, data.y_train, data.x_test, data.y_test
    if data.n_test:
        if tuple(x_test.shape[1:]) != tuple(x_train.shape[1:]):
            raise ValueError(
                f"x_test has examples of shape {tuple(x_test.shape[1:])} but x_train has "
                f"{tuple(x_train.shape[1:])}; they must be equal"
            )
        if is_classification(y_test) != is_classification(y_train):
            raise TypeError(
                f"y_test has dtype {y_test.dtype} but y_train has {y_train.dtype}; both must "
                "be integer class labels or both float regression targets"
            )
        if tuple(y_test.shape[1:]) != tuple(y_train.shape[1:]):
            raise ValueError(
                f"y_test has targets of shape {tuple(y_test.shape[1:])} but y_train has "
                f"{tuple(y_train.shape[1:])}; they must be equal"
            )
    if callable(loss):
        return  # a custom loss may take labels of any shape
    for split, y in (("train", y_train), ("test", y_test)):
        if is_classification(y) and len(y.shape) != 1 and (split == "train" or data.n_test):
            fix = (
                f"pass y_{split}.reshape(-1)"
                if all(d == 1 for d in y.shape[1:])
                else f"pass one class index per example (e.g. y_{split}.argmax(-1) for one-hot "
                "labels)"
            )
            raise ValueError(
                f"y_{split} has shape {tuple(y.shape)} but integer class labels must have "
                f"shape (n,); {fix}"
            )


def check_fit_args(
    data: Dataset,
    *,
    steps,
    batch_size,
    eval_every,
    batch_mode,
    loss,
    augment,
    accumulate,
    progress,
    progress_every,
    checkpoint_dir,
    checkpoint_every,
    state,
    key,
) -> None:
    """Checks :func:`jopt.train.fit`'s arguments, in Python, before anything compiles.

    Only shapes, dtypes and Python values are read, so it also runs under ``jit``/``vmap``
    (the data's values were checked when the :class:`jopt.data.Dataset` was built). Every
    argument means what it means for ``fit``, after ``fit`` filled in its defaults.

    Args:
      data: the :class:`jopt.data.Dataset`; its splits must agree in example shape and
        label kind, and integer labels must have shape ``(n,)`` unless ``loss`` is a
        callable.
      steps: training steps, an int ``>= 1``.
      batch_size: an int in ``[1, n_train]``.
      eval_every: an int in ``[1, steps]`` (``fit`` replaced ``None`` by ``steps``).
      batch_mode: one of :data:`jopt.data.BATCH_MODES`.
      loss: one of :data:`jopt.train.LOSSES`, a callable or ``None``;
        ``"cross_entropy"`` needs integer labels.
      augment: a callable ``(key, x) -> x`` or ``None``.
      accumulate: an int ``>= 1``, a callable schedule or ``None``.
      progress: a bool or a callable ``(step, loss)``.
      progress_every: an int ``>= 1`` or ``None``.
      checkpoint_dir: a directory or ``None``; not with ``state``, and not under
        ``jit``/``vmap`` (a traced ``key``).
      checkpoint_every: ``None``, or an int ``>= 1``, a multiple of ``eval_every``, given
        with a ``checkpoint_dir``.
      state: the :class:`jopt.train.TrainState` to continue from, or ``None``.
      key: a PRNG key: ``jax.random.PRNGKey(seed)`` (uint32 of shape ``(2,)``) or a typed
        ``jax.random.key(seed)``.

    Raises:
      TypeError: an argument of the wrong type (the message names it and what is allowed),
        or labels of another kind than the loss needs.
      ValueError: an argument out of range, settings that do not go together, or data of
        the wrong shape (the message says how to fix it).
    """
    _check_data_shapes(data, loss)
    _check_int("steps", steps, 1)
    _check_int("batch_size", batch_size, 1, data.n_train)
    _check_int("eval_every", eval_every, 1, steps)
    if batch_mode not in BATCH_MODES:
        raise ValueError(f"batch_mode must be one of {BATCH_MODES}, got {batch_mode!r}")
    if not (loss is None or loss in LOSSES or callable(loss)):
        raise ValueError(f"loss must be one of {LOSSES}, a callable or None, got {loss!r}")
    if loss == "cross_entropy" and not is_classification(data.y_train):
        raise TypeError(
            f"loss='cross_entropy' needs integer labels, but y_train has dtype "
            f"{data.y_train.dtype}; use loss='mse' for regression"
        )
    if augment is not None and not callable(augment):
        raise TypeError(f"augment must be a callable (key, x) -> x or None, got {augment!r}")
    if accumulate is not None and not callable(accumulate):
        _check_int("accumulate", accumulate, 1)
    if not (isinstance(progress, bool) or callable(progress)):
        raise TypeError(f"progress must be a bool or a callable (step, loss), got {progress!r}")
    if progress_every is not None:
        _check_int("progress_every", progress_every, 1)
    if checkpoint_every is not None:
        if checkpoint_dir is None:
            raise ValueError("checkpoint_every needs a checkpoint_dir")
        _check_int("checkpoint_every", checkpoint_every, 1)
        if checkpoint_every % eval_every:
            raise ValueError(
                f"checkpoint_every must be a multiple of eval_every={eval_every}, "
                f"got {checkpoint_every}"
            )
    if checkpoint_dir is not None:
        if state is not None:
            raise ValueError("pass either state or checkpoint_dir, not both")
        if isinstance(key, jax.core.Tracer):
            raise ValueError(
                "checkpoint_dir cannot be used inside jit/vmap (the state must be concrete "
                "to be saved); checkpoint each run separately"
            )
    key_shape = jnp.shape(key)
    typed = jnp.issubdtype(jnp.result_type(key), jax.dtypes.prng_key)
    if not typed and (key_shape != (2,) or jnp.result_type(key) != jnp.uint32):
        raise TypeError(
            f"key must be a PRNG key (jax.random.PRNGKey(seed) or jax.random.key(seed)), "
            f"got shape {key_shape} and dtype {jnp.result_type(key)}"
        )
    # The data itself (lengths, NaN/inf, label range) was checked when the Dataset was
    # built: every way of making one, replace and tree_map included, runs its checks.


@functools.lru_cache(maxsize=256)
def _output_shape(model: Any, shape: tuple[int, ...], dtype: Any) -> tuple[int, ...] | None:
    def outputs(x, key):
        params, model_state = model.init(key, x)
        return model.apply(params, model_state, x, False, None)[0]

    x = jax.ShapeDtypeStruct(shape, dtype)
    out = jax.eval_shape(outputs, x, jax.ShapeDtypeStruct((2,), jnp.uint32))
    return getattr(out, "shape", None)


def check_outputs(model: Any, data: Dataset, loss: Any = None) -> None:
    """The model's outputs must fit the labels (traced on shapes, not compiled).

    Integer labels: the last output axis must cover the classes. Float labels with the
    default or the ``"mse"`` loss are regression targets: one per output. With a custom loss
    (or a float-label loss other than ``"mse"``), or labels whose ``num_classes`` is unknown,
    nothing is checked.

    Args:
      model: a pure model, as :func:`jopt.train.as_pure_model` returns it.
      data: the :class:`jopt.data.Dataset`; one training example's shape is traced.
      loss: ``fit``'s ``loss`` argument (``None``, a name or a callable).

    Raises:
      ValueError: integer labels, and the last output axis is shorter than
        ``num_classes`` (or the outputs have no axis).
      TypeError: float labels, and the outputs per example match neither the targets'
        shape nor that shape with a trailing 1.
    """
    classification = is_classification(data.y_train)
    if classification and data.num_classes is None:
        return
    if not classification and loss not in (None, "mse"):
        return
    sample = ((1, *data.x_train.shape[1:]), jnp.result_type(data.x_train))
    try:
        shape = _output_shape(model, *sample)
    except TypeError:  # an unhashable model: no cache
        shape = _output_shape.__wrapped__(model, *sample)
    if not classification:
        y = data.y_train
        per_example = None if shape is None else tuple(shape[1:])
        if per_example is not None and per_example not in (
            tuple(y.shape[1:]),
            (*y.shape[1:], 1),
        ):
            raise TypeError(
                f"y_train holds floats ({y.dtype}) of shape {tuple(y.shape)} but the model "
                f"outputs {math.prod(per_example)} values per example: class labels must be "
                f"integer class indices (e.g. y_train.astype(np.int32)) for the cross-entropy "
                f"loss; float labels are regression targets (loss='mse') and need the outputs' "
                f"shape {per_example} per example, got {tuple(y.shape[1:])}"
            )
        return
    if shape is None or len(shape) < 1 or shape[-1] < data.num_classes:
        raise ValueError(
            f"the model outputs shape {shape} but the labels have num_classes="
            f"{data.num_classes}; the last output axis must be >= num_classes"
        )
