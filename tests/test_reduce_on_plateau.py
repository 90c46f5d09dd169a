"""jopt.schedules.reduce_on_plateau against optax.contrib.reduce_on_plateau, step by step."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import jopt
from jopt.schedules import ReduceOnPlateauState, reduce_on_plateau

FIELDS = ReduceOnPlateauState._fields  # optax's ReduceLROnPlateauState fields, same order


def ours_and_theirs(**kwargs):
    """One rule twice. optax reduces at the patience-th bad window, jopt (as PyTorch) after it."""
    theirs = {**kwargs, "patience": kwargs.get("patience", 10) + 1}
    theirs.pop("mode", None)
    return reduce_on_plateau(**kwargs), optax.contrib.reduce_on_plateau(**theirs)


def run_both(ours, theirs, values, start=None):
    """Both transforms on one update per value; every state field and update at every step."""
    params = {"w": jnp.array(1.0)}
    our_state, their_state = ours.init(params), theirs.init(params)
    if start is not None:
        our_state = our_state.replace(inner=ReduceOnPlateauState(**start))
        their_state = optax.contrib.ReduceLROnPlateauState(**start)
    steps = []
    for v in values:
        our_updates, our_state = ours.update(params, our_state, params, value=v)
        their_updates, their_state = theirs.update(params, their_state, params, value=v)
        steps.append((our_updates, our_state.inner, their_updates, their_state))
    return steps


def assert_same_steps(steps):
    for t, (our_updates, ours, their_updates, theirs) in enumerate(steps):
        for field in FIELDS:
            mine, other = np.asarray(getattr(ours, field)), np.asarray(getattr(theirs, field))
            np.testing.assert_array_equal(mine, other, err_msg=f"{field} at step {t}")
            assert mine.dtype == other.dtype, (field, mine.dtype, other.dtype)
        np.testing.assert_array_equal(our_updates["w"], their_updates["w"], err_msg=f"step {t}")


# optax's own test cases (its _reduce_on_plateau_test.py): factor 0.1, patience 5 (jopt's 4),
# rtol 1e-4, atol 0, cooldown 5, min_scale 0.01; a start state (None: init), the values, and
# the final state optax's tests expect.
OPTAX_SETTINGS = dict(factor=0.1, patience=4, rtol=1e-4, atol=0.0, cooldown=5, min_scale=0.01)


def _start(best, plateau, scale, cooldown):
    return dict(
        scale=jnp.array(scale),
        best_value=jnp.array(best),
        plateau_count=jnp.array(plateau, jnp.int32),
        cooldown_count=jnp.array(cooldown, jnp.int32),
        count=jnp.array(0, jnp.int32),
        avg_value=jnp.array(0.0),
    )


OPTAX_CASES = {
    "reduced_after_patience_then_cooldown_counts_down": (
        None,
        [1.0] * 6,
        dict(scale=0.1, best_value=1.0, plateau_count=0, cooldown_count=5),
        [1.0],
        dict(scale=0.1, best_value=1.0, plateau_count=0, cooldown_count=4),
    ),
    "not_reduced_plateau_count_resets_at_a_new_best": (
        dict(best=1.0, plateau=3, scale=0.1, cooldown=0),
        [0.1],
        dict(scale=0.1, best_value=0.1, plateau_count=0, cooldown_count=0),
        [],
        None,
    ),
    "not_reduced_during_cooldown": (
        dict(best=1.0, plateau=0, scale=0.1, cooldown=3),
        [2.0],
        dict(scale=0.1, best_value=1.0, plateau_count=0, cooldown_count=2),
        [],
        None,
    ),
    "not_reduced_below_min_scale": (
        dict(best=1.0, plateau=0, scale=0.01, cooldown=0),
        [0.1] * 6,
        dict(scale=0.01, best_value=0.1, plateau_count=0, cooldown_count=5),
        [],
        None,
    ),
}


@pytest.mark.parametrize("x64", [False, True])
@pytest.mark.parametrize("case", sorted(OPTAX_CASES))
def test_optax_test_cases(case, x64):
    start, values, expected, more, expected_after = OPTAX_CASES[case]
    with jax.enable_x64(x64):
        ours, theirs = ours_and_theirs(**OPTAX_SETTINGS)
        values = [jnp.asarray(v, float) for v in values + more]
        steps = run_both(ours, theirs, values, None if start is None else _start(**start))
        assert_same_steps(steps)
        for at, want in (
            (len(values) - len(more) - 1, expected),
            (len(values) - 1, expected_after),
        ):
            if want is None:
                continue
            state = steps[at][1]
            for field, value in want.items():
                np.testing.assert_allclose(getattr(state, field), value, rtol=1e-6, err_msg=field)
        if case == "reduced_after_patience_then_cooldown_counts_down":
            np.testing.assert_allclose(steps[5][0]["w"], 0.1, rtol=1e-6)  # the updates scaled


def _values(seed):
    """A positive metric: a descent, a noisy plateau, a second descent, another plateau."""
    rng = np.random.default_rng(seed)
    parts = [
        np.linspace(3.0, 1.0, 15),
        1.0 + 0.02 * rng.random(40),
        np.linspace(1.0, 0.5, 10),
        0.5 + 0.01 * rng.random(35),
    ]
    return np.concatenate(parts).astype(np.float32)


SETTINGS = [
    {},
    {"factor": 0.5, "patience": 2, "cooldown": 3},
    {"factor": 0.5, "patience": 0},
    {"patience": 3, "rtol": 0.0, "atol": 0.05},
    {"factor": 0.3, "patience": 1, "accumulation_size": 3, "min_scale": 0.2},
    {"patience": 2, "cooldown": 1, "accumulation_size": 2, "rtol": 0.01},
]


def _scan_states(tx, values):
    """The transform's state after each value, from one jitted scan."""
    params = {"w": jnp.array(1.0)}

    def step(state, v):
        updates, state = tx.update(params, state, params, value=v)
        return state, (updates["w"], getattr(state, "inner", state))

    return jax.jit(lambda s: jax.lax.scan(step, s, values)[1])(tx.init(params))


