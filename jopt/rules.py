"""Optimizer update rules as pure functions, and the adapter that makes a rule an optimizer.

A *rule* is a pure function ``rule(grads, state, params, hparams) -> (updates, state)`` with an
``init(params, hparams) -> state``. ``hparams`` is a dict of float arrays (tracers under
``jit``/``vmap``); ``updates`` are what ``optax.apply_updates`` adds to the params, so the rule
applies the learning rate itself. ``from_rule`` turns a rule into an optax
``GradientTransformation`` whose hyperparameters live in its state (see ``jopt.hyperparams``):
readable with ``jopt.hparams``, editable with ``jopt.set_hparams`` without recompiling,
batchable under ``jax.vmap``, and each one a float, a JAX scalar or a schedule.

The optimizers below (``sgd``, ``momentum``, ``adagrad``, ``rmsprop``, ``adam``, ``adamw``,
``lion``) are written that way. Their keyword names, defaults and numbers are optax's, so
swapping ``optax.adam`` for ``jopt.adam`` changes nothing but where the hyperparameters live.
The tree arithmetic is optax's own (``optax.tree.update_moment``, ``bias_correction``, ...).
"""

from __future__ import annotations

import functools
import inspect
import typing
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from jopt.hyperparams import (
    Check,
    EditableSchedule,
    ScalarOrSchedule,
    at_least,
    default_check,
    in_unit_interval,
    positive,
    stateful_transform,
    validate_hyperparam,
)

__all__ = [
    "AdagradState",
    "AdamState",
    "LionState",
    "RmspropState",
    "Rule",
    "TraceState",
    "adagrad",
    "adam",
    "adamw",
    "from_optax",
    "from_rule",
    "lion",
    "momentum",
    "one_of",
    "rmsprop",
    "sgd",
]

Rule = Callable[[Any, Any, Any, dict[str, jax.Array]], tuple[Any, Any]]

_LR = {"learning_rate": at_least(0.0)}
_BETA = in_unit_interval()


def _no_state(params, hparams):
    del params, hparams
    return ()


def from_rule(
    rule: Rule,
    init: Callable[[Any, dict[str, jax.Array]], Any] = _no_state,
    *,
    name: str | None = None,
    kind: str | None = None,
    checks: dict[str, Check] | None = None,
    **hyperparams: ScalarOrSchedule,
) -> optax.GradientTransformationExtraArgs:
    r"""Makes an optimizer from a pure update rule, with its hyperparameters held in state.

    Args:
      rule: ``rule(grads, state, params, hparams) -> (updates, state)``, pure; ``hparams`` holds
        the current value of every keyword hyperparameter given here, as float arrays.
        ``updates`` are added to the params, so a descent rule returns ``-learning_rate * ...``.
      init: ``init(params, hparams) -> state``; default: no state.
      name: optional label for ``jopt.hparams`` when names collide inside a chain.
      kind: short name used in error messages (default: the rule's ``__name__``).
      checks: hyperparameter name -> ``jopt.hyperparams.Check`` range, checked whenever a value
        is concrete.
      **hyperparams: each a float, a JAX scalar (a tracer under ``vmap``) or a schedule
        ``count -> value``.

    Returns:
      An ``optax.GradientTransformationExtraArgs``.

    Examples:
      Quasi-hyperbolic momentum (Ma & Yarats, 2019), which optax lacks, averages the plain
      gradient and an EMA of gradients:

      .. math::
        v_t = \beta v_{t-1} + (1 - \beta) g_t, \qquad
        u_t = -\alpha \left((1 - \nu) g_t + \nu v_t\right).

      >>> import jax, jax.numpy as jnp, optax, jopt
      >>> def qhm_rule(grads, velocity, params, hp):
      ...     velocity = optax.tree.update_moment(grads, velocity, hp["beta"], 1)
      ...     updates = jax.tree.map(
      ...         lambda g, v: -hp["learning_rate"] * ((1 - hp["nu"]) * g + hp["nu"] * v),
      ...         grads, velocity)
      ...     return updates, velocity
      >>> qhm = lambda learning_rate, beta=0.999, nu=0.7: jopt.from_rule(
      ...     qhm_rule, lambda params, hp: optax.tree.zeros_like(params),
      ...     learning_rate=learning_rate, beta=beta, nu=nu)
      >>> tx = qhm(0.1)
      >>> params = jnp.array([1.0, -2.0])
      >>> state = tx.init(params)
      >>> for _ in range(5):
      ...     grads = jax.grad(lambda p: jnp.sum(p**2))(params)
      ...     updates, state = tx.update(grads, state, params)
      ...     params = optax.apply_updates(params, updates)
      >>> print(f"{float(jnp.sum(params**2)):.4f}")
      2.6800
      >>> sorted(jopt.hparams(state))
      ['beta', 'learning_rate', 'nu']

    References:
      Ma & Yarats, `Quasi-hyperbolic momentum and Adam for deep learning
      <https://arxiv.org/abs/1810.06801>`_, 2019.
    """
    return stateful_transform(
        kind or getattr(rule, "__name__", "rule"),
        init,
        rule,
        hyperparams,
        checks,
        name=name,
    )


def _descend(direction: Any, learning_rate: jax.Array) -> Any:
    """-learning_rate * direction, in optax's operand order (``scale_by_learning_rate``)."""
    return jax.tree.map(lambda d: d * (-learning_rate), direction)


# --- SGD and momentum ---------------------------------------------------------------------------


class TraceState(NamedTuple):
    """The velocity of momentum methods."""

    trace: optax.Updates


