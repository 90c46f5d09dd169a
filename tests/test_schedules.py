"""Traceable schedules against optax's numbers, and reduce-on-plateau."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import jopt
from jopt import schedules

STEPS = jnp.arange(0, 130)

SAME_AS_OPTAX = [
    (
        schedules.polynomial_schedule(1.0, 0.1, 2.0, 100, 10),
        optax.polynomial_schedule(1.0, 0.1, 2.0, 100, 10),
    ),
    (schedules.linear_schedule(0.0, 1.0, 50), optax.linear_schedule(0.0, 1.0, 50)),
    (schedules.linear_schedule(0.3, 1.0, 0), optax.linear_schedule(0.3, 1.0, 0)),
    (
        schedules.cosine_decay_schedule(0.5, 100, alpha=0.1, exponent=2.0),
        optax.cosine_decay_schedule(0.5, 100, alpha=0.1, exponent=2.0),
    ),
    (
        schedules.warmup_cosine_decay_schedule(0.0, 1.0, 20, 120, end_value=0.05),
        optax.warmup_cosine_decay_schedule(0.0, 1.0, 20, 120, end_value=0.05),
    ),
    (
        schedules.warmup_cosine_decay_schedule(0.1, 1.0, 0, 100),
        optax.warmup_cosine_decay_schedule(0.1, 1.0, 0, 100),
    ),
    (
        schedules.warmup_constant_schedule(0.0, 2.0, 30),
        optax.warmup_constant_schedule(0.0, 2.0, 30),
    ),
    (schedules.exponential_decay(1.0, 10, 0.5), optax.exponential_decay(1.0, 10, 0.5)),
    (
        schedules.exponential_decay(1.0, 10, 0.5, 5, staircase=True, end_value=0.1),
        optax.exponential_decay(1.0, 10, 0.5, 5, staircase=True, end_value=0.1),
    ),
    (
        schedules.piecewise_constant(0.1, [30, 60], [0.5, 0.2]),
        optax.piecewise_constant_schedule(0.1, {30: 0.5, 60: 0.2}),
    ),
]


@pytest.mark.parametrize("ours,theirs", SAME_AS_OPTAX)
def test_schedules_match_optax(ours, theirs):
    np.testing.assert_allclose(jax.vmap(ours)(STEPS), jax.vmap(theirs)(STEPS), rtol=1e-6, atol=1e-7)


def test_schedule_shape_is_traceable():
    def value_at(warmup, decay_steps, boundary, count):
        a = schedules.warmup_cosine_decay_schedule(0.0, 1.0, warmup, decay_steps)(count)
        b = schedules.piecewise_constant(1.0, boundary, 0.1)(count)
        c = schedules.exponential_decay(1.0, warmup + 1, 0.5)(count)
        return a, b, c

    warmups = jnp.array([0.0, 10.0, 40.0])
    a, b, c = jax.jit(jax.vmap(value_at, (0, None, 0, None)))(
        warmups, 100.0, jnp.array([5.0, 20.0, 50.0]), 10
    )
    for i, w in enumerate([0, 10, 40]):
        expected = optax.warmup_cosine_decay_schedule(0.0, 1.0, w, 100)(10)
        assert float(a[i]) == pytest.approx(float(expected), rel=1e-6)
    np.testing.assert_allclose(b, [0.1, 1.0, 1.0], rtol=1e-6)
    np.testing.assert_allclose(c, 0.5 ** (10 / (warmups + 1)), rtol=1e-6)


def test_inverse_sqrt_schedule():
    values = jax.vmap(schedules.inverse_sqrt_schedule(2.0))(jnp.arange(4))
    np.testing.assert_allclose(values, 2.0 / np.sqrt(np.arange(1, 5)), rtol=1e-6)


@pytest.mark.parametrize(
    "make,word",
    [
        (lambda: schedules.cosine_decay_schedule(1.0, 0), "decay_steps"),
        (lambda: schedules.linear_schedule(1.0, 0.0, -5), "transition_steps"),
        (lambda: schedules.warmup_cosine_decay_schedule(0.0, 1.0, 50, 40), "decay_steps"),
        (lambda: schedules.exponential_decay(1.0, 0, 0.5), "transition_steps"),
        (lambda: schedules.piecewise_constant(1.0, [1, 2], [0.5]), "same length"),
        (lambda: schedules.reduce_on_plateau(jopt.sgd(0.1), factor=1.5), "factor"),
        (lambda: schedules.reduce_on_plateau(jopt.sgd(0.1), patience=-1), "patience"),
        (lambda: schedules.reduce_on_plateau(jopt.sgd(0.1), mode="up"), "mode"),
        (lambda: schedules.reduce_on_plateau(jopt.sgd(0.1), rtol=0.0, atol=0.0), "rtol"),
    ],
)
def test_bad_schedule_arguments(make, word):
    with pytest.raises(ValueError, match=word):
        make()


def _plateau_run(tx, values):
    params = jnp.zeros(2)
    state = tx.init(params)
    lrs = []
    for v in values:
        _, state = tx.update(jnp.ones(2), state, params, value=v)
        lrs.append(float(jopt.hparams(state)["learning_rate"]))
    return lrs, state


def _reference_plateau(values, lr, factor, patience, cooldown, rtol, atol):
    """PyTorch's ReduceLROnPlateau.step in plain Python: the lr used at each step."""
    best, bad, cool, out = float("inf"), 0, 0, []
    for v in values:
        if best == float("inf") or v < best - (rtol * abs(best) + atol):
            best, bad = v, 0
        else:
            bad += 1
        if cool > 0:
            cool, bad = cool - 1, 0
        if bad > patience:
            lr, bad, cool = lr * factor, 0, cooldown
        out.append(lr)
    return out


