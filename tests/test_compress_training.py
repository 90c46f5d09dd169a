"""Compression transforms inside whole MNIST-1D training runs: sweeps and accuracy."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import jopt


@pytest.fixture(scope="module")
def mnist1d():
    return jopt.data.mnist1d()


def test_sparsity_by_learning_rate_sweep_in_one_program_equals_separate_runs(mnist1d):
    model = jopt.models.MLP()

    def trial(hp, key):
        tx = optax.chain(jopt.momentum(hp["learning_rate"]), jopt.compress.prune(hp["sparsity"]))
        state, history = jopt.train.fit(
            model, tx, mnist1d, steps=20, batch_size=100, key=key, progress=False
        )
        return {
            "loss": history["test_loss"][-1],
            "sparsity": jopt.compress.sparsity_jnp(state.params),
        }

    space = jopt.sweep.grid(
        sparsity=np.linspace(0.0, 0.875, 8).tolist(),
        learning_rate=jopt.sweep.log_range(1e-3, 0.1, 8),
    )
    result = jopt.sweep.run(trial, space, progress=False)
    assert len(result.info["groups"]) == 1  # 64 training runs, one compiled program
    np.testing.assert_allclose(
        result.metrics["sparsity"][:, 0], [c["sparsity"] for c in space.configs], atol=1e-4
    )
    single = jax.jit(trial)
    for i in (0, 27, 63):
        hp = {k: jnp.float32(v) for k, v in space.configs[i].items()}
        out = single(hp, jax.random.PRNGKey(0))
        np.testing.assert_allclose(result.metrics["loss"][i, 0], out["loss"], rtol=1e-5)


def test_topk_momentum_and_gradual_pruning_train_within_3_points_of_dense(mnist1d):
    """chain(topk(0.01), momentum(0.1), prune(...)) ends within 3 points of dense SGD."""
    model = jopt.models.MLP()
    steps = 3000
    gradual = jopt.compress.gradual(0.9, begin_step=600, end_step=2100, every=100)
    compressed = optax.chain(
        jopt.compress.topk(0.01), jopt.momentum(0.1), jopt.compress.prune(gradual)
    )
    accuracy = {}
    for name, tx in (("dense", jopt.momentum(0.1)), ("compressed", compressed)):
        state, history = jopt.train.fit(
            model,
            tx,
            mnist1d,
            steps=steps,
            batch_size=100,
            key=jax.random.PRNGKey(0),
            progress=False,
        )
        accuracy[name] = float(history["test_accuracy"][-1])
    assert jopt.compress.sparsity(state.params) == pytest.approx(0.9, abs=1e-3)
    assert accuracy["dense"] > 0.55
    assert accuracy["compressed"] >= accuracy["dense"] - 0.03, accuracy
