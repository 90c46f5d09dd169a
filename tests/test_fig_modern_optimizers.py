"""experiments/modern_optimizers.py: its helpers, and its --quick form end to end."""

import json

import jax
import jax.numpy as jnp
import numpy as np
import optax

import jopt
from experiments import common, modern_optimizers


def test_muon_takes_the_hidden_matrices_and_attention_only():
    model = jopt.models.Transformer()
    shapes = jax.eval_shape(model.init, jax.random.key(0), jnp.zeros((1, 10, 4)))["params"]
    dims = modern_optimizers.muon_dimension_numbers(shapes)
    block = dims["TransformerBlock_0"]
    attention = block["MultiHeadDotProductAttention_0"]
    assert attention["query"]["kernel"] == optax.contrib.MuonDimensionNumbers(0, (1, 2))
    assert attention["out"]["kernel"] == optax.contrib.MuonDimensionNumbers((0, 1), 2)
    assert block["Dense_0"]["kernel"] == optax.contrib.MuonDimensionNumbers(0, 1)
    assert attention["query"]["bias"] is None and block["LayerNorm_0"]["scale"] is None
    assert dims["head"]["kernel"] is None and dims["embed"]["kernel"] is None
    assert dims["pos_embedding"] is None
    mlp = jax.eval_shape(jopt.models.MLP().init, jax.random.key(0), jnp.zeros((1, 40)))["params"]
    dims = modern_optimizers.muon_dimension_numbers(mlp)
    assert dims["Dense_0"]["kernel"] is not None and dims["Dense_1"]["kernel"] is not None
    assert dims["Dense_2"]["kernel"] is None  # the classifier head


def test_schedule_free_eval_params_are_found_inside_from_optax_and_one_of():
    params = {"w": jnp.array([1.0, -2.0])}
    sf = modern_optimizers.build("schedule_free", 0.1, 0.0, 0.999, 100, None)
    tx = jopt.one_of(jnp.int32(1), [jopt.adamw(0.1), sf])
    state = jopt.train.TrainState.create(apply_fn=lambda *a, **k: None, params=params, tx=tx)
    for _ in range(10):
        state = state.apply_gradients(grads=jax.tree.map(lambda p: 2 * p, state.params))
    inner = state.opt_state[1].inner_state  # from_optax keeps optax's state as inner_state
    assert modern_optimizers.schedule_free_state(state.opt_state) is inner
    x = optax.contrib.schedule_free_eval_params(inner, state.params)
    chosen = modern_optimizers.deployed(state, jnp.bool_(True))
    np.testing.assert_allclose(chosen.params["w"], x["w"])
    assert not np.allclose(x["w"], state.params["w"])  # x differs from the gradient point y
    other = modern_optimizers.deployed(state, jnp.bool_(False))
    np.testing.assert_array_equal(other.params["w"], state.params["w"])
    plain = state.replace(opt_state=jopt.adamw(0.1).init(params))
    assert modern_optimizers.schedule_free_state(plain.opt_state) is None
    assert modern_optimizers.deployed(plain, jnp.bool_(True)) is plain


def test_steps_to_interpolates_between_evaluations():
    steps = [10, 20, 30]
    assert modern_optimizers.steps_to(np.array([0.2, 0.4, 0.6]), steps, 0.5) == 25.0
    assert modern_optimizers.steps_to(np.array([0.2, 0.4, 0.6]), steps, 0.1) == 10.0
    assert np.isnan(modern_optimizers.steps_to(np.array([0.2, 0.4, 0.6]), steps, 0.7))