def _trace_init(dtype=None):
    def init(params, hparams):
        del hparams
        return TraceState(trace=optax.tree.zeros_like(params, dtype=dtype))

    return init


def _trace(grads, velocity, beta, *, nesterov: bool, dampening: bool):
    if dampening:
        step = lambda g, v: (1 - beta) * g + beta * v
    else:
        step = lambda g, v: g + beta * v
    new_velocity = jax.tree.map(step, grads, velocity)
    direction = jax.tree.map(step, grads, new_velocity) if nesterov else new_velocity
    return direction, new_velocity


def sgd_rule(grads, state, params, hparams):
    r"""Plain gradient descent: :math:`u_t = -\alpha g_t`."""
    del params
    return _descend(grads, hparams["learning_rate"]), state


def momentum_rule(grads, state, params, hparams, *, nesterov=False, dampening=False, dtype=None):
    r"""Heavy-ball / Nesterov momentum, optionally in the EMA ("dampened") form.

    .. math::
      v_t = \beta v_{t-1} + c\, g_t, \qquad
      u_t = -\alpha \begin{cases} v_t & \text{classical} \\ \beta v_t + c\, g_t & \text{Nesterov}
      \end{cases}

    with :math:`c = 1` (heavy ball, ``optax.sgd(momentum=beta)``) or :math:`c = 1 - \beta`
    (``dampening=True``, the EMA form).
    """
    del params
    direction, velocity = _trace(
        grads, state.trace, hparams["beta"], nesterov=nesterov, dampening=dampening
    )
    return _descend(direction, hparams["learning_rate"]), TraceState(
        optax.tree.cast(velocity, dtype)
    )


def sgd(
    learning_rate: ScalarOrSchedule,
    momentum: ScalarOrSchedule | None = None,
    nesterov: bool = False,
    accumulator_dtype: Any | None = None,
    *,
    name: str | None = None,
) -> optax.GradientTransformationExtraArgs:
    r"""Stochastic gradient descent, optionally with (Nesterov) momentum, like ``optax.sgd``.

    .. math::
      v_t = \mu v_{t-1} + g_t, \qquad u_t = -\alpha v_t \;(\text{or } -\alpha(g_t + \mu v_t)
      \text{ with Nesterov}); \quad \text{without momentum } u_t = -\alpha g_t.

    Args:
      learning_rate: :math:`\alpha`, a float, JAX scalar or schedule; >= 0.
      momentum: :math:`\mu` in [0, 1), or None for plain SGD.
      nesterov: use Nesterov momentum.
      accumulator_dtype: dtype of the velocity (default: the params' dtype).
      name: optional label for ``jopt.hparams`` (see ``jopt.hyperparams``).

    Returns:
      An optax ``GradientTransformationExtraArgs`` holding ``learning_rate`` (and ``momentum``)
      in its state.

    Examples:
      >>> import jax, jax.numpy as jnp, optax, jopt
      >>> tx, params = jopt.sgd(0.1), jnp.array([1.0, -2.0])
      >>> state = tx.init(params)
      >>> for _ in range(5):
      ...     updates, state = tx.update(jax.grad(lambda p: jnp.sum(p**2))(params), state)
      ...     params = optax.apply_updates(params, updates)
      >>> print(f"{float(jnp.sum(params**2)):.4f}")
      0.5369
    """
    if momentum is None:
        return from_rule(sgd_rule, name=name, kind="sgd", checks=_LR, learning_rate=learning_rate)

    def rule(grads, state, params, hp):
        hp = {"learning_rate": hp["learning_rate"], "beta": hp["momentum"]}
        return momentum_rule(grads, state, params, hp, nesterov=nesterov, dtype=accumulator_dtype)

    return from_rule(
        rule,
        _trace_init(accumulator_dtype),
        name=name,
        kind="sgd",
        checks={**_LR, "momentum": _BETA},
        learning_rate=learning_rate,
        momentum=momentum,
    )


def momentum(
    learning_rate: ScalarOrSchedule,
    beta: ScalarOrSchedule = 0.9,
    nesterov: bool = False,
    dampening: bool = False,
    *,
    name: str | None = None,
) -> optax.GradientTransformationExtraArgs:
    r"""SGD with heavy-ball or Nesterov momentum, in the classical or the EMA form.

    Symbols: :math:`\alpha` = ``learning_rate``, :math:`\beta` = ``beta``.

    .. math::
      v_t &= \beta v_{t-1} + c\, g_t, \qquad c = \begin{cases} 1 & \text{heavy ball} \\
      1 - \beta & \text{dampening=True (EMA form)} \end{cases} \\
      u_t &= -\alpha v_t \quad\text{or, with Nesterov,}\quad u_t = -\alpha(\beta v_t + c\, g_t)

    The heavy-ball form equals ``optax.sgd(learning_rate, momentum=beta, nesterov=...)``; its
    steady-state step is :math:`\alpha/(1-\beta)` times the gradient, which is why the good
    learning rates of a learning-rate x momentum sweep lie on the diagonal
    :math:`\alpha/(1-\beta)=` const. The EMA form removes that gain (steady-state step
    :math:`\alpha g`), so the good band is flat in :math:`\beta`.

    Args:
      learning_rate: :math:`\alpha` >= 0, a float, JAX scalar or schedule.
      beta: :math:`\beta` in [0, 1).
      nesterov: Nesterov's look-ahead form (Sutskever et al., 2013).
      dampening: use the EMA form :math:`v_t = \beta v_{t-1} + (1-\beta) g_t`.
      name: optional label for ``jopt.hparams``.

    Returns:
      An optax ``GradientTransformationExtraArgs``.

    Examples:
      >>> import jax, jax.numpy as jnp, optax, jopt
      >>> tx, params = jopt.momentum(0.05, beta=0.9), jnp.array([1.0, -2.0])
      >>> state = tx.init(params)
      >>> for _ in range(5):
      ...     updates, state = tx.update(jax.grad(lambda p: jnp.sum(p**2))(params), state)
      ...     params = optax.apply_updates(params, updates)
      >>> print(f"{float(jnp.sum(params**2)):.4f}")
      0.0043

    References:
      Polyak, `Some methods of speeding up the convergence of iteration methods
      <https://doi.org/10.1016/0041-5553(64)90137-5>`_, 1964.
      Sutskever et al., `On the importance of initialization and momentum in deep learning
      <https://proceedings.mlr.press/v28/sutskever13.html>`_, 2013.
    """
    rule = functools.partial(momentum_rule, nesterov=nesterov, dampening=dampening)
    return from_rule(
        rule,
        _trace_init(),
        name=name,
        kind="momentum",
        checks={**_LR, "beta": _BETA},
        learning_rate=learning_rate,
        beta=beta,
    )


