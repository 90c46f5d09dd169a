"""Training: an explicit ``TrainState``, a pure ``train_step``, ``evaluate``, and ``fit``.

``fit`` runs a whole training run as one ``jit``-compiled ``lax.scan`` (an outer scan over
evaluation intervals around an inner scan over steps). It is pure: a run is a function of
``(tx, key)``, so it can itself be ``vmap``-ed over learning rates (anything inside ``tx``)
and seeds::

    lrs = jnp.array([0.01, 0.1, 1.0])
    keys = jax.random.split(jax.random.PRNGKey(0), 3)
    history = jax.vmap(
        lambda lr, k: fit(model, optax.sgd(lr), data, steps=1000, batch_size=100, key=k,
                          progress=False)[1]
    )(lrs, keys)

All the randomness of step ``t`` (its minibatch, dropout and augmentation) is derived from
``(key, t)`` with ``jax.random.fold_in``, never from a key split and carried through the
loop, so a run that is stopped and resumed from a checkpoint ends bit-identical to an
uninterrupted one. ``fit`` is a short composition of the public pieces
(:func:`create_train_state`, :func:`train_step`, :func:`evaluate` and
:func:`jopt.data.batch_indices`); copy it into a script to change what it does.

The model is a flax.linen module, an ``nnx.Module``, a function ``rngs -> nnx.Module`` or a
:class:`jopt.models.Functional`. :func:`as_pure_model` turns each into one pure form,
``init(key, x) -> (params, model_state)`` and ``apply(params, model_state, x, train, rng)
-> (outputs, new_model_state)``, the only way the training loop calls a model.
"""

from __future__ import annotations

import collections
import dataclasses
import functools
import hashlib
import inspect
import itertools
import json
import math
import os
import re
import types
import warnings
from collections.abc import Callable
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx, struct
from flax.training import train_state
from tqdm.auto import tqdm

from jopt import checkpoint
from jopt.data import BATCH_MODES, Dataset, batch_indices
from jopt.models import Functional

Array = jax.Array
Batch = tuple[Array, Array]
LossFn = Callable[[Array, Array], Array]
Augment = Callable[[Array, Array], Array]
Progress = bool | Callable[[int, float], None]
LOSSES = ("cross_entropy", "mse")


# ------------------------------------------------------------------------------------------
# State
# ------------------------------------------------------------------------------------------


class TrainState(train_state.TrainState):
    """The state of a training run: flax's ``TrainState`` plus the model's other state.

    Attributes:
      step: number of :func:`train_step` calls so far, an int32 scalar. With gradient
        accumulation it counts micro-batches, not optimizer updates.
      apply_fn: the model's ``apply`` (static); called as
        ``apply_fn(variables, x, train=..., **apply_kwargs)``. For a flax.linen module it is
        ``model.apply``; for the other kinds of model it returns the outputs only.
      params: the model parameters.
      tx: the optax ``GradientTransformation`` (static).
      opt_state: the state of ``tx``.
      batch_stats: the model's state besides its parameters: a linen module's
        ``batch_stats`` collection (the running averages of ``nn.BatchNorm``), or an
        ``nnx.Module``'s non-``nnx.Param`` state (``nnx.BatchStat``, RNG keys and counts) as
        a pure dict; an empty dict for models without any.
      model: the model in pure form (static), see :func:`as_pure_model`; it holds the
        static part of the model (the linen module, or the graphdef of an ``nnx.Module``).
        ``None`` in a state built by hand, whose ``apply_fn`` then takes linen variables.

    Examples:
      >>> import jax, jax.numpy as jnp, optax, flax.linen as nn
      >>> from jopt.train import create_train_state
      >>> state = create_train_state(nn.Dense(2), optax.adam(1e-3), jnp.ones((1, 3)),
      ...                            jax.random.PRNGKey(0))
      >>> sorted(state.variables), state.batch_stats
      (['params'], {})
    """

    batch_stats: Any = struct.field(default_factory=dict)
    model: Any = struct.field(pytree_node=False, default=None)

    @property
    def variables(self) -> dict[str, Any]:
        """The variables for ``apply_fn``: ``params``, plus ``batch_stats`` if any."""
        if self.batch_stats:
            return {"params": self.params, "batch_stats": self.batch_stats}
        return {"params": self.params}


# ------------------------------------------------------------------------------------------
# Models: every kind of model in one pure form
# ------------------------------------------------------------------------------------------
#
# The training loop sees a model only through two pure functions:
#
#   init(key, x) -> (params, model_state)
#   apply(params, model_state, x, train, rng) -> (outputs, new_model_state)
#
# where ``train`` is a Python bool and ``rng`` a PRNG key, or None to evaluate. One adapter
# per kind of model (below) gives that form; ``as_pure_model`` picks it. The adapters are
# hashable and hold only static parts, so they can be static arguments of ``jit``.


def _apply_variables(apply_fn, params, model_state, x, train, rng):
    """The pure ``apply`` of a linen-style ``apply_fn(variables, x, train=..., ...)``."""
    variables = (
        {"params": params, "batch_stats": model_state} if model_state else {"params": params}
    )
    rngs = {} if rng is None else {"rngs": {"dropout": rng}}
    if model_state and train:
        outputs, updates = apply_fn(variables, x, train=True, mutable=["batch_stats"], **rngs)
        return outputs, updates["batch_stats"]
    return apply_fn(variables, x, train=train, **rngs), model_state


@dataclasses.dataclass(frozen=True)
class _Apply:
    """``model.apply``, equal for equal models (so equal states hit the jit cache).

    A bound method ``model.apply`` compares by the identity of ``model``; this compares
    modules by value. It drops ``train`` for models whose ``__call__`` does not take it.
    """

    model: nn.Module
    takes_train: bool

    def __call__(self, variables: Any, x: Array, *, train: bool = False, **kwargs: Any) -> Any:
        if self.takes_train:
            kwargs["train"] = train
        return self.model.apply(variables, x, **kwargs)


def _takes_train(model: nn.Module) -> bool:
    parameters = inspect.signature(model.__call__).parameters
    return "train" in parameters or any(
        p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters.values()
    )


@dataclasses.dataclass(frozen=True)
class _LinenModel:
    """A flax.linen module; its model state is the ``batch_stats`` collection."""

    module: nn.Module

    @property
    def apply_fn(self) -> _Apply:
        return _Apply(self.module, _takes_train(self.module))

    @property
    def name(self) -> str:
        return _module_repr(self.module)

    def init(self, key: Array, x: Array) -> tuple[Any, Any]:
        variables = _init_variables(self.module, x, key)
        return variables["params"], variables.get("batch_stats", {})

    def apply(self, params, model_state, x, train, rng):
        return _apply_variables(self.apply_fn, params, model_state, x, train, rng)


@dataclasses.dataclass(frozen=True)
class _ApplyFnModel:
    """The ``apply_fn`` of a hand-built :class:`TrainState` (linen variables), no init."""

    apply_fn: Callable[..., Any]

    def apply(self, params, model_state, x, train, rng):
        return _apply_variables(self.apply_fn, params, model_state, x, train, rng)


@dataclasses.dataclass(frozen=True)
class _PureApply:
    """A linen-style ``apply_fn(variables, x, *, train, rngs)`` over a pure model."""

    model: Any

    def __call__(self, variables: Any, x: Array, *, train: bool = False, rngs=None) -> Any:
        rng = None if rngs is None else rngs["dropout"]
        model_state = variables.get("batch_stats", {})
        return self.model.apply(variables["params"], model_state, x, train, rng)[0]


