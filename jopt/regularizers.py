"""Regularizers and clipping as optax transforms, each with its strength held in state.

Where each goes in ``optax.chain``:

* ``l1`` and ``l2`` add the penalty's gradient to the gradient, so they go **before** the
  optimizer: ``optax.chain(jopt.regularizers.l2(1e-4), jopt.adam(1e-3))`` is "Adam + L2";
  Adam then rescales the penalty like any other gradient.
* ``weight_decay`` shrinks the weights directly, decoupled from the gradient and from the
  learning rate, so it goes **after** the optimizer:
  ``optax.chain(jopt.adam(1e-3), jopt.regularizers.weight_decay(1e-4))`` is Loshchilov &
  Hutter's AdamW. ``jopt.adamw`` is the other, lr-scaled form (optax's and PyTorch's).
* ``clip_by_global_norm`` goes first, on the raw gradient.

By default a transform acts on every leaf (as optax's ``add_decayed_weights``). Pass
``mask=jopt.regularizers.kernels`` to leave biases and normalization scales alone.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import optax

from jopt.compress.masks import Mask, every_leaf, kernels, needs_params, resolve_mask
from jopt.hyperparams import ScalarOrSchedule, at_least, positive, stateful_transform

__all__ = ["clip_by_global_norm", "kernels", "l1", "l2", "weight_decay"]


def _no_state(params, hparams):
    del params, hparams
    return ()


def l1(
    strength: ScalarOrSchedule, mask: Mask = None, *, name: str | None = None
) -> optax.GradientTransformationExtraArgs:
    r"""L1 penalty :math:`\lambda \|\theta\|_1`, added to the gradient (place before the optimizer).

    .. math::
      g_t \leftarrow g_t + \lambda \operatorname{sign}(\theta_{t-1})

    Args:
      strength: :math:`\lambda` >= 0, a float, JAX scalar or schedule.
      mask: which leaves to penalize (a bool pytree or ``params -> bool pytree``, static);
        default all.
      name: optional label for ``jopt.hparams``.

    Returns:
      An optax ``GradientTransformationExtraArgs`` holding ``strength`` in its state.

    Examples:
      >>> import jax.numpy as jnp, jopt
      >>> tx = jopt.regularizers.l1(0.1)
      >>> params = jnp.array([2.0, -3.0, 0.0])
      >>> tx.update(jnp.zeros(3), tx.init(params), params)[0]
      Array([ 0.1, -0.1,  0. ], dtype=float32)
    """

    def update(grads, state, params, hp):
        needs_params("l1", params)
        penalty = lambda g, p, on: g + hp["strength"] * jnp.sign(p) if on else g
        targets = resolve_mask(mask, params, default=every_leaf)
        return jax.tree.map(penalty, grads, params, targets), state

    return stateful_transform(
        "l1", _no_state, update, {"strength": strength}, {"strength": at_least(0.0)}, name=name
    )


def l2(
    strength: ScalarOrSchedule, mask: Mask = None, *, name: str | None = None
) -> optax.GradientTransformationExtraArgs:
    r"""L2 penalty :math:`\tfrac{\lambda}{2}\|\theta\|_2^2`, added to the gradient (coupled).

    Place it before the optimizer. With Adam, the penalty's gradient is rescaled by Adam's
    second-moment estimate, so weights with large gradients are regularized less: the coupling
    that decoupled weight decay removes (Loshchilov & Hutter).

    .. math::
      g_t \leftarrow g_t + \lambda\, \theta_{t-1}

    Args:
      strength: :math:`\lambda` >= 0, a float, JAX scalar or schedule.
      mask: which leaves to penalize (static); default all.
      name: optional label for ``jopt.hparams``.

    Returns:
      An optax ``GradientTransformationExtraArgs`` holding ``strength`` in its state.

    Examples:
      >>> import jax.numpy as jnp, jopt
      >>> tx = jopt.regularizers.l2(0.1)
      >>> params = jnp.array([2.0, -3.0])
      >>> tx.update(jnp.ones(2), tx.init(params), params)[0]
      Array([1.2, 0.7], dtype=float32)
    """

    def update(grads, state, params, hp):
        needs_params("l2", params)
        penalty = lambda g, p, on: g + hp["strength"] * p if on else g
        targets = resolve_mask(mask, params, default=every_leaf)
        return jax.tree.map(penalty, grads, params, targets), state

    return stateful_transform(
        "l2", _no_state, update, {"strength": strength}, {"strength": at_least(0.0)}, name=name
    )


def weight_decay(
    rate: ScalarOrSchedule,
    multiplier: ScalarOrSchedule = 1.0,
    mask: Mask = None,
    *,
    name: str | None = None,
) -> optax.GradientTransformationExtraArgs:
    r"""Decoupled weight decay in Loshchilov & Hutter's form: not scaled by the learning rate.

    Place it after the optimizer: the optimizer's update :math:`u_t` already contains
    :math:`-\alpha`, and this adds the decay with no :math:`\alpha` in it:

    .. math::
      u_t \leftarrow u_t - \eta_t\, \lambda\, \theta_{t-1}

    where :math:`\lambda` = ``rate`` and :math:`\eta_t` = ``multiplier`` is the *schedule
    multiplier* of the paper (1 for a constant learning rate; pass the same schedule shape,
    normalized to peak 1, that drives the learning rate).

    .. warning::
      ``optax.adamw``, ``torch.optim.AdamW`` and ``jopt.adamw`` decay by
      :math:`\alpha\lambda\theta` (the decay is multiplied by the learning rate). With that form
      the best :math:`\lambda` in a learning-rate x decay sweep scales as :math:`1/\alpha`; with
      this one the two hyperparameters separate, which is the paper's point (its Fig. 2).
      To get the lr-scaled form on any optimizer, use ``rate = learning_rate * lambda``.

    Args:
      rate: :math:`\lambda` >= 0 per step, a float, JAX scalar or schedule.
      multiplier: :math:`\eta_t` >= 0, usually a schedule ``count -> value`` in [0, 1].
      mask: which leaves to decay (static); default all (as ``optax.add_decayed_weights``).
      name: optional label for ``jopt.hparams``.

    Returns:
      An optax ``GradientTransformationExtraArgs`` holding ``rate`` and ``multiplier``.

    Examples:
      >>> import jax.numpy as jnp, optax, jopt
      >>> tx = optax.chain(jopt.adam(1e-3), jopt.regularizers.weight_decay(1e-2))
      >>> params = jnp.array([1.0, -1.0])
      >>> updates, _ = tx.update(jnp.array([1.0, 1.0]), tx.init(params), params)
      >>> updates  # Adam's first step is -lr * sign(g); the decay adds -rate * params
      Array([-0.011,  0.009], dtype=float32)

    References:
      Loshchilov & Hutter, `Decoupled Weight Decay Regularization
      <https://arxiv.org/abs/1711.05101>`_, 2019.
    """

    def update(updates, state, params, hp):
        needs_params("weight_decay", params)
        step = hp["multiplier"] * hp["rate"]
        decay = lambda u, p, on: u - step * p if on else u
        targets = resolve_mask(mask, params, default=every_leaf)
        return jax.tree.map(decay, updates, params, targets), state

    return stateful_transform(
        "weight_decay",
        _no_state,
        update,
        {"rate": rate, "multiplier": multiplier},
        {"rate": at_least(0.0), "multiplier": at_least(0.0)},
        name=name,
    )


def clip_by_global_norm(
    max_norm: ScalarOrSchedule, *, name: str | None = None
) -> optax.GradientTransformationExtraArgs:
    r"""Rescales the gradient so its global L2 norm is at most ``max_norm`` (as optax's).

    .. math::
      g \leftarrow g \cdot \min\left(1, \frac{c}{\|g\|_2}\right), \qquad c = \text{max\_norm}

    Args:
      max_norm: :math:`c` > 0, a float, JAX scalar or schedule.
      name: optional label for ``jopt.hparams``.

    Returns:
      An optax ``GradientTransformationExtraArgs`` holding ``max_norm`` in its state.

    Examples:
      >>> import jax.numpy as jnp, jopt
      >>> tx = jopt.regularizers.clip_by_global_norm(1.0)
      >>> tx.update(jnp.array([3.0, 4.0]), tx.init(None))[0]
      Array([0.6, 0.8], dtype=float32)

    References:
      Pascanu et al., `On the difficulty of training recurrent neural networks
      <https://arxiv.org/abs/1211.5063>`_, 2013.
    """

    def update(updates, state, params, hp):
        del params
        max_norm_value = hp["max_norm"]
        g_norm = optax.tree.norm(updates)
        trigger = jnp.squeeze(g_norm < max_norm_value)
        clip = lambda t: jax.lax.select(
            trigger, t, (t / g_norm.astype(t.dtype)) * max_norm_value.astype(t.dtype)
        )
        return jax.tree.map(clip, updates), state

    return stateful_transform(
        "clip_by_global_norm",
        _no_state,
        update,
        {"max_norm": max_norm},
        {"max_norm": positive()},
        name=name,
    )
