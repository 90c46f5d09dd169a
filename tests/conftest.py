"""Shared fixtures: a tiny MLP regression problem that every optimizer test trains."""

import itertools
import os

# Most of the suite's time is XLA compiling small programs, not running them: compile at
# backend optimization level 0, which roughly halves that on a CPU (set before JAX starts;
# subprocesses inherit it). Every comparison in the tests is between programs compiled alike.
FAST_COMPILE = "--xla_backend_optimization_level=0"
if FAST_COMPILE not in os.environ.get("XLA_FLAGS", ""):
    os.environ["XLA_FLAGS"] = f"{os.environ.get('XLA_FLAGS', '')} {FAST_COMPILE}".strip()

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import pytest  # noqa: E402

import jopt  # noqa: E402

# Several tests shard over two devices: on a 2-core machine that is one JAX device per core.
# A test process started with XLA_FLAGS=--xla_force_host_platform_device_count=N keeps N.
jopt.devices.use_all_cores()

# A script run in subprocesses by test_sweep.py: not a module to import (doctests collect all).
collect_ignore = ["sweep_worker.py"]


def mlp_init(key, sizes=(8, 16, 4)):
    params = {}
    for i, (fan_in, fan_out) in enumerate(itertools.pairwise(sizes)):
        key, k1, k2 = jax.random.split(key, 3)
        params[f"dense_{i}"] = {
            "kernel": jax.random.normal(k1, (fan_in, fan_out)) / jnp.sqrt(fan_in),
            "bias": 0.1 * jax.random.normal(k2, (fan_out,)),
        }
    return params


def mlp_apply(params, x):
    layers = sorted(params)
    for name in layers[:-1]:
        x = jnp.tanh(x @ params[name]["kernel"] + params[name]["bias"])
    return x @ params[layers[-1]]["kernel"] + params[layers[-1]]["bias"]


def mlp_loss(params, batch):
    x, y = batch
    return jnp.mean((mlp_apply(params, x) - y) ** 2)


class Problem:
    """Params, a fixed stream of minibatches, and a scanned training run."""

    def __init__(self, steps=100, batch=16):
        key = jax.random.PRNGKey(0)
        self.params = mlp_init(key)
        kx, kw = jax.random.split(jax.random.PRNGKey(1))
        self.xs = jax.random.normal(kx, (steps, batch, 8))
        teacher = jax.random.normal(kw, (8, 4))
        self.ys = jnp.sin(self.xs @ teacher)
        self.steps = steps

    def run(self, tx, params=None, steps=None):
        """Trains with tx for `steps` minibatches in one lax.scan; returns final params, losses."""
        params = self.params if params is None else params
        steps = self.steps if steps is None else steps

        def step(carry, batch):
            params, opt_state = carry
            loss, grads = jax.value_and_grad(mlp_loss)(params, batch)
            updates, opt_state = tx.update(grads, opt_state, params)
            return (jax.tree.map(jnp.add, params, updates), opt_state), loss

        batches = (self.xs[:steps], self.ys[:steps])
        (params, opt_state), losses = jax.lax.scan(step, (params, tx.init(params)), batches)
        return params, losses, opt_state


@pytest.fixture(scope="session")
def problem():
    return Problem()
