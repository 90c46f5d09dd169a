"""Resumable trials: continue a configuration instead of restarting it.

A search strategy that stops, compares and continues training runs (successive halving,
Hyperband, PBT) needs a trial in two parts:

* ``init(hparams, key) -> carry``: everything a run needs to continue (train state, keys);
* ``advance(carry, hparams, steps) -> (carry, metrics)``: train ``steps`` more steps (a static
  int) and report metrics (scalars).

Both are pure and written for ONE configuration; the engine (``jopt.sweep.engine``:
``init_population``, ``advance_population``, ``Population``) vmaps them over a population and
shards it over the devices, padding to a fixed width so that every call with the same
``steps`` reuses one compiled program.

``fit_trial`` builds one from ``jopt.train.fit``: the optimizer is built once, and each
member's hyperparameters are written into its optimizer state with ``jopt.set_hparams``, so
members differ only in data (the jopt way: hyperparameters are state). Advancing a carry by
``a`` then ``b`` steps gives exactly the params of one ``fit`` of ``a + b`` steps.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import optax

from jopt.hyperparams import hparams as _hparams
from jopt.hyperparams import set_hparams
from jopt.sweep.engine import advance_population, init_population

__all__ = ["Resumable", "advance_population", "fit_trial", "init_population"]


class Resumable(NamedTuple):
    """A trial in two parts (see the module docstring)."""

    init: Callable[[dict[str, jax.Array], jax.Array], Any]
    advance: Callable[[Any, dict[str, jax.Array], int], tuple[Any, dict[str, jax.Array]]]


def fit_trial(
    model,
    tx: optax.GradientTransformation,
    data,
    *,
    batch_size: int,
    metric_prefix: str = "",
    **fit_kwargs: Any,
) -> Resumable:
    """A resumable trial around ``jopt.train.fit``.

    Args:
      model: a model, as for ``fit``: a flax.linen module, an ``nnx.Module`` (every member
        starts from its parameters), a function ``rngs -> nnx.Module`` (a fresh
        initialization per member key) or a ``jopt.models.Functional``.
      tx: a jopt optimizer (chain); the searched hyperparameters must be names that
        ``jopt.set_hparams`` accepts on its state (e.g. ``learning_rate``, ``beta``,
        ``"1/rate"``). Their values at construction do not matter.
      data: a ``jopt.data.Dataset``; ``fit``'s "test" split is what ``advance`` reports on
        (pass a validation split there when the search must not see the test set).
      batch_size: minibatch size.
      metric_prefix: prepended to the reported metric names.
      **fit_kwargs: more ``fit`` arguments (``batch_mode``, ``augment``, ``loss``, ...).

    Returns:
      A ``Resumable`` whose carry is ``{"state": TrainState, "key": key}`` and whose
      ``advance`` reports the last evaluation of ``fit``'s history (``loss``,
      ``val_accuracy``, ...) after the added steps.

    Examples:
      >>> import jax, jopt
      >>> data = jopt.data.digits()
      >>> trial = jopt.search.fit_trial(jopt.models.Linear(), jopt.sgd(0.0), data, batch_size=64)
      >>> carry = trial.init({"learning_rate": 0.1}, jax.random.PRNGKey(0))
      >>> carry, metrics = trial.advance(carry, {"learning_rate": 0.1}, 50)
      >>> int(carry["state"].step), bool(metrics["val_accuracy"] > 0.5)
      (50, True)
    """
    from jopt import train

    # Adapted once, so that every init and advance sees one equal (hashable) model and
    # reuses the compiled programs.
    model = train.as_pure_model(model)
    opt_state = jax.eval_shape(lambda: tx.init(_params_shape(model, data)))
    known = set(_hparams(opt_state)) | set(_hparams(opt_state, qualified=True))
    fit_kwargs = {"progress": False, **fit_kwargs}

    def with_hparams(state, hp):
        unknown = set(hp) - known
        if unknown:
            raise ValueError(
                f"hyperparameters {sorted(unknown)} are not in the optimizer's state; it has "
                f"{sorted(known)}."
            )
        return state.replace(opt_state=set_hparams(state.opt_state, **hp))

    def init(hp, key):
        init_key = train.run_keys(key)[0]  # the key fit() initializes the model with
        state = train.create_train_state(model, tx, data.x_train[:1], init_key)
        return {"state": with_hparams(state, hp), "key": key}

    def advance(carry, hp, steps):
        del hp  # the hyperparameters live in carry["state"].opt_state
        state, history = train.fit(
            model,
            tx,
            data,
            steps=steps,
            batch_size=batch_size,
            key=carry["key"],
            state=carry["state"],
            eval_every=steps,
            **fit_kwargs,
        )
        metrics = {metric_prefix + k: v[-1] for k, v in history.items() if k != "step"}
        return {"state": state, "key": carry["key"]}, metrics

    return Resumable(init, advance)


def _params_shape(model, data):
    """The parameters of a model in pure form (``jopt.train.as_pure_model``)."""
    return model.init(jax.random.PRNGKey(0), data.x_train[:1])[0]
