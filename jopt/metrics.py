"""Classification and regression metrics as pure ``jax.numpy`` functions.

Arguments follow scikit-learn's order, ``(y_true, y_pred, ...)``. For classification
``y_pred`` may be integer labels (the same shape as ``y_true``) or scores: logits or
probabilities with one more trailing axis of size ``num_classes``, reduced with
``argmax`` over that axis. Every function is traceable: ``jax.jit`` and ``jax.vmap``
(for example over a leading axis of seeds or folds) apply directly. Argument checks
look only at static things (shapes, ``num_classes``, ``average``), so they run under
``jit`` too and raise before tracing goes further.

Precision, recall and F1 are computed over the labels ``0, ..., num_classes - 1``,
like scikit-learn's ``labels=range(num_classes), zero_division=0``: a ratio whose
denominator is zero counts as 0, and a class that appears neither in ``y_true`` nor in
``y_pred`` still counts in the macro average (with score 0). Labels outside
``[0, num_classes)`` are ignored by the confusion matrix and everything built on it.
"""

from __future__ import annotations

import operator

import jax
import jax.numpy as jnp

Array = jax.Array
ArrayLike = jax.typing.ArrayLike

_AVERAGES = ("macro", "micro", "weighted", None)


def _check_num_classes(num_classes: int) -> int:
    if isinstance(num_classes, bool):
        raise TypeError(f"num_classes must be a positive int, got {num_classes!r}")
    try:
        n = operator.index(num_classes)
    except TypeError:
        raise TypeError(
            f"num_classes must be a positive int, got {num_classes!r} "
            f"of type {type(num_classes).__name__}"
        ) from None
    if n <= 0:
        raise ValueError(f"num_classes must be a positive int, got {num_classes!r}")
    return n


def _check_average(average: str | None) -> None:
    if average not in _AVERAGES:
        raise ValueError(f"average must be one of {_AVERAGES}, got {average!r}")


def _as_labels(y_true: ArrayLike, y_pred: ArrayLike) -> tuple[Array, Array]:
    """Returns integer label arrays of equal shape; argmax-es scores over the last axis."""
    y_true = jnp.asarray(y_true)
    y_pred = jnp.asarray(y_pred)
    if y_pred.ndim == y_true.ndim + 1:
        y_pred = jnp.argmax(y_pred, axis=-1)
    elif y_pred.ndim != y_true.ndim:
        raise ValueError(
            "y_pred must be labels with the shape of y_true or scores with one more "
            f"trailing axis; got y_true {y_true.shape} and y_pred {y_pred.shape}"
        )
    if y_pred.shape != y_true.shape:
        raise ValueError(
            f"y_true and y_pred have different shapes: {y_true.shape} and {y_pred.shape}"
        )
    return y_true.astype(jnp.int32), y_pred.astype(jnp.int32)


def _safe_divide(num: Array, den: Array) -> Array:
    """num / den, and 0 where den == 0 (scikit-learn's ``zero_division=0``)."""
    num = jnp.asarray(num, jnp.float32)
    den = jnp.asarray(den, jnp.float32)
    return jnp.where(den > 0, num / jnp.where(den > 0, den, 1.0), 0.0)


def accuracy(y_true: ArrayLike, y_pred: ArrayLike) -> Array:
    r"""Fraction of correct predictions.

    .. math::

        \mathrm{accuracy} = \frac{1}{n} \sum_{i=1}^{n} [\hat y_i = y_i]

    Args:
      y_true: integer labels, any shape ``S``.
      y_pred: labels of shape ``S`` or scores of shape ``(*S, num_classes)``.

    Returns:
      A float32 scalar, as ``sklearn.metrics.accuracy_score``.

    Examples:
      >>> import jax.numpy as jnp
      >>> from jopt import metrics
      >>> print(metrics.accuracy(jnp.array([0, 1, 2, 2]), jnp.array([0, 2, 2, 2])))
      0.75
      >>> logits = jnp.array([[2.0, 0.0], [0.0, 1.0]])
      >>> print(metrics.accuracy(jnp.array([0, 0]), logits))
      0.5
    """
    y_true, y_pred = _as_labels(y_true, y_pred)
    return jnp.mean(y_true == y_pred, dtype=jnp.float32)


def confusion_matrix(y_true: ArrayLike, y_pred: ArrayLike, num_classes: int) -> Array:
    r"""Confusion matrix: rows are true classes, columns predicted classes.

    .. math::

        C_{jk} = \sum_{i=1}^{n} [y_i = j]\,[\hat y_i = k]

    computed as ``one_hot(y_true).T @ one_hot(y_pred)``. Labels outside
    ``[0, num_classes)`` are not counted.

    Args:
      y_true: integer labels, any shape ``S``.
      y_pred: labels of shape ``S`` or scores of shape ``(*S, num_classes)``.
      num_classes: number of classes C, a positive int (static under ``jit``).

    Returns:
      An int32 array of shape ``(C, C)``, as ``sklearn.metrics.confusion_matrix(y_true,
      y_pred, labels=range(C))``.

    Examples:
      >>> import jax.numpy as jnp
      >>> from jopt import metrics
      >>> metrics.confusion_matrix(jnp.array([0, 1, 1]), jnp.array([0, 0, 1]), 2)
      Array([[1, 0],
             [1, 1]], dtype=int32)
    """
    num_classes = _check_num_classes(num_classes)
    y_true, y_pred = _as_labels(y_true, y_pred)
    true_1h = jax.nn.one_hot(y_true.reshape(-1), num_classes, dtype=jnp.int32)  # (n, C)
    pred_1h = jax.nn.one_hot(y_pred.reshape(-1), num_classes, dtype=jnp.int32)  # (n, C)
    return jnp.einsum("ni,nj->ij", true_1h, pred_1h, preferred_element_type=jnp.int32)


