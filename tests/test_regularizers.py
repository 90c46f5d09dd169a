"""Regularizers: closed forms, optax equivalents, both weight-decay forms."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import jopt
from jopt import regularizers

PARAMS = {"kernel": jnp.array([[1.0, -2.0], [0.5, 0.0]]), "bias": jnp.array([3.0, -1.0])}
GRADS = {"kernel": jnp.array([[0.1, 0.2], [-0.3, 0.4]]), "bias": jnp.array([1.0, 2.0])}


def _update(tx, grads=GRADS, params=PARAMS):
    return tx.update(grads, tx.init(params), params)[0]


def test_l1_and_l2_add_the_penalty_gradient():
    chex.assert_trees_all_close(
        _update(regularizers.l1(0.1)),
        jax.tree.map(lambda g, p: g + 0.1 * jnp.sign(p), GRADS, PARAMS),
    )
    chex.assert_trees_all_close(
        _update(regularizers.l2(0.1)), jax.tree.map(lambda g, p: g + 0.1 * p, GRADS, PARAMS)
    )
    masked = _update(regularizers.l2(0.1, mask=regularizers.kernels))
    chex.assert_trees_all_close(masked["bias"], GRADS["bias"])


def test_l2_before_sgd_equals_gradient_of_penalized_loss():
    loss = lambda p: jnp.sum(jnp.sin(p["kernel"])) + jnp.sum(p["bias"] ** 2)
    penalized = lambda p: loss(p) + 0.05 * sum(jnp.sum(x**2) for x in jax.tree.leaves(p))
    tx = optax.chain(regularizers.l2(0.1), jopt.sgd(0.3))
    ours = _update(tx, jax.grad(loss)(PARAMS))
    chex.assert_trees_all_close(ours, jax.tree.map(lambda g: -0.3 * g, jax.grad(penalized)(PARAMS)))


def test_decoupled_weight_decay_is_not_scaled_by_the_learning_rate():
    for lr in (1e-3, 1e-1):
        tx = optax.chain(jopt.sgd(lr), regularizers.weight_decay(0.01))
        expected = jax.tree.map(lambda g, p: -lr * g - 0.01 * p, GRADS, PARAMS)
        chex.assert_trees_all_close(_update(tx), expected)
    # The schedule multiplier eta_t scales the decay (Loshchilov & Hutter).
    tx = optax.chain(jopt.sgd(0.0), regularizers.weight_decay(0.01, multiplier=lambda c: 0.5))
    chex.assert_trees_all_close(_update(tx), jax.tree.map(lambda p: -0.005 * p, PARAMS))


def test_adam_plus_paper_decay_vs_optax_adamw_form():
    """chain(adam, weight_decay(lr * wd)) is exactly optax.adamw(lr, weight_decay=wd)."""
    lr, wd = 0.01, 0.1
    ours = optax.chain(jopt.adam(lr), regularizers.weight_decay(lr * wd))
    theirs = optax.adamw(lr, weight_decay=wd)
    params, s1, s2 = PARAMS, ours.init(PARAMS), theirs.init(PARAMS)
    p1 = p2 = params
    for i in range(20):
        g = jax.tree.map(lambda x: jnp.cos(x + i), p1)
        u1, s1 = ours.update(g, s1, p1)
        u2, s2 = theirs.update(jax.tree.map(lambda x: jnp.cos(x + i), p2), s2, p2)
        p1, p2 = optax.apply_updates(p1, u1), optax.apply_updates(p2, u2)
    chex.assert_trees_all_close(p1, p2, rtol=1e-5, atol=1e-6)


def test_clip_by_global_norm_matches_optax():
    for max_norm in (0.1, 1.0, 100.0):
        chex.assert_trees_all_close(
            _update(regularizers.clip_by_global_norm(max_norm)),
            _update(optax.clip_by_global_norm(max_norm)),
        )
    norm = optax.tree.norm(_update(regularizers.clip_by_global_norm(0.5)))
    assert float(norm) == pytest.approx(0.5, rel=1e-6)


def test_strengths_live_in_state_and_can_be_swept():
    def decayed(rate):
        tx = optax.chain(jopt.sgd(0.0), regularizers.weight_decay(rate))
        return _update(tx)["bias"]

    out = jax.vmap(decayed)(jnp.array([0.0, 0.1, 1.0]))
    np.testing.assert_allclose(out, -np.outer([0.0, 0.1, 1.0], PARAMS["bias"]), rtol=1e-6)
    tx = optax.chain(regularizers.l1(0.1), regularizers.clip_by_global_norm(1.0))
    assert set(jopt.hparams(tx.init(PARAMS))) == {"strength", "max_norm"}


@pytest.mark.parametrize(
    "make,error,word",
    [
        (lambda: regularizers.l1(-0.1), ValueError, "strength"),
        (lambda: regularizers.l2(float("nan")), ValueError, "strength"),
        (lambda: regularizers.weight_decay(-1e-4), ValueError, "rate"),
        (lambda: regularizers.clip_by_global_norm(0.0), ValueError, "max_norm"),
        (lambda: regularizers.l2("strong"), TypeError, "strength"),
    ],
)
def test_bad_strengths(make, error, word):
    with pytest.raises(error, match=word):
        make()


def test_regularizers_need_params():
    tx = regularizers.l2(0.1)
    with pytest.raises(ValueError, match="params"):
        tx.update(GRADS, tx.init(PARAMS))