@dataclasses.dataclass(frozen=True)
class _FunctionalModel:
    """A :class:`jopt.models.Functional`: its parameters, and no other state."""

    functional: Functional

    @property
    def apply_fn(self) -> _PureApply:
        return _PureApply(self)

    @property
    def name(self) -> str:
        fns = (self.functional.init, self.functional.apply)
        init, apply = (
            f"{f.__module__}.{getattr(f, '__qualname__', type(f).__qualname__)}" for f in fns
        )
        return f"Functional(init={init}, apply={apply})"

    def init(self, key: Array, x: Array) -> tuple[Any, Any]:
        return self.functional.init(key, x), {}

    def apply(self, params, model_state, x, train, rng):
        return self.functional.apply(params, x, train=train, key=rng), model_state


def _typed_key(key: Array) -> Array:
    """A new-style (typed) PRNG key, as nnx's RNG streams hold."""
    if jnp.issubdtype(key.dtype, jax.dtypes.prng_key):
        return key
    return jax.random.wrap_key_data(key)


def _key_data(state: Any) -> dict[str, Any]:
    """An nnx state as a pure dict, with typed PRNG keys as their raw ``uint32`` data."""
    unwrap = lambda v: jax.random.key_data(v) if jnp.issubdtype(v.dtype, jax.dtypes.prng_key) else v
    return jax.tree.map(unwrap, nnx.to_pure_dict(state))


@dataclasses.dataclass(frozen=True)
class _NNXModel:
    """An ``nnx.Module`` (``initial`` holds its state) or a builder ``rngs -> nnx.Module``.

    The parameters are the module's ``nnx.Param`` state and the model state the rest, both as
    pure dicts; the keys of its RNG streams are held as raw key data (``uint32``), as
    checkpoints store them, and wrapped again to apply. Train and eval mode are two graphdefs
    (``module.train()`` and ``module.eval()``, which set e.g. ``use_running_average`` and
    ``deterministic``), picked by the static ``train``. Equal when ``identity`` is: the
    graphdefs with the builder, or with the ids of the initial arrays (held here, so the ids
    stay theirs).
    """

    train_def: Any = dataclasses.field(compare=False)
    eval_def: Any = dataclasses.field(compare=False)
    rng_tags: tuple[str, ...] = dataclasses.field(compare=False)
    key_paths: frozenset[tuple[Any, ...]] = dataclasses.field(compare=False)
    takes_rngs: bool = dataclasses.field(compare=False)
    name: str = dataclasses.field(compare=False)
    build: Callable[[nnx.Rngs], nnx.Module] | None = dataclasses.field(compare=False)
    initial: tuple[Any, Any] | None = dataclasses.field(compare=False, repr=False)
    identity: tuple = dataclasses.field(repr=False)

    @classmethod
    def of(cls, module: nnx.Module, build: Callable[[nnx.Rngs], nnx.Module] | None):
        graphdef, params, rest = nnx.split(module, nnx.Param, ...)
        # Switch modes on a copy: the caller's module keeps its own mode.
        copy = nnx.merge(graphdef, params, rest)
        copy.train()
        train_def = nnx.graphdef(copy)
        copy.eval()
        eval_def = nnx.graphdef(copy)
        keys = {path: v for path, v in nnx.to_flat_state(rest) if isinstance(v, nnx.RngKey)}
        call = inspect.signature(type(module).__call__).parameters
        initial = None if build is not None else (nnx.to_pure_dict(params), _key_data(rest))
        static = build if build is not None else tuple(map(id, jax.tree.leaves(initial)))
        return cls(
            train_def=train_def,
            eval_def=eval_def,
            rng_tags=tuple(sorted({v.tag for v in keys.values()})),
            key_paths=frozenset(keys),
            takes_rngs="rngs" in call,
            name=f"nnx {type(module).__module__}.{type(module).__qualname__}",
            build=build,
            initial=initial,
            identity=(train_def, eval_def, static),
        )

    @property
    def apply_fn(self) -> _PureApply:
        return _PureApply(self)

    def init(self, key: Array, x: Array) -> tuple[Any, Any]:
        del x  # an nnx.Module knows its shapes when it is built
        if self.build is None:
            return self.initial  # the module's own parameters, whatever the key
        params_key, dropout_key = jax.random.split(key)
        module = self.build(
            nnx.Rngs(params=_typed_key(params_key), dropout=_typed_key(dropout_key))
        )
        _, params, rest = nnx.split(module, nnx.Param, ...)
        return nnx.to_pure_dict(params), _key_data(rest)

    def apply(self, params, model_state, x, train, rng):
        def wrap(path, leaf):
            is_key = tuple(getattr(k, "key", getattr(k, "idx", k)) for k in path) in self.key_paths
            return jax.random.wrap_key_data(leaf) if is_key else leaf

        model_state = jax.tree_util.tree_map_with_path(wrap, model_state)
        module = nnx.merge(self.train_def if train else self.eval_def, params, model_state)
        kwargs = {}
        if rng is not None:
            # Every RNG stream the module holds restarts from the step's key, so that a step
            # is a function of (key, step) as in fit, not of the keys carried so far.
            rng = _typed_key(rng)
            streams = {tag: jax.random.fold_in(rng, i) for i, tag in enumerate(self.rng_tags)}
            if streams:
                nnx.reseed(module, **streams)
            if self.takes_rngs:
                kwargs["rngs"] = nnx.Rngs(dropout=rng)
        outputs = module(x, **kwargs)
        _, _, rest = nnx.split(module, nnx.Param, ...)
        return outputs, _key_data(rest)


_PURE_MODELS = (_LinenModel, _FunctionalModel, _NNXModel)


def as_pure_model(model: Any) -> Any:
    """The pure form of a model: ``init(key, x)`` and ``apply(params, model_state, ...)``.

    :func:`create_train_state`, :func:`train_step`, :func:`evaluate` and :func:`fit` see a
    model only through ``init(key, x) -> (params, model_state)`` and ``apply(params,
    model_state, x, train, rng) -> (outputs, new_model_state)`` (``rng`` is ``None`` to
    evaluate). ``model_state`` is what the model updates besides its parameters (batch-norm
    statistics); it is kept in ``TrainState.batch_stats``.

    Args:
      model: one of

        * a flax.linen module (``__call__(x, *, train=False)``, ``train`` optional); the
          model state is its ``batch_stats`` collection; dropout uses the rng ``"dropout"``;
        * an ``nnx.Module`` instance: its current parameters are the initial ones, for every
          key. ``module.train()`` / ``module.eval()`` switch train and eval mode (batch norm
          and dropout); its other state (``nnx.BatchStat``, RNG streams) is the model state.
          Every RNG stream it holds is reseeded from each step's key, and a ``__call__``
          that takes ``rngs`` gets ``nnx.Rngs(dropout=key)``;
        * a function ``rngs -> nnx.Module``: a fresh module from each key, built with
          ``nnx.Rngs(params=..., dropout=...)`` (two keys split from it), then as above;
        * a :class:`jopt.models.Functional` ``(init, apply)``: no model state;
        * a model already in pure form (returned as it is).

    Returns:
      The model in pure form: hashable (it holds only the model's static parts, besides the
      initial arrays of an ``nnx.Module``), so a second call with the same model reuses
      compiled programs.

    Raises:
      TypeError: ``model`` is none of these (a function that does not return an
        ``nnx.Module``).

    Examples:
      >>> import jax, jax.numpy as jnp
      >>> from flax import nnx
      >>> from jopt.train import as_pure_model
      >>> model = as_pure_model(lambda rngs: nnx.Linear(3, 2, rngs=rngs))
      >>> params, model_state = model.init(jax.random.PRNGKey(0), jnp.ones((1, 3)))
      >>> outputs, _ = model.apply(params, model_state, jnp.ones((4, 3)), False, None)
      >>> sorted(params), outputs.shape
      (['bias', 'kernel'], (4, 2))
    """
    if isinstance(model, _PURE_MODELS):
        return model
    if isinstance(model, nn.Module):
        return _LinenModel(model)
    if isinstance(model, Functional):
        return _FunctionalModel(model)
    if isinstance(model, nnx.Module):
        return _NNXModel.of(model, build=None)
    if callable(model):
        abstract = nnx.eval_shape(lambda: model(nnx.Rngs(params=0, dropout=1)))
        if isinstance(abstract, nnx.Module):
            return _NNXModel.of(abstract, build=model)
        got = "a function that does not return an nnx.Module"
    else:
        got = f"a {type(model).__name__}"
    raise TypeError(
        "model must be a flax.linen module, an nnx.Module, a function rngs -> nnx.Module or a "
        f"jopt.models.Functional(init, apply), got {got}"
    )


