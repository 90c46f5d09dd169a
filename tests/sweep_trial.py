"""The trial shared by test_sweep.py and its subprocess worker: a small noisy regression."""

import jax
import jax.numpy as jnp
import optax

import jopt

SPACE = jopt.sweep.grid(learning_rate=[0.003, 0.01, 0.03, 0.1, 0.3], momentum=[0.0, 0.5, 0.9])


def trial(hp, key):
    """Linear regression by SGD with momentum on data drawn from `key`: 40 steps."""
    data_key, init_key = jax.random.split(key)
    x = jax.random.normal(data_key, (40, 32, 5))
    w_true = jnp.arange(5.0) / 5
    y = x @ w_true + 0.1 * jax.random.normal(init_key, (40, 32))
    tx = jopt.momentum(hp["learning_rate"], beta=hp["momentum"])
    w = jnp.zeros(5)

    def step(carry, batch):
        w, opt_state = carry
        xb, yb = batch
        loss, grads = jax.value_and_grad(lambda w: jnp.mean((xb @ w - yb) ** 2))(w)
        updates, opt_state = tx.update(grads, opt_state, w)
        return (optax.apply_updates(w, updates), opt_state), loss

    (w, _), losses = jax.lax.scan(step, (w, tx.init(w)), (x, y))
    return {"loss": losses[-1], "curve": losses[::10], "error": jnp.sum((w - w_true) ** 2)}


def edited_trial(hp, key):
    """``trial`` with one constant changed: a checkpoint of ``trial`` must refuse it."""
    out = trial(hp, key)
    return {**out, "loss": 2.0 * out["loss"]}


ACTIVATIONS = jopt.sweep.grid(
    activation=jopt.sweep.static([jax.nn.relu, jnp.tanh, jax.nn.gelu]), scale=[0.5, 1.0, 2.0]
)


def activation_trial(hp, key):
    """Function-valued statics: one compiled program per activation."""
    x = hp["scale"] * jax.random.normal(key, (64,))
    return {"mean": jnp.mean(hp["activation"](x))}