@pytest.mark.parametrize("settings", SETTINGS, ids=[str(s) for s in SETTINGS])
@pytest.mark.parametrize("mode", ["min", "max"])
def test_same_scales_as_optax_step_by_step(settings, mode):
    values = jnp.asarray(_values(len(str(settings))))
    ours, theirs = ours_and_theirs(**settings, mode=mode)
    # "max" on v is "min" on -v: the same decisions, the best value negated
    our_updates, our_states = _scan_states(ours, values if mode == "min" else -values)
    their_updates, their_states = _scan_states(theirs, values)
    sign = 1.0 if mode == "min" else -1.0
    for field in FIELDS:
        mine, other = (
            np.asarray(getattr(our_states, field)),
            np.asarray(getattr(their_states, field)),
        )
        if field in ("best_value", "avg_value"):
            mine = sign * mine
        np.testing.assert_array_equal(mine, other, err_msg=field)
    np.testing.assert_array_equal(our_updates, their_updates)
    assert np.unique(np.asarray(our_states.scale)).size >= 3  # it reduced, more than once


@pytest.mark.parametrize(
    "make",
    [
        lambda: jopt.sgd(0.3),
        lambda: jopt.momentum(0.3, beta=0.9),
        lambda: jopt.adam(0.1),
        lambda: jopt.adamw(0.1, weight_decay=0.1),
        lambda: jopt.rmsprop(0.05),
        lambda: jopt.adagrad(0.1),
        lambda: jopt.lion(0.01),
    ],
)
def test_chained_equals_wrapped_where_the_learning_rate_scales_the_update(make):
    """For these optimizers a smaller learning rate is exactly smaller updates."""
    values = jnp.asarray(_values(0)[:60])
    settings = dict(factor=0.5, patience=2, cooldown=1)
    chained = optax.chain(make(), reduce_on_plateau(**settings))
    wrapped = reduce_on_plateau(make(), **settings)

    def trajectory(tx):
        def step(carry, v):
            params, state = carry
            updates, state = tx.update(params - 0.5, state, params, value=v)  # grad of a quadratic
            params = optax.apply_updates(params, updates)
            return (params, state), params

        params = jnp.array([1.0, -2.0])
        return jax.jit(lambda c: jax.lax.scan(step, c, values)[1])((params, tx.init(params)))

    np.testing.assert_allclose(trajectory(chained), trajectory(wrapped), rtol=1e-5, atol=1e-7)