def test_modern_optimizers_quick(tmp_path, capsys):
    modern_optimizers.main(["--quick", "--out-dir", str(tmp_path)])
    assert "verdict muon" in capsys.readouterr().out
    record = json.loads((tmp_path / "modern_optimizers.json").read_text())
    keys = ("paper", "claims", "pass_criterion", "pilot", "measured", "verdict", "recipe")
    assert all(key in record for key in keys)
    assert record["wall_time_s"] > 0 and record["command"].endswith("--quick")
    assert record["pass_criterion"] == modern_optimizers.PASS_CRITERION
    names = record["optimizers"]
    assert names == list(modern_optimizers.OPTIMIZERS)
    measured = record["measured"]
    n_evals = record["recipe"]["evaluations_per_run"]
    assert n_evals == 3

    for m in modern_optimizers.MODELS:
        grids = record["grids"][m]
        shape = (len(grids["learning_rates"]), len(grids["weight_decays"]))
        assert shape == (2, 1)
        for name in names:
            val = np.array(grids[name]["val_accuracy_mean"], float)
            test = np.array(grids[name]["test_accuracy_mean"], float)
            assert val.shape == test.shape == shape
            assert np.all((val >= 0) & (val <= 1)) and np.all((test >= 0) & (test <= 1))
            best = measured["best"][m][name]
            i, j = np.unravel_index(np.argmax(val), shape)
            assert best["learning_rate"] == grids["learning_rates"][i]
            assert best["weight_decay"] == grids["weight_decays"][j]
            assert np.isclose(best["test_accuracy"], test[i, j])
            assert len(record["curves"][m][name]["val_accuracy"]) == n_evals
        # the traced switch and the separate Muon program run five different optimizers
        finals = [tuple(np.ravel(grids[n]["val_accuracy_mean"])) for n in names]
        assert len(set(finals)) == len(names)
        # schedule-free is evaluated at its x, every other optimizer at its own parameters
        shift = measured["eval_param_shift_max"][m]
        assert shift["schedule_free"] > 0
        assert all(shift[n] == 0 for n in names if n != "schedule_free")
    # the MLP learns in 48 steps with every optimizer (a constant guess scores about 0.1)
    assert min(measured["best"]["mlp"][n]["val_accuracy"] for n in names) > 0.2

    # each verdict follows from its fixed criterion and the measured numbers
    verdict = record["verdict"]
    for m in modern_optimizers.MODELS:
        to = measured["steps_to_target"][m]
        ratio = to["muon"]["steps_to_val_accuracy"] / to["adamw"]["steps_to_val_accuracy"]
        assert np.isclose(to["muon_over_adamw"], ratio, equal_nan=True)
        assert verdict["muon"][m] == bool(ratio <= 0.6)
        gap = 100 * (
            measured["best"][m]["schedule_free"]["test_accuracy"]
            - measured["best"][m]["adamw"]["test_accuracy"]
        )
        assert np.isclose(measured["schedule_free_minus_adamw_test_points"][m], gap)
        assert verdict["schedule_free"][m] == bool(gap >= -1.0)
    theta = measured["convex_problem_mean_theta"]
    assert all(len(v) == len(modern_optimizers.TOY_BETA2S) for v in theta.values())
    assert all(-1.0 <= t <= 1.0 for v in theta.values() for t in v)
    convex = all(t <= -0.5 for t in theta["adopt"]) and any(t > 0 for t in theta["adam"])
    assert verdict["adopt"]["convex"] == convex
    drop = measured["mlp_beta2_drop_at_smallest_points"]
    values = measured["mlp_beta2_val_accuracy"]
    for name in ("adamw", "adopt"):
        assert np.isclose(drop[name], 100 * (max(values[name]) - values[name][0]))
    assert verdict["adopt"]["mlp"] == (drop["adopt"] <= 3.0 and drop["adamw"] >= 5.0)
    for checks in verdict.values():
        gated = {k: v for k, v in checks.items() if k not in ("overall", "likely_reason")}
        assert checks["overall"] == common.overall(gated)
        assert ("likely_reason" in checks) == (checks["overall"] != "reproduced")
    png = tmp_path / "modern_optimizers.png"
    assert png.exists() and png.stat().st_size < 300_000