# --- AdaGrad and RMSProp ------------------------------------------------------------------------


class AdagradState(NamedTuple):
    sum_of_squares: optax.Updates


def adagrad_rule(grads, state, params, hparams):
    r"""AdaGrad: :math:`S_t = S_{t-1} + g_t^2,\; u_t = -\alpha g_t / \sqrt{S_t + \epsilon}`."""
    del params
    eps = hparams["eps"]
    sum_of_squares = jax.tree.map(lambda g, t: jnp.square(g) + t, grads, state.sum_of_squares)
    inv_sqrt = jax.tree.map(lambda t: jnp.where(t > 0, jax.lax.rsqrt(t + eps), 0.0), sum_of_squares)
    direction = optax.tree.mul(inv_sqrt, grads)
    return _descend(direction, hparams["learning_rate"]), AdagradState(sum_of_squares)


def adagrad(
    learning_rate: ScalarOrSchedule,
    initial_accumulator_value: ScalarOrSchedule = 0.1,
    eps: ScalarOrSchedule = 1e-7,
    *,
    name: str | None = None,
) -> optax.GradientTransformationExtraArgs:
    r"""The AdaGrad optimizer, as ``optax.adagrad``.

    Symbols: :math:`\alpha` = ``learning_rate``, :math:`S_0` = ``initial_accumulator_value``,
    :math:`\epsilon` = ``eps``.

    .. math::
      S_t = S_{t-1} + g_t^2, \qquad u_t = -\alpha\, g_t / \sqrt{S_t + \epsilon}.

    Args:
      learning_rate: :math:`\alpha` >= 0.
      initial_accumulator_value: :math:`S_0` >= 0 (read at ``init`` only).
      eps: :math:`\epsilon` > 0.
      name: optional label for ``jopt.hparams``.

    Returns:
      An optax ``GradientTransformationExtraArgs``.

    Examples:
      >>> import jax, jax.numpy as jnp, optax, jopt
      >>> tx, params = jopt.adagrad(0.5), jnp.array([1.0, -2.0])
      >>> state = tx.init(params)
      >>> for _ in range(5):
      ...     updates, state = tx.update(jax.grad(lambda p: jnp.sum(p**2))(params), state)
      ...     params = optax.apply_updates(params, updates)
      >>> print(f"{float(jnp.sum(params**2)):.4f}")
      0.4719

    References:
      Duchi et al., `Adaptive Subgradient Methods for Online Learning and Stochastic
      Optimization <https://jmlr.org/papers/v12/duchi11a.html>`_, 2011.
    """

    def init(params, hp):
        return AdagradState(optax.tree.full_like(params, hp["initial_accumulator_value"]))

    return from_rule(
        adagrad_rule,
        init,
        name=name,
        kind="adagrad",
        checks={**_LR, "initial_accumulator_value": at_least(0.0), "eps": positive()},
        learning_rate=learning_rate,
        initial_accumulator_value=initial_accumulator_value,
        eps=eps,
    )


class RmspropState(NamedTuple):
    count: jax.Array
    mu: optax.Updates  # first moment (centered only), else ()
    nu: optax.Updates  # second moment
    trace: optax.Updates  # momentum velocity, else ()


def rmsprop_rule(
    grads,
    state,
    params,
    hparams,
    *,
    centered=False,
    eps_in_sqrt=True,
    bias_correction=False,
    nesterov=False,
    use_momentum=False,
):
    r"""RMSProp, optionally centered, bias-corrected and with momentum (optax's order).

    .. math::
      \nu_t = \rho \nu_{t-1} + (1-\rho) g_t^2, \quad
      s_t = \frac{g_t}{\sqrt{\nu_t - [\mu_t^2] + \epsilon}}, \quad
      u_t = \text{trace}_\mu(-\alpha s_t)
    """
    del params
    decay, eps = hparams["decay"], hparams["eps"]
    nu = optax.tree.update_moment_per_elem_norm(grads, state.nu, decay, 2)
    mu = optax.tree.update_moment(grads, state.mu, decay, 1) if centered else state.mu
    count = optax.safe_increment(state.count)
    nu_hat = optax.tree.bias_correction(nu, decay, count) if bias_correction else nu
    mu_hat = optax.tree.bias_correction(mu, decay, count) if bias_correction and centered else mu
    if centered:
        # The variance estimate is clamped at 0: with bias correction it is exactly 0 after one
        # step, and float32 rounding can make it negative (a NaN in optax's version).
        variance = jax.tree.map(lambda m, n: jnp.maximum(n - jnp.square(m), 0.0), mu_hat, nu_hat)
        if eps_in_sqrt:
            scaling = jax.tree.map(lambda v: jax.lax.rsqrt(v + eps), variance)
        else:
            scaling = jax.tree.map(lambda v: 1 / (jnp.sqrt(v) + eps), variance)
    elif eps_in_sqrt:
        scaling = jax.tree.map(lambda n: jax.lax.rsqrt(n + eps), nu_hat)
    else:
        scaling = jax.tree.map(lambda n: 1 / (jnp.sqrt(n) + eps), nu_hat)
    updates = _descend(jax.tree.map(lambda s, g: s * g, scaling, grads), hparams["learning_rate"])
    trace = state.trace
    if use_momentum:
        updates, trace = _trace(
            updates, state.trace, hparams["momentum"], nesterov=nesterov, dampening=False
        )
    return updates, RmspropState(count=count, mu=mu, nu=nu, trace=trace)


