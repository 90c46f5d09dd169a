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
        # regrow="dpf": the latent weights are batched over the sweep too
        pruner = jopt.compress.prune(hp["sparsity"], regrow="dpf")
        tx = optax.chain(jopt.momentum(hp["learning_rate"]), pruner)
        state, history = jopt.train.fit(
            model, tx, mnist1d, steps=20, batch_size=100, key=key, progress=False
        )
        return {
            "loss": history["val_loss"][-1],
            "sparsity": jopt.compress.sparsity(state.params),
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


@pytest.fixture(scope="module")
def dense_accuracy(mnist1d):
    _, history = jopt.train.fit(
        jopt.models.MLP(),
        jopt.momentum(0.1),
        mnist1d,
        steps=3000,
        batch_size=100,
        key=jax.random.PRNGKey(0),
        progress=False,
    )
    return float(history["val_accuracy"][-1])


@pytest.mark.parametrize(
    "sparsity",
    [
        {"sparsity": jopt.compress.gradual(0.9, begin_step=600, end_step=2100, every=100)},
        {"sparsity": 0.9, "begin_step": 1000},  # one-shot after 1000 dense steps
    ],
    ids=["gradual", "begin_step"],
)
def test_topk_momentum_and_pruning_from_trained_weights_within_3_points_of_dense(
    mnist1d, dense_accuracy, sparsity
):
    """chain(topk(0.01), momentum(0.1), prune(..., regrow="dpf")) ends within 3 points of dense
    SGD (measured with regrowth; the default regrow=None does better on the gradual schedule,
    66.4% against 63.1%, see prune's docstring)."""
    compressed = optax.chain(
        jopt.compress.topk(0.01),
        jopt.momentum(0.1),
        jopt.compress.prune(**sparsity, regrow="dpf"),
    )
    state, history = jopt.train.fit(
        jopt.models.MLP(),
        compressed,
        mnist1d,
        steps=3000,
        batch_size=100,
        key=jax.random.PRNGKey(0),
        progress=False,
    )
    accuracy = float(history["val_accuracy"][-1])
    assert jopt.compress.sparsity(state.params) == pytest.approx(0.9, abs=1e-3)
    assert dense_accuracy > 0.55
    assert accuracy >= dense_accuracy - 0.03, (accuracy, dense_accuracy)


def test_literal_chain_trains_from_scratch_within_3_points_of_dense(mnist1d, dense_accuracy):
    """The README's chain with a constant 90% sparsity from step 0. With ``regrow="dpf"``
    (every 16 steps) pruned weights keep accumulating updates and come back; measured 66.0% at
    key 0 (keys 0-5: 63.2% +- 2.6, dense 63.2%). Without regrowth it cannot train (next test)."""
    literal = optax.chain(
        jopt.compress.topk(0.01), jopt.momentum(0.1), jopt.compress.prune(0.9, regrow="dpf")
    )
    model = jopt.models.MLP()
    fit = lambda steps, state=None: jopt.train.fit(
        model, literal, mnist1d, steps=steps, batch_size=100, key=jax.random.PRNGKey(0),
        progress=False, state=state,
    )  # fmt: skip
    early, _ = fit(1)
    state, history = fit(2999, early)
    assert jopt.compress.sparsity(state.params) == pytest.approx(0.9, abs=1e-3)
    moved = jax.tree.map(
        lambda a, b: bool(np.any(np.asarray(a) != np.asarray(b))),
        early.opt_state[2].inner.masks,
        state.opt_state[2].inner.masks,
    )
    assert any(jax.tree.leaves(moved))  # the mask changed: pruned weights came back
    accuracy = float(history["val_accuracy"][-1])
    assert dense_accuracy > 0.55
    assert accuracy >= dense_accuracy - 0.03, (accuracy, dense_accuracy)


def test_without_regrowth_the_mask_from_init_freezes_and_starves_small_scale_layers(mnist1d):
    """The default ``regrow=None`` (classic): the same chain cannot train (measured 9%): the
    mask is chosen at the first update from the random init, then never changes; with one global
    threshold the first layer (init scale 1/sqrt(40)) takes nearly all of the kept weights
    (init scale 1/sqrt(100) elsewhere)."""
    model = jopt.models.MLP()
    literal = optax.chain(jopt.compress.topk(0.01), jopt.momentum(0.1), jopt.compress.prune(0.9))

    def fit(steps, state=None):
        return jopt.train.fit(
            model,
            literal,
            mnist1d,
            steps=steps,
            batch_size=100,
            key=jax.random.PRNGKey(0),
            progress=False,
            state=state,
        )

    first, _ = fit(1)
    later, _ = fit(200, first)
    masks_first = first.opt_state[2].inner.masks
    masks_later = later.opt_state[2].inner.masks
    jax.tree.map(np.testing.assert_array_equal, masks_first, masks_later)  # frozen
    kept = {name: float(np.mean(np.asarray(p["kernel"]) != 0)) for name, p in later.params.items()}
    assert jopt.compress.sparsity(later.params) == pytest.approx(0.9, abs=1e-3)
    assert kept["Dense_0"] > 0.3  # the large-init first layer keeps ~37%
    assert kept["Dense_1"] < 0.01 and kept["Dense_2"] < 0.02  # the rest is nearly all pruned
