"""jopt.compress.masks: leaf masks and the exact k-smallest selection, against NumPy; and the
rule that modules share helpers by public name only."""

import ast
import pathlib

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jopt
from jopt.compress import masks

ROOT = pathlib.Path(__file__).resolve().parents[1]


def numpy_keep_all_but_k_smallest(values, k):
    """Drops the k smallest values, ties broken by position (earliest dropped first)."""
    order = np.lexsort((np.arange(values.size), values))  # by value, then by position
    keep = np.ones(values.size, bool)
    keep[order[:k]] = False
    return keep


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_keep_all_but_k_smallest_equals_a_stable_numpy_sort(seed):
    rng = np.random.default_rng(seed)
    scores = rng.normal(size=300).astype(np.float32)
    scores[::7] = scores[3]  # ties
    scores[::11] = 0.0
    candidates = rng.random(300) < 0.8
    keys = masks.order_keys(jnp.asarray(scores), jnp.asarray(candidates))
    ranked = np.where(candidates, np.abs(scores), -1.0)  # non-candidates rank lowest
    select = jax.jit(masks.keep_all_but_k_smallest)
    for k in (0, 1, 17, 60, 150, 299, 300):
        np.testing.assert_array_equal(select(keys, k), numpy_keep_all_but_k_smallest(ranked, k))


def test_kth_smallest_and_the_per_leaf_variant_equal_numpy():
    rng = np.random.default_rng(3)
    leaves = [rng.integers(0, 2**31 - 1, size=n, dtype=np.int64).astype(np.int32) for n in (5, 40)]
    for leaf in leaves:
        for k in (1, 3, leaf.size):
            assert int(masks.kth_smallest(jnp.asarray(leaf), k)) == np.sort(leaf)[k - 1]
    assert int(masks.kth_smallest(jnp.asarray(leaves[0]), 0)) == 0
    ks = jnp.array([2, 31])
    per_leaf = masks.keep_all_but_k_smallest_per_leaf([jnp.asarray(x) for x in leaves], ks)
    for leaf, k, got in zip(leaves, ks, per_leaf):
        np.testing.assert_array_equal(got, numpy_keep_all_but_k_smallest(leaf, int(k)))
        np.testing.assert_array_equal(got, masks.keep_all_but_k_smallest(jnp.asarray(leaf), k))


def test_leaf_masks_defaults_and_structure_errors():
    params = {"kernel": jnp.ones((3, 2)), "bias": jnp.ones(2), "scale": jnp.ones(())}
    assert masks.kernels(params) == {"kernel": True, "bias": False, "scale": False}
    assert masks.every_leaf(params) == {"kernel": True, "bias": True, "scale": True}
    assert masks.resolve_mask(None, params) == masks.kernels(params)
    custom = lambda p: {"kernel": False, "bias": 1, "scale": np.bool_(True)}
    assert masks.resolve_mask(custom, params) == {"kernel": False, "bias": True, "scale": True}
    assert masks.flat_mask(None, params, default=masks.every_leaf) == [True, True, True]
    assert masks.flat_mask({"kernel": 1, "bias": 0, "scale": 0}, params) == [False, True, False]
    with pytest.raises(ValueError, match="prune: mask must have the structure of the tree"):
        masks.flat_mask({"kernel": True}, params, kind="prune")
    with pytest.raises(ValueError, match="quantize needs the params"):
        masks.needs_params("quantize", None)
    # the public name of jopt.regularizers is the shared helper
    assert jopt.regularizers.kernels is masks.kernels


def test_seed_key_and_check_seed():
    np.testing.assert_array_equal(masks.seed_key(5), jax.random.PRNGKey(5))
    key = jax.random.PRNGKey(9)
    np.testing.assert_array_equal(masks.seed_key(key), key)
    for bad in (True, 1.5, "0", jnp.zeros(3, jnp.uint32)):
        with pytest.raises(TypeError, match="topk: seed"):
            masks.check_seed("topk", bad)


def _private_imports(path):
    """(module, name) for every ``from jopt... import _name`` in the file at ``path``."""
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("jopt"):
            found += [(node.module, a.name) for a in node.names if a.name.startswith("_")]
    return found


def test_compression_modules_import_no_private_names_from_each_other():
    files = [*sorted((ROOT / "jopt" / "compress").glob("*.py")), ROOT / "jopt" / "regularizers.py"]
    assert len(files) >= 7
    offenders = {str(f.relative_to(ROOT)): _private_imports(f) for f in files}
    assert {f: names for f, names in offenders.items() if names} == {}