@pytest.mark.parametrize("offset", [0.0, -100.0])  # negative losses are where optax goes wrong
def test_reduce_on_plateau_matches_reference(offset):
    rng = np.random.default_rng(0)
    values = list(offset + np.concatenate([np.linspace(3, 1, 10), 1 + 0.01 * rng.random(30)]))
    tx = schedules.reduce_on_plateau(jopt.adam(0.1), factor=0.5, patience=3, cooldown=2)
    lrs, _ = _plateau_run(tx, values)
    expected = _reference_plateau(values, 0.1, 0.5, 3, 2, 1e-4, 0.0)
    np.testing.assert_allclose(lrs, expected, rtol=1e-6)
    assert lrs[-1] < 0.1 * 0.5**2  # it did reduce, several times


def test_reduce_on_plateau_per_member_under_vmap_and_max_mode():
    tx = schedules.reduce_on_plateau(jopt.sgd(1.0), factor=0.5, patience=1, mode="max")

    def run(slope):
        state = tx.init(jnp.zeros(1))

        def step(state, t):
            _, state = tx.update(jnp.ones(1), state, jnp.zeros(1), value=slope * t)
            return state, None

        state, _ = jax.lax.scan(step, state, jnp.arange(6.0))
        return jopt.hparams(state)["learning_rate"]

    lrs = jax.jit(jax.vmap(run))(jnp.array([1.0, 0.0]))  # improving accuracy vs flat accuracy
    # flat: improves at t=0, then reduces when 2 > patience windows fail (t=2 and t=4)
    np.testing.assert_allclose(lrs, [1.0, 0.25], rtol=1e-6)


def test_reduce_on_plateau_scales_a_scheduled_learning_rate_and_needs_value():
    schedule = optax.linear_schedule(1.0, 0.5, 10)
    tx = schedules.reduce_on_plateau(jopt.sgd(schedule), factor=0.1, patience=0)
    lrs, _ = _plateau_run(tx, [1.0, 1.0, 1.0])
    np.testing.assert_allclose(lrs, [schedule(0), 0.1 * schedule(1), 0.01 * schedule(2)], rtol=1e-6)
    state = tx.init(jnp.zeros(2))
    with pytest.raises(ValueError, match="value"):
        tx.update(jnp.ones(2), state, jnp.zeros(2))
    with pytest.raises(ValueError, match="no hyperparameter 'lr'"):
        schedules.reduce_on_plateau(jopt.sgd(0.1), hparam="lr").init(jnp.zeros(2))
