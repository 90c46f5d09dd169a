"""The state of a run, its initialization, the losses, one train step and evaluation."""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping
from typing import Any

import jax
import jax.numpy as jnp
import optax
from flax import struct
from flax.training import train_state

from jopt.train.adapters import as_pure_model, pure_model_of

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

    def apply_gradients(self, *, grads: Any, **kwargs: Any) -> TrainState:
        """One optimizer update: ``tx.update`` then ``optax.apply_updates``; ``step + 1``.

        Parameters of any pytree (a tuple, a list, an equinox module), not only dicts:
        flax's version looks a key up in ``grads`` and fails on anything but a mapping.
        """
        if isinstance(grads, Mapping):
            return super().apply_gradients(grads=grads, **kwargs)
        updates, opt_state = self.tx.update(grads, self.opt_state, self.params)
        params = optax.apply_updates(self.params, updates)
        return self.replace(step=self.step + 1, params=params, opt_state=opt_state, **kwargs)

    @property
    def variables(self) -> dict[str, Any]:
        """The variables for ``apply_fn``: ``params``, plus ``batch_stats`` if any."""
        if self.batch_stats:
            return {"params": self.params, "batch_stats": self.batch_stats}
        return {"params": self.params}


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
    return state_from_init(model, tx, model.init(key, x))


def state_from_init(
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


@functools.partial(jax.jit, static_argnums=0)
def init_model(model: Any, x: Array, key: Array) -> tuple[Any, Any]:
    """A pure model's initial ``(params, model_state)`` for inputs like ``x``, compiled.

    Compiled once per model and input shape, not per optimizer: ``fit`` initializes with it
    outside its main program, so a sweep over optimizers does not compile the init again.

    Args:
      model: a model in pure form (:func:`jopt.train.as_pure_model`), static.
      x: a sample input batch (only its shape and dtype matter).
      key: the init key (``run_keys(key)[0]`` in ``fit``).

    Returns:
      ``model.init(key, x)``.
    """
    return model.init(key, x)


def is_classification(y: Array) -> bool:
    """Whether labels ``y`` are class indices (integers), rather than regression targets."""
    return jnp.issubdtype(y.dtype, jnp.integer)


def cross_entropy(outputs: Array, labels: Array) -> Array:
    """Mean softmax cross-entropy of logits ``(batch, classes)`` and int labels ``(batch,)``.

    Args:
      outputs: logits of shape ``(batch, classes)``.
      labels: integer class indices of shape ``(batch,)``.

    Returns:
      The mean loss over the batch, a scalar.

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

    Args:
      outputs: the model's outputs, ``(batch, ...)``.
      targets: float targets of the outputs' shape (or ``(batch,)`` for outputs
        ``(batch, 1)``), or integer class labels ``(batch,)``.

    Returns:
      The mean of the squared errors over all elements, a scalar.

    Examples:
      >>> import jax.numpy as jnp
      >>> from jopt.train import mse
      >>> float(mse(jnp.array([[1.0], [3.0]]), jnp.array([0.0, 1.0])))
      2.5
      >>> float(mse(jnp.array([[1.0, 0.0]]), jnp.array([1])))  # one-hot [0, 1]
      1.0
    """
    if is_classification(targets):
        targets = jax.nn.one_hot(targets, outputs.shape[-1], dtype=outputs.dtype)
    elif outputs.shape == (*targets.shape, 1):
        outputs = outputs[..., 0]
    return jnp.mean((outputs - targets) ** 2)


def _loss_fn(loss: str | LossFn | None, y: Array) -> LossFn:
    if callable(loss):
        return loss
    if loss is None:
        loss = "cross_entropy" if is_classification(y) else "mse"
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
    model = pure_model_of(state)

    def compute_loss(params):
        outputs, batch_stats = model.apply(params, state.batch_stats, x, True, key)
        return loss_fn(outputs, y), (outputs, batch_stats)

    (value, (outputs, batch_stats)), grads = jax.value_and_grad(compute_loss, has_aux=True)(
        state.params
    )
    state = state.apply_gradients(grads=grads, batch_stats=batch_stats)
    metrics = {"loss": value}
    if is_classification(y):
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
    outputs, _ = pure_model_of(state).apply(state.params, state.batch_stats, x, False, None)
    metrics = {"loss": _loss_fn(loss, y)(outputs, y)}
    if is_classification(y):
        metrics["accuracy"] = jnp.mean(jnp.argmax(outputs, -1) == y)
    return metrics
