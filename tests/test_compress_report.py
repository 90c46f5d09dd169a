"""jopt.compress.nbytes: the bytes of size_report, traceable; equal to size_report on concrete
params, and to the closed form when the zeros come from a sparsity."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jopt.compress import nbytes, quantize_params, size_report


def make_params(seed=0, zero_fraction=0.7, zero_run=True):
    """Two kernels with random zeros plus a long run of zeros (filler entries), and a bias."""
    rng = np.random.default_rng(seed)
    a = rng.normal(size=(40, 30)).astype(np.float32)
    b = rng.normal(size=(30, 7)).astype(np.float32)
    a[rng.random(a.shape) < zero_fraction] = 0.0
    b[rng.random(b.shape) < zero_fraction] = 0.0
    if zero_run:
        a[5:15] = 0.0  # 300 consecutive zeros: gaps longer than 2**index_bits
    return {"a": {"kernel": a, "bias": rng.normal(size=30).astype(np.float32)}, "b": {"kernel": b}}


CONFIGS = [
    {},
    *({"bits": b} for b in (2, 3, 4, 5, 8)),
    {"bits": 4, "per_channel": False},
    *({"clusters": k} for k in (2, 3, 16, 17, 256)),
    *({"sparse": True, "index_bits": i} for i in (2, 3, 5, 8)),
    {"sparse": True, "index": "bitmask"},
    {"sparse": True, "bits": 4},
    {"sparse": True, "bits": 8, "index": "bitmask", "per_channel": False},
    {"sparse": True, "clusters": 16, "index_bits": 3},
    {"sparse": True, "clusters": 5, "index": "bitmask"},
    {"bits": 3, "mask": {"a": {"kernel": True, "bias": True}, "b": {"kernel": False}}},
    {"sparse": True, "mask": {"a": {"kernel": False, "bias": True}, "b": {"kernel": True}}},
]


@pytest.mark.parametrize(
    "config",
    CONFIGS,
    ids=lambda c: (
        ",".join(f"{k}={v}" for k, v in c.items() if k != "mask") + (",mask" if "mask" in c else "")
    ),
)
@pytest.mark.parametrize("seed", [0, 1])
def test_nbytes_equals_size_report(config, seed):
    params = make_params(seed)
    expected = size_report(params, **config)["bytes_after"]
    assert float(nbytes(params, **config)) == expected
    # traced params and traced numbers give the same count
    numeric = {k: v for k, v in config.items() if k in ("bits", "clusters")}
    static = {k: v for k, v in config.items() if k not in numeric}
    traced = jax.jit(lambda p, n: nbytes(p, **n, **static))(params, numeric)
    assert float(traced) == expected


def test_nbytes_vmapped_over_bits_and_clusters_equals_size_report():
    params = make_params(2)
    bits = jnp.arange(2, 9)
    got = jax.jit(jax.vmap(lambda b: nbytes(params, bits=b, sparse=True)))(bits)
    want = [size_report(params, bits=int(b), sparse=True)["bytes_after"] for b in bits]
    np.testing.assert_array_equal(got, want)
    clusters = jnp.array([2, 4, 5, 64, 65, 1000])
    got = jax.vmap(lambda k: nbytes(params, clusters=k))(clusters.astype(jnp.float32))
    want = [size_report(params, clusters=int(k))["bytes_after"] for k in clusters]
    np.testing.assert_array_equal(got, want)
    # the params' zeros, traced: the size of each member of a batch of pruned models
    batch = jax.tree.map(lambda x: np.stack([x, np.where(np.abs(x) > 1.0, x, 0.0)]), params)
    got = jax.vmap(lambda p: nbytes(p, bits=4, sparse=True))(batch)
    want = [
        size_report(jax.tree.map(lambda x, i=i: x[i], batch), bits=4, sparse=True)["bytes_after"]
        for i in range(2)
    ]
    np.testing.assert_array_equal(got, want)


def layer_pruned(params, s):
    """Each kernel with its round(s * n) smallest magnitudes zeroed (prune(s, scope="layer"))."""

    def one(x):
        if x.ndim < 2:
            return x
        k = int(np.round(np.float32(s) * np.float32(x.size)))
        flat = x.ravel().copy()
        flat[np.argsort(np.abs(flat), kind="stable")[:k]] = 0.0
        return flat.reshape(x.shape)

    return jax.tree.map(one, params)


def closed_form(params, s, value_bits, overhead, index_bits=None):
    """Sum over kernels of ceil(z * (v + i) / 8) (relative) or ceil((z v + n) / 8) (bitmask)."""
    total = 0
    for x in jax.tree.leaves(params):
        if x.ndim < 2:
            total += 4 * x.size
            continue
        z = x.size - int(np.round(np.float32(s) * np.float32(x.size)))
        payload = z * (value_bits + index_bits) if index_bits else z * value_bits + x.size
        total += math.ceil(payload / 8) + overhead(x)
    return total


@pytest.mark.parametrize("s", [0.0, 0.5, 0.9, 0.97])
def test_nbytes_from_a_sparsity_matches_the_pruned_model_and_the_closed_form(s):
    dense = make_params(3, zero_fraction=0.0, zero_run=False)
    pruned = layer_pruned(dense, s)
    channels = lambda x: 4 * x.shape[-1]
    for kwargs, value_bits, overhead in [
        ({}, 32, lambda x: 0),
        ({"bits": 4}, 4, channels),
        ({"clusters": 16}, 4, lambda x: 64),
    ]:
        bitmask = float(nbytes(dense, sparsity=s, index="bitmask", **kwargs))
        assert bitmask == closed_form(dense, s, value_bits, overhead)
        report = size_report(pruned, sparse=True, index="bitmask", **kwargs)["bytes_after"]
        assert bitmask == report
        # relative index: no filler zeros counted; exact when no gap exceeds 2**index_bits
        relative = float(nbytes(dense, sparsity=s, index_bits=8, **kwargs))
        assert relative == closed_form(dense, s, value_bits, overhead, index_bits=8)
        if s <= 0.9:
            report = size_report(pruned, sparse=True, index_bits=8, **kwargs)["bytes_after"]
            assert relative == report
        lower = float(nbytes(dense, sparsity=s, index_bits=2, **kwargs))
        assert lower <= size_report(pruned, sparse=True, index_bits=2, **kwargs)["bytes_after"]
    # traced: one program for a grid of (sparsity, bits)
    grid_s, grid_b = jnp.meshgrid(jnp.array([0.5, 0.9]), jnp.array([2.0, 8.0]))
    sizes = jax.jit(jax.vmap(lambda a, b: nbytes(dense, sparsity=a, bits=b, index="bitmask")))(
        grid_s.ravel(), grid_b.ravel()
    )
    want = [
        closed_form(dense, float(a), int(b), channels)
        for a, b in zip(grid_s.ravel(), grid_b.ravel())
    ]
    np.testing.assert_array_equal(sizes, want)


def test_nbytes_bad_arguments():
    params = make_params()
    with pytest.raises(ValueError, match="not both"):
        nbytes(params, bits=4, clusters=16)
    with pytest.raises(ValueError, match=r"nbytes: bits must be an int in \[2, 8\], got 9"):
        nbytes(params, bits=9)
    with pytest.raises(ValueError, match=r"nbytes: bits must be an int in \[2, 8\], got 4.5"):
        nbytes(params, bits=4.5)
    with pytest.raises(ValueError, match="nbytes: clusters must be an int >= 2, got 1"):
        nbytes(params, clusters=1)
    with pytest.raises(ValueError, match=r"nbytes: sparsity must be in \[0, 1\], got 1.5"):
        nbytes(params, sparsity=1.5)
    with pytest.raises(ValueError, match="index must be 'relative' or 'bitmask'"):
        nbytes(params, sparse=True, index="csr")
    with pytest.raises(ValueError, match="index_bits must be an int >= 1"):
        nbytes(params, sparse=True, index_bits=0)
    with pytest.raises(TypeError, match="QuantizedParams"):
        nbytes(quantize_params(params, 8))