def _counts(y_true: ArrayLike, y_pred: ArrayLike, num_classes: int) -> tuple[Array, ...]:
    """Per-class true positives, predicted counts and true counts (supports)."""
    cm = confusion_matrix(y_true, y_pred, num_classes)
    return jnp.diagonal(cm), cm.sum(axis=0), cm.sum(axis=1)


def _reduce(
    tp: Array, den: Array, support: Array, average: str | None, scale: float = 1.0
) -> Array:
    """Averages the per-class ratios scale * tp / den as asked."""
    if average == "micro":
        return _safe_divide(scale * tp.sum(), den.sum())
    per_class = _safe_divide(scale * tp, den)
    if average is None:
        return per_class
    if average == "macro":
        return per_class.mean()
    # weighted by support
    return _safe_divide((per_class * support).sum(), support.sum())


def precision(
    y_true: ArrayLike, y_pred: ArrayLike, num_classes: int, average: str | None = "macro"
) -> Array:
    r"""Precision: of the examples predicted as class k, the fraction that are k.

    .. math::

        P_k = \frac{TP_k}{TP_k + FP_k}, \qquad
        P_\mathrm{macro} = \frac{1}{C} \sum_{k=0}^{C-1} P_k, \qquad
        P_\mathrm{micro} = \frac{\sum_k TP_k}{\sum_k (TP_k + FP_k)}

    and ``"weighted"`` averages :math:`P_k` with weights the class supports
    :math:`TP_k + FN_k`. A zero denominator gives 0; the macro average runs over all C
    classes, also those absent from both arrays (scikit-learn with
    ``labels=range(C), zero_division=0``).

    Args:
      y_true: integer labels, any shape ``S``.
      y_pred: labels of shape ``S`` or scores of shape ``(*S, num_classes)``.
      num_classes: number of classes C, a positive int (static under ``jit``).
      average: ``"macro"`` (default), ``"micro"``, ``"weighted"``, or ``None`` for the
        per-class array.

    Returns:
      A float32 scalar, or shape ``(C,)`` when ``average=None``.

    Examples:
      >>> import jax.numpy as jnp
      >>> from jopt import metrics
      >>> y_true, y_pred = jnp.array([0, 1, 1, 2]), jnp.array([0, 0, 1, 1])
      >>> metrics.precision(y_true, y_pred, 3, average=None)
      Array([0.5, 0.5, 0. ], dtype=float32)
      >>> print(metrics.precision(y_true, y_pred, 3))
      0.33333334
    """
    _check_average(average)
    tp, predicted, support = _counts(y_true, y_pred, num_classes)
    return _reduce(tp, predicted, support, average)


def recall(
    y_true: ArrayLike, y_pred: ArrayLike, num_classes: int, average: str | None = "macro"
) -> Array:
    r"""Recall: of the examples of class k, the fraction predicted as k.

    .. math::

        R_k = \frac{TP_k}{TP_k + FN_k}, \qquad
        R_\mathrm{macro} = \frac{1}{C} \sum_{k=0}^{C-1} R_k, \qquad
        R_\mathrm{micro} = \frac{\sum_k TP_k}{\sum_k (TP_k + FN_k)}

    Zero denominators and averaging as in `precision`.

    Args:
      y_true: integer labels, any shape ``S``.
      y_pred: labels of shape ``S`` or scores of shape ``(*S, num_classes)``.
      num_classes: number of classes C, a positive int (static under ``jit``).
      average: ``"macro"`` (default), ``"micro"``, ``"weighted"``, or ``None`` for the
        per-class array.

    Returns:
      A float32 scalar, or shape ``(C,)`` when ``average=None``.

    Examples:
      >>> import jax.numpy as jnp
      >>> from jopt import metrics
      >>> y_true, y_pred = jnp.array([0, 1, 1, 2]), jnp.array([0, 0, 1, 1])
      >>> metrics.recall(y_true, y_pred, 3, average=None)
      Array([1. , 0.5, 0. ], dtype=float32)
      >>> print(metrics.recall(y_true, y_pred, 3))
      0.5
    """
    _check_average(average)
    tp, _, support = _counts(y_true, y_pred, num_classes)
    return _reduce(tp, support, support, average)