def rmsprop(
    learning_rate: ScalarOrSchedule,
    decay: ScalarOrSchedule = 0.9,
    eps: ScalarOrSchedule = 1e-8,
    initial_scale: ScalarOrSchedule = 0.0,
    eps_in_sqrt: bool = True,
    centered: bool = False,
    momentum: ScalarOrSchedule | None = None,
    nesterov: bool = False,
    bias_correction: bool = False,
    *,
    name: str | None = None,
) -> optax.GradientTransformationExtraArgs:
    r"""The RMSProp optimizer, as ``optax.rmsprop`` (same arguments, same numbers).

    Symbols: :math:`\alpha` = ``learning_rate``, :math:`\rho` = ``decay``, :math:`\epsilon` =
    ``eps``, :math:`\mu` = ``momentum``.

    .. math::
      \nu_t &= \rho\,\nu_{t-1} + (1-\rho)\, g_t^2 \qquad (\nu_0 = \text{initial\_scale}) \\
      m_t &= \rho\, m_{t-1} + (1-\rho)\, g_t \qquad (\text{centered only}) \\
      s_t &= -\alpha\, g_t / \sqrt{\nu_t - m_t^2 + \epsilon} \\
      u_t &= s_t \text{ or, with momentum, } v_t = s_t + \mu v_{t-1},\; u_t = v_t

    ``eps_in_sqrt=False`` uses :math:`1/(\sqrt{\cdot} + \epsilon)`; ``bias_correction`` divides
    the moments by :math:`1-\rho^t`.

    Args:
      learning_rate: :math:`\alpha` >= 0.
      decay: :math:`\rho` in [0, 1).
      eps: :math:`\epsilon` > 0.
      initial_scale: :math:`\nu_0` >= 0 (read at ``init`` only).
      eps_in_sqrt: where :math:`\epsilon` goes (static).
      centered: subtract the squared mean (static).
      momentum: :math:`\mu` in [0, 1), or None.
      nesterov: Nesterov momentum (static).
      bias_correction: debias the moments (static).
      name: optional label for ``jopt.hparams``.

    Returns:
      An optax ``GradientTransformationExtraArgs``.

    Examples:
      >>> import jax, jax.numpy as jnp, optax, jopt
      >>> tx, params = jopt.rmsprop(0.1), jnp.array([1.0, -2.0])
      >>> state = tx.init(params)
      >>> for _ in range(5):
      ...     updates, state = tx.update(jax.grad(lambda p: jnp.sum(p**2))(params), state)
      ...     params = optax.apply_updates(params, updates)
      >>> print(f"{float(jnp.sum(params**2)):.4f}")
      1.1402

    References:
      Hinton, `Lecture 6.5 of Neural Networks for Machine Learning
      <https://www.cs.toronto.edu/~tijmen/csc321/slides/lecture_slides_lec6.pdf>`_, 2012.
    """
    use_momentum = momentum is not None
    rule = functools.partial(
        rmsprop_rule,
        centered=centered,
        eps_in_sqrt=eps_in_sqrt,
        bias_correction=bias_correction,
        nesterov=nesterov,
        use_momentum=use_momentum,
    )

    def init(params, hp):
        return RmspropState(
            count=jnp.zeros([], jnp.int32),
            mu=optax.tree.zeros_like(params) if centered else (),
            nu=optax.tree.full_like(params, hp["initial_scale"]),
            trace=optax.tree.zeros_like(params) if use_momentum else (),
        )

    hyperparams = {"learning_rate": learning_rate, "decay": decay, "eps": eps}
    hyperparams["initial_scale"] = initial_scale
    if use_momentum:
        hyperparams["momentum"] = momentum
    return from_rule(
        rule,
        init,
        name=name,
        kind="rmsprop",
        checks={
            **_LR,
            "decay": _BETA,
            "eps": positive(),
            "initial_scale": at_least(0.0),
            "momentum": _BETA,
        },
        **hyperparams,
    )


# --- Adam, AdamW, Lion --------------------------------------------------------------------------


class AdamState(NamedTuple):
    count: jax.Array  # shape=(), dtype=jnp.int32
    mu: optax.Updates
    nu: optax.Updates


def _adam_init(mu_dtype):
    def init(params, hparams):
        del hparams
        return AdamState(
            count=jnp.zeros([], jnp.int32),
            mu=optax.tree.zeros_like(params, dtype=mu_dtype),
            nu=optax.tree.zeros_like(params),
        )

    return init


