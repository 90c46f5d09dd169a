"""experiments/sparse_training.py: the random-mask baseline, and --quick end to end."""

import json

import jax
import jax.numpy as jnp
import numpy as np
import optax

from experiments import common, sparse_training


def test_random_mask_prunes_an_exact_random_count_for_good():
    params = {"w": jnp.ones((10, 20)), "b": jnp.ones((20,))}
    tx = jax.jit(lambda s: sparse_training.random_mask(s, jax.random.PRNGKey(3)).init(params))
    masks = tx(jnp.float32(0.85)).masks  # a traced sparsity gives the exact count too
    assert int((~masks["w"]).sum()) == 170 and masks["b"].shape == () and bool(masks["b"])
    other = sparse_training.random_mask(0.85, jax.random.PRNGKey(4)).init(params).masks
    assert not np.array_equal(masks["w"], other["w"])  # another key, another mask
    # after each update of a chain, every pruned weight is exactly 0 and the others move
    chain = optax.chain(optax.sgd(0.1), sparse_training.random_mask(0.85, jax.random.PRNGKey(3)))
    state = chain.init(params)
    for step in range(3):
        grads = jax.tree.map(lambda p: jnp.full_like(p, step + 1.0), params)
        updates, state = chain.update(grads, state, params)
        params = optax.apply_updates(params, updates)
        assert int((params["w"] == 0).sum()) == 170
        np.testing.assert_allclose(params["w"][masks["w"]], 1 - 0.1 * sum(range(1, step + 2)))


def test_compare_and_kendall_tau():
    a = {"mean": 80.0, "se": 0.3}
    assert sparse_training.compare(a, {"mean": 79.0, "se": 0.4}) == {
        "diff": 1.0,
        "se": 0.5,
        "call": "tie",  # 1.0 <= 2 x 0.5
    }
    assert sparse_training.compare(a, {"mean": 78.9, "se": 0.4})["call"] == "above"
    assert sparse_training.compare({"mean": 78.9, "se": 0.4}, a)["call"] == "below"
    assert sparse_training.kendall_tau([5, 4, 3]) == 1.0
    assert sparse_training.kendall_tau([3, 4, 5]) == -1.0
    assert sparse_training.kendall_tau([4, 5, 3]) == 1 / 3
    assert sparse_training.target_pruned(0.95, [4000, 10000, 1000]) == [3800, 9500, 950]


def test_sparse_training_quick(tmp_path, capsys):
    sparse_training.main(["--quick", "--out-dir", str(tmp_path)])
    assert "overall:" in capsys.readouterr().out
    record = json.loads((tmp_path / "sparse_training.json").read_text())
    for key in ("paper", "claim", "pass_criterion", "measured", "verdict", "command"):
        assert key in record, key
    assert record["pilot"] is None and "--quick" in record["command"]
    assert (tmp_path / "sparse_training.png").stat().st_size > 10_000

    measured = record["measured"]["mlp"]
    sizes = [4000, 10000, 1000]  # MLP 40-100-100-10 kernels
    assert measured["dense"]["pruned_per_layer"] == [0, 0, 0]
    for method in sparse_training.METHODS:
        for s in sparse_training.SPARSITIES:
            cell = measured[method][f"{s:g}"]
            # every method's mask ends at exactly round(s n) pruned weights in every kernel
            assert cell["target_pruned_per_layer"] == [round(s * n) for n in sizes]
            assert cell["pruned_per_layer"] == cell["target_pruned_per_layer"], (method, s)
            assert cell["kept_at_zero"] >= 0  # pruned weights are all exactly 0
            assert cell["exact"] and 0 <= cell["mean"] <= 100 and len(cell["per_seed"]) == 1
    assert record["final_sparsity_exact"] is True

    # the verdict, recomputed from the measured cells and the fixed criterion
    order = sparse_training.ORDER
    at80 = {m: measured[m]["0.8"] for m in order}
    ordering_ok = all(
        sparse_training.compare(at80[a], at80[b])["call"] != "below"
        for i, a in enumerate(order)
        for b in order[i + 1 :]
    )
    rigl_ok = sparse_training.compare(measured["rigl"]["0.95"], measured["set"]["0.95"])
    checks = {
        "ordering_at_80_mlp": ordering_ok,
        "rigl_beats_set_at_95_mlp": rigl_ok["call"] == "above",
    }
    assert record["verdict"]["checks"] == checks
    assert record["verdict"]["overall"] == common.overall(checks)
    assert (record["verdict"]["likely_reason"] is None) == (
        record["verdict"]["overall"] == "reproduced"
    )