def f1(
    y_true: ArrayLike, y_pred: ArrayLike, num_classes: int, average: str | None = "macro"
) -> Array:
    r"""F1 score, the harmonic mean of precision and recall.

    .. math::

        F_k = \frac{2 P_k R_k}{P_k + R_k} = \frac{2\,TP_k}{2\,TP_k + FP_k + FN_k},
        \qquad
        F_\mathrm{micro} = \frac{2 \sum_k TP_k}{\sum_k (2\,TP_k + FP_k + FN_k)}

    ``"macro"`` is the plain mean of :math:`F_k` over all C classes (not the F1 of the
    macro precision and recall), as in scikit-learn. Zero denominators give 0.

    Args:
      y_true: integer labels, any shape ``S``.
      y_pred: labels of shape ``S`` or scores of shape ``(*S, num_classes)``.
      num_classes: number of classes C, a positive int (static under ``jit``).
      average: ``"macro"`` (default), ``"micro"``, ``"weighted"``, or ``None`` for the
        per-class array.

    Returns:
      A float32 scalar, or shape ``(C,)`` when ``average=None``.

    Examples:
      >>> import jax.numpy as jnp
      >>> from jopt import metrics
      >>> y_true, y_pred = jnp.array([0, 1, 1, 2]), jnp.array([0, 0, 1, 1])
      >>> metrics.f1(y_true, y_pred, 3, average=None)
      Array([0.6666667, 0.5      , 0.       ], dtype=float32)
    """
    _check_average(average)
    tp, predicted, support = _counts(y_true, y_pred, num_classes)
    return _reduce(tp, predicted + support, support, average, scale=2.0)


def _check_regression(y_true: ArrayLike, y_pred: ArrayLike) -> tuple[Array, Array]:
    y_true = jnp.asarray(y_true, jnp.float32)
    y_pred = jnp.asarray(y_pred, jnp.float32)
    if y_true.shape != y_pred.shape:
        raise ValueError(
            f"y_true and y_pred have different shapes: {y_true.shape} and {y_pred.shape}"
        )
    return y_true, y_pred


def mse(y_true: ArrayLike, y_pred: ArrayLike) -> Array:
    r"""Mean squared error, :math:`\frac{1}{n} \sum_i (y_i - \hat y_i)^2`.

    Args:
      y_true: targets, any shape.
      y_pred: predictions, the same shape.

    Returns:
      A float32 scalar, the mean over all elements (scikit-learn's
      ``mean_squared_error`` with uniform averaging over outputs).

    Examples:
      >>> import jax.numpy as jnp
      >>> from jopt import metrics
      >>> print(metrics.mse(jnp.array([1.0, 2.0, 3.0]), jnp.array([1.0, 2.0, 5.0])))
      1.3333334
    """
    y_true, y_pred = _check_regression(y_true, y_pred)
    return jnp.mean(jnp.square(y_true - y_pred))


def mae(y_true: ArrayLike, y_pred: ArrayLike) -> Array:
    r"""Mean absolute error, :math:`\frac{1}{n} \sum_i |y_i - \hat y_i|`.

    Args:
      y_true: targets, any shape.
      y_pred: predictions, the same shape.

    Returns:
      A float32 scalar, the mean over all elements (scikit-learn's
      ``mean_absolute_error`` with uniform averaging over outputs).

    Examples:
      >>> import jax.numpy as jnp
      >>> from jopt import metrics
      >>> print(metrics.mae(jnp.array([1.0, 2.0, 3.0]), jnp.array([1.0, 2.0, 5.0])))
      0.6666667
    """
    y_true, y_pred = _check_regression(y_true, y_pred)
    return jnp.mean(jnp.abs(y_true - y_pred))


def r2(y_true: ArrayLike, y_pred: ArrayLike) -> Array:
    r"""Coefficient of determination.

    .. math::

        R^2 = 1 - \frac{\sum_i (y_i - \hat y_i)^2}{\sum_i (y_i - \bar y)^2}

    over the first axis. A constant ``y_true`` (zero denominator) gives 1 for a perfect
    prediction and 0 otherwise, like scikit-learn's ``r2_score`` (``force_finite=True``).
    For ``(n, k)`` inputs the k per-output scores are averaged uniformly.

    Args:
      y_true: targets of shape ``(n,)`` or ``(n, k)``.
      y_pred: predictions, the same shape.

    Returns:
      A float32 scalar.

    Examples:
      >>> import jax.numpy as jnp
      >>> from jopt import metrics
      >>> print(metrics.r2(jnp.array([1.0, 2.0, 3.0]), jnp.array([1.0, 2.0, 4.0])))
      0.5
    """
    y_true, y_pred = _check_regression(y_true, y_pred)
    if y_true.ndim == 0:
        raise ValueError("r2 needs at least one axis of samples; got scalar inputs")
    ss_res = jnp.sum(jnp.square(y_true - y_pred), axis=0)
    ss_tot = jnp.sum(jnp.square(y_true - jnp.mean(y_true, axis=0)), axis=0)
    safe_tot = jnp.where(ss_tot > 0, ss_tot, 1.0)
    score = jnp.where(ss_tot > 0, 1.0 - ss_res / safe_tot, jnp.where(ss_res > 0, 0.0, 1.0))
    return jnp.mean(score)
