"""Every kind of model in one pure form: the only way the training loop calls a model."""

from __future__ import annotations

import dataclasses
import inspect
import re
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import flax.linen as nn
import jax
import jax.numpy as jnp
from flax import nnx

from jopt.models import Functional

if TYPE_CHECKING:
    from jopt.train.step import TrainState

Array = jax.Array
_ADDRESS = re.compile(r" at 0x[0-9a-fA-F]+")


def without_addresses(text: str) -> str:
    """``text`` without the `` at 0x...`` memory addresses of reprs.

    Addresses differ between processes and runs, so they must never enter a description
    that is compared (a run's fingerprint, a model's description).

    Args:
      text: a repr, or any text holding some.

    Returns:
      ``text`` with every `` at 0x<hex>`` removed.

    Examples:
      >>> from jopt.train.adapters import without_addresses
      >>> without_addresses("<function f at 0x7f3a2c1d>")
      '<function f>'
    """
    return _ADDRESS.sub("", text)


def module_repr(model: nn.Module) -> str:
    """A flax module's repr on one line, without addresses or ``# attributes`` comments."""
    lines = [line.strip() for line in without_addresses(repr(model)).splitlines()]
    text = " ".join(line for line in lines if line and not line.startswith("#"))
    return re.sub(r"\(\s+", "(", re.sub(r"\s+\)", ")", text))


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
        return module_repr(self.module)

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


def _init_variables(model: nn.Module, x: Array, key: Array) -> dict[str, Any]:
    params_key, dropout_key = jax.random.split(key)
    rngs = {"params": params_key, "dropout": dropout_key}
    return model.init(rngs, x, train=False) if _takes_train(model) else model.init(rngs, x)


def pure_model_of(state: TrainState) -> Any:
    """The state's model in pure form (a hand-built state: from its linen ``apply_fn``)."""
    return state.model if state.model is not None else _ApplyFnModel(state.apply_fn)
