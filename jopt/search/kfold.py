"""Cross-validation as one more vmapped axis: every configuration x seed x fold in one program.

``jopt.data.kfold`` stacks the ``k`` train/validation splits of a dataset on a leading
fold axis; ``cross_validate`` vmaps a trial over that axis *inside* the trial that
``jopt.sweep.run`` vmaps over configurations and seeds, so a sweep with k-fold validation
is still one compiled program per static group (requested as "vmap cross-validation" in
nemos#45).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import jax
import numpy as np

from jopt.data import Dataset
from jopt.data import kfold as _kfold
from jopt.sweep import runner as _runner
from jopt.sweep.result import SweepResult
from jopt.sweep.spaces import Space

__all__ = ["cross_validate"]

Trial = Callable[[dict[str, Any], jax.Array], Mapping[str, jax.Array]]


def cross_validate(
    make_trial: Callable[[Dataset], Trial],
    data: Dataset,
    space: Space | Sequence[Mapping[str, Any]],
    *,
    k: int = 5,
    seeds: int | Sequence[int] = 1,
    metrics: str | Sequence[str] | None = None,
    seed: int = 0,
    **run_kwargs: Any,
) -> SweepResult:
    """A sweep with k-fold cross-validation, the folds a vmapped axis inside each trial.

    ``folds = jopt.data.kfold(data, k, seed)`` holds the ``k`` splits of the training set
    (fold ``i`` validates on the ``i``-th part and trains on the others; the test set is not
    used). The trial given to ``jopt.sweep.run`` is

    .. code-block:: python

      def trial(hp, key):
          return jax.vmap(lambda fold_data: make_trial(fold_data)(hp, key))(folds)

    so configurations, seeds and folds run in one compiled program per static group, and
    every fold sees the same ``key`` (the same initialization and batch order; folds
    differ only in their data), exactly as ``k`` separate sweeps on the fold datasets.

    Args:
      make_trial: ``make_trial(fold_data) -> trial(hparams, key) -> dict of arrays``;
        ``fold_data`` is a ``Dataset`` (train on ``x_train``, validate on ``x_test``) whose
        arrays are tracers inside the vmap, so ``make_trial`` must only build functions of
        it (e.g. ``jopt.train.fit(model, tx, fold_data, ...)``), never call numpy on it.
      data: a ``jopt.data.Dataset``; only its training split is used.
      space: a ``Space`` or a list of config dicts, as for ``jopt.sweep.run``.
      k: number of folds, in ``[2, n_train]``.
      seeds: seeds per configuration, as for ``jopt.sweep.run``.
      metrics: the metric name(s) to summarize over folds; default every float metric.
      seed: seed of the shuffle that cuts the folds.
      **run_kwargs: more ``jopt.sweep.run`` arguments (``chunk_size``, ``devices``,
        ``checkpoint_dir``, ``progress``, ...).

    Returns:
      A ``SweepResult`` where each metric ``m`` of the trial has its per-fold values,
      ``metrics[m]`` of shape ``(n_configs, n_seeds, k, *metric_shape)``, and for each
      summarized metric ``metrics[m + "_mean"]`` and ``metrics[m + "_std"]`` (over folds,
      ``ddof=0``) of shape ``(n_configs, n_seeds, *metric_shape)``. Rank configurations
      with ``result.best(m + "_mean", mode=...)``. ``result.info["k"]`` is ``k``.

    Raises:
      ValueError: ``k`` out of range (from ``jopt.data.kfold``) or an unknown name in
        ``metrics``.
      TypeError: ``make_trial`` is not callable or ``data`` is not a ``Dataset``.

    Examples:
      Ridge-free least squares with a learning rate: the validation error over 3 folds.

      >>> import jax, jax.numpy as jnp, numpy as np, jopt
      >>> from jopt.search.kfold import cross_validate
      >>> x = np.random.default_rng(0).normal(size=(60, 3)).astype(np.float32)
      >>> data = jopt.data.Dataset(x, x @ np.float32([1, 2, 3]), x[:6], x[:6, 0])
      >>> def make_trial(fold):
      ...     def trial(hp, key):
      ...         w = jnp.zeros(3)
      ...         for _ in range(50):  # gradient descent on the fold's training part
      ...             grad = fold.x_train.T @ (fold.x_train @ w - fold.y_train) / 40
      ...             w = w - hp["learning_rate"] * grad
      ...         return {"val_mse": jnp.mean((fold.x_test @ w - fold.y_test) ** 2)}
      ...     return trial
      >>> space = jopt.sweep.grid(learning_rate=[0.01, 0.1])
      >>> result = cross_validate(make_trial, data, space, k=3, progress=False)
      >>> result.metrics["val_mse"].shape, result.metrics["val_mse_mean"].shape
      ((2, 1, 3), (2, 1))
      >>> result.best("val_mse_mean", mode="min")
      {'learning_rate': 0.1}
    """
    if not callable(make_trial):
        raise TypeError(f"make_trial must be a function fold_data -> trial, got {make_trial!r}.")
    if not isinstance(data, Dataset):
        raise TypeError(f"data must be a jopt.data.Dataset, got {type(data).__name__}.")
    folds = _kfold(data, k, seed)

    def trial(hp, key):
        return jax.vmap(lambda fold_data: dict(make_trial(fold_data)(hp, key)))(folds)

    trial.__qualname__ = f"cross_validate[{getattr(make_trial, '__qualname__', 'make_trial')}]"
    result = _runner.run(trial, space, seeds, **run_kwargs)

    names = list(result.metrics)
    if metrics is None:
        summarize = [n for n in names if np.issubdtype(result.metrics[n].dtype, np.inexact)]
    else:
        summarize = [metrics] if isinstance(metrics, str) else list(metrics)
        unknown = [n for n in summarize if n not in result.metrics]
        if unknown:
            raise ValueError(f"metrics: unknown names {unknown}; the trial returns {names}.")
    out = dict(result.metrics)
    for name in summarize:
        per_fold = result.metrics[name].astype(np.float64)
        out[name + "_mean"] = per_fold.mean(axis=2)
        out[name + "_std"] = per_fold.std(axis=2)
    info = {**result.info, "k": int(folds.x_train.shape[0]), "fold_seed": seed}
    return SweepResult(
        result.configs, out, result.seeds, result.static_names, info, diverged=result.diverged
    )
