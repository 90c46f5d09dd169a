"""jopt's optimizers against optax (100 steps), closed forms, vmap and bad input."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import jopt

# (name, jopt factory, optax factory): same keyword arguments, same numbers expected.
PAIRS = [
    ("sgd", lambda: jopt.sgd(0.1), lambda: optax.sgd(0.1)),
    ("sgd_momentum", lambda: jopt.sgd(0.05, 0.9), lambda: optax.sgd(0.05, 0.9)),
    ("sgd_nesterov", lambda: jopt.sgd(0.05, 0.9, True), lambda: optax.sgd(0.05, 0.9, True)),
    ("momentum", lambda: jopt.momentum(0.05, beta=0.9), lambda: optax.sgd(0.05, momentum=0.9)),
    (
        "momentum_nesterov",
        lambda: jopt.momentum(0.05, beta=0.8, nesterov=True),
        lambda: optax.sgd(0.05, momentum=0.8, nesterov=True),
    ),
    ("adagrad", lambda: jopt.adagrad(0.1), lambda: optax.adagrad(0.1)),
    ("rmsprop", lambda: jopt.rmsprop(0.01), lambda: optax.rmsprop(0.01)),
    (
        "rmsprop_centered_momentum",
        lambda: jopt.rmsprop(0.005, centered=True, momentum=0.9, nesterov=True),
        lambda: optax.rmsprop(0.005, centered=True, momentum=0.9, nesterov=True),
    ),
    (
        "rmsprop_debiased",
        lambda: jopt.rmsprop(0.005, decay=0.95, eps_in_sqrt=False, bias_correction=True),
        lambda: optax.rmsprop(0.005, decay=0.95, eps_in_sqrt=False, bias_correction=True),
    ),
    ("adam", lambda: jopt.adam(0.01), lambda: optax.adam(0.01)),
    (
        "adam_nesterov",
        lambda: jopt.adam(0.01, b1=0.8, b2=0.99, nesterov=True),
        lambda: optax.adam(0.01, b1=0.8, b2=0.99, nesterov=True),
    ),
    (
        "adamw",
        lambda: jopt.adamw(0.01, weight_decay=0.1),
        lambda: optax.adamw(0.01, weight_decay=0.1),
    ),
    (
        "adamw_masked",
        lambda: jopt.adamw(0.01, weight_decay=0.1, mask=jopt.regularizers.kernels),
        lambda: optax.adamw(0.01, weight_decay=0.1, mask=jopt.regularizers.kernels),
    ),
    ("lion", lambda: jopt.lion(0.001), lambda: optax.lion(0.001)),
    (
        "adam_schedule",
        lambda: jopt.adam(optax.cosine_decay_schedule(0.01, 100)),
        lambda: optax.adam(optax.cosine_decay_schedule(0.01, 100)),
    ),
]


def _relative_error(a, b):
    errors = [
        float(jnp.linalg.norm(x - y) / jnp.maximum(jnp.linalg.norm(y), 1e-12))
        for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b))
    ]
    return max(errors)


@pytest.mark.parametrize("name,make_jopt,make_optax", PAIRS, ids=[p[0] for p in PAIRS])
def test_matches_optax_for_100_steps(problem, name, make_jopt, make_optax):
    ours, our_losses, _ = jax.jit(lambda: problem.run(make_jopt()))()
    theirs, their_losses, _ = jax.jit(lambda: problem.run(make_optax()))()
    assert float(their_losses[-1]) < float(their_losses[0])  # the run actually trains
    assert _relative_error(ours, theirs) <= 1e-5, name
    np.testing.assert_allclose(our_losses, their_losses, rtol=1e-5, atol=1e-7)


def _first_updates(tx, grads, params, steps=1):
    state = tx.init(params)
    out = []
    for g in grads[:steps]:
        updates, state = tx.update(g, state, params)
        out.append(updates)
    return out


G1 = jnp.array([0.5, -2.0, 1e-3])
G2 = jnp.array([-1.0, 3.0, 2.0])
P0 = jnp.array([1.0, -1.0, 0.5])


def test_closed_form_sgd_and_momentum():
    lr, b = 0.1, 0.9
    u = _first_updates(jopt.sgd(lr), [G1], P0)[0]
    chex.assert_trees_all_close(u, -lr * G1)
    u1, u2 = _first_updates(jopt.momentum(lr, b), [G1, G2], P0, steps=2)
    chex.assert_trees_all_close(u1, -lr * G1)
    chex.assert_trees_all_close(u2, -lr * (G2 + b * G1), rtol=1e-6)
    # EMA form: v1 = (1-b) g1, v2 = b v1 + (1-b) g2.
    u1, u2 = _first_updates(jopt.momentum(lr, b, dampening=True), [G1, G2], P0, steps=2)
    chex.assert_trees_all_close(u1, -lr * (1 - b) * G1, rtol=1e-6)
    chex.assert_trees_all_close(u2, -lr * (b * (1 - b) * G1 + (1 - b) * G2), rtol=1e-6)
    # Nesterov: u2 = -lr (g2 + b v2) with v2 = g2 + b g1.
    _, u2 = _first_updates(jopt.momentum(lr, b, nesterov=True), [G1, G2], P0, steps=2)
    chex.assert_trees_all_close(u2, -lr * (G2 + b * (G2 + b * G1)), rtol=1e-6)
    # Nesterov in the EMA form: u2 = -lr ((1-b) g2 + b v2).
    _, u2 = _first_updates(jopt.momentum(lr, b, nesterov=True, dampening=True), [G1, G2], P0, 2)
    v2 = b * (1 - b) * G1 + (1 - b) * G2
    chex.assert_trees_all_close(u2, -lr * ((1 - b) * G2 + b * v2), rtol=1e-6)


def test_closed_form_adaptive_rules():
    lr = 0.1
    u = _first_updates(jopt.adam(lr), [G1], P0)[0]  # bias-corrected: g / (|g| + eps)
    chex.assert_trees_all_close(u, -lr * G1 / (jnp.abs(G1) + 1e-8), rtol=1e-5)
    u = _first_updates(jopt.adagrad(lr), [G1], P0)[0]
    chex.assert_trees_all_close(u, -lr * G1 / jnp.sqrt(0.1 + G1**2 + 1e-7), rtol=1e-6)
    u = _first_updates(jopt.rmsprop(lr), [G1], P0)[0]
    chex.assert_trees_all_close(u, -lr * G1 / jnp.sqrt(0.1 * G1**2 + 1e-8), rtol=1e-5)
    u = _first_updates(jopt.lion(lr, weight_decay=0.5), [G1], P0)[0]
    chex.assert_trees_all_close(u, -lr * (jnp.sign(G1) + 0.5 * P0), rtol=1e-6)
    u = _first_updates(jopt.adamw(lr, weight_decay=0.5), [G1], P0)[0]
    chex.assert_trees_all_close(u, -lr * (G1 / (jnp.abs(G1) + 1e-8) + 0.5 * P0), rtol=1e-5)


def qhm_rule(grads, velocity, params, hp):
    velocity = optax.tree.update_moment(grads, velocity, hp["beta"], 1)
    updates = jax.tree.map(
        lambda g, v: -hp["learning_rate"] * ((1 - hp["nu"]) * g + hp["nu"] * v), grads, velocity
    )
    return updates, velocity


def qhm(learning_rate, beta=0.999, nu=0.7):
    return jopt.from_rule(
        qhm_rule,
        lambda params, hp: optax.tree.zeros_like(params),
        learning_rate=learning_rate,
        beta=beta,
        nu=nu,
    )


def test_from_rule_qhm_matches_hand_written_reference():
    lr, beta, nu = 0.1, 0.9, 0.7
    grads = [G1, G2, G1 * 2, -G2]
    ours = _first_updates(qhm(lr, beta, nu), grads, P0, steps=4)
    velocity = np.zeros(3)
    for g, u in zip(grads, ours):
        g = np.asarray(g, np.float64)
        velocity = beta * velocity + (1 - beta) * g
        np.testing.assert_allclose(u, -lr * ((1 - nu) * g + nu * velocity), rtol=1e-6)
    assert set(jopt.hparams(qhm(lr).init(P0))) == {"learning_rate", "beta", "nu"}


def _vmapped_equals_loop(problem, make_tx, grid, steps=30):
    """vmap of a whole scanned run over hyperparameters == the same runs one at a time."""
    columns = [jnp.asarray(c, jnp.float32) for c in zip(*grid)]
    run = lambda *hp: problem.run(make_tx(*hp), steps=steps)[0]
    batched = jax.jit(jax.vmap(run))(*columns)
    for i, hp in enumerate(grid):
        single = jax.jit(run)(*[jnp.float32(h) for h in hp])
        chex.assert_trees_all_close(jax.tree.map(lambda x: x[i], batched), single, atol=1e-5)


def test_vmap_over_learning_rate_and_momentum(problem):
    grid = [(lr, b) for lr in (0.01, 0.05) for b in (0.0, 0.5, 0.9)]
    _vmapped_equals_loop(problem, lambda lr, b: jopt.momentum(lr, b), grid)


def test_vmap_over_adam_betas(problem):
    grid = [(0.9, 0.999), (0.5, 0.99), (0.0, 0.9)]
    _vmapped_equals_loop(problem, lambda b1, b2: jopt.adam(0.01, b1=b1, b2=b2), grid)


def test_vmap_over_weight_decay(problem):
    grid = [(0.0,), (0.1,), (1.0,)]
    _vmapped_equals_loop(problem, lambda wd: jopt.adamw(0.01, weight_decay=wd), grid)


def test_vmap_over_warmup_length(problem):
    def make(warmup):
        schedule = jopt.schedules.warmup_cosine_decay_schedule(0.0, 0.05, warmup, 30)
        return jopt.sgd(schedule)

    _vmapped_equals_loop(problem, make, [(0.0,), (5.0,), (20.0,)])


def test_hyperparameters_as_tracer_arrays_batch_the_state():
    """A state initialized under vmap holds a batch of hyperparameters."""
    lrs = jnp.array([0.1, 0.2, 0.3])
    states = jax.vmap(lambda lr: jopt.adam(lr).init(P0))(lrs)
    np.testing.assert_allclose(jopt.hparams(states)["learning_rate"], lrs)
    np.testing.assert_allclose(jopt.hparams(states)["b1"], [0.9] * 3, rtol=1e-7)


# --- bad input ----------------------------------------------------------------------------------

BAD = [
    (lambda: jopt.sgd(-0.1), ValueError, "learning_rate"),
    (lambda: jopt.sgd(float("nan")), ValueError, "learning_rate"),
    (lambda: jopt.adam(float("inf")), ValueError, "learning_rate"),
    (lambda: jopt.momentum(0.1, beta=1.0), ValueError, "beta"),
    (lambda: jopt.momentum(0.1, beta=-0.1), ValueError, "beta"),
    (lambda: jopt.sgd(0.1, momentum=1.5), ValueError, "momentum"),
    (lambda: jopt.adam(0.1, b1=1.0), ValueError, "b1"),
    (lambda: jopt.adam(0.1, b2=2.0), ValueError, "b2"),
    (lambda: jopt.adam(0.1, eps=0.0), ValueError, "eps"),
    (lambda: jopt.rmsprop(0.1, eps=-1e-8), ValueError, "eps"),
    (lambda: jopt.adagrad(0.1, eps=0.0), ValueError, "eps"),
    (lambda: jopt.adamw(0.1, weight_decay=-1.0), ValueError, "weight_decay"),
    (lambda: jopt.lion(0.1, b2=1.0), ValueError, "b2"),
    (lambda: jopt.sgd("0.1"), TypeError, "learning_rate"),
    (lambda: jopt.sgd(None), TypeError, "learning_rate"),
    (lambda: jopt.adam(0.1, b1=True), TypeError, "b1"),
    (lambda: jopt.adam(jnp.array([0.1, 0.2])), ValueError, "scalar"),
    (lambda: jopt.sgd(lambda count: -0.1 * jnp.ones([])), ValueError, "schedule"),
]


@pytest.mark.parametrize("make,error,word", BAD)
def test_bad_input_names_the_argument(make, error, word):
    with pytest.raises(error, match=word):
        make()


def test_tracer_hyperparameters_are_not_checked():
    """Under vmap a value is a tracer: no Python check may touch it (it would crash)."""
    out = jax.vmap(lambda lr: jopt.hparams(jopt.adam(lr, b1=lr).init(P0))["b1"])(jnp.ones(2))
    np.testing.assert_allclose(out, [1.0, 1.0])


def test_bfloat16_params_keep_their_dtype():
    params = jnp.ones(3, jnp.bfloat16)
    tx = jopt.adam(1e-3)
    updates, _ = tx.update(params, tx.init(params), params)
    assert updates.dtype == jnp.bfloat16


def test_one_of_equals_each_optimizer_and_vmaps_over_the_choice():
    txs = [jopt.sgd(0.05), jopt.momentum(0.05, beta=0.9), jopt.adam(0.05)]
    x0 = jnp.array([1.0, -2.0, 0.5])

    def run(tx, steps=20):
        x, state = x0, tx.init(x0)
        for _ in range(steps):
            updates, state = tx.update(2 * x + jnp.sin(x), state, x)
            x = x + updates
        return x, state

    traces = []

    def chosen(index):
        traces.append(index)
        return run(jopt.one_of(index, txs))[0]

    batched = jax.jit(jax.vmap(chosen))(jnp.arange(3.0))
    assert len(traces) == 1  # one program for the three optimizers
    for k, tx in enumerate(txs):
        alone, _ = run(tx)
        np.testing.assert_allclose(batched[k], alone, rtol=1e-6)
        np.testing.assert_allclose(run(jopt.one_of(k, txs))[0], alone, rtol=1e-6)
    # only the chosen optimizer's state advances; the others stay at their init
    _, state = run(jopt.one_of(2, txs))
    assert int(state[2].count) == 20 and int(state[0].count) == 0
    with pytest.raises(ValueError, match="index"):
        jopt.one_of(3, txs)
    with pytest.raises(TypeError, match="txs"):
        jopt.one_of(0, [])