def create_train_state(
    model: Any, tx: optax.GradientTransformation, x: Array, key: Array
) -> TrainState:
    """Initializes a model and its optimizer state.

    Args:
      model: a flax.linen module, an ``nnx.Module``, a function ``rngs -> nnx.Module`` or a
        :class:`jopt.models.Functional`; see :func:`as_pure_model`. A linen module whose
        ``__call__`` takes ``train`` gets ``train=True`` in :func:`train_step` and
        ``train=False`` in :func:`evaluate` (batch norm and dropout switch on it); otherwise
        it is called without it.
      tx: an optax ``GradientTransformation``.
      x: a sample input batch (only its shape and dtype matter), e.g. ``x_train[:1]``.
      key: PRNG key, split into the ``"params"`` and ``"dropout"`` init keys (unused for an
        ``nnx.Module`` instance, which brings its parameters).

    Returns:
      A :class:`TrainState` with ``step=0`` (int32).

    Raises:
      TypeError: ``model`` is of none of these kinds.

    Examples:
      >>> import jax, jax.numpy as jnp, optax, flax.linen as nn
      >>> from jopt.train import create_train_state
      >>> state = create_train_state(nn.Dense(3), optax.sgd(0.1), jnp.ones((1, 4)),
      ...                            jax.random.PRNGKey(0))
      >>> int(state.step), state.params["kernel"].shape
      (0, (4, 3))
    """
    model = as_pure_model(model)
    return _state_from_init(model, tx, model.init(key, x))


def _init_variables(model: nn.Module, x: Array, key: Array) -> dict[str, Any]:
    params_key, dropout_key = jax.random.split(key)
    rngs = {"params": params_key, "dropout": dropout_key}
    return model.init(rngs, x, train=False) if _takes_train(model) else model.init(rngs, x)


def _state_from_init(
    model: Any, tx: optax.GradientTransformation, init: tuple[Any, Any]
) -> TrainState:
    """The :class:`TrainState` at step 0 of a pure model and its ``(params, model_state)``."""
    params, model_state = init
    return TrainState(
        step=jnp.zeros((), jnp.int32),
        apply_fn=model.apply_fn,
        params=params,
        tx=tx,
        opt_state=tx.init(params),
        batch_stats=model_state,
        model=model,
    )


def _init_pure(model: Any, x: Array, key: Array) -> tuple[Any, Any]:
    return model.init(key, x)


# Compiled once per model and input shape (not per optimizer): fit initializes with it
# outside its main program, so sweeps over optimizers do not compile the init again.
_init_variables_jit = jax.jit(_init_pure, static_argnums=0)


# ------------------------------------------------------------------------------------------
# Losses, train step, evaluation
# ------------------------------------------------------------------------------------------


def _pure_model_of(state: TrainState) -> Any:
    """The state's model in pure form (a hand-built state: from its linen ``apply_fn``)."""
    return state.model if state.model is not None else _ApplyFnModel(state.apply_fn)


def _is_classification(y: Array) -> bool:
    return jnp.issubdtype(y.dtype, jnp.integer)


def cross_entropy(outputs: Array, labels: Array) -> Array:
    """Mean softmax cross-entropy of logits ``(batch, classes)`` and int labels ``(batch,)``.

    Examples:
      >>> import jax.numpy as jnp
      >>> from jopt.train import cross_entropy
      >>> print(f"{cross_entropy(jnp.zeros((2, 4)), jnp.array([0, 3])):.4f}")  # log 4
      1.3863
    """
    return optax.softmax_cross_entropy_with_integer_labels(outputs, labels).mean()


def mse(outputs: Array, targets: Array) -> Array:
    """Mean squared error over all elements.

    Integer ``targets`` are one-hot encoded to the width of ``outputs`` (square loss for
    classification); outputs of shape ``(batch, 1)`` are compared with targets ``(batch,)``.

    Examples:
      >>> import jax.numpy as jnp
      >>> from jopt.train import mse
      >>> float(mse(jnp.array([[1.0], [3.0]]), jnp.array([0.0, 1.0])))
      2.5
      >>> float(mse(jnp.array([[1.0, 0.0]]), jnp.array([1])))  # one-hot [0, 1]
      1.0
    """
    if _is_classification(targets):
        targets = jax.nn.one_hot(targets, outputs.shape[-1], dtype=outputs.dtype)
    elif outputs.shape == (*targets.shape, 1):
        outputs = outputs[..., 0]
    return jnp.mean((outputs - targets) ** 2)


def _loss_fn(loss: str | LossFn | None, y: Array) -> LossFn:
    if callable(loss):
        return loss
    if loss is None:
        loss = "cross_entropy" if _is_classification(y) else "mse"
    if loss == "cross_entropy":
        return cross_entropy
    if loss == "mse":
        return mse
    raise ValueError(f"loss must be one of {LOSSES}, a callable or None, got {loss!r}")


def train_step(
    state: TrainState, batch: Batch, key: Array, *, loss: str | LossFn | None = None
) -> tuple[TrainState, dict[str, Array]]:
    """One gradient step on a minibatch; pure, jit it at the call site.

    The model runs in train mode: batch norm normalizes with the batch statistics and
    updates ``state.batch_stats``, dropout draws from ``key`` (rng name ``"dropout"`` for a
    linen module; see :func:`as_pure_model` for the other kinds).

    Args:
      state: the current :class:`TrainState`.
      batch: ``(x, y)``, inputs and integer labels or float targets.
      key: PRNG key for dropout; derive it from the step, e.g.
        ``jax.random.fold_in(key, state.step)``.
      loss: ``"cross_entropy"``, ``"mse"``, a callable ``(outputs, y) -> scalar``, or
        ``None`` for cross-entropy on integer labels and MSE on float targets.

    Returns:
      ``(new_state, metrics)`` with ``metrics["loss"]`` the minibatch loss before the
      update and, for integer labels, ``metrics["accuracy"]``.

    Examples:
      >>> import jax, jax.numpy as jnp, optax, flax.linen as nn
      >>> from jopt.train import create_train_state, train_step
      >>> x, y = jnp.ones((4, 2)), jnp.array([0, 1, 1, 1])
      >>> state = create_train_state(nn.Dense(2), optax.sgd(0.5), x, jax.random.PRNGKey(0))
      >>> step = jax.jit(train_step)
      >>> for _ in range(3):
      ...     state, metrics = step(state, (x, y), jax.random.PRNGKey(0))
      ...     print(f"{metrics['loss']:.3f}")
      0.618
      0.569
      0.563
    """
    x, y = batch
    loss_fn = _loss_fn(loss, y)
    model = _pure_model_of(state)

    def compute_loss(params):
        outputs, batch_stats = model.apply(params, state.batch_stats, x, True, key)
        return loss_fn(outputs, y), (outputs, batch_stats)

    (value, (outputs, batch_stats)), grads = jax.value_and_grad(compute_loss, has_aux=True)(
        state.params
    )
    state = state.apply_gradients(grads=grads, batch_stats=batch_stats)
    metrics = {"loss": value}
    if _is_classification(y):
        metrics["accuracy"] = jnp.mean(jnp.argmax(outputs, -1) == y)
    return state, metrics


