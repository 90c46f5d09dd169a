"""Gradient compression: exact counts, closed forms, error-feedback mass, QSGD statistics, bits."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import jopt
from jopt import compress
from jopt.compress import gradients

GRADS = {
    "kernel": jax.random.normal(jax.random.PRNGKey(0), (8, 5)),
    "bias": jax.random.normal(jax.random.PRNGKey(1), (5,)),
}


def _stream(steps, tree=GRADS):
    """A fixed sequence of gradient trees shaped like ``tree``."""
    leaves, treedef = jax.tree.flatten(tree)
    keys = jax.random.split(jax.random.PRNGKey(42), (steps, len(leaves)))
    return [
        treedef.unflatten([jax.random.normal(k, x.shape) for k, x in zip(row, leaves)])
        for row in keys
    ]


def _run(tx, grads_seq):
    """Applies tx to every gradient of the stream; returns the sent trees and the final state."""
    state = tx.init(grads_seq[0])
    step = jax.jit(tx.update)
    sent = []
    for g in grads_seq:
        c, state = step(g, state)
        sent.append(c)
    return sent, state


def _once(tx, grads):
    """One jitted step from the initial state: (sent, state)."""
    return jax.jit(lambda g: tx.update(g, tx.init(g)))(grads)


def _assert_mass_conserved(sent, residual, grads_seq):
    total_sent = jax.tree.map(lambda *xs: sum(xs), *sent)
    total_grad = jax.tree.map(lambda *xs: sum(xs), *grads_seq)
    recovered = jax.tree.map(jnp.add, total_sent, residual)
    for a, b in zip(jax.tree.leaves(recovered), jax.tree.leaves(total_grad)):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5)


def _count(ratio, n):
    return math.ceil(round(ratio * n, 6))


# --- topk ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("ratio", [0.01, 0.3, 0.77, 1.0])
def test_topk_keeps_exactly_ceil_ratio_n_largest_entries_per_leaf(ratio):
    sent, _ = _once(compress.topk(ratio, error_feedback=False), GRADS)
    for c, g in zip(jax.tree.leaves(sent), jax.tree.leaves(GRADS)):
        c, g = np.asarray(c).ravel(), np.asarray(g).ravel()
        k = _count(ratio, g.size)
        assert np.count_nonzero(c) == k
        kept = np.flatnonzero(c)
        np.testing.assert_array_equal(c[kept], g[kept])
        largest = np.sort(np.argsort(-np.abs(g), kind="stable")[:k])
        np.testing.assert_array_equal(kept, largest)


def test_topk_count_is_exact_with_ties_and_traced_ratio():
    g = jnp.array([1.0, -1.0, 1.0, 0.5, -1.0, 1.0, 0.0, 0.0, 2.0, -2.0])  # many ties
    ratios = jnp.array([0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.75, 1.0])

    def sent(ratio):
        tx = compress.topk(ratio, error_feedback=False)
        return tx.update(g, tx.init(g))[0]

    batched = jax.vmap(sent)(ratios)
    counts = np.count_nonzero(np.asarray(batched), axis=1)
    expected = [_count(float(r), 10) for r in ratios]
    # the last two ratios keep more entries than g has nonzeros: zeros are "kept" as zeros
    np.testing.assert_array_equal(counts, np.minimum(expected, 8))
    # ratio 0.4 keeps 4: both |2| entries, then the first two of the five tied |1| entries
    np.testing.assert_array_equal(batched[3], jnp.array([1.0, -1, 0, 0, 0, 0, 0, 0, 2, -2]))
    for r, row in zip(ratios, batched):
        np.testing.assert_array_equal(row, sent(float(r)))


def test_topk_error_feedback_conserves_mass_over_20_steps():
    grads_seq = _stream(20)
    sent, state = _run(compress.topk(0.1), grads_seq)
    _assert_mass_conserved(sent, state.inner.residual, grads_seq)
    assert np.count_nonzero(sent[-1]["kernel"]) == 4  # ceil(0.1 * 40)


def test_topk_without_error_feedback_keeps_no_residual():
    grads_seq = _stream(3)
    sent, state = _run(compress.topk(0.2, error_feedback=False), grads_seq)
    assert state.inner.residual is None
    # each step depends only on its own gradient
    tx = compress.topk(0.2, error_feedback=False)
    alone = tx.update(grads_seq[2], tx.init(GRADS))[0]
    np.testing.assert_array_equal(sent[2]["kernel"], alone["kernel"])


def test_topk_mask_skips_leaves():
    tx = compress.topk(0.1, mask=jopt.regularizers.kernels)
    sent, state = tx.update(GRADS, tx.init(GRADS))
    np.testing.assert_array_equal(sent["bias"], GRADS["bias"])
    assert np.count_nonzero(sent["kernel"]) == 4
    np.testing.assert_array_equal(state.inner.residual["bias"], np.zeros(5))
    # bias sent dense: 5 * 32; kernel: 4 * (32 + ceil(log2 40) = 6)
    assert float(state.inner.bits_sent) == 5 * 32 + 4 * 38
    tx = compress.topk(0.1, mask={"kernel": False, "bias": True})
    sent, _ = tx.update(GRADS, tx.init(GRADS))
    np.testing.assert_array_equal(sent["kernel"], GRADS["kernel"])
    assert np.count_nonzero(sent["bias"]) == 1


# --- sign ---------------------------------------------------------------------------------------


def test_sign_without_error_feedback_is_the_sign():
    tx = compress.sign(error_feedback=False)
    sent, state = tx.update(GRADS, tx.init(GRADS))
    for c, g in zip(jax.tree.leaves(sent), jax.tree.leaves(GRADS)):
        np.testing.assert_array_equal(c, np.sign(g))
    assert state.inner.residual is None


def test_sign_with_error_feedback_is_the_scaled_sign_of_ef_signsgd():
    g = jnp.array([0.5, -1.0, 2.5, -0.5])
    tx = compress.sign()
    state = tx.init(g)
    c1, state = tx.update(g, state)
    np.testing.assert_allclose(c1, 1.125 * np.array([1, -1, 1, -1]), rtol=1e-6)
    e1 = np.array([-0.625, 0.125, 1.375, 0.625])
    np.testing.assert_allclose(state.inner.residual, e1, rtol=1e-6)
    c2, state = tx.update(g, state)
    p2 = np.asarray(g) + e1  # [-0.125, -0.875, 3.875, 0.125], ||p||_1 / 4 = 1.25
    np.testing.assert_allclose(c2, 1.25 * np.sign(p2), rtol=1e-6)
    np.testing.assert_allclose(state.inner.residual, p2 - 1.25 * np.sign(p2), atol=1e-6)


def test_sign_error_feedback_conserves_mass():
    grads_seq = _stream(20)
    sent, state = _run(compress.sign(), grads_seq)
    _assert_mass_conserved(sent, state.inner.residual, grads_seq)


# --- qsgd ---------------------------------------------------------------------------------------

V = jax.random.normal(jax.random.PRNGKey(3), (64,))


def _qsgd_samples(levels, samples=2000, v=V):
    def one(seed):
        tx = compress.qsgd(levels, seed=seed)
        return tx.update(v, tx.init(v))[0]

    return np.asarray(jax.jit(jax.vmap(one))(jnp.arange(samples)))


@pytest.mark.parametrize("levels", [1, 4])
def test_qsgd_is_unbiased(levels):
    q = _qsgd_samples(levels)
    stderr = q.std(axis=0) / np.sqrt(q.shape[0])
    z = (q.mean(axis=0) - np.asarray(V)) / np.maximum(stderr, 1e-12)
    assert np.all(np.abs(z) < 5.0)
    assert np.mean(np.abs(z) < 2.0) > 0.85  # about 95% expected


@pytest.mark.parametrize("levels", [1, 16])
def test_qsgd_variance_bound_and_grid(levels):
    q = _qsgd_samples(levels, samples=500)
    v = np.asarray(V)
    norm, n = np.linalg.norm(v), v.size
    variance = np.mean(np.sum((q - v) ** 2, axis=1))
    assert variance <= min(n / levels**2, np.sqrt(n) / levels) * norm**2
    scaled = np.abs(q) / norm * levels  # integral levels l in {0, ..., s}
    np.testing.assert_allclose(scaled, np.round(scaled), atol=1e-4)
    assert scaled.max() <= levels + 1e-4
    assert np.all((np.sign(q) == np.sign(v)) | (q == 0))


def test_qsgd_key_changes_between_steps_and_zero_gradient_stays_zero():
    tx = compress.qsgd(2, seed=7)
    state = tx.init(GRADS)
    np.testing.assert_array_equal(state.inner.key, jax.random.PRNGKey(7))
    step = jax.jit(tx.update)
    c1, state1 = step(GRADS, state)
    c2, state2 = step(GRADS, state1)
    assert not np.array_equal(state1.inner.key, state.inner.key)
    assert not np.array_equal(state2.inner.key, state1.inner.key)
    assert not np.array_equal(c1["kernel"], c2["kernel"])
    zeros = jax.tree.map(jnp.zeros_like, GRADS)
    sent, _ = step(zeros, state)
    assert all(np.all(np.asarray(x) == 0) for x in jax.tree.leaves(sent))
    assert state1.inner.residual is None


def test_qsgd_and_powersgd_seed_may_be_a_key_also_under_vmap():
    key = jax.random.PRNGKey(7)
    by_int = compress.qsgd(2, seed=7).init(GRADS).inner.key
    by_key = compress.qsgd(2, seed=key).init(GRADS).inner.key
    np.testing.assert_array_equal(by_key, by_int)
    keys = jax.random.split(jax.random.PRNGKey(0), 3)
    batched = jax.vmap(lambda k: compress.qsgd(2, seed=k).init(GRADS).inner.key)(keys)
    np.testing.assert_array_equal(batched, keys)  # one independent key per simulated worker
    q_int = compress.powersgd(1, seed=7).init(MATRIX_GRADS).inner.q
    q_key = compress.powersgd(1, seed=key).init(MATRIX_GRADS).inner.q
    for a, b in zip(jax.tree.leaves(q_key), jax.tree.leaves(q_int), strict=True):
        np.testing.assert_array_equal(a, b)
    with pytest.raises(TypeError, match="shape"):
        compress.qsgd(2, seed=np.zeros((3,), np.uint32))


def test_qsgd_buckets_closed_forms():
    n, d, levels = 1000, 64, 4
    v = jax.random.normal(jax.random.PRNGKey(3), (n,)) * jnp.linspace(0.1, 3.0, n)
    whole = compress.qsgd(levels, seed=5)
    # a bucket as long as the leaf is the unbucketed quantizer, draw for draw
    same = compress.qsgd(levels, seed=5, bucket_size=n)
    np.testing.assert_array_equal(
        whole.update(v, whole.init(v))[0], same.update(v, same.init(v))[0]
    )
    tx = compress.qsgd(levels, seed=5, bucket_size=d)
    sent, state = tx.update(v, tx.init(v))
    n_buckets = math.ceil(n / d)  # 16, the last one holds 40 entries
    assert float(state.inner.bits_sent) == 32 * n_buckets + n * (1 + 3)
    padded = np.pad(np.asarray(v), (0, n_buckets * d - n)).reshape(n_buckets, d)
    norms = np.linalg.norm(padded, axis=1, keepdims=True)
    scaled = np.abs(np.pad(np.asarray(sent), (0, n_buckets * d - n)).reshape(n_buckets, d))
    scaled = scaled / norms * levels  # each bucket on its own grid {0, 1/s, ..., 1} x norm
    np.testing.assert_allclose(scaled, np.round(scaled), atol=1e-4)
    # exact variance sum_b ||v_b||^2 / s^2 sum p (1 - p), under min(d/s^2, sqrt(d)/s) ||v||^2
    r = levels * np.abs(padded) / norms
    p = r - np.floor(r)
    exact = float(np.sum(norms[:, 0] ** 2 / levels**2 * np.sum(p * (1 - p), axis=1)))
    assert exact <= min(d / levels**2, math.sqrt(d) / levels) * float(np.sum(padded**2))

    def squared_error(key):
        tx = compress.qsgd(levels, seed=key, bucket_size=d)
        return jnp.sum((tx.update(v, tx.init(v))[0] - v) ** 2)

    errors = np.asarray(
        jax.jit(jax.vmap(squared_error))(jax.random.split(jax.random.PRNGKey(0), 4000))
    )
    assert abs(errors.mean() - exact) <= 4 * errors.std() / math.sqrt(len(errors))
    with pytest.raises(ValueError, match="bucket_size"):
        compress.qsgd(levels, bucket_size=0)


def test_qsgd_with_error_feedback_conserves_mass():
    grads_seq = _stream(20)
    sent, state = _run(compress.qsgd(2, error_feedback=True), grads_seq)
    _assert_mass_conserved(sent, state.inner.residual, grads_seq)


# --- powersgd -----------------------------------------------------------------------------------

MATRIX_GRADS = {
    "conv": jax.random.normal(jax.random.PRNGKey(5), (3, 3, 4, 6)),  # 36 x 6
    "dense": jax.random.normal(jax.random.PRNGKey(6), (10, 7)),
    "bias": jax.random.normal(jax.random.PRNGKey(7), (7,)),
}


@pytest.mark.parametrize("rank", [1, 3])
def test_powersgd_approximation_has_rank_at_most_r_and_biases_pass(rank):
    sent, state = _once(compress.powersgd(rank), MATRIX_GRADS)
    assert np.linalg.matrix_rank(np.asarray(sent["dense"])) == rank
    assert np.linalg.matrix_rank(np.asarray(sent["conv"]).reshape(36, 6)) == rank
    np.testing.assert_array_equal(sent["bias"], MATRIX_GRADS["bias"])
    assert state.inner.q["bias"] is None
    assert state.inner.q["conv"].shape == (6, rank)


def test_powersgd_rank_is_capped_and_full_rank_is_exact():
    g = {"w": jax.random.normal(jax.random.PRNGKey(8), (5, 3))}
    sent, state = _once(compress.powersgd(10), g)
    assert state.inner.q["w"].shape == (3, 3)
    np.testing.assert_allclose(sent["w"], g["w"], atol=1e-5)


def test_powersgd_error_feedback_conserves_mass():
    grads_seq = _stream(20, MATRIX_GRADS)
    sent, state = _run(compress.powersgd(1), grads_seq)
    _assert_mass_conserved(sent, state.inner.residual, grads_seq)


def test_powersgd_warm_start_converges():
    key_u, key_v = jax.random.split(jax.random.PRNGKey(9))
    u, v = jax.random.normal(key_u, (12, 2)), jax.random.normal(key_v, (2, 9))
    low_rank = {"w": u @ v}
    # a rank-2 gradient is reproduced exactly (without EF, the same matrix every step)
    sent, _ = _run(compress.powersgd(2, error_feedback=False), [low_rank] * 3)
    np.testing.assert_allclose(sent[-1]["w"], low_rank["w"], atol=1e-4)
    # a full-rank one converges to its best rank-2 approximation (truncated SVD)
    m = np.asarray(low_rank["w"]) + 0.1 * np.asarray(jax.random.normal(key_v, (12, 9)))
    left, sv, right = np.linalg.svd(m)
    best = (left[:, :2] * sv[:2]) @ right[:2]
    sent, _ = _run(compress.powersgd(2, error_feedback=False), [{"w": jnp.asarray(m)}] * 30)
    first_err = np.linalg.norm(sent[0]["w"] - best)
    last_err = np.linalg.norm(sent[-1]["w"] - best)
    assert last_err < 1e-3 * np.linalg.norm(best) < first_err


@pytest.mark.parametrize("rank", [0, -1, 1.5, True, jnp.array(2)])
def test_powersgd_bad_rank(rank):
    with pytest.raises(ValueError, match="rank"):
        compress.powersgd(rank)


# --- bits ---------------------------------------------------------------------------------------


def test_bits_accounting_on_a_known_shape():
    g = {"w": jnp.arange(1.0, 33.0).reshape(8, 4), "b": jnp.ones(4)}  # 32 + 4 entries
    dense = 36 * 32

    def bits(tx):
        assert float(tx.init(g).inner.bits_sent) == 0.0
        _, state = _once(tx, g)
        assert float(state.inner.bits_dense) == dense
        return float(state.inner.bits_sent)

    # top-k: ceil(0.25 * 32) = 8 values + 5-bit indices; ceil(0.25 * 4) = 1 with a 2-bit index
    assert bits(compress.topk(0.25)) == 8 * (32 + 5) + 1 * (32 + 2)
    assert bits(compress.sign(error_feedback=False)) == 36
    assert bits(compress.sign()) == (32 + 32) + (4 + 32)
    # qsgd: norm + sign + level; s = 1 -> 1 level bit, s = 4 -> 3 (levels 0..4)
    assert bits(compress.qsgd(1)) == (32 + 32 * 2) + (32 + 4 * 2)
    assert bits(compress.qsgd(4)) == (32 + 32 * 4) + (32 + 4 * 4)
    # powersgd: 32 r (n + m) for the matrix, the bias dense
    assert bits(compress.powersgd(2)) == 32 * 2 * (8 + 4) + 4 * 32
    # masked leaves count dense
    assert bits(compress.topk(0.25, mask={"w": False, "b": True})) == 32 * 32 + 34


# --- hyperparameters ----------------------------------------------------------------------------


def test_hyperparameters_live_in_the_state():
    state = optax.chain(compress.topk(0.1), compress.qsgd(4), jopt.sgd(0.1)).init(GRADS)
    hp = jopt.hparams(state)
    assert float(hp["ratio"]) == pytest.approx(0.1)
    assert float(hp["levels"]) == 4.0
    assert jopt.hparams(compress.powersgd(2).init(GRADS)) == {}
    # a schedule: 50% of the entries at the first step, 10% from the second on
    tx = compress.topk(optax.piecewise_constant_schedule(0.5, {1: 0.2}), error_feedback=False)
    sent, state = _run(tx, [GRADS, GRADS])
    assert [np.count_nonzero(c["kernel"]) for c in sent] == [20, 4]
    assert float(jopt.hparams(state)["ratio"]) == pytest.approx(0.1)
    # set_hparams changes the ratio used by the next step
    tx = optax.chain(compress.topk(0.1), jopt.sgd(1.0))
    updates, _ = tx.update(GRADS, jopt.set_hparams(tx.init(GRADS), ratio=0.5))
    assert np.count_nonzero(updates["kernel"]) == 20
    half = compress.topk(0.5)
    np.testing.assert_allclose(
        updates["kernel"], -half.update(GRADS, half.init(GRADS))[0]["kernel"]
    )


def test_vmap_over_ratio_equals_separate_runs():
    target = jnp.linspace(-1.0, 1.0, 12).reshape(3, 4)
    loss = lambda w: 0.5 * jnp.sum((w - target) ** 2 * jnp.arange(1.0, 13.0).reshape(3, 4))

    def train(ratio):
        tx = optax.chain(compress.topk(ratio), jopt.sgd(0.1))
        w, state = jnp.zeros((3, 4)), tx.init(jnp.zeros((3, 4)))
        for _ in range(5):
            updates, state = tx.update(jax.grad(loss)(w), state, w)
            w = optax.apply_updates(w, updates)
        return w

    ratios = [0.1, 0.25, 0.5, 1.0]
    batched = jax.jit(jax.vmap(train))(jnp.array(ratios))
    for r, w in zip(ratios, batched):
        np.testing.assert_allclose(w, train(r), rtol=1e-6, atol=1e-7)
    assert not np.allclose(batched[0], batched[-1])


# --- bad input ----------------------------------------------------------------------------------


@pytest.mark.parametrize("ratio", [0.0, 1.5, -0.1, float("nan")])
def test_bad_ratio(ratio):
    with pytest.raises(ValueError, match="ratio"):
        compress.topk(ratio)


@pytest.mark.parametrize("levels", [0, 0.5, 2.5, -1])
def test_bad_levels(levels):
    with pytest.raises(ValueError, match="levels"):
        compress.qsgd(levels)


def test_bad_flags_and_mask():
    with pytest.raises(TypeError, match="error_feedback"):
        compress.topk(0.1, error_feedback="yes")
    with pytest.raises(TypeError, match="seed"):
        compress.qsgd(2, seed=1.5)
    tx = compress.sign(mask={"kernel": True})
    with pytest.raises(ValueError, match="mask"):
        tx.update(GRADS, tx.init(GRADS))


def test_module_exports_the_state_classes():
    for name in ("TopkState", "SignState", "QsgdState", "PowersgdState"):
        assert hasattr(gradients, name)
    assert isinstance(compress.topk(0.5).init(GRADS).inner, gradients.TopkState)