def _adam_direction(grads, state, hparams, *, nesterov, mu_dtype):
    b1, b2, eps, eps_root = hparams["b1"], hparams["b2"], hparams["eps"], hparams["eps_root"]
    mu = optax.tree.update_moment(grads, state.mu, b1, 1)
    nu = optax.tree.update_moment_per_elem_norm(grads, state.nu, b2, 2)
    count = optax.safe_increment(state.count)
    if nesterov:
        mu_hat = jax.tree.map(
            lambda m, g: b1 * m + (1 - b1) * g,
            optax.tree.bias_correction(mu, b1, optax.safe_increment(count)),
            optax.tree.bias_correction(grads, b1, count),
        )
    else:
        mu_hat = optax.tree.bias_correction(mu, b1, count)
    nu_hat = optax.tree.bias_correction(nu, b2, count)
    direction = jax.tree.map(lambda m, v: m / (jnp.sqrt(v + eps_root) + eps), mu_hat, nu_hat)
    new_state = AdamState(
        count=count, mu=optax.tree.cast(mu, mu_dtype), nu=optax.tree.cast_like(nu, state.nu)
    )
    return direction, new_state


def adam_rule(grads, state, params, hparams, *, nesterov=False, mu_dtype=None):
    r"""Adam: bias-corrected first and second moments (Kingma & Ba, 2015).

    .. math::
      m_t = \beta_1 m_{t-1} + (1-\beta_1) g_t,\; \nu_t = \beta_2 \nu_{t-1} + (1-\beta_2) g_t^2,\;
      u_t = -\alpha\, \hat m_t / (\sqrt{\hat \nu_t + \bar\epsilon} + \epsilon)
    """
    del params
    direction, state = _adam_direction(grads, state, hparams, nesterov=nesterov, mu_dtype=mu_dtype)
    return _descend(direction, hparams["learning_rate"]), state


_ADAM_CHECKS = {
    **_LR,
    "b1": _BETA,
    "b2": _BETA,
    "eps": positive(),
    "eps_root": at_least(0.0),
    "weight_decay": at_least(0.0),
}


def adam(
    learning_rate: ScalarOrSchedule,
    b1: ScalarOrSchedule = 0.9,
    b2: ScalarOrSchedule = 0.999,
    eps: ScalarOrSchedule = 1e-8,
    eps_root: ScalarOrSchedule = 0.0,
    mu_dtype: Any | None = None,
    *,
    nesterov: bool = False,
    name: str | None = None,
) -> optax.GradientTransformationExtraArgs:
    r"""The Adam optimizer, as ``optax.adam`` (same arguments, same numbers).

    Symbols: :math:`\alpha` = ``learning_rate``, :math:`\beta_1, \beta_2` = ``b1``, ``b2``,
    :math:`\epsilon` = ``eps``, :math:`\bar\epsilon` = ``eps_root``.

    .. math::
      m_t &= \beta_1 m_{t-1} + (1-\beta_1)\, g_t \\
      \nu_t &= \beta_2 \nu_{t-1} + (1-\beta_2)\, g_t^2 \\
      \hat m_t &= m_t / (1-\beta_1^t), \qquad \hat\nu_t = \nu_t / (1-\beta_2^t) \\
      u_t &= -\alpha\, \hat m_t / \left(\sqrt{\hat\nu_t + \bar\epsilon} + \epsilon\right)

    With ``nesterov=True``, :math:`\hat m_t` is replaced by Dozat's NAdam estimate, as in optax.

    Args:
      learning_rate: :math:`\alpha` >= 0, a float, JAX scalar or schedule.
      b1: :math:`\beta_1` in [0, 1).
      b2: :math:`\beta_2` in [0, 1).
      eps: :math:`\epsilon` > 0.
      eps_root: :math:`\bar\epsilon` >= 0.
      mu_dtype: dtype of the first moment (static).
      nesterov: NAdam (static).
      name: optional label for ``jopt.hparams``.

    Returns:
      An optax ``GradientTransformationExtraArgs`` holding ``learning_rate``, ``b1``, ``b2``,
      ``eps`` and ``eps_root`` in its state.

    Examples:
      >>> import jax, jax.numpy as jnp, optax, jopt
      >>> tx, params = jopt.adam(0.1), jnp.array([1.0, -2.0])
      >>> state = tx.init(params)
      >>> for _ in range(5):
      ...     updates, state = tx.update(jax.grad(lambda p: jnp.sum(p**2))(params), state)
      ...     params = optax.apply_updates(params, updates)
      >>> print(f"{float(jnp.sum(params**2)):.4f}")
      2.5169
      >>> state = jopt.set_hparams(state, learning_rate=0.01)  # no recompile of a jitted step

    References:
      Kingma & Ba, `Adam: A Method for Stochastic Optimization
      <https://arxiv.org/abs/1412.6980>`_, 2015.
    """
    rule = functools.partial(adam_rule, nesterov=nesterov, mu_dtype=mu_dtype)
    return from_rule(
        rule,
        _adam_init(mu_dtype),
        name=name,
        kind="adam",
        checks=_ADAM_CHECKS,
        learning_rate=learning_rate,
        b1=b1,
        b2=b2,
        eps=eps,
        eps_root=eps_root,
    )


def _decay_mask(mask, params):
    if mask is None:
        return jax.tree.map(lambda _: True, params)
    return mask(params) if callable(mask) else mask


def _add_decayed_weights(direction, params, weight_decay, mask):
    if params is None:
        raise ValueError("weight decay needs params: call tx.update(grads, state, params).")
    return jax.tree.map(
        lambda d, p, keep: d + weight_decay * p if keep else d,
        direction,
        params,
        _decay_mask(mask, params),
    )