def evaluate(
    state: TrainState, x: Array, y: Array, *, loss: str | LossFn | None = None
) -> dict[str, Array]:
    """Evaluates the model on a whole set in one batch, in eval mode (``train=False``).

    Batch norm uses the running statistics in ``state.batch_stats``; dropout is off.

    Args:
      state: a :class:`TrainState`.
      x: inputs, shape ``(n, *features)``.
      y: integer labels ``(n,)`` or float targets.
      loss: as in :func:`train_step`.

    Returns:
      ``{"loss": ...}`` (mean loss; the mean squared error for float targets), plus
      ``"accuracy"`` for integer labels.

    Examples:
      >>> import jax, jax.numpy as jnp, optax, flax.linen as nn
      >>> from jopt.train import create_train_state, evaluate
      >>> x, y = jnp.ones((4, 2)), jnp.array([0, 1, 1, 1])
      >>> state = create_train_state(nn.Dense(2), optax.sgd(0.5), x, jax.random.PRNGKey(0))
      >>> sorted(evaluate(state, x, y))
      ['accuracy', 'loss']
    """
    outputs, _ = _pure_model_of(state).apply(state.params, state.batch_stats, x, False, None)
    metrics = {"loss": _loss_fn(loss, y)(outputs, y)}
    if _is_classification(y):
        metrics["accuracy"] = jnp.mean(jnp.argmax(outputs, -1) == y)
    return metrics


# ------------------------------------------------------------------------------------------
# Progress: a tqdm bar fed by jax.debug.callback from inside the compiled loop
# ------------------------------------------------------------------------------------------


class _Progress:
    """The host side of one ``fit`` call's progress reports (a tqdm bar or a callable).

    Under ``vmap`` ``jax.debug.callback`` runs once per member with the same step: a
    report for the step just shown is dropped, so there is one bar (with the loss of the
    first member) however many runs are batched. A report for an earlier step means the
    compiled program runs again (``fit`` under an outer ``jit``): a new bar starts.
    """

    def __init__(self, target: Progress, start: int):
        self.fn = None if target is True else target
        self.start = start
        self.last = start
        self.bar = None

    def report(self, step: int, total: int, loss: float) -> None:
        if step == self.last:
            return
        if step < self.last:
            self.close()
        self.last = step
        if self.fn is not None:
            self.fn(step, loss)
        else:
            if self.bar is None:
                self.bar = tqdm(total=total, initial=self.start, desc="fit", unit="step")
            self.bar.update(step - self.bar.n)
            self.bar.set_postfix(loss=f"{loss:.4g}", refresh=False)
        if step >= total:
            self.close()

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None


# The progress of each fit call, by an id that the compiled program receives as an
# argument, so that a cached program never holds on to a particular bar. Kept after the
# run (the last 1024 calls): under an outer jit the same program, with the same id, may
# run again.
_PROGRESS: collections.OrderedDict[int, _Progress] = collections.OrderedDict()
_PROGRESS_IDS = itertools.count()


def _register_progress(target: Progress, start: int) -> int:
    run_id = next(_PROGRESS_IDS)
    _PROGRESS[run_id] = _Progress(target, start)
    while len(_PROGRESS) > 1024:
        _PROGRESS.popitem(last=False)[1].close()
    return run_id


def _host_report(packed: np.ndarray) -> None:
    """Host side of the progress callback; ``packed`` is ``[run_id, step, total, loss]``."""
    packed = np.asarray(packed)
    run_id, step, total = (int(v) for v in packed[:3])
    if run_id in _PROGRESS:
        _PROGRESS[run_id].report(step, total, float(packed[3:].view(np.float32)[0]))


def _report(run_id: Array, step: Array, total: Array, loss: Array) -> None:
    # One int32 array (the loss bit-cast) rather than four scalars: the callback moves
    # each argument to a device array first, and that dominates its cost.
    loss_bits = jax.lax.bitcast_convert_type(loss.astype(jnp.float32), jnp.int32)
    packed = jnp.stack([jnp.asarray(v, jnp.int32) for v in (run_id, step, total, loss_bits)])
    jax.debug.callback(_host_report, packed)


# ------------------------------------------------------------------------------------------
# The compiled loop
# ------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class _Loop:
    """Static configuration of the compiled loop (hashable: part of the jit cache key)."""

    batch_size: int
    batch_mode: str
    eval_every: int
    loss: str | LossFn
    augment: Augment | None
    progress_every: int | None  # None: no progress callback is traced at all


# The batches of a block of steps are drawn together, before the block's scan: one vectorized
# evaluation of the shuffle (a loop-free Feistel network plus a short cycle-walking loop) for
# BLOCK_POSITIONS positions costs far less than that many per-step evaluations, whose fixed
# cost (round keys, loop launch) rivals a small model's whole step on a CPU. The indices are
# the same pure function of the step either way.
_BLOCK_POSITIONS = 8192
# A block's examples are gathered together too when they fit in this many bytes: inside the
# MNIST-1D MLP loop, XLA's CPU gather of one batch of 100 rows took ~13 us per step (its
# fusion is split over two threads), a tenth of the step; one gather per block makes it
# noise. Larger examples (images) keep the per-step gather, small next to their model's step.
_BLOCK_GATHER_BYTES = 4 << 20