def test_wrapping_lowers_a_learning_rate_held_in_state():
    """Schedule-free SGD keeps an average whose weights depend on the learning rate: lowering it
    in the state is not the same as scaling the updates, which is why wrapping exists."""
    make = lambda: jopt.from_optax(optax.contrib.schedule_free_sgd, learning_rate=0.5)
    settings = dict(factor=0.1, patience=0)
    values = [1.0, 2.0, 3.0, 4.0]  # worse every time: a reduction at every step after the first
    chained = optax.chain(make(), reduce_on_plateau(**settings))
    wrapped = reduce_on_plateau(make(), **settings)
    runs = {}
    for label, tx in (("chained", chained), ("wrapped", wrapped)):
        params = jnp.array([1.0, -2.0])
        state, path = tx.init(params), []
        for v in values:
            updates, state = tx.update(params, state, params, value=v)
            params = optax.apply_updates(params, updates)
            path.append(params)
        runs[label] = (np.asarray(path), state)
    np.testing.assert_allclose(runs["chained"][0][0], runs["wrapped"][0][0], rtol=1e-6)
    assert not np.allclose(runs["chained"][0][-1], runs["wrapped"][0][-1], rtol=1e-3)
    assert float(jopt.hparams(runs["wrapped"][1])["learning_rate"]) == pytest.approx(0.5e-3)
    assert float(jopt.hparams(runs["chained"][1])["learning_rate"]) == pytest.approx(0.5)


def test_settings_are_hyperparameters_in_state_vmappable_and_editable():
    values = jnp.asarray(_values(1))

    def final_scale(patience):  # patience is a tracer under vmap: no Python check on it
        tx = reduce_on_plateau(factor=0.5, patience=patience)
        return _scan_states(tx, values)[1].scale[-1]

    patiences = [0, 1, 2, 5]
    batched = jax.jit(jax.vmap(final_scale))(jnp.asarray(patiences, jnp.float32))
    one_by_one = [final_scale(p) for p in patiences]
    np.testing.assert_array_equal(batched, one_by_one)
    assert len(set(np.asarray(batched).tolist())) > 1

    tx = optax.chain(jopt.adam(0.1), reduce_on_plateau(factor=0.5, patience=3, name="plateau"))
    state = tx.init(jnp.zeros(2))
    hp = jopt.hparams(state)
    for name, value in dict(factor=0.5, patience=3.0, rtol=1e-4, atol=0.0, cooldown=0.0).items():
        assert float(hp[name]) == pytest.approx(value)
    traces = []

    @jax.jit
    def step(state, v):
        traces.append(1)
        return tx.update(jnp.ones(2), state, jnp.zeros(2), value=v)[1]

    for v in [1.0, 1.0]:
        state = step(state, v)
    state = jopt.set_hparams(state, patience=0)  # edit between steps: the next one reduces
    state = step(state, 1.0)
    assert len(traces) == 1 and float(state[1].inner.scale) == 0.5
    with pytest.raises(ValueError, match=r"factor must be in \(0, 1\), got 2.0"):
        jopt.set_hparams(state, factor=2.0)


def test_keeps_the_update_dtype():
    tx = optax.chain(jopt.sgd(0.1), reduce_on_plateau())
    params = jnp.ones(3, jnp.bfloat16)
    updates, _ = tx.update(params, tx.init(params), params, value=1.0)
    assert updates.dtype == jnp.bfloat16


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        (dict(factor=0.0), ValueError, r"factor must be in \(0, 1\), got 0.0"),
        (dict(factor=1.0), ValueError, r"factor must be in \(0, 1\), got 1.0"),
        (dict(factor=-0.5), ValueError, r"factor must be in \(0, 1\), got -0.5"),
        (dict(patience=-1), ValueError, "patience must be a whole number >= 0, got -1"),
        (dict(patience=2.5), ValueError, "patience must be a whole number >= 0, got 2.5"),
        (dict(cooldown=-2), ValueError, "cooldown must be a whole number >= 0, got -2"),
        (dict(accumulation_size=0), ValueError, "accumulation_size must be a whole number >= 1"),
        (dict(min_scale=1.5), ValueError, r"min_scale must be in \[0, 1\], got 1.5"),
        (dict(rtol=-1e-4), ValueError, "rtol must be finite and >= 0.0, got -0.0001"),
        (dict(atol=float("inf")), ValueError, "atol must be finite and >= 0.0"),
        (dict(rtol=0.0, atol=0.0), ValueError, "rtol and atol must not both be 0"),
        (dict(mode="up"), ValueError, "mode must be 'min' or 'max', got 'up'"),
        (dict(optimizer=0.5), TypeError, "first argument is an optimizer to wrap"),
    ],
)
def test_bad_arguments(kwargs, error, match):
    with pytest.raises(error, match=match):
        reduce_on_plateau(**kwargs)


def test_needs_value():
    tx = reduce_on_plateau()
    with pytest.raises(ValueError, match="value"):
        tx.update(jnp.ones(2), tx.init(jnp.zeros(2)), jnp.zeros(2))
