"""Schedules whose shape can be swept, and reduce-on-plateau with its settings in the state.

Every jopt hyperparameter accepts a schedule ``count -> value``; optax's schedules work as they
are. What optax lacks, and this module adds:

* **Traceable shapes.** optax checks ``transition_steps``, ``decay_steps`` and ``peak_value``
  with Python ``if``s, so they cannot be tracers, and a sweep cannot batch over "warmup in
  {0, 500, 2000}". The schedules here have optax's names, arguments and numbers, but every
  argument (warmup length, decay steps, boundaries, values) may be a traced scalar::

      def run(warmup):  # vmapped over warmup lengths: one compiled program
          lr = jopt.schedules.warmup_cosine_decay_schedule(0.0, 1e-2, warmup, 2000)
          return train(jopt.adam(lr))

  Concrete bad values (negative step counts) still raise ``ValueError`` at construction.
* **reduce_on_plateau**, chained after the optimizer as optax's, with its settings (factor,
  patience, ...) as hyperparameters in the state, per member under ``vmap``, and correct for
  negative metrics; or wrapping an optimizer to lower a hyperparameter *held in its state*.

``constant_schedule`` and ``join_schedules`` are optax's own (already traceable).
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
from optax.schedules import constant_schedule, join_schedules

from jopt.hyperparams import (
    Check,
    ScalarOrSchedule,
    at_least,
    hparams,
    in_unit_interval,
    is_concrete,
    scale_hparams,
    stateful_transform,
)

__all__ = [
    "PlateauState",
    "ReduceOnPlateauState",
    "constant_schedule",
    "cosine_decay_schedule",
    "exponential_decay",
    "inverse_sqrt_schedule",
    "join_schedules",
    "linear_schedule",
    "piecewise_constant",
    "polynomial_schedule",
    "reduce_on_plateau",
    "warmup_constant_schedule",
    "warmup_cosine_decay_schedule",
]

Schedule = optax.Schedule


def _nonnegative(name: str, value: Any) -> None:
    if is_concrete(value) and not np.all(np.asarray(value) >= 0):
        raise ValueError(f"{name} must be >= 0, got {np.asarray(value).tolist()!r}.")


def _f(x: Any) -> jax.Array:
    return jnp.asarray(x, dtype=jnp.result_type(float))


def polynomial_schedule(
    init_value: Any, end_value: Any, power: Any, transition_steps: Any, transition_begin: Any = 0
) -> Schedule:
    r"""Polynomial decay from ``init_value`` to ``end_value``, as optax's, with traceable steps.

    .. math::
      v(t) = (v_0 - v_1)\left(1 - \frac{\min(\max(t - t_0, 0), T)}{T}\right)^p + v_1

    ``transition_steps`` :math:`T = 0` gives the constant ``init_value`` (as in optax). From
    :math:`t_0 + T` on the value is exactly ``end_value``, for any ``power`` and under ``jit``
    (optax's is NaN there for a fractional ``power`` when :math:`T` is, e.g., 10).

    Args:
      init_value: value up to ``transition_begin``.
      end_value: value from ``transition_begin + transition_steps`` on.
      power: exponent :math:`p` of the transition.
      transition_steps: length :math:`T` of the transition (>= 0).
      transition_begin: step :math:`t_0` at which the transition starts (>= 0).

    Returns:
      A schedule ``count -> value``.

    Examples:
      >>> import jopt
      >>> [float(jopt.schedules.polynomial_schedule(1.0, 0.0, 2, 10)(t)) for t in (0, 5, 10)]
      [1.0, 0.25, 0.0]
    """
    _nonnegative("transition_steps", transition_steps)
    _nonnegative("transition_begin", transition_begin)

    def schedule(count):
        steps = _f(transition_steps)
        elapsed = jnp.clip(count - _f(transition_begin), 0.0, steps)
        # Under jit XLA may divide as a multiplication by 1/T, so 1 - T/T can round to a tiny
        # negative number (a NaN to a fractional power) or a tiny positive one (a value just off
        # end_value): clip into [0, 1], and make the end of the transition exactly 0.
        frac = jnp.clip(1 - elapsed / jnp.maximum(steps, 1.0), 0.0, 1.0)
        frac = jnp.where((steps > 0) & (elapsed >= steps), 0.0, frac)
        return (init_value - end_value) * (frac**power) + end_value

    return schedule


def linear_schedule(
    init_value: Any, end_value: Any, transition_steps: Any, transition_begin: Any = 0
) -> Schedule:
    """Linear interpolation from ``init_value`` to ``end_value``, as optax's, traceable.

    :func:`polynomial_schedule` with ``power=1``: constant ``init_value`` up to
    ``transition_begin``, then a straight line that reaches ``end_value`` after
    ``transition_steps`` steps and stays there.

    Args:
      init_value: value up to ``transition_begin``.
      end_value: value from ``transition_begin + transition_steps`` on.
      transition_steps: length of the transition (>= 0; 0 gives the constant
        ``init_value``).
      transition_begin: step at which the transition starts (>= 0).

    Returns:
      A schedule ``count -> value``.

    Raises:
      ValueError: ``transition_steps`` or ``transition_begin`` is concrete and negative.

    Examples:
      >>> import jopt
      >>> float(jopt.schedules.linear_schedule(0.0, 1.0, 4)(1))
      0.25
    """
    return polynomial_schedule(init_value, end_value, 1, transition_steps, transition_begin)


def warmup_constant_schedule(init_value: Any, peak_value: Any, warmup_steps: Any) -> Schedule:
    """Linear warmup from ``init_value`` to ``peak_value``, then constant; traceable.

    Args:
      init_value: value at step 0.
      peak_value: value from ``warmup_steps`` on.
      warmup_steps: length of the warmup (>= 0).

    Returns:
      A schedule ``count -> value``.

    Examples:
      >>> import jopt
      >>> lr = jopt.schedules.warmup_constant_schedule(0.0, 1.0, 4)
      >>> [float(lr(t)) for t in (0, 2, 4, 100)]
      [0.0, 0.5, 1.0, 1.0]
    """
    return linear_schedule(init_value, peak_value, warmup_steps)


def _cosine(init_value: Any, decay_steps: Any, alpha: Any, exponent: Any) -> Schedule:
    def schedule(count):
        steps = jnp.maximum(_f(decay_steps), 1e-12)
        count = jnp.minimum(_f(count), steps)
        cosine = 0.5 * (1 + jnp.cos(jnp.pi * count / steps))
        return init_value * ((1 - alpha) * cosine**exponent + alpha)

    return schedule


def cosine_decay_schedule(
    init_value: Any, decay_steps: Any, alpha: Any = 0.0, exponent: Any = 1.0
) -> Schedule:
    r"""Cosine decay, as optax's, with a traceable ``decay_steps``.

    .. math::
      v(t) = v_0 \left((1-\alpha)\left(\tfrac12\left(1+\cos\frac{\pi \min(t, T)}{T}\right)
      \right)^{e} + \alpha\right)

    Args:
      init_value: value :math:`v_0` at step 0.
      decay_steps: length :math:`T` of the decay (> 0); the value stays at
        :math:`\alpha v_0` from then on.
      alpha: final value as a fraction :math:`\alpha` of ``init_value``.
      exponent: power :math:`e` of the cosine factor.

    Returns:
      A schedule ``count -> value``.

    Raises:
      ValueError: ``decay_steps`` is concrete and not > 0.

    Examples:
      >>> import jopt
      >>> round(float(jopt.schedules.cosine_decay_schedule(1.0, 10)(5)), 6)
      0.5
    """
    if is_concrete(decay_steps) and not np.all(np.asarray(decay_steps) > 0):
        raise ValueError(f"decay_steps must be > 0, got {decay_steps!r}.")
    return _cosine(init_value, decay_steps, alpha, exponent)


def warmup_cosine_decay_schedule(
    init_value: Any,
    peak_value: Any,
    warmup_steps: Any,
    decay_steps: Any,
    end_value: Any = 0.0,
    exponent: Any = 1.0,
) -> Schedule:
    r"""Linear warmup to ``peak_value``, then cosine decay to ``end_value``; traceable.

    As ``optax.warmup_cosine_decay_schedule``: ``decay_steps`` counts from step 0 and includes
    the warmup, and every argument (the warmup length too) may be a traced scalar, so a sweep
    can vmap over warmup lengths.

    .. math::
      v(t) = \begin{cases} v_0 + (v_p - v_0)\, t / W & t < W \\
      \text{cosine}(v_p \to v_1 \text{ over } T - W)(t - W) & t \ge W \end{cases}

    Args:
      init_value: value :math:`v_0` at step 0.
      peak_value: value :math:`v_p` at the end of the warmup.
      warmup_steps: length :math:`W` of the linear warmup (>= 0).
      decay_steps: total length :math:`T` of warmup and decay (> ``warmup_steps``).
      end_value: value :math:`v_1` from ``decay_steps`` on.
      exponent: power of the cosine factor, as in :func:`cosine_decay_schedule`.

    Returns:
      A schedule ``count -> value``.

    Raises:
      ValueError: ``warmup_steps`` is concrete and negative, or both step counts are
        concrete and ``decay_steps <= warmup_steps``.

    Examples:
      >>> import jopt
      >>> lr = jopt.schedules.warmup_cosine_decay_schedule(0.0, 1.0, 10, 110)
      >>> [round(float(lr(t)), 3) for t in (5, 10, 60, 110)]
      [0.5, 1.0, 0.5, 0.0]
    """
    _nonnegative("warmup_steps", warmup_steps)
    if is_concrete(decay_steps) and is_concrete(warmup_steps):
        if not np.all(np.asarray(decay_steps) > np.asarray(warmup_steps)):
            raise ValueError(
                f"decay_steps ({decay_steps!r}) must be > warmup_steps ({warmup_steps!r})."
            )
    peak = _f(peak_value)
    alpha = jnp.where(peak == 0.0, 0.0, _f(end_value) / jnp.where(peak == 0.0, 1.0, peak))
    warmup = linear_schedule(init_value, peak_value, warmup_steps)

    def schedule(count):
        decay = _cosine(peak_value, _f(decay_steps) - _f(warmup_steps), alpha, exponent)
        return jnp.where(count < warmup_steps, warmup(count), decay(count - _f(warmup_steps)))

    return schedule


def exponential_decay(
    init_value: Any,
    transition_steps: Any,
    decay_rate: Any,
    transition_begin: Any = 0,
    staircase: bool = False,
    end_value: Any | None = None,
) -> Schedule:
    r"""Exponential decay :math:`v_0 r^{(t - t_0)/T}`, as optax's, with traceable arguments.

    .. math::
      v(t) = \begin{cases} v_0 & t \le t_0 \\ v_0 \, r^{(t - t_0)/T} & t > t_0 \end{cases}

    ``staircase`` (static) floors the exponent; ``end_value`` bounds the decay. As in optax, a
    ``decay_rate`` of 0 gives the constant ``init_value`` (and ``end_value`` has no effect).

    Args:
      init_value: value up to ``transition_begin``.
      transition_steps: steps :math:`T` per factor ``decay_rate`` (> 0).
      decay_rate: factor :math:`r` per ``transition_steps`` (>= 0; 0 means no decay).
      transition_begin: step :math:`t_0` at which the decay starts (>= 0).
      staircase: if True, decay in whole factors every ``transition_steps`` (static).
      end_value: lower bound of the value when ``decay_rate < 1``, upper bound otherwise.

    Returns:
      A schedule ``count -> value``.

    Examples:
      >>> import jopt
      >>> float(jopt.schedules.exponential_decay(1.0, 10, 0.5)(20))
      0.25
    """
    if is_concrete(transition_steps) and not np.all(np.asarray(transition_steps) > 0):
        raise ValueError(f"transition_steps must be > 0, got {transition_steps!r}.")
    _nonnegative("decay_rate", decay_rate)
    _nonnegative("transition_begin", transition_begin)

    def schedule(count):
        elapsed = count - _f(transition_begin)
        p = elapsed / _f(transition_steps)
        if staircase:
            p = jnp.floor(p)
        # A zero rate means "no decay" (the constant init_value, end_value ignored), not a drop
        # to 0 after transition_begin; computing with a rate of 1 gives that without 0**p.
        no_decay = _f(decay_rate) == 0.0
        rate = jnp.where(no_decay, 1.0, _f(decay_rate))
        value = jnp.where(elapsed <= 0, init_value, init_value * jnp.power(rate, p))
        if end_value is not None:
            bounded = jnp.where(
                rate < 1.0, jnp.maximum(value, end_value), jnp.minimum(value, end_value)
            )
            value = jnp.where(no_decay, value, bounded)
        return value

    return schedule


def piecewise_constant(init_value: Any, boundaries: Any, scales: Any) -> Schedule:
    r"""Step schedule: multiply by ``scales[i]`` once ``count >= boundaries[i]``; traceable.

    Unlike ``optax.piecewise_constant_schedule`` (a dict of Python ints), ``boundaries`` and
    ``scales`` are arrays, so the step positions themselves can be swept.

    .. math::
      v(t) = v_0 \prod_{i:\, t \ge b_i} s_i

    Args:
      init_value: value :math:`v_0` before the first boundary.
      boundaries: steps :math:`b_i` (a scalar or a 1-D array) at which the value changes.
      scales: factors :math:`s_i` (>= 0), one per boundary.

    Returns:
      A schedule ``count -> value``.

    Raises:
      ValueError: ``boundaries`` and ``scales`` differ in length, or a concrete scale is
        negative.

    Examples:
      >>> import jopt
      >>> lr = jopt.schedules.piecewise_constant(0.1, boundaries=[10, 20], scales=[0.1, 0.1])
      >>> [round(float(lr(t)), 4) for t in (0, 10, 25)]
      [0.1, 0.01, 0.001]
    """
    boundaries = jnp.atleast_1d(_f(boundaries))
    scales = jnp.atleast_1d(_f(scales))
    if boundaries.shape != scales.shape:
        raise ValueError(
            f"boundaries and scales must have the same length, got {boundaries.shape} and "
            f"{scales.shape}."
        )
    _nonnegative("scales", scales)

    def schedule(count):
        passed = _f(count) >= boundaries
        return init_value * jnp.prod(jnp.where(passed, scales, 1.0))

    return schedule


def inverse_sqrt_schedule(init_value: Any, timescale: Any = 1.0) -> Schedule:
    r""":math:`v(t) = v_0 / \sqrt{1 + t/\tau}`: the :math:`\alpha/\sqrt{t}` decay of Kingma & Ba.

    Args:
      init_value: value :math:`v_0` at step 0.
      timescale: steps :math:`\tau` (> 0) after which the value has fallen by
        :math:`\sqrt{2}`.

    Returns:
      A schedule ``count -> value``.

    Raises:
      ValueError: ``timescale`` is concrete and not > 0.

    Examples:
      >>> import jopt
      >>> float(jopt.schedules.inverse_sqrt_schedule(1.0)(3))
      0.5

    References:
      Kingma, Ba, `Adam: A Method for Stochastic Optimization
      <https://arxiv.org/abs/1412.6980>`_, 2015 (Theorem 4.1: :math:`\alpha_t = \alpha /
      \sqrt{t}`).
    """
    if is_concrete(timescale) and not np.all(np.asarray(timescale) > 0):
        raise ValueError(f"timescale must be > 0, got {timescale!r}.")

    def schedule(count):
        return init_value * jax.lax.rsqrt(1.0 + _f(count) / _f(timescale))

    return schedule


# --- reduce on plateau --------------------------------------------------------------------------


class ReduceOnPlateauState(NamedTuple):
    """The plateau detector's counters: the fields of ``optax.contrib.ReduceLROnPlateauState``."""

    scale: jax.Array  # product of all reductions so far
    best_value: jax.Array  # best window mean so far (+inf for "min", -inf for "max" at first)
    plateau_count: jax.Array  # int32: windows in a row without improvement
    cooldown_count: jax.Array  # int32: windows still to ignore after a reduction
    count: jax.Array  # int32: values in the current window
    avg_value: jax.Array  # mean of the values in the current window


class PlateauState(NamedTuple):
    """``reduce_on_plateau(optimizer, ...)``: the wrapped optimizer's state and the counters."""

    inner_state: Any
    plateau: ReduceOnPlateauState


def _whole_number(low: int) -> Check:
    return Check(
        lambda v: bool(np.all(np.isfinite(v)) and np.all(v >= low) and np.all(v == np.floor(v))),
        f"a whole number >= {low}",
        low=float(low),
    )


_PLATEAU_CHECKS = {
    "factor": Check(
        lambda v: bool(np.all((v > 0) & (v < 1))),
        "in (0, 1)",
        low=0.0,
        high=1.0,
        low_open=True,
        high_open=True,
    ),
    "patience": _whole_number(0),
    "rtol": at_least(0.0),
    "atol": at_least(0.0),
    "cooldown": _whole_number(0),
    "accumulation_size": _whole_number(1),
    "min_scale": in_unit_interval(closed=True),
}


def _plateau_init(mode: str) -> ReduceOnPlateauState:
    return ReduceOnPlateauState(
        scale=_f(1.0),
        best_value=_f(jnp.inf if mode == "min" else -jnp.inf),
        plateau_count=jnp.zeros([], jnp.int32),
        cooldown_count=jnp.zeros([], jnp.int32),
        count=jnp.zeros([], jnp.int32),
        avg_value=_f(0.0),
    )


def _end_of_window(state: ReduceOnPlateauState, hp: dict, sign: float) -> ReduceOnPlateauState:
    """PyTorch's ``ReduceLROnPlateau.step`` on a complete window's mean, with ``jnp.where``."""
    mean, best = sign * state.avg_value, sign * state.best_value  # compared as for "min"
    tolerance = hp["rtol"] * jnp.abs(best) + hp["atol"]
    improved = mean < jnp.where(jnp.isfinite(best), best - tolerance, jnp.inf)
    bad = jnp.where(improved, 0, optax.safe_increment(state.plateau_count))
    in_cooldown = state.cooldown_count > 0
    cooldown_count = jnp.where(in_cooldown, state.cooldown_count - 1, state.cooldown_count)
    bad = jnp.where(in_cooldown, 0, bad)
    reduce = bad > hp["patience"]
    scale = jnp.where(reduce, jnp.maximum(state.scale * hp["factor"], hp["min_scale"]), state.scale)
    return ReduceOnPlateauState(
        scale=scale.astype(state.scale.dtype),
        best_value=jnp.where(improved, state.avg_value, state.best_value),
        plateau_count=jnp.where(reduce, 0, bad).astype(jnp.int32),
        cooldown_count=jnp.where(reduce, hp["cooldown"], cooldown_count).astype(jnp.int32),
        count=jnp.zeros_like(state.count),
        avg_value=jnp.zeros_like(state.avg_value),
    )


def _plateau_update(
    state: ReduceOnPlateauState, value: Any, hp: dict, mode: str
) -> ReduceOnPlateauState:
    """Adds ``value`` to the window's running mean and, once the window is full, decides."""
    count = optax.safe_increment(state.count)
    avg_value = (state.count * state.avg_value + _f(value)) / count
    state = state._replace(count=count, avg_value=avg_value.astype(state.avg_value.dtype))
    decided = _end_of_window(state, hp, 1.0 if mode == "min" else -1.0)
    full = count >= hp["accumulation_size"]
    return jax.tree.map(lambda new, old: jnp.where(full, new, old), decided, state)


def _check_plateau_args(optimizer: Any, rtol: Any, atol: Any, mode: str) -> None:
    if optimizer is not None and not (hasattr(optimizer, "init") and hasattr(optimizer, "update")):
        raise TypeError(
            "reduce_on_plateau: the first argument is an optimizer to wrap, or None; got "
            f"{optimizer!r}. To chain it after the optimizer, as optax's, pass the settings by "
            "keyword: optax.chain(opt, jopt.schedules.reduce_on_plateau(factor=0.5))."
        )
    if mode not in ("min", "max"):
        raise ValueError(f"reduce_on_plateau: mode must be 'min' or 'max', got {mode!r}.")
    if is_concrete(rtol) and is_concrete(atol) and np.all(np.asarray(rtol) == 0):
        if np.all(np.asarray(atol) == 0):
            raise ValueError(
                f"reduce_on_plateau: rtol and atol must not both be 0, got {rtol=}, {atol=}."
            )


def reduce_on_plateau(
    optimizer: optax.GradientTransformation | None = None,
    factor: ScalarOrSchedule = 0.1,
    patience: ScalarOrSchedule = 10,
    rtol: ScalarOrSchedule = 1e-4,
    atol: ScalarOrSchedule = 0.0,
    cooldown: ScalarOrSchedule = 0,
    accumulation_size: ScalarOrSchedule = 1,
    min_scale: ScalarOrSchedule = 0.0,
    *,
    mode: str = "min",
    hparam: str = "learning_rate",
    name: str | None = None,
) -> optax.GradientTransformationExtraArgs:
    r"""Reduces the step size when a monitored metric stops improving.

    Placed after the optimizer, as ``optax.contrib.reduce_on_plateau``, it multiplies the
    updates by a scale :math:`s` that drops by ``factor`` whenever the metric passed as
    ``update(..., value=metric)`` has not improved for more than ``patience`` windows of
    ``accumulation_size`` values (PyTorch's ``ReduceLROnPlateau``), then waits ``cooldown``
    windows. Every numeric setting is a hyperparameter held in the state, so
    ``jopt.hparams`` reads it, ``jopt.set_hparams`` edits it without recompiling, and a sweep
    can ``vmap`` over it; under ``vmap`` each member has its own counters and scale.

    Scaling the updates is lowering the learning rate for every optimizer whose learning rate
    multiplies its whole update: ``jopt.sgd``, ``momentum``, ``adagrad``, ``rmsprop``, ``adam``
    (whose ``eps`` sits inside the direction), ``adamw`` (whose decay is multiplied by the
    learning rate, as in optax) and ``lion``. The position in the chain says what is scaled:
    ``optax.chain(jopt.adam(lr), jopt.regularizers.weight_decay(rate), reduce_on_plateau())``
    scales the decoupled decay too (the paper's schedule multiplier :math:`\eta_t`), while
    placing ``weight_decay`` after it leaves the decay alone.

    With :math:`\bar v` the mean of a window's values, :math:`v^*` the best mean so far,
    :math:`\rho, \tau` = ``rtol``, ``atol``, :math:`\gamma` = ``factor``, :math:`P` =
    ``patience``, :math:`s_{\min}` = ``min_scale`` and :math:`n` the plateau count, at the end of
    each window (``mode="min"``; ``"max"`` flips the comparison):

    .. math::
      \begin{aligned}
        \text{improved} &= \bar v < v^* - (\rho\,|v^*| + \tau) \\
        n &\leftarrow 0 \text{ if improved (or in cooldown) else } n + 1 \\
        s &\leftarrow \max(\gamma s, s_{\min}),\ n \leftarrow 0 \text{ if } n > P \\
        u_t &= s \cdot \text{updates}_t
      \end{aligned}

    Args:
      optimizer: leave it out (``None``) to chain the transform after the optimizer, which is
        the form to use. Given, the transform wraps ``optimizer`` and, instead of scaling the
        updates, multiplies the hyperparameter ``hparam`` held in ``optimizer``'s state by each
        reduction (with ``jopt.scale_hparams``, so a scheduled learning rate keeps its shape).
        Wrapping exists for what scaling updates cannot do: an optimizer whose state depends
        on its learning rate (e.g. schedule-free SGD through ``jopt.from_optax``, whose
        averaging weights use it), where a smaller learning rate is not smaller updates;
        lowering a hyperparameter other than the learning rate; and showing the lowered
        learning rate in ``jopt.hparams`` (where PBT's explore also scales it).
      factor: multiplier :math:`\gamma` in (0, 1) applied at each reduction.
      patience: windows without improvement that are tolerated (a whole number >= 0); the
        reduction comes at the ``patience + 1``-th.
      rtol: relative improvement threshold :math:`\rho` (>= 0).
      atol: absolute improvement threshold :math:`\tau` (>= 0; not both 0).
      cooldown: windows ignored after a reduction (a whole number >= 0).
      accumulation_size: values averaged per window (a whole number >= 1).
      min_scale: lower bound :math:`s_{\min}` of the scale, in [0, 1].
      mode: ``"min"`` (a loss) or ``"max"`` (an accuracy); static.
      hparam: with ``optimizer``: the hyperparameter to lower (a name ``jopt.set_hparams``
        accepts).
      name: optional label for ``jopt.hparams``.

    Returns:
      An ``optax.GradientTransformationExtraArgs`` whose ``update`` needs ``value=``. Its
      state is a ``jopt.HyperparamState`` with the settings in ``hparams`` and a
      ``ReduceOnPlateauState`` in ``inner`` (``PlateauState`` when wrapping).

    Raises:
      ValueError: a concrete setting outside its range (the message names it, its value and
        the range), ``rtol`` and ``atol`` both 0, or an unknown ``mode``; with ``optimizer``, a
        ``hparam`` its state does not hold (at ``init``).
      TypeError: a first argument that is not an optimizer (e.g. optax's positional
        ``factor``).

    Examples:
      >>> import jax.numpy as jnp, optax, jopt
      >>> tx = optax.chain(jopt.sgd(1.0), jopt.schedules.reduce_on_plateau(factor=0.5,
      ...                                                                  patience=2))
      >>> params = jnp.zeros(1)
      >>> state = tx.init(params)
      >>> for loss in [-1.0, -2.0, -2.0, -2.0, -2.0]:
      ...     updates, state = tx.update(jnp.ones(1), state, params, value=loss)
      >>> float(updates[0]), float(state[1].inner.scale)
      (-0.5, 0.5)
      >>> wrapped = jopt.schedules.reduce_on_plateau(jopt.sgd(1.0), factor=0.5, patience=2)
      >>> state = wrapped.init(params)
      >>> for loss in [-1.0, -2.0, -2.0, -2.0, -2.0]:
      ...     updates, state = wrapped.update(jnp.ones(1), state, params, value=loss)
      >>> float(updates[0]), float(jopt.hparams(state)["learning_rate"])
      (-0.5, 0.5)

    References:
      PyTorch, `ReduceLROnPlateau
      <https://pytorch.org/docs/stable/generated/torch.optim.lr_scheduler.ReduceLROnPlateau.html>`_.

    .. warning::
      Unlike ``optax.contrib.reduce_on_plateau``, ``patience`` counts as in PyTorch (optax
      reduces at the ``patience``-th bad window: its ``patience=P + 1`` is jopt's ``P``), and the
      threshold uses :math:`|v^*|`, so a negative metric (a log-likelihood) is handled; for a
      positive metric the two agree step by step.
    """
    _check_plateau_args(optimizer, rtol, atol, mode)
    hyperparams = {
        "factor": factor,
        "patience": patience,
        "rtol": rtol,
        "atol": atol,
        "cooldown": cooldown,
        "accumulation_size": accumulation_size,
        "min_scale": min_scale,
    }
    if optimizer is None:
        init, update = _scale_updates_on_plateau(mode)
    else:
        init, update = _reduce_hparam_on_plateau(optimizer, mode, hparam)
    return stateful_transform(
        "reduce_on_plateau",
        init,
        update,
        hyperparams,
        _PLATEAU_CHECKS,
        name=name,
        cast_updates=optimizer is None,
        pass_extra_args=True,
    )


def _needs_value(value: Any) -> None:
    if value is None:
        raise ValueError("reduce_on_plateau needs the monitored metric: update(..., value=x).")


def _scale_updates_on_plateau(mode: str):
    """``init`` and ``update`` of the chained form: the updates times the scale."""

    def init(params, hp):
        del params, hp
        return _plateau_init(mode)

    def update(updates, state, params, hp, value=None, **extra_args):
        del params, extra_args
        _needs_value(value)
        state = _plateau_update(state, value, hp, mode)
        return jax.tree.map(lambda u: state.scale * u, updates), state

    return init, update


def _reduce_hparam_on_plateau(optimizer: optax.GradientTransformation, mode: str, hparam: str):
    """``init`` and ``update`` of the wrapping form: ``hparam`` in the state times the scale."""
    optimizer = optax.with_extra_args_support(optimizer)

    def init(params, hp):
        del hp
        inner = optimizer.init(params)
        if hparam not in hparams(inner) and hparam not in hparams(inner, qualified=True):
            raise ValueError(
                f"reduce_on_plateau: the wrapped optimizer has no hyperparameter {hparam!r}; "
                f"it has {sorted(hparams(inner))}."
            )
        return PlateauState(inner_state=inner, plateau=_plateau_init(mode))

    def update(updates, state, params, hp, value=None, **extra_args):
        _needs_value(value)
        plateau = _plateau_update(state.plateau, value, hp, mode)
        # The hyperparameter is rescaled by new/old. With min_scale = 0 the scale underflows to 0
        # after enough reductions, and 0/0 would make it (and the params) NaN: an unchanged
        # scale rescales by exactly 1, and a zero old scale is not divided by (the
        # hyperparameter became 0 with it and stays 0).
        old = state.plateau.scale
        step = jnp.where(plateau.scale == old, 1.0, plateau.scale / jnp.where(old > 0, old, 1.0))
        inner = scale_hparams(state.inner_state, **{hparam: step})
        updates, inner = optimizer.update(updates, inner, params, **extra_args)
        return updates, PlateauState(inner_state=inner, plateau=plateau)

    return init, update