def adamw_rule(grads, state, params, hparams, *, nesterov=False, mu_dtype=None, mask=None):
    r"""AdamW in optax's form: :math:`u_t = -\alpha(\text{adam}_t + \lambda \theta_{t-1})`."""
    direction, state = _adam_direction(grads, state, hparams, nesterov=nesterov, mu_dtype=mu_dtype)
    direction = _add_decayed_weights(direction, params, hparams["weight_decay"], mask)
    return _descend(direction, hparams["learning_rate"]), state


def adamw(
    learning_rate: ScalarOrSchedule,
    b1: ScalarOrSchedule = 0.9,
    b2: ScalarOrSchedule = 0.999,
    eps: ScalarOrSchedule = 1e-8,
    eps_root: ScalarOrSchedule = 0.0,
    mu_dtype: Any | None = None,
    weight_decay: ScalarOrSchedule = 1e-4,
    mask: Any | Callable[[optax.Params], Any] | None = None,
    *,
    nesterov: bool = False,
    name: str | None = None,
) -> optax.GradientTransformationExtraArgs:
    r"""AdamW in optax's (and PyTorch's) form: the decay is multiplied by the learning rate.

    .. math::
      u_t = -\alpha \left( \hat m_t / (\sqrt{\hat\nu_t + \bar\epsilon} + \epsilon)
      + \lambda\, \theta_{t-1} \right)

    with :math:`\hat m_t, \hat\nu_t` as in :func:`adam` and :math:`\lambda` = ``weight_decay``.

    .. warning::
      Loshchilov & Hutter's AdamW decays by :math:`\eta_t \lambda \theta` where :math:`\eta_t`
      is only the *schedule multiplier*, not the learning rate: their decay is decoupled from
      :math:`\alpha`. This function (like ``optax.adamw`` and ``torch.optim.AdamW``) decays by
      :math:`\alpha \lambda \theta`, so in a learning-rate x weight-decay sweep the good
      :math:`\lambda` moves as :math:`1/\alpha`. For the paper's form use
      ``optax.chain(jopt.adam(lr), jopt.regularizers.weight_decay(rate))``.

    Args:
      learning_rate, b1, b2, eps, eps_root, mu_dtype, nesterov: as in :func:`adam`.
      weight_decay: :math:`\lambda` >= 0.
      mask: a pytree of bools like the params, or a callable ``params -> that tree``; True where
        to decay (static).
      name: optional label for ``jopt.hparams``.

    Returns:
      An optax ``GradientTransformationExtraArgs``.

    Examples:
      >>> import jax, jax.numpy as jnp, optax, jopt
      >>> tx, params = jopt.adamw(0.1, weight_decay=0.1), jnp.array([1.0, -2.0])
      >>> state = tx.init(params)
      >>> for _ in range(5):
      ...     updates, state = tx.update(jax.grad(lambda p: jnp.sum(p**2))(params), state, params)
      ...     params = optax.apply_updates(params, updates)
      >>> print(f"{float(jnp.sum(params**2)):.4f}")
      2.2247

    References:
      Loshchilov & Hutter, `Decoupled Weight Decay Regularization
      <https://arxiv.org/abs/1711.05101>`_, 2019.
    """
    rule = functools.partial(adamw_rule, nesterov=nesterov, mu_dtype=mu_dtype, mask=mask)
    return from_rule(
        rule,
        _adam_init(mu_dtype),
        name=name,
        kind="adamw",
        checks=_ADAM_CHECKS,
        learning_rate=learning_rate,
        b1=b1,
        b2=b2,
        eps=eps,
        eps_root=eps_root,
        weight_decay=weight_decay,
    )


class LionState(NamedTuple):
    count: jax.Array
    mu: optax.Updates


def lion_rule(grads, state, params, hparams, *, mu_dtype=None, mask=None):
    r"""Lion: :math:`u_t = -\alpha(\mathrm{sign}(\beta_1 m + (1-\beta_1) g) + \lambda\theta)`."""
    b1, b2 = hparams["b1"], hparams["b2"]
    direction = jax.tree.map(lambda g, m: jnp.sign((1.0 - b1) * g + b1 * m), grads, state.mu)
    mu = optax.tree.cast(optax.tree.update_moment(grads, state.mu, b2, 1), mu_dtype)
    direction = _add_decayed_weights(direction, params, hparams["weight_decay"], mask)
    new_state = LionState(count=optax.safe_increment(state.count), mu=mu)
    return _descend(direction, hparams["learning_rate"]), new_state