def _block_length(length: int, batch_size: int) -> int:
    """The largest divisor of ``length`` whose batches hold at most ``_BLOCK_POSITIONS``."""
    cap = max(1, _BLOCK_POSITIONS // batch_size)
    return max(d for d in range(1, min(length, cap) + 1) if length % d == 0)


def _default_progress_every(steps: int, eval_every: int, batch_size: int) -> int:
    """About 20 reports per run, each after a whole number of batch-drawing blocks."""
    block = _block_length(eval_every, batch_size)
    target = max(100, steps // 20)
    if block <= target:
        return round(target / block) * block
    return max(d for d in range(1, target + 1) if block % d == 0)


def _train_steps(state, loss_sum, data, keys, loop: _Loop, length: int):
    """``length`` train steps as ``lax.scan``s over blocks; adds their losses to ``loss_sum``."""
    data_key, augment_key, dropout_key = keys
    n = data.x_train.shape[0]
    block = _block_length(length, loop.batch_size)

    row_bytes = sum(
        math.prod(a.shape[1:]) * jnp.dtype(a.dtype).itemsize for a in (data.x_train, data.y_train)
    )
    gather_per_block = block * loop.batch_size * row_bytes <= _BLOCK_GATHER_BYTES

    def one_step(carry, batch):
        state, loss_sum = carry
        step = state.step
        x, y = batch if gather_per_block else (data.x_train[batch], data.y_train[batch])
        if loop.augment is not None:
            x = loop.augment(jax.random.fold_in(augment_key, step), x)
        # UPDATE
        state, metrics = train_step(
            state, (x, y), jax.random.fold_in(dropout_key, step), loss=loop.loss
        )
        return (state, loss_sum + metrics["loss"].astype(jnp.float32)), None

    def one_block(carry, _):
        # BATCHES: a pure function of the step (a shuffled epoch's permutation is evaluated
        # at the block's positions only: no sort, nothing carried, no per-step branch)
        steps = carry[0].step + jnp.arange(block, dtype=jnp.int32)
        draw = lambda step: batch_indices(data_key, step, n, loop.batch_size, loop.batch_mode)
        batches = jax.vmap(draw)(steps)  # (block, batch_size) example indices
        if gather_per_block:
            batches = (data.x_train[batches], data.y_train[batches])
        carry, _ = jax.lax.scan(one_step, carry, batches)
        return carry, None

    (state, loss_sum), _ = jax.lax.scan(one_block, (state, loss_sum), length=length // block)
    return state, loss_sum


def _train_interval(state, data, keys, run_id, total, loop: _Loop, length: int):
    """``length`` train steps, reporting progress between chunks, then one evaluation."""
    loss_sum = jnp.zeros((), jnp.float32)
    if loop.progress_every is None:
        state, loss_sum = _train_steps(state, loss_sum, data, keys, loop, length)
    else:
        # PROGRESS: chunks of progress_every steps with a host callback after each, so that
        # the step loop itself carries no callback and no per-step condition.
        every = min(loop.progress_every, length)

        def report(state, loss_sum, count):
            _report(run_id, state.step, total, loss_sum / count)

        def chunk(carry, i):
            state, loss_sum = carry
            state, loss_sum = _train_steps(state, loss_sum, data, keys, loop, every)
            report(state, loss_sum, (i + 1) * every)
            return (state, loss_sum), None

        carry = (state, loss_sum)
        (state, loss_sum), _ = jax.lax.scan(chunk, carry, jnp.arange(length // every))
        if length % every:
            state, loss_sum = _train_steps(state, loss_sum, data, keys, loop, length % every)
            report(state, loss_sum, length)
    # EVALUATE
    metrics = {"step": state.step, "loss": loss_sum / length}
    for prefix, x, y in (("train", data.x_train, data.y_train), ("val", data.x_test, data.y_test)):
        if x.shape[0]:
            for name, value in evaluate(state, x, y, loss=loop.loss).items():
                metrics[f"{prefix}_{name}"] = value.astype(jnp.float32)
    return state, metrics


def _split_key(key: Array) -> tuple[Array, tuple[Array, Array, Array]]:
    """``init_key`` and the ``(data_key, augment_key, dropout_key)`` of a run."""
    init_key, data_key, step_key = jax.random.split(key, 3)
    return init_key, (data_key, *jax.random.split(step_key))


def _segment(state, data, key, run_id, total, loop: _Loop, num_evals: int, tail: int):
    """``num_evals`` intervals of ``loop.eval_every`` steps, then ``tail`` more steps."""
    _, keys = _split_key(key)

    def interval(state, _):
        return _train_interval(state, data, keys, run_id, total, loop, loop.eval_every)

    state, history = jax.lax.scan(interval, state, length=num_evals)
    if tail:
        state, last = _train_interval(state, data, keys, run_id, total, loop, tail)
        history = jax.tree.map(lambda h, v: jnp.concatenate([h, v[None]]), history, last)
    return state, history


@functools.partial(jax.jit, static_argnames=("loop", "num_evals", "tail"))
def _run_segment(state, data, key, run_id, total, *, loop: _Loop, num_evals: int, tail: int):
    """Continues a run from ``state`` (resuming, or checkpointing between segments)."""
    return _segment(state, data, key, run_id, total, loop, num_evals, tail)


@functools.partial(jax.jit, static_argnames=("model", "tx", "loop", "num_evals", "tail"))
def _run(variables, data, key, run_id, total, *, model, tx, loop: _Loop, num_evals, tail):
    """A whole run from the initial ``(params, model_state)`` of a pure model, as one program."""
    state = _state_from_init(model, tx, variables)
    return _segment(state, data, key, run_id, total, loop, num_evals, tail)


@functools.lru_cache(maxsize=64)
def _accumulating(
    tx: optax.GradientTransformation, accumulate: int | Callable[[Array], Array]
) -> optax.GradientTransformation:
    # Cached so that repeated fit calls with the same tx hit the compilation cache.
    if callable(accumulate):
        schedule = accumulate

        def accumulate(count):
            # optax's schedules return floats; MultiSteps' counters must stay integers
            return jnp.round(schedule(count)).astype(jnp.int32)

    return optax.MultiSteps(tx, every_k_schedule=accumulate).gradient_transformation()


# ------------------------------------------------------------------------------------------
# Validation (Python, on concrete values, before anything compiles)
# ------------------------------------------------------------------------------------------


def _check_int(name: str, value: Any, low: int, high: int | None = None) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"{name} must be an int, got {value!r} ({type(value).__name__})")
    if value < low or (high is not None and value > high):
        allowed = f"in [{low}, {high}]" if high is not None else f">= {low}"
        raise ValueError(f"{name} must be {allowed}, got {value}")


def _as_dataset(data: Any) -> Dataset:
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


def _check_tx(tx: Any) -> None:
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
        if _is_classification(y_test) != _is_classification(y_train):
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
        if _is_classification(y) and len(y.shape) != 1 and (split == "train" or data.n_test):
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


def _check_fit_args(
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
    _check_data_shapes(data, loss)
    _check_int("steps", steps, 1)
    _check_int("batch_size", batch_size, 1, data.n_train)
    _check_int("eval_every", eval_every, 1, steps)
    if batch_mode not in BATCH_MODES:
        raise ValueError(f"batch_mode must be one of {BATCH_MODES}, got {batch_mode!r}")
    if not (loss is None or loss in LOSSES or callable(loss)):
        raise ValueError(f"loss must be one of {LOSSES}, a callable or None, got {loss!r}")
    if loss == "cross_entropy" and not _is_classification(data.y_train):
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


def _check_outputs(model: Any, data: Dataset, loss: Any = None) -> None:
    """The model's outputs must fit the labels (traced on shapes, not compiled).

    Integer labels: the last output axis must cover the classes. Float labels with the
    default or the ``"mse"`` loss are regression targets: one per output.
    """
    classification = _is_classification(data.y_train)
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


# ------------------------------------------------------------------------------------------
# fit
# ------------------------------------------------------------------------------------------


def _history_like(num: int, classification: bool, has_test: bool) -> dict[str, np.ndarray]:
    """Zeros shaped like a history of ``num`` evaluations (the restore target)."""
    names = ["loss", "train_loss"] + (["val_loss"] if has_test else [])
    if classification:
        names += ["train_accuracy"] + (["val_accuracy"] if has_test else [])
    history = {name: np.zeros(num, np.float32) for name in names}
    history["step"] = np.zeros(num, np.int32)
    return history


def _config_array(batch_size: int, eval_every: int, batch_mode: str) -> np.ndarray:
    return np.array([batch_size, eval_every, BATCH_MODES.index(batch_mode)], np.int32)


def fit(
    model: Any,
    tx: optax.GradientTransformation,
    data: Dataset,
    *,
    steps: int,
    batch_size: int,
    key: Array,
    eval_every: int | None = None,
    batch_mode: str = "shuffle",
    augment: Augment | None = None,
    loss: str | LossFn | None = None,
    accumulate: int | Callable[[Array], Array] | None = None,
    progress: Progress = True,
    progress_every: int | None = None,
    checkpoint_dir: str | os.PathLike | None = None,
    checkpoint_every: int | None = None,
    state: TrainState | None = None,
) -> tuple[TrainState, dict[str, Array]]:
    """Trains a model with minibatch gradient steps, as one compiled ``lax.scan``.

    The run initializes the model from ``key`` and takes ``steps`` calls of
    :func:`train_step` on minibatches from :func:`jopt.data.batch_indices`, evaluating on
    the full train and test sets every ``eval_every`` steps. All steps and evaluations run
    as one ``jit``-compiled program (the model's init is a second, small one, compiled
    once per model and input shape, so a sweep over optimizers does not compile it again).
    ``fit`` is pure and can be ``vmap``-ed over anything in ``tx`` (a traced learning
    rate) and over ``key``; ``progress``, ``checkpoint_dir`` and the Python checks are its
    only side effects. A second call with the same ``model``, ``tx`` object and argument
    shapes reuses the compiled programs.

    Randomness: ``key`` is split into ``init_key, data_key, step_key =
    jax.random.split(key, 3)``. ``init_key`` initializes the model
    (:func:`create_train_state`); ``data_key`` draws the batches
    (``batch_indices(data_key, t, ...)``); ``augment_key, dropout_key =
    jax.random.split(step_key)`` are folded with the step ``t`` for augmentation and
    dropout. Nothing depends on how the run is cut into segments.

    Batch-size schedules (``accumulate``): instead of decaying the learning rate, increase
    the batch size (Smith et al. 2018). ``accumulate=k`` averages the gradients of ``k``
    consecutive minibatches of ``batch_size`` and applies one update, exactly one step with
    a batch of ``k * batch_size`` for plain SGD; a schedule ``update_count -> k`` (e.g.
    ``optax.piecewise_constant_schedule(1, {1000: 2, 2000: 4})``) grows the effective batch
    during training. It wraps ``tx`` in ``optax.MultiSteps``. ``steps`` still counts
    minibatches, so the number of epochs stays fixed while the number of updates falls.

    Args:
      model: a flax.linen module ``__call__(x, *, train=False)`` (``train`` optional), an
        ``nnx.Module`` (its current parameters are the initial ones, for every key), a
        function ``rngs -> nnx.Module`` (a fresh initialization from each key) or a
        :class:`jopt.models.Functional`; see :func:`as_pure_model`.
      tx: an optax ``GradientTransformation``; its hyperparameters may be tracers.
      data: a :class:`jopt.data.Dataset` (or a tuple ``(x_train, y_train, x_test, y_test)``);
        integer labels (classification) of shape ``(n,)``, or float targets (regression).
        Its held-out split (``x_test``, ``y_test``) is what ``"val_*"`` is measured on: use
        :func:`jopt.data.validation_split` to keep the test set out of a choice.
      steps: number of training steps (minibatches), ``>= 1``. With ``checkpoint_dir`` it
        is the total length of the run, counted from step 0 also when resuming; with
        ``state`` it is the number of steps to add.
      batch_size: minibatch size, in ``[1, n_train]`` (static).
      key: a PRNG key.
      eval_every: evaluate every this many steps, in ``[1, steps]``; ``None`` evaluates
        once, at the end. If it does not divide ``steps`` the last interval is shorter.
      batch_mode: ``"shuffle"`` (epochs without replacement), ``"replacement"`` or
        ``"sequential"``; see :func:`jopt.data.batch_indices`.
      augment: ``augment(key, x) -> x`` applied on device to each training batch, e.g.
        ``functools.partial(jopt.data.random_shift, max_shift=4)``.
      loss: ``"cross_entropy"``, ``"mse"``, a callable ``(outputs, y) -> scalar``, or
        ``None`` for cross-entropy on integer labels and MSE on float targets.
      accumulate: ``k`` (an int ``>= 1``) or a schedule ``update_count -> k``: gradient
        accumulation, see above.
      progress: ``True`` shows a tqdm bar (step, mean loss of the current interval);
        ``False`` traces no callback at all; a callable ``progress(step, loss)`` is
        called instead of the bar. Under ``vmap`` there is one bar for all members.
      progress_every: report every this many steps of each evaluation interval and at
        its end. Each report is a host callback that costs about 0.2-0.5 ms on a CPU (the
        callback machinery, not the bar: ~50 us of that is Python), so the default makes
        about 20 of them: ``max(100, steps // 20)``, rounded to a multiple of the block of
        steps whose batches are drawn together, so that the bar does not change how the
        loop is cut.
      checkpoint_dir: a directory to save the state and history to (with
        :mod:`jopt.checkpoint`) every ``checkpoint_every`` steps. If it already holds
        a checkpoint of this run, training resumes from the latest one at or before
        ``steps`` and ends bit-identical to an uninterrupted run. Beside the checkpoints,
        ``fit_fingerprint.json`` records what the run is made of (the optimizer's initial
        state, hyperparameters included, and its update rule; the model's class, attributes
        and parameter shapes; hashes of the data; ``batch_size``, ``eval_every``,
        ``batch_mode``); resuming with anything else is refused. Not usable under
        ``jit``/``vmap``.
      checkpoint_every: save every this many steps (and at no other step), a multiple of
        ``eval_every``; defaults to ``eval_every``. The run is then a few calls of one
        compiled segment of ``checkpoint_every`` steps.
      state: continue from this :class:`TrainState` instead of initializing (its
        ``apply_fn`` and ``tx`` are used; ``model`` and ``tx`` are not); the step counter,
        and so the batches, continue from ``state.step``. May be batched under ``vmap``.

    Returns:
      ``(state, history)``: the final :class:`TrainState`, and a dict of arrays with one
      entry per evaluation: ``"step"``; ``"loss"``, the mean minibatch loss over the
      interval; ``"train_loss"`` and ``"val_loss"`` on the full sets; and for integer
      labels ``"train_accuracy"`` and ``"val_accuracy"``.

    Raises:
      ValueError, TypeError: before anything compiles, for an argument out of range or of
        the wrong type (the message names it and what is allowed: e.g. ``tx`` not an optax
        transformation, ``data`` not a :class:`jopt.data.Dataset`, ``model`` of none of
        the kinds of :func:`as_pure_model`) or bad data
        (mismatched lengths, NaN/inf, labels outside ``[0, num_classes)``, integer labels
        not of shape ``(n,)``, float labels that do not match the model's outputs,
        ``x_test`` examples shaped unlike ``x_train``'s).
      ValueError: ``checkpoint_dir`` holds checkpoints of another run (another optimizer
        or hyperparameter, model, data, key, ``batch_size``, ``eval_every`` or
        ``batch_mode``); the message says what differs.

    Examples:
      >>> import jax, optax, flax.linen as nn
      >>> import jopt
      >>> data = jopt.data.digits()
      >>> state, history = jopt.train.fit(
      ...     nn.Dense(10), optax.adam(1e-2), data, steps=200, batch_size=64,
      ...     key=jax.random.PRNGKey(0), eval_every=100, progress=False)
      >>> history["step"].tolist(), bool(history["val_accuracy"][-1] > 0.9)
      ([100, 200], True)

    References:
      Smith, Kindermans, Ying, Le, `Don't decay the learning rate, increase the batch size
      <https://arxiv.org/abs/1711.00489>`_, 2018.
    """
    # CHECK ARGUMENTS
    data = _as_dataset(data)
    if state is None:
        _check_tx(tx)
    eval_every = steps if eval_every is None else eval_every
    if checkpoint_dir is not None and checkpoint_every is None:
        checkpoint_every = eval_every
    _check_fit_args(
        data,
        steps=steps,
        batch_size=batch_size,
        eval_every=eval_every,
        batch_mode=batch_mode,
        loss=loss,
        augment=augment,
        accumulate=accumulate,
        progress=progress,
        progress_every=progress_every,
        checkpoint_dir=checkpoint_dir,
        checkpoint_every=checkpoint_every,
        state=state,
        key=key,
    )
    if state is None:
        model = as_pure_model(model)
        _check_outputs(model, data, loss)
    if accumulate is not None:
        tx = _accumulating(tx, accumulate)
    loop = _Loop(
        batch_size=batch_size,
        batch_mode=batch_mode,
        eval_every=eval_every,
        loss=loss,
        augment=augment,
        progress_every=(progress_every or _default_progress_every(steps, eval_every, batch_size))
        if progress
        else None,
    )

    # ONE PROGRAM: all steps (the usual case)
    if state is None and checkpoint_dir is None:
        run_id = _register_progress(progress, 0) if progress else -1
        variables = _init_variables_jit(model, data.x_train[:1], _split_key(key)[0])
        state, history = _run(
            variables,
            data,
            key,
            run_id,
            jnp.asarray(steps, jnp.int32),
            model=model,
            tx=tx,
            loop=loop,
            num_evals=steps // eval_every,
            tail=steps % eval_every,
        )
        return state, _finish_progress(progress, run_id, state, history)

    # SEGMENTS: continue a given state, or checkpoint every checkpoint_every steps
    if state is None:
        variables = _init_variables_jit(model, data.x_train[:1], _split_key(key)[0])
        state = _state_from_init(model, tx, variables)
    total = jnp.asarray(state.step + steps, jnp.int32)
    position, history = 0, None
    if checkpoint_dir is not None:
        checkpoint_dir = os.path.abspath(os.fspath(checkpoint_dir))
        config = {"batch_size": batch_size, "eval_every": eval_every, "batch_mode": batch_mode}
        # As stored in JSON (tuples become lists), so that comparisons are fair.
        fingerprint = json.loads(json.dumps(_fingerprint(model, tx, state, data, config)))
        position, state, history = _resume(
            checkpoint_dir, state, data, steps, batch_size, eval_every, batch_mode, key, fingerprint
        )
        # Before the first checkpoint of the run, so that every checkpoint has one.
        if _read_fingerprint(checkpoint_dir) != fingerprint:
            _write_fingerprint(checkpoint_dir, fingerprint)
    first = 0 if isinstance(state.step, jax.core.Tracer) else int(state.step)
    run_id = _register_progress(progress, first) if progress else -1
    while position < steps:
        end = steps
        if checkpoint_every is not None:
            end = min(steps, (position // checkpoint_every + 1) * checkpoint_every)
        state, segment = _run_segment(
            state,
            data,
            key,
            run_id,
            total,
            loop=loop,
            num_evals=(end - position) // eval_every,
            tail=(end - position) % eval_every,
        )
        history = segment if history is None else _concat(history, segment)
        position = end
        if checkpoint_dir is not None and position % checkpoint_every == 0:
            tree = {
                "state": state,
                "history": history,
                "key": jax.random.key_data(key),
                "config": _config_array(batch_size, eval_every, batch_mode),
            }
            checkpoint.save(checkpoint_dir, tree, step=position, keep=2)
    return state, _finish_progress(progress, run_id, state, history)


def _finish_progress(progress: Progress, run_id: int, state: TrainState, history: Any) -> Any:
    """Waits for the last progress callbacks, then closes the bar if it is still open."""
    if progress:
        # The callback of the last step closes the bar; wait for it so that what is
        # printed after fit returns comes after the bar. (Under jit nothing ran yet.)
        jax.effects_barrier()
        if not isinstance(state.step, jax.core.Tracer) and run_id in _PROGRESS:
            _PROGRESS[run_id].close()
    return history


def _concat(a: dict[str, Array], b: dict[str, Array]) -> dict[str, Array]:
    return jax.tree.map(lambda x, y: jnp.concatenate([x, y]), a, b)


def _resume(
    checkpoint_dir, state, data, steps, batch_size, eval_every, batch_mode, key, fingerprint
):
    """Restores the latest checkpoint at or before ``steps``; ``(0, state, None)`` if none.

    Raises ``ValueError`` if the checkpoints are of another run: another ``fingerprint``
    (optimizer, model, data, batch settings) or key.
    """
    saved = checkpoint.all_steps(checkpoint_dir)
    usable = [s for s in saved if s <= steps]
    if saved and not usable:
        raise ValueError(
            f"checkpoint_dir {checkpoint_dir!r} holds checkpoints at steps {saved}, all after "
            f"steps={steps}; use a larger steps or another directory"
        )
    if not usable:
        return 0, state, None
    _check_fingerprint(checkpoint_dir, _read_fingerprint(checkpoint_dir), fingerprint)
    step = usable[-1]
    classification = _is_classification(data.y_train)
    like = {
        "state": state,
        "history": _history_like(step // eval_every, classification, data.n_test > 0),
        "key": jax.random.key_data(key),
        "config": _config_array(batch_size, eval_every, batch_mode),
    }
    restored = checkpoint.restore(checkpoint_dir, like=like, step=step)
    if not np.array_equal(restored["key"], like["key"]):
        raise ValueError(
            f"checkpoint_dir {checkpoint_dir!r} was written by a run with another key; "
            "use the same key to resume or another directory"
        )
    if not np.array_equal(restored["config"], like["config"]):
        saved_config = dict(
            zip(("batch_size", "eval_every", "batch_mode"), restored["config"].tolist())
        )
        saved_config["batch_mode"] = BATCH_MODES[saved_config["batch_mode"]]
        raise ValueError(
            f"checkpoint_dir {checkpoint_dir!r} was written with {saved_config}; resume with "
            "the same batch_size, eval_every and batch_mode or use another directory"
        )
    history = {k: jnp.asarray(v) for k, v in restored["history"].items()}
    return step, restored["state"], history


# ------------------------------------------------------------------------------------------
# Fingerprints of checkpointed runs
# ------------------------------------------------------------------------------------------

# Beside the step directories of fit's checkpoint_dir: what the run is made of, so that a
# resume with another optimizer, model or dataset is refused rather than silently mixed.
_FINGERPRINT_FILE = "fit_fingerprint.json"
_FINGERPRINT_FORMAT = 1
# Arrays up to this size are hashed whole; larger ones by _HASH_SAMPLES evenly spaced
# pieces of _HASH_PIECE_BYTES, the first and the last included.
_HASH_FULL_BYTES = 16 << 20
_HASH_PIECE_BYTES = 1 << 20
_HASH_SAMPLES = 16
_ADDRESS = re.compile(r" at 0x[0-9a-fA-F]+")


def _array_digest(x: Any) -> str:
    """sha256 of an array's dtype, shape and bytes (of samples of them, if it is large).

    Examples:
      >>> import numpy as np
      >>> from jopt.train import _array_digest
      >>> _array_digest(np.zeros(3)) == _array_digest(np.zeros(3, np.float32))
      False
    """
    shape, dtype = tuple(x.shape), np.dtype(x.dtype)
    digest = hashlib.sha256(f"{dtype.str}\0{shape}\0".encode())
    size = math.prod(shape)
    if size * dtype.itemsize <= _HASH_FULL_BYTES:
        digest.update(np.asarray(x).tobytes())  # C order whatever the memory layout
        return digest.hexdigest()
    # Slice first, then copy: a large device array is never copied to the host whole.
    flat = x.reshape(-1)
    piece = max(1, _HASH_PIECE_BYTES // dtype.itemsize)
    for start in np.linspace(0, size - piece, _HASH_SAMPLES).astype(np.int64).tolist():
        digest.update(np.asarray(flat[start : start + piece]).tobytes())
    return digest.hexdigest()


def _static_digest(obj: Any) -> str:
    """sha256 of the functions a transformation is built of and the values they close over.

    This is what defines a transformation beyond its state: optax keeps e.g. a float
    learning rate in a closure. Objects of other kinds count by their type only (their repr
    may hold a memory address), so equal transformations give equal digests in any process.
    """
    digest = hashlib.sha256()
    seen: set[int] = set()

    def add(text: str) -> None:
        digest.update(text.encode() + b"\0")

    def visit(x: Any, depth: int) -> None:
        if depth > 16:
            return add("...")
        if x is None or isinstance(x, (bool, int, float, complex, str, bytes)):
            return add(f"{type(x).__name__}:{x!r}")
        if isinstance(x, (np.ndarray, np.generic)) and x.dtype.hasobject:
            return add("object array")  # its bytes are pointers
        if isinstance(x, (np.ndarray, np.generic)) or (
            isinstance(x, jax.Array) and not isinstance(x, jax.core.Tracer)
        ):
            return add(_array_digest(np.asarray(x) if isinstance(x, np.generic) else x))
        if id(x) in seen:
            return add("<seen>")
        seen.add(id(x))
        if isinstance(x, (tuple, list)):
            add(f"{type(x).__qualname__}[{len(x)}]")
            for item in x:
                visit(item, depth + 1)
        elif isinstance(x, dict):
            add(f"dict[{len(x)}]")
            for k in sorted(x, key=repr):
                visit(k, depth + 1)
                visit(x[k], depth + 1)
        elif isinstance(x, functools.partial):
            add("partial")
            for part in (x.func, x.args, x.keywords):
                visit(part, depth + 1)
        elif isinstance(x, types.MethodType):  # e.g. optax.MultiSteps keeps its k in self
            add(f"method of {type(x.__self__).__qualname__}")
            visit(x.__func__, depth + 1)
            visit(getattr(x.__self__, "__dict__", None), depth + 1)
        elif isinstance(x, types.FunctionType):
            add(f"function {x.__module__}.{x.__qualname__}")
            visit(x.__defaults__, depth + 1)
            visit(x.__kwdefaults__, depth + 1)
            for cell in x.__closure__ or ():
                try:
                    visit(cell.cell_contents, depth + 1)
                except ValueError:  # a cell not filled yet
                    add("<empty>")
        else:  # anything else by its type only: its repr may hold an address
            add(f"object {type(x).__module__}.{type(x).__qualname__}")

    visit(obj, 0)
    return digest.hexdigest()


def _tree_digest(tree: Any) -> str:
    """sha256 of a pytree's structure and of its leaves' dtypes, shapes and values."""
    structure = _ADDRESS.sub("", str(jax.tree.structure(tree)))
    digest = hashlib.sha256(structure.encode())
    for leaf in jax.tree.leaves(tree):
        digest.update(_array_digest(np.asarray(leaf)).encode())
    return digest.hexdigest()


def _named_hparams(opt_state: Any) -> dict[str, Any]:
    """The hyperparameters held in an optimizer state: jopt's, and optax's injected ones."""
    from jopt.hyperparams import hparams

    found = dict(hparams(opt_state))
    injected = lambda s: isinstance(s, optax.InjectHyperparamsState)
    for s in jax.tree.leaves(opt_state, is_leaf=injected):
        if injected(s):
            for name, value in s.hyperparams.items():
                found.setdefault(name, value)
    out = {}
    for name, value in sorted(found.items()):
        value = np.asarray(value)
        out[name] = value.tolist() if value.size <= 16 else _array_digest(value)
    return out


def _module_repr(model: nn.Module) -> str:
    """A flax module's repr on one line, without its ``# attributes`` comments."""
    lines = [line.strip() for line in _ADDRESS.sub("", repr(model)).splitlines()]
    text = " ".join(line for line in lines if line and not line.startswith("#"))
    return re.sub(r"\(\s+", "(", re.sub(r"\s+\)", ")", text))


def _fingerprint(
    model: Any,
    tx: optax.GradientTransformation,
    state: TrainState,
    data: Dataset,
    config: dict[str, Any],
) -> dict[str, Any]:
    """What a checkpointed run is made of, JSON-able; ``state`` is its initial state."""
    leaves = checkpoint._leaves_by_path({"params": state.params, "batch_stats": state.batch_stats})
    arrays = {}
    for name in ("x_train", "y_train", "x_test", "y_test"):
        x = getattr(data, name)
        arrays[name] = {
            "shape": list(x.shape),
            "dtype": str(np.dtype(x.dtype)),
            "sha256": _array_digest(x),
        }
    return {
        "format": _FINGERPRINT_FORMAT,
        "run": config,
        "optimizer": {
            "hparams": _named_hparams(state.opt_state),
            "state": _tree_digest(state.opt_state),
            "rule": _static_digest(tx),
        },
        "model": {
            "repr": model.name,
            "variables": {k: [list(v.shape), str(v.dtype)] for k, v in leaves.items()},
        },
        "data": {"arrays": arrays, "num_classes": data.num_classes},
    }


def _short_value(value: Any, limit: int = 80) -> str:
    if isinstance(value, float):
        text = f"{value:.6g}"
    elif isinstance(value, list) and all(isinstance(v, float) for v in value):
        text = "[" + ", ".join(f"{v:.6g}" for v in value) + "]"
    else:
        text = value if isinstance(value, str) else repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _fingerprint_changes(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    """Readable lines saying how the run of ``new`` differs from the stored ``old``."""
    absent = "(absent)"
    lines = []
    try:
        before, after = old["optimizer"], new["optimizer"]
        names = sorted(set(before["hparams"]) | set(after["hparams"]))
        for name in names:
            a, b = before["hparams"].get(name, absent), after["hparams"].get(name, absent)
            if a != b:
                lines.append(
                    f"optimizer hyperparameter {name}: {_short_value(a)} -> {_short_value(b)}"
                )
        if not lines and before["state"] != after["state"]:
            lines.append("optimizer: another state (its structure or initial values differ)")
        if not lines and before["rule"] != after["rule"]:
            lines.append(
                "optimizer: another update rule, or a hyperparameter outside its state (e.g. "
                "a float learning rate of a plain optax optimizer) changed"
            )
        before, after = old["model"], new["model"]
        if before["repr"] != after["repr"]:
            lines.append(f"model: {_short_value(before['repr'])} -> {_short_value(after['repr'])}")
        if before["variables"] != after["variables"]:
            changed = []
            for name in sorted(set(before["variables"]) | set(after["variables"])):
                a = before["variables"].get(name)
                b = after["variables"].get(name)
                if a != b:
                    show = lambda v: absent if v is None else f"{tuple(v[0])} {v[1]}"
                    changed.append(f"{name} {show(a)} -> {show(b)}")
            more = f", ... ({len(changed)} in all)" if len(changed) > 4 else ""
            lines.append("model parameters: " + ", ".join(changed[:4]) + more)
        before, after = old["data"], new["data"]
        values = []
        for name, b in after["arrays"].items():
            a = before["arrays"].get(name, {})
            if (a.get("shape"), a.get("dtype")) != (b["shape"], b["dtype"]):
                lines.append(
                    f"data: {name} {tuple(a.get('shape', ()))} {a.get('dtype')} -> "
                    f"{tuple(b['shape'])} {b['dtype']}"
                )
            elif a.get("sha256") != b["sha256"]:
                values.append(name)
        if values:
            lines.append(f"data: the values of {', '.join(values)} changed")
        if before["num_classes"] != after["num_classes"]:
            lines.append(f"data: num_classes {before['num_classes']} -> {after['num_classes']}")
    except (KeyError, TypeError, AttributeError):
        lines.append("the stored fingerprint cannot be read (another version of jopt?)")
    return lines


def _read_fingerprint(checkpoint_dir: str) -> dict[str, Any] | None:
    """The stored fingerprint; ``None`` if there is none or it cannot be read."""
    try:
        with open(os.path.join(checkpoint_dir, _FINGERPRINT_FILE), "rb") as f:
            stored = json.load(f)
    except (OSError, ValueError):
        return None
    return stored if isinstance(stored, dict) else None


def _write_fingerprint(checkpoint_dir: str, fingerprint: dict[str, Any]) -> None:
    """Writes the fingerprint atomically (a synced temporary file, renamed), on process 0."""
    if jax.process_index() != 0:
        return
    os.makedirs(checkpoint_dir, exist_ok=True)
    text = json.dumps(fingerprint, indent=1, sort_keys=True).encode()
    checkpoint.atomic_write(os.path.join(checkpoint_dir, _FINGERPRINT_FILE), text)


def _check_fingerprint(
    checkpoint_dir: str, stored: dict[str, Any] | None, fingerprint: dict[str, Any]
) -> None:
    """Refuses to resume the checkpoints of another run (another optimizer, model, data)."""
    if stored is None:
        warnings.warn(
            f"checkpoint_dir {checkpoint_dir!r} holds checkpoints without a readable "
            f"{_FINGERPRINT_FILE}; resuming without checking that the optimizer, model and "
            "data are those of the run that wrote them",
            stacklevel=4,
        )
        return
    if stored.get("run") != fingerprint["run"] and isinstance(stored.get("run"), dict):
        raise ValueError(
            f"checkpoint_dir {checkpoint_dir!r} was written with {stored['run']}; resume with "
            "the same batch_size, eval_every and batch_mode or use another directory"
        )
    changes = _fingerprint_changes(stored, fingerprint)
    if changes:
        raise ValueError(
            f"checkpoint_dir {checkpoint_dir!r} holds checkpoints of a different run:\n"
            + "".join(f"  {line}\n" for line in changes)
            + f"To start over, use a new checkpoint_dir or delete {checkpoint_dir!r}; to resume, "
            "call fit with the optimizer, model and data of that run."
        )
