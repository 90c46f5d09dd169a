"""Schedules whose shape can be swept, and reduce-on-plateau held in the optimizer state.

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
* **reduce_on_plateau** that lowers the learning rate *held in the optimizer's state* from a
  monitored metric, per member under ``vmap``, and that is correct for negative metrics.

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
    at_least,
    hparams,
    in_unit_interval,
    is_concrete,
    scale_hparams,
    stateful_transform,
)

__all__ = [
    "PlateauState",
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

    Examples:
      >>> import jopt
      >>> float(jopt.schedules.linear_schedule(0.0, 1.0, 4)(1))
      0.25
    """
    return polynomial_schedule(init_value, end_value, 1, transition_steps, transition_begin)


def warmup_constant_schedule(init_value: Any, peak_value: Any, warmup_steps: Any) -> Schedule:
    """Linear warmup from ``init_value`` to ``peak_value``, then constant; traceable."""
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

    Examples:
      >>> import jopt
      >>> float(jopt.schedules.inverse_sqrt_schedule(1.0)(3))
      0.5
    """
    if is_concrete(timescale) and not np.all(np.asarray(timescale) > 0):
        raise ValueError(f"timescale must be > 0, got {timescale!r}.")

    def schedule(count):
        return init_value * jax.lax.rsqrt(1.0 + _f(count) / _f(timescale))

    return schedule


# --- reduce on plateau --------------------------------------------------------------------------


class PlateauState(NamedTuple):
    """The wrapped optimizer's state and the plateau detector's counters."""

    inner_state: Any
    best_value: jax.Array
    plateau_count: jax.Array  # int32
    cooldown_count: jax.Array  # int32
    accumulated: jax.Array  # sum of values in the current accumulation window
    window_count: jax.Array  # int32
    scale: jax.Array  # product of all reductions so far


def reduce_on_plateau(
    optimizer: optax.GradientTransformation,
    factor: float = 0.1,
    patience: int = 10,
    rtol: float = 1e-4,
    atol: float = 0.0,
    cooldown: int = 0,
    accumulation_size: int = 1,
    min_scale: float = 0.0,
    *,
    mode: str = "min",
    hparam: str = "learning_rate",
    name: str | None = None,
) -> optax.GradientTransformationExtraArgs:
    r"""Lowers ``optimizer``'s learning rate, held in its state, when a metric stops improving.

    Call ``update(grads, state, params, value=metric)``. Every ``accumulation_size`` calls, the
    mean of the values is compared with the best so far (PyTorch's ``ReduceLROnPlateau``
    logic, with its meaning of ``patience`` and ``cooldown``). It *improves* when

    .. math::
      \bar v < v^* - (\text{rtol}\, |v^*| + \text{atol}) \qquad (\text{mode="min"})

    (``|v*|``, so negative metrics such as log-likelihoods work; optax's version scales by
    ``1 - rtol`` and misbehaves below zero, optax PR #1767). When more than ``patience``
    windows in a row fail to improve, the hyperparameter ``hparam`` of the wrapped optimizer
    is multiplied by ``factor`` (with ``jopt.scale_hparams``, so a scheduled learning rate
    keeps its shape), then ``cooldown`` windows are ignored. The cumulative factor never goes
    below ``min_scale``; with the default 0 it can underflow to 0 after many reductions, which
    stops the updates (as in optax) but keeps the learning rate and the params finite.

    Everything is ``jnp.where``: under ``vmap`` each member of a population has its own
    counters and its own learning rate, and ``jopt.hparams`` shows the lowered value.

    Args:
      optimizer: a jopt optimizer (or any transform whose state holds ``hparam``).
      factor: multiplier in (0, 1) applied at each plateau.
      patience: windows without improvement before a reduction (>= 0).
      rtol, atol: improvement thresholds (>= 0, not both 0).
      cooldown: windows to wait after a reduction (>= 0).
      accumulation_size: values averaged per window (>= 1).
      min_scale: lower bound of the cumulative factor, in [0, 1].
      mode: ``"min"`` (a loss) or ``"max"`` (an accuracy).
      hparam: which hyperparameter to lower (a name ``jopt.set_hparams`` accepts).
      name: optional label for ``jopt.hparams``.

    Returns:
      An optax ``GradientTransformationExtraArgs`` that needs ``value=``.

    Examples:
      >>> import jax.numpy as jnp, jopt
      >>> tx = jopt.schedules.reduce_on_plateau(jopt.sgd(1.0), factor=0.5, patience=2)
      >>> params = jnp.zeros(1)
      >>> state = tx.init(params)
      >>> for loss in [-1.0, -2.0, -2.0, -2.0, -2.0]:
      ...     _, state = tx.update(jnp.ones(1), state, params, value=loss)
      >>> float(jopt.hparams(state)["learning_rate"])
      0.5
    """
    if mode not in ("min", "max"):
        raise ValueError(f"mode must be 'min' or 'max', got {mode!r}.")
    if not 0.0 < factor < 1.0:
        raise ValueError(f"factor must be in (0, 1), got {factor!r}.")
    for arg, value in (("patience", patience), ("cooldown", cooldown)):
        if not isinstance(value, (int, np.integer)) or value < 0:
            raise ValueError(f"{arg} must be an int >= 0, got {value!r}.")
    if not isinstance(accumulation_size, (int, np.integer)) or accumulation_size < 1:
        raise ValueError(f"accumulation_size must be an int >= 1, got {accumulation_size!r}.")
    if rtol < 0 or atol < 0 or (rtol == 0 and atol == 0):
        raise ValueError(f"rtol and atol must be >= 0 and not both 0, got {rtol=}, {atol=}.")
    sign = 1.0 if mode == "min" else -1.0

    def init(params, hp):
        inner = optimizer.init(params)
        if hparam not in hparams(inner) and hparam not in hparams(inner, qualified=True):
            raise ValueError(
                f"reduce_on_plateau: the wrapped optimizer has no hyperparameter {hparam!r}; "
                f"it has {sorted(hparams(inner))}."
            )
        return PlateauState(
            inner_state=inner,
            best_value=_f(jnp.inf),
            plateau_count=jnp.zeros([], jnp.int32),
            cooldown_count=jnp.zeros([], jnp.int32),
            accumulated=_f(0.0),
            window_count=jnp.zeros([], jnp.int32),
            scale=_f(1.0),
        )

    def update(updates, state, params, hp, value):
        accumulated = state.accumulated + sign * _f(value)
        window_count = state.window_count + 1
        window_done = window_count >= accumulation_size
        mean = accumulated / window_count.astype(accumulated.dtype)
        best = state.best_value
        threshold = jnp.where(
            jnp.isfinite(best), best - (hp["rtol"] * jnp.abs(best) + hp["atol"]), jnp.inf
        )
        # PyTorch's ReduceLROnPlateau logic, per window, written with jnp.where.
        improved = window_done & (mean < threshold)
        bad = jnp.where(
            window_done, jnp.where(improved, 0, state.plateau_count + 1), state.plateau_count
        )
        in_cooldown = window_done & (state.cooldown_count > 0)
        cooldown_count = jnp.where(in_cooldown, state.cooldown_count - 1, state.cooldown_count)
        bad = jnp.where(in_cooldown, 0, bad)
        reduce = window_done & (bad > hp["patience"])
        new_scale = jnp.where(
            reduce, jnp.maximum(state.scale * hp["factor"], hp["min_scale"]), state.scale
        )
        # The learning rate is rescaled by new/old. With min_scale = 0 the scale underflows to 0
        # after enough reductions, and 0/0 would make the learning rate (and the params) NaN: an
        # unchanged scale rescales by exactly 1, and a zero old scale is not divided by (the
        # learning rate became 0 with it and stays 0).
        old_scale = jnp.where(state.scale > 0, state.scale, 1.0)
        step_factor = jnp.where(new_scale == state.scale, 1.0, new_scale / old_scale)
        cooldown_count = jnp.where(reduce, hp["cooldown"].astype(jnp.int32), cooldown_count)
        plateau_count = jnp.where(reduce, 0, bad)
        inner = scale_hparams(state.inner_state, **{hparam: step_factor})
        new_updates, inner = optimizer.update(updates, inner, params)
        new_state = PlateauState(
            inner_state=inner,
            best_value=jnp.where(improved, mean, best),
            plateau_count=plateau_count.astype(jnp.int32),
            cooldown_count=cooldown_count.astype(jnp.int32),
            accumulated=jnp.where(window_done, 0.0, accumulated),
            window_count=jnp.where(window_done, 0, window_count).astype(jnp.int32),
            scale=new_scale,
        )
        return new_updates, new_state

    hyperparams = {
        "factor": factor,
        "patience": patience,
        "rtol": rtol,
        "atol": atol,
        "cooldown": cooldown,
        "min_scale": min_scale,
    }
    checks = {"factor": in_unit_interval(), "min_scale": in_unit_interval(closed=True)}
    checks.update({k: at_least(0.0) for k in ("patience", "rtol", "atol", "cooldown")})

    def update_with_value(updates, state, params, hp, value=None, **extra_args):
        del extra_args
        if value is None:
            raise ValueError("reduce_on_plateau needs the monitored metric: update(..., value=x).")
        return update(updates, state, params, hp, value)

    return stateful_transform(
        "reduce_on_plateau",
        init,
        update_with_value,
        hyperparams,
        checks,
        name=name,
        cast_updates=False,
        pass_extra_args=True,
    )