def lion(
    learning_rate: ScalarOrSchedule,
    b1: ScalarOrSchedule = 0.9,
    b2: ScalarOrSchedule = 0.99,
    mu_dtype: Any | None = None,
    weight_decay: ScalarOrSchedule = 1e-3,
    mask: Any | Callable[[optax.Params], Any] | None = None,
    *,
    name: str | None = None,
) -> optax.GradientTransformationExtraArgs:
    r"""The Lion optimizer, as ``optax.lion`` (sign of an interpolated momentum).

    Symbols: :math:`\alpha` = ``learning_rate``, :math:`\beta_1, \beta_2` = ``b1``, ``b2``,
    :math:`\lambda` = ``weight_decay``.

    .. math::
      c_t &= \operatorname{sign}\left(\beta_1 m_{t-1} + (1-\beta_1) g_t\right) \\
      m_t &= \beta_2 m_{t-1} + (1-\beta_2) g_t \\
      u_t &= -\alpha\,(c_t + \lambda \theta_{t-1})

    Every coordinate moves by exactly :math:`\alpha` (plus decay), so Lion's good learning rate
    is 3-10x smaller than AdamW's and its :math:`\lambda` correspondingly larger (Chen et al.).

    Args:
      learning_rate: :math:`\alpha` >= 0.
      b1: :math:`\beta_1` in [0, 1).
      b2: :math:`\beta_2` in [0, 1).
      mu_dtype: dtype of the momentum (static).
      weight_decay: :math:`\lambda` >= 0, multiplied by the learning rate as in optax.
      mask: where to decay, as in :func:`adamw`.
      name: optional label for ``jopt.hparams``.

    Returns:
      An optax ``GradientTransformationExtraArgs``.

    Examples:
      >>> import jax, jax.numpy as jnp, optax, jopt
      >>> tx, params = jopt.lion(0.1), jnp.array([1.0, -2.0])
      >>> state = tx.init(params)
      >>> for _ in range(5):
      ...     updates, state = tx.update(jax.grad(lambda p: jnp.sum(p**2))(params), state, params)
      ...     params = optax.apply_updates(params, updates)
      >>> print(f"{float(jnp.sum(params**2)):.4f}")
      2.4969

    References:
      Chen et al., `Symbolic Discovery of Optimization Algorithms
      <https://arxiv.org/abs/2302.06675>`_, 2023.
    """

    def init(params, hp):
        del hp
        return LionState(
            count=jnp.zeros([], jnp.int32), mu=optax.tree.zeros_like(params, dtype=mu_dtype)
        )

    rule = functools.partial(lion_rule, mu_dtype=mu_dtype, mask=mask)
    return from_rule(
        rule,
        init,
        name=name,
        kind="lion",
        checks={**_LR, "b1": _BETA, "b2": _BETA, "weight_decay": at_least(0.0)},
        learning_rate=learning_rate,
        b1=b1,
        b2=b2,
        weight_decay=weight_decay,
    )


def one_of(index: int | jax.Array, txs: Sequence[optax.GradientTransformation]):
    r"""The updates of ``txs[index]``, with ``index`` possibly traced: optimizers as data.

    Each transform in ``txs`` keeps its own state; the chosen one gets the gradients:

    .. math::

      k = \mathrm{index}, \qquad
      (u_t, S^{(k)}_t) = \mathrm{tx}_k.\mathrm{update}(g_t, S^{(k)}_{t-1}, \theta_{t-1}), \qquad
      S^{(j)}_t = S^{(j)}_{t-1} \ (j \ne k)

    Only the chosen transform's state advances (``lax.switch``); under ``vmap`` with a
    batched ``index`` every branch runs and each member keeps its own, so a sweep over
    optimizer families compiles ONE program instead of one per optimizer. On a CPU, where a
    compile of a training loop takes seconds, that is usually the faster trade: the discarded
    updates cost a few elementwise operations per parameter next to the forward and backward
    pass.

    Args:
      index: which transform's updates to return, an int in ``[0, len(txs))`` or a traced
        integer (a float is rounded, so a sweep hyperparameter can carry it).
      txs: the candidate transforms, e.g. ``[jopt.sgd(0.1), jopt.adam(1e-3)]``.

    Returns:
      An ``optax.GradientTransformation`` whose state is the tuple of the inner states
      (``jopt.hparams`` finds each one's hyperparameters, keyed by position).

    Examples:
      >>> import jax, jax.numpy as jnp, jopt
      >>> txs = [jopt.sgd(0.1), jopt.adam(0.1)]
      >>> def final_loss(index):
      ...     tx = jopt.rules.one_of(index, txs)
      ...     x = jnp.array([1.0, -2.0]); state = tx.init(x)
      ...     for _ in range(5):
      ...         updates, state = tx.update(2 * x, state, x); x = x + updates
      ...     return jnp.sum(x**2)
      >>> losses = jax.vmap(final_loss)(jnp.arange(2))  # both optimizers, one program
      >>> bool(jnp.allclose(losses[1], final_loss(1)))
      True
    """
    txs = tuple(txs)
    if not txs or not all(isinstance(tx, optax.GradientTransformation) for tx in txs):
        raise TypeError(
            f"one_of: txs must be a non-empty sequence of optax transforms, got {txs!r}"
        )
    if isinstance(index, (int, np.integer)) and not isinstance(index, bool):
        if not 0 <= index < len(txs):
            raise ValueError(f"one_of: index must lie in [0, {len(txs)}), got {index}")

    def init(params):
        return tuple(tx.init(params) for tx in txs)

    def branch(j):
        def run(updates, state, params):
            new_updates, new_state = txs[j].update(updates, state[j], params)
            return new_updates, (*state[:j], new_state, *state[j + 1 :])

        return run

    def update(updates, state, params=None):
        if isinstance(index, (int, np.integer)):
            return branch(int(index))(updates, state, params)
        k = jnp.clip(jnp.round(jnp.asarray(index)).astype(jnp.int32), 0, len(txs) - 1)
        return jax.lax.switch(k, [branch(j) for j in range(len(txs))], updates, state, params)

    return optax.GradientTransformation(init, update)


def _is_number(value: Any) -> bool:
    if isinstance(value, bool):
        return False
    if isinstance(value, (int, float, np.ndarray, np.generic, jax.Array)):
        return np.issubdtype(
            np.asarray(value).dtype if not isinstance(value, jax.Array) else value.dtype, np.number
        )
    return False


