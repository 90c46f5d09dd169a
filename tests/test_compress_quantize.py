"""jopt.compress.quantize (QAT) and quantize_params (integer storage)."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import jopt
from jopt.compress import fake_quantize, quantize, quantize_params

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


def random_like(params, key, scale=1e-2):
    leaves, treedef = jax.tree.flatten(params)
    keys = jax.random.split(jax.random.fold_in(jax.random.PRNGKey(0), key), len(leaves))
    return jax.tree.unflatten(
        treedef, [scale * jax.random.normal(k, p.shape) for k, p in zip(keys, leaves)]
    )


def train(tx, params, steps, key=0):
    """`steps` updates of tx with random unit-normal gradients, in one scan."""

    def step(carry, t):
        params, state = carry
        updates, state = tx.update(random_like(params, key + t, scale=1.0), state, params)
        return (optax.apply_updates(params, updates), state), None

    (params, state), _ = jax.lax.scan(step, (params, tx.init(params)), jnp.arange(steps))
    return params, state


def distinct_per_channel(kernel):
    kernel = np.asarray(kernel)
    return max(len(np.unique(kernel[..., c])) for c in range(kernel.shape[-1]))


def qat_and_plain(params, bits, steps=20):
    qat = train(optax.chain(jopt.sgd(0.01), quantize(bits)), params, steps)
    return qat, train(jopt.sgd(0.01), params, steps)[0]


# one compile for every test below: bits is traced and vmapped
QAT_BITS = jnp.array([2.0, 4.0, 8.0])
qat_sweep = jax.jit(jax.vmap(qat_and_plain, in_axes=(None, 0)))
grid = jax.jit(jax.vmap(fake_quantize))


def test_qat_levels_per_channel_and_biases_untouched():
    (new, state), plain = qat_sweep(make_params(), QAT_BITS)
    for i, bits in enumerate([2, 4, 8]):
        for name in SHAPES:
            kernel = new[name]["kernel"][i]
            assert distinct_per_channel(kernel) <= 2**bits - 1, (bits, name)
            # exactly on the grid of its own latent: params == Q(latent)
            latent = state[1].inner.latent[name]["kernel"][i]
            np.testing.assert_array_equal(kernel, grid(latent[None], QAT_BITS[i : i + 1])[0])
            # biases get the plain optimizer's updates
            np.testing.assert_allclose(new[name]["bias"][i], plain[name]["bias"][i], rtol=1e-6)
        if bits < 8:
            assert distinct_per_channel(new["dense_1"]["kernel"][i]) == 2**bits - 1


def test_vmap_over_bits_equals_a_single_run():
    params = make_params()
    (batched, _), _ = qat_sweep(params, QAT_BITS)
    (single, state), _ = jax.jit(qat_and_plain)(params, 4.0)
    np.testing.assert_array_equal(batched["dense_1"]["kernel"][1], single["dense_1"]["kernel"])
    assert float(jopt.hparams(state)["bits"]) == 4.0


def test_latent_gets_the_straight_through_update():
    params = make_params()
    g = random_like(params, 7, scale=1.0)
    tx = optax.chain(jopt.sgd(0.1), quantize(4))
    updates, state = jax.jit(tx.update)(g, tx.init(params), params)
    latent = state[1].inner.latent["dense_0"]["kernel"]
    np.testing.assert_allclose(
        latent, params["dense_0"]["kernel"] - 0.1 * g["dense_0"]["kernel"], atol=1e-7
    )
    new = optax.apply_updates(params, updates)
    np.testing.assert_allclose(new["dense_0"]["kernel"], fake_quantize(latent, 4), atol=1e-7)


def test_one_bit_is_sign_times_mean():
    w = jax.random.normal(jax.random.PRNGKey(1), (6, 3))
    q = fake_quantize(w, 1)
    expected = np.where(w >= 0, 1.0, -1.0) * np.abs(np.asarray(w)).mean(axis=0)
    np.testing.assert_allclose(q, expected, rtol=1e-6)


def test_per_tensor_levels():
    w = jax.random.normal(jax.random.PRNGKey(2), (50, 20))
    q = fake_quantize(w, 3, per_channel=False)
    assert len(np.unique(np.asarray(q))) <= 7
    np.testing.assert_allclose(np.abs(q).max(), np.abs(w).max(), rtol=2.0 ** (3 - 21))


@pytest.mark.parametrize("bits", [2, 3, 4, 8])
def test_ptq_error_at_most_half_a_step_and_round_trip(bits):
    params = make_params(1)
    qp = quantize_params(params, bits=bits)
    back = qp.dequantize()
    qmax = 2 ** (bits - 1) - 1
    for name in SHAPES:
        w = np.asarray(params[name]["kernel"])
        scale = np.asarray(qp.tree[name]["kernel"].scale)
        ideal = np.abs(w).max(axis=0, keepdims=True) / qmax  # stored scale: rounded up slightly
        assert np.all(scale >= ideal) and np.all(scale <= ideal * (1 + 2.0 ** (bits - 21)))
        error = np.abs(np.asarray(back[name]["kernel"]) - w)
        assert np.all(error <= scale / 2 * (1 + 1e-5))
        # dequantize(quantize(.)) equals the QAT grid, and quantizing again keeps the codes
        np.testing.assert_allclose(back[name]["kernel"], fake_quantize(w, bits), atol=1e-6)
        again = quantize_params(back, bits=bits).dequantize()
        np.testing.assert_allclose(  # same codes; the scale may round up once more
            again[name]["kernel"], back[name]["kernel"], rtol=2.0 ** (bits - 20)
        )
        np.testing.assert_array_equal(back[name]["bias"], params[name]["bias"])
        codes = np.asarray(qp.tree[name]["kernel"].codes())
        assert codes.min() >= -qmax and codes.max() <= qmax


def test_storage_sizes():
    params = make_params()
    kernels = {name: {"kernel": params[name]["kernel"]} for name in SHAPES}
    n = sum(int(np.prod(s)) for s in SHAPES.values())
    channels = sum(s[-1] for s in SHAPES.values())
    q8, q4, q2 = (quantize_params(kernels, bits=b) for b in (8, 4, 2))
    assert q8.tree["dense_0"]["kernel"].data.dtype == jnp.int8
    assert q4.tree["dense_0"]["kernel"].data.dtype == jnp.uint8
    assert q8.nbytes == n + 4 * channels
    assert q4.nbytes == n // 2 + 4 * channels
    assert q2.nbytes == n // 4 + 4 * channels
    assert 3.5 < 4 * n / q8.nbytes <= 4.0  # ~4x, less the per-channel float32 scales
    assert 6.5 < 4 * n / q4.nbytes <= 8.0  # ~8x
    per_tensor = quantize_params(kernels, bits=4, per_channel=False)
    assert per_tensor.nbytes == n // 2 + 4 * len(SHAPES)
    assert 7.9 < 4 * n / per_tensor.nbytes <= 8.0
    # biases stay float32 and are counted as such
    assert quantize_params(params, bits=8).nbytes == q8.nbytes + 4 * channels


def test_odd_sizes_pack_and_unpack():
    w = jax.random.normal(jax.random.PRNGKey(3), (7, 3))
    for bits in (2, 3, 4):
        qp = quantize_params({"k": w}, bits=bits)
        np.testing.assert_allclose(qp.dequantize()["k"], fake_quantize(w, bits), atol=1e-6)


def test_bad_bits():
    for bad in (0, 17, 2.5, -1):
        with pytest.raises(ValueError, match="bits"):
            quantize(bad)
    for bad in (1, 9, 16, 4.0, True):
        with pytest.raises(ValueError, match="bits"):
            quantize_params(make_params(), bits=bad)


def test_size_report_matches_storage():
    from jopt.compress import share_nbytes, size_report

    params = make_params()
    for bits in (4, 8):
        report = size_report(params, bits=bits)
        assert report["bytes_after"] == quantize_params(params, bits=bits).nbytes
        assert report["bytes_before"] == sum(4 * p.size for p in jax.tree.leaves(params))
    assert size_report(params, clusters=16)["bytes_after"] == share_nbytes(params, 16)


def test_grid_scale_equals_the_frexp_ldexp_closed_form():
    from jopt.compress.quantize import _grid_scale

    rng = np.random.default_rng(0)
    amax = np.concatenate([rng.lognormal(0, 8, 20000), [0.0, 1.0, 0.5, 2.0**-100, 3e38]])
    amax = amax.astype(np.float32)  # raw stays normal: XLA on CPU flushes subnormals to zero
    for bits in range(1, 17):
        # qmax = 1: the division is XLA's (it may differ from numpy's by an ulp), not under test
        fraction, exponent = np.frexp(amax)
        m = 22 - bits  # ceil to an m-bit significand
        expected = np.where(amax > 0, np.ldexp(np.ceil(np.ldexp(fraction, m)), exponent - m), 1)
        np.testing.assert_array_equal(_grid_scale(amax, 1.0, bits), expected.astype(np.float32))


def _bc_run(tx, params, grads, steps):
    def step(carry, _):
        params, state = carry
        updates, state = tx.update(grads, state, params)
        new = optax.apply_updates(params, updates)
        return (new, state), new["w"]["kernel"]

    (params, state), history = jax.lax.scan(step, (params, tx.init(params)), None, length=steps)
    return params, state, history


def test_binary_connect_deterministic_closed_form():
    from jopt.compress import binary_connect

    params = {"w": make_params()["dense_0"]}
    grads = random_like(params, 3, scale=1.0)
    h = np.sqrt(6.0 / (40 + 100))  # Glorot bound of a 40x100 kernel
    tx = optax.chain(jopt.sgd(0.01), binary_connect())
    new, state, history = jax.jit(lambda p: _bc_run(tx, p, grads, 5))(params)
    latent = np.clip(np.asarray(params["w"]["kernel"]), -h, h)  # init clips the latent
    for _ in range(5):  # the closed form: clipped accumulation of the constant sgd step
        latent = np.clip(latent - 0.01 * np.asarray(grads["w"]["kernel"]), -h, h)
    bc = state[1].inner
    np.testing.assert_allclose(bc.latent["w"]["kernel"], latent, atol=1e-6)
    np.testing.assert_allclose(bc.scale["w"]["kernel"], h, rtol=1e-6)
    np.testing.assert_array_equal(new["w"]["kernel"], np.where(latent >= 0, h, -h).astype("f4"))
    np.testing.assert_allclose(np.abs(history), h, rtol=2.0**-22)  # +-H up to an ulp
    np.testing.assert_array_equal(history[-1] > 0, latent >= 0)
    plain = optax.apply_updates(params, jax.tree.map(lambda g: -0.05 * g, grads))
    np.testing.assert_allclose(new["w"]["bias"], plain["w"]["bias"], atol=1e-6)


def test_binary_connect_stochastic_frequency_is_the_hard_sigmoid():
    from jopt.compress import binary_connect

    latent = jnp.linspace(-1.5, 1.5, 61)[:, None] * jnp.ones((1, 4))  # |l| > H clips
    params = {"w": {"kernel": latent}}
    zero = {"w": {"kernel": jnp.zeros_like(latent)}}
    tx = binary_connect(scale=1.0, stochastic=True, key=jax.random.PRNGKey(5))
    _, _, history = jax.jit(lambda p: _bc_run(tx, p, zero, 2000))(params)
    frequency = np.asarray((history > 0).mean(axis=(0, 2)))  # (61,)
    expected = np.clip((np.clip(latent[:, 0], -1, 1) + 1) / 2, 0, 1)
    np.testing.assert_allclose(frequency, expected, atol=0.03)  # 4 sigma of 8000 draws
    mean = np.asarray(history.mean(axis=(0, 2)))  # unbiased: E[theta] = clip(l, -H, H)
    np.testing.assert_allclose(mean, np.clip(latent[:, 0], -1, 1), atol=0.06)
    with pytest.raises(ValueError, match="scale"):
        binary_connect(scale=0.0)
