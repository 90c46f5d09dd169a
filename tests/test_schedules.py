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


@pytest.mark.parametrize(
    "mode,metric,min_scale", [("min", 1.0, 0.0), ("max", 1.0, 0.0), ("min", 1.0, 1e-20)]
)
def test_reduce_on_plateau_stays_finite_once_the_scale_underflows(mode, metric, min_scale):
    # A metric that never improves lowers the scale every patience + 1 = 11 steps: 500 steps take
    # it past float32's smallest number to 0 (or to min_scale).
    steps = 500
    tx = schedules.reduce_on_plateau(jopt.adam(1e-3), min_scale=min_scale, mode=mode)

    def step(carry, _):
        params, state = carry
        updates, state = tx.update(jnp.ones(2), state, params, value=metric)
        params = optax.apply_updates(params, updates)
        lr = jopt.hparams(state)["learning_rate"]
        return (params, state), (state.inner.plateau.scale, lr, params)

    params = jnp.ones(2)
    _, (scale, lr, params) = jax.jit(lambda c: jax.lax.scan(step, c, None, length=steps))(
        (params, tx.init(params))
    )
    scale, lr, params = np.asarray(scale), np.asarray(lr), np.asarray(params)
    assert np.all(np.isfinite(lr)) and np.all(np.isfinite(params))
    assert np.all(scale >= np.float32(min_scale)) and np.all(np.diff(scale) <= 0)
    assert scale[-1] == np.float32(min_scale)
    # optax reduces after `patience` bad windows where jopt (as PyTorch) waits for more than
    # `patience`; on a positive constant metric the two are otherwise the same rule.
    theirs = optax.contrib.reduce_on_plateau(patience=10 + 1, min_scale=min_scale)
    their_state, their_scale = theirs.init(jnp.ones(2)), []
    update = jax.jit(theirs.update)
    for _ in range(steps):
        _, their_state = update(jnp.ones(2), their_state, value=abs(metric))
        their_scale.append(their_state.scale)
    np.testing.assert_array_equal(scale, np.asarray(their_scale, np.float32))
    big = 1e-3 * scale > 1e-30  # where the learning rate is itself far from underflow
    np.testing.assert_allclose(lr[big], 1e-3 * scale[big], rtol=1e-4)


@pytest.mark.parametrize(
    "kwargs",
    [
        {},
        {"transition_begin": 3, "staircase": True},
        {"transition_begin": 2, "end_value": 0.5},
        {"staircase": True, "end_value": 2.0},
    ],
)
def test_exponential_decay_zero_rate_is_constant_like_optax(kwargs):
    counts = jnp.arange(11)
    expected = [optax.exponential_decay(1.0, 2, 0.0, **kwargs)(int(t)) for t in counts]
    np.testing.assert_allclose(
        jax.vmap(schedules.exponential_decay(1.0, 2, 0.0, **kwargs))(counts), expected
    )

    # a traced rate, so vmapped over rates 0 and 0.5 in one program
    def values(rate):
        return jax.vmap(schedules.exponential_decay(1.0, 2, rate, **kwargs))(counts)

    ours = jax.jit(jax.vmap(values))(jnp.array([0.0, 0.5]))
    for row, rate in zip(ours, [0.0, 0.5]):
        theirs = [optax.exponential_decay(1.0, 2, rate, **kwargs)(t) for t in counts]
        np.testing.assert_allclose(row, theirs, rtol=1e-6)


@pytest.mark.parametrize("transition_begin", [0, 4])
def test_polynomial_schedule_fractional_power_is_exact_at_the_end_under_jit(transition_begin):
    counts = jnp.arange(31)
    steps = (7, 10, 13)
    ours_by_steps = {
        t: jax.jit(jax.vmap(schedules.polynomial_schedule(0.1, 0.01, 0.5, t, transition_begin)))(
            counts
        )
        for t in steps
    }

    # transition_steps traced: one program for all three
    def traced(t):
        return jax.vmap(schedules.polynomial_schedule(0.1, 0.01, 0.5, t, transition_begin))(counts)

    ours_traced = jax.jit(jax.vmap(traced))(jnp.array(steps, jnp.float32))
    for i, t in enumerate(steps):
        theirs = optax.polynomial_schedule(0.1, 0.01, 0.5, t, transition_begin)
        theirs_jit = np.asarray(jax.jit(jax.vmap(theirs))(counts))
        theirs_exact = np.array([float(theirs(int(c))) for c in counts])  # not jitted: exact t/T
        after = np.asarray(counts) >= transition_begin + t
        for ours in (np.asarray(ours_by_steps[t]), np.asarray(ours_traced[i])):
            assert np.all(np.isfinite(ours))
            finite = np.isfinite(theirs_jit)
            np.testing.assert_allclose(ours[finite], theirs_jit[finite], rtol=1e-6)
            np.testing.assert_allclose(ours, theirs_exact, rtol=1e-6)
            assert np.all(ours[after] == np.float32(0.01))