def _int_only(annotation: Any) -> bool:
    """Whether a parameter's annotation admits integers only: ``int`` or ``Optional[int]``."""
    if annotation is int:
        return True
    return typing.get_origin(annotation) is typing.Union and set(typing.get_args(annotation)) == {
        int,
        type(None),
    }


def _is_static(name: str, value: Any, default: Any, annotation: Any = None) -> bool:
    """Whether ``inject_hyperparams`` must pass ``value`` through untouched: flags, None,
    dtypes, tuples, integer counts and sizes, and callables that are not schedules (masks, and
    any keyword whose default is itself a callable or a flag)."""
    if type(value) is int and (type(default) is int or _int_only(annotation)):
        # An integer default or annotation is a count or a size (adafactor's
        # min_dim_size_to_factor, muon's ns_steps, schedule_free_adamw's warmup_steps) that the
        # factory may use in Python control flow, which a traced value breaks.
        return True
    if _is_number(value):
        return False
    if not callable(value) or isinstance(value, (type, np.dtype)):
        return True
    if name == "mask" or name.endswith("_mask"):
        return True
    return isinstance(default, bool) or (
        callable(default) and default is not inspect.Parameter.empty
    )


def from_optax(
    factory: Callable[..., optax.GradientTransformation], **hyperparams: Any
) -> optax.GradientTransformationExtraArgs:
    """Makes any optax optimizer factory keep its numeric hyperparameters in its state.

    The result is ``optax.inject_hyperparams(factory)(**hyperparams)``, so its updates and its
    state are optax's own, bit for bit; ``jopt.hparams``, ``jopt.set_hparams`` and
    ``jopt.scale_hparams`` read and edit that state (``state.hyperparams``), wherever it sits
    in a pytree. What jopt adds:

    * range checks at construction, from the keyword names: ``learning_rate`` >= 0; ``b1``,
      ``b2``, ``beta``, ``momentum``, ``decay`` ... in [0, 1); ``eps``, ``weight_decay`` >= 0;
      any other number finite (``jopt.hyperparams.default_check``). Traced values (a sweep's
      hyperparameters) are recorded for ``jopt.hyperparams.recording_checks`` instead;
    * keyword arguments that are neither numbers nor schedules (``mask=``, ``nesterov=True``,
      a dtype, a tuple, a callable ``*_mask``, an integer where the default is an integer, such
      as ``ns_steps``) pass through as static arguments, where
      ``inject_hyperparams`` would take a callable mask for a schedule;
    * a schedule can be pinned by ``set_hparams`` or scaled by ``scale_hparams`` (optax would
      recompute it every step); until then its values are the schedule's, bit for bit.

    Args:
      factory: an optax optimizer factory, e.g. ``optax.adamw``, ``optax.lamb`` or
        ``optax.contrib.muon``.
      **hyperparams: keyword arguments of ``factory``; each number may be a float, a JAX scalar
        (a tracer under ``jit``/``vmap``) or a schedule ``count -> value``.

    Returns:
      An ``optax.GradientTransformationExtraArgs`` whose state is an
      ``optax.InjectStatefulHyperparamsState``.

    Raises:
      ValueError: for a concrete hyperparameter outside its range.
      TypeError: for a keyword that ``factory`` does not take.

    Examples:
      >>> import jax, jax.numpy as jnp, optax, jopt
      >>> tx = jopt.from_optax(optax.adamw, learning_rate=0.1, weight_decay=1e-4)
      >>> params = jnp.array([1.0, -2.0])
      >>> state = tx.init(params)
      >>> for _ in range(5):
      ...     updates, state = tx.update(jax.grad(lambda p: jnp.sum(p**2))(params), state, params)
      ...     params = optax.apply_updates(params, updates)
      >>> print(f"{float(jnp.sum(params**2)):.4f}")
      2.5166
      >>> round(float(jopt.hparams(state)["learning_rate"]), 6)
      0.1
      >>> state = jopt.set_hparams(state, learning_rate=0.01)  # no recompile of a jitted step
      >>> jopt.from_optax(optax.adam, learning_rate=0.1, b1=1.5)
      Traceback (most recent call last):
      ...
      ValueError: adam: b1 must be in [0, 1), got 1.5.

    References:
      DeepMind et al., `The DeepMind JAX Ecosystem <http://github.com/google-deepmind>`_, 2020
      (``optax.inject_hyperparams``).
    """
    kind = getattr(factory, "__name__", "optimizer")
    parameters = inspect.signature(factory).parameters
    takes_any = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters.values())
    for key in hyperparams:
        if key not in parameters and not takes_any:
            raise TypeError(
                f"{kind}: unexpected keyword argument {key!r}; it takes {list(parameters)}."
            )
    static, given = set(), {}
    for key, param in parameters.items():
        if param.kind in (inspect.Parameter.VAR_KEYWORD, inspect.Parameter.VAR_POSITIONAL):
            continue
        value = hyperparams.get(key, param.default)
        if value is inspect.Parameter.empty:
            continue
        if _is_static(key, value, param.default, param.annotation):
            static.add(key)
            if key in hyperparams:
                given[key] = value
            continue
        if key in hyperparams:
            # Only given values are checked: a factory's own defaults are its author's choice
            # (optimistic_gradient_descent's beta=1.0 is not a decay).
            validate_hyperparam(kind, key, value, default_check(key))
            # A plain callable would be wrapped by inject_hyperparams anyway; ours can also be
            # pinned and scaled by set_hparams / scale_hparams.
            given[key] = (
                EditableSchedule(value) if callable(value) and not _is_number(value) else value
            )
    return optax.inject_hyperparams(factory, static_args=static)(**given)
