"""jopt.compress.share_weights, kmeans and share_nbytes."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import jopt
from jopt.compress import fake_quantize, kmeans, share_nbytes, share_weights

SHAPES = {"dense_0": (40, 100), "dense_1": (100, 100), "dense_2": (100, 10)}


def make_params(key=0):
    params = {}
    for i, (name, shape) in enumerate(SHAPES.items()):
        k1, k2 = jax.random.split(jax.random.PRNGKey(key * 10 + i))
        params[name] = {
            "kernel": jax.random.normal(k1, shape) / np.sqrt(shape[0]),
            "bias": 0.1 * jax.random.normal(k2, shape[-1:]),
        }
    return params


def test_at_most_clusters_values_per_layer_and_biases_untouched():
    clusters = 16
    tx = optax.chain(jopt.adam(1e-2), share_weights(clusters))
    plain = jopt.adam(1e-2)

    @jax.jit
    def run(params):
        def step(carry, t):
            params, state, plain_params, plain_state = carry
            grads = jax.tree.map(
                lambda p: jax.random.normal(jax.random.fold_in(jax.random.PRNGKey(1), t), p.shape),
                params,
            )
            updates, state = tx.update(grads, state, params)
            plain_updates, plain_state = plain.update(grads, plain_state, plain_params)
            new = optax.apply_updates(params, updates)
            plain_new = optax.apply_updates(plain_params, plain_updates)
            return (new, state, plain_new, plain_state), new

        carry = (params, tx.init(params), params, plain.init(params))
        (_, state, plain_params, _), history = jax.lax.scan(step, carry, jnp.arange(5))
        return history, state, plain_params

    history, state, plain_params = run(make_params())
    centroids = state[1].inner.centroids
    assignments = state[1].inner.assignments
    for name in SHAPES:
        first = np.asarray(history[name]["kernel"][0])
        codebook = np.asarray(centroids[name]["kernel"])
        for t in range(1, 5):  # from the second update on: exactly on the codebook
            kernel = np.asarray(history[name]["kernel"][t])
            assert np.unique(kernel).size <= clusters
        np.testing.assert_array_equal(kernel, codebook[np.asarray(assignments[name]["kernel"])])
        # after the first update: on the codebook up to float32 rounding (see the warning)
        assert len(np.unique(np.round(first, 6))) <= clusters
        np.testing.assert_allclose(
            history[name]["bias"][-1], plain_params[name]["bias"], rtol=1e-6, atol=1e-7
        )


def test_kmeans_beats_uniform_quantization_at_the_same_levels():
    w = jax.random.normal(jax.random.PRNGKey(3), (100, 100))
    for bits in (2, 3, 4):
        clusters = 2**bits
        centroids, assignments = jax.jit(kmeans, static_argnums=(1, 2))(w, clusters, 30)
        shared_error = float(jnp.mean((centroids[assignments] - w) ** 2))
        # uniform grid with the same number of levels over [min, max] (= the k-means init)
        grid = jnp.linspace(w.min(), w.max(), clusters)
        uniform = grid[jnp.argmin(jnp.abs(w[..., None] - grid), axis=-1)]
        uniform_error = float(jnp.mean((uniform - w) ** 2))
        # symmetric log2(clusters)-bit grid (2**bits - 1 levels) of quantize
        symmetric_error = float(jnp.mean((fake_quantize(w, bits, per_channel=False) - w) ** 2))
        assert shared_error < 0.8 * uniform_error, bits
        assert shared_error < symmetric_error, bits
        assert np.asarray(centroids).size == clusters
        assert np.all(np.diff(np.asarray(centroids)) > 0)


def test_centroid_update_is_the_per_cluster_sum_of_updates():
    # dyadic values: every step below is exact, so the closed form holds bit for bit
    kernel = jnp.array([[-2.0, -2.0, 0.0], [0.0, 2.0, 2.0], [2.0, -2.0, 0.0], [0.0, 0.0, 2.0]])
    params = {"kernel": kernel, "bias": jnp.array([1.0, 2.0, 3.0])}
    tx = share_weights(clusters=3)
    state = tx.init(params)
    np.testing.assert_array_equal(state.inner.centroids["kernel"], [-2.0, 0.0, 2.0])
    assignments = np.asarray(state.inner.assignments["kernel"])
    np.testing.assert_array_equal(assignments, (np.asarray(kernel) / 2 + 1).astype(int))

    u = jnp.array(
        [[0.25, -0.5, 0.125], [0.5, 1.0, -0.25], [0.5, 0.75, 0.0625], [0.25, -0.125, 0.5]]
    )
    updates = {"kernel": u, "bias": jnp.array([0.5, 0.5, 0.5])}
    new_updates, state = tx.update(updates, state, params)
    sums = np.array([np.asarray(u)[assignments == j].sum() for j in range(3)])
    expected_centroids = np.array([-2.0, 0.0, 2.0]) + sums
    np.testing.assert_array_equal(state.inner.centroids["kernel"], expected_centroids)
    new = optax.apply_updates(params, new_updates)
    np.testing.assert_array_equal(new["kernel"], expected_centroids[assignments])
    np.testing.assert_array_equal(new["bias"], [1.5, 2.5, 3.5])

    # after jopt.sgd(lr): the paper's c_j <- c_j - lr * sum of the cluster's gradients
    chain = optax.chain(jopt.sgd(0.5), share_weights(clusters=3))
    grads = {"kernel": u, "bias": jnp.zeros(3)}
    _, chain_state = chain.update(grads, chain.init(params), params)
    np.testing.assert_allclose(
        chain_state[1].inner.centroids["kernel"], np.array([-2.0, 0.0, 2.0]) - 0.5 * sums
    )


def test_share_nbytes():
    params = make_params()
    for clusters in (2, 16, 32, 256):
        bits = math.ceil(math.log2(clusters))
        expected = sum(
            math.ceil(np.prod(s) * bits / 8) + 4 * clusters + 4 * s[-1] for s in SHAPES.values()
        )
        assert share_nbytes(params, clusters) == expected
    dense = sum(4 * (np.prod(s) + s[-1]) for s in SHAPES.values())
    assert dense / share_nbytes(params, 16) > 7.0  # 4-bit indices: ~8x on the kernels


@pytest.mark.parametrize("bad", [1, 0, 2.0, True, None])
def test_bad_clusters(bad):
    with pytest.raises(ValueError, match="clusters"):
        share_weights(bad)
    with pytest.raises(ValueError, match="clusters"):
        kmeans(jnp.ones(4), bad)


def test_short_mantissa_equals_the_frexp_round_ldexp_closed_form():
    from jopt.compress.share import _short

    rng = np.random.default_rng(0)
    x = rng.lognormal(0, 8, 20000) * rng.choice([-1.0, 1.0], 20000)
    ties = 1.0 + np.arange(2000) * 2.0**-16 + 2.0**-17  # halfway: rounds to the even neighbour
    x = np.concatenate([x, ties, -ties, [0.0, 1.0, -0.75]]).astype(np.float32)
    fraction, exponent = np.frexp(x)
    expected = np.ldexp(np.round(np.ldexp(fraction, 16)), exponent - 16).astype(np.float32)
    np.testing.assert_array_equal(_short(x), expected)


def test_exclude_zeros_keeps_pruned_weights_at_zero_and_out_of_the_sums():
    w = make_params()["dense_1"]["kernel"]
    pruned = jnp.where(jnp.abs(w) > 0.1, w, 0.0)  # ~30% zeros
    zeros = np.asarray(pruned) == 0
    centroids, assignments = kmeans(pruned, 8, iterations=200, exclude_zeros=True)
    np.testing.assert_array_equal(np.asarray(assignments) == -1, zeros)
    for j in range(8):  # each centroid is the mean of its nonzero members (Lloyd's fixed point)
        members = np.asarray(pruned)[np.asarray(assignments) == j]
        if members.size:
            np.testing.assert_allclose(centroids[j], members.mean(), rtol=1e-4, atol=1e-6)
    params = {"k": pruned}
    grads = {"k": jnp.ones_like(pruned)}
    tx = optax.chain(jopt.sgd(1e-3), share_weights(8, exclude_zeros=True))
    state = tx.init(params)
    c0 = state[1].inner.centroids["k"]
    for _ in range(3):
        updates, state = tx.update(grads, state, params)
        params = optax.apply_updates(params, updates)
    new = np.asarray(params["k"])
    assert np.all(new[zeros] == 0.0) and np.all(new[~zeros] != 0.0)
    assert len(np.unique(new[~zeros])) <= 8
    own = np.asarray(state[1].inner.assignments["k"])  # share_weights' own 20-iteration k-means
    np.testing.assert_array_equal(own == -1, zeros)
    counts = np.bincount(own[~zeros], minlength=8)  # closed form: c_j - 3 lr n_j
    np.testing.assert_allclose(state[1].inner.centroids["k"], c0 - 3e-3 * counts, atol=1e-4)
