"""experiments/batch_norm.py --quick runs end to end and writes a sensible record."""

import json

import numpy as np

from experiments import batch_norm


def test_batch_norm_quick(tmp_path, capsys):
    batch_norm.main(["--quick", "--out-dir", str(tmp_path)])
    out = capsys.readouterr().out
    assert "overall:" in out
    record = json.loads((tmp_path / "batch_norm.json").read_text())
    keys = ("paper", "claim", "pass_criterion", "pilot", "measured", "verdict", "command")
    assert all(key in record for key in keys) and record["wall_time_s"] > 0
    assert record["command"].endswith("--quick")

    # the grid: 3 learning rates per model, accuracies in [0, 1]; BN learns in 200 steps
    # (the quick pilot reaches about 0.9) while the no-BN sigmoid net is still near chance
    by_lr = record["final_accuracy_by_lr"]
    assert len(by_lr["no_bn"]) == len(by_lr["bn"]) == len(record["learning_rates"]) == 3
    assert all(0.0 <= a <= 1.0 for a in by_lr["no_bn"] + by_lr["bn"])
    assert max(by_lr["bn"]) > 0.5
    assert max(by_lr["bn"]) > max(by_lr["no_bn"]) + 0.2

    # sweep 2 runs at the multiples of the best no-BN learning rate
    measured = record["measured"]
    best = measured["best_lr"]["no_bn"]
    assert best == record["learning_rates"][int(np.argmax(by_lr["no_bn"]))]
    expected = [m * best for m in record["high_multipliers"]]
    np.testing.assert_allclose(record["high_learning_rates"], expected)
    assert np.isclose(measured["target_accuracy"], max(by_lr["no_bn"]) - 0.01)
    for name in ("no BN", "BN", "BN x5", "BN x30", "no BN x5", "no BN x30"):
        assert 0.0 <= measured["final_test_accuracy"][name] <= 1.0

    # curves: step 0 and every 20 steps; the percentiles are ordered at every checkpoint
    steps = record["curves"]["step"]
    assert steps[0] == 0 and steps[-1] == 200 and len(steps) == 11
    for model in ("no_bn", "bn"):
        pct = np.asarray(record["curves"]["percentiles_seed0_unit0"][model])
        assert pct.shape == (11, 3)
        assert np.all(np.diff(pct, axis=1) >= 0)
        assert measured["drift_median_over_units"][model] > 0
    assert np.isclose(
        measured["drift_ratio"],
        measured["drift_median_over_units"]["bn"] / measured["drift_median_over_units"]["no_bn"],
    )
    for curve in record["curves"]["test_accuracy_seed_mean"].values():
        assert len(curve) == 11

    checks = record["verdict"]["checks"]
    assert sorted(checks) == ["faster", "higher_lr", "stable_inputs"]
    n_passed = sum(checks.values())
    expected_overall = "reproduced" if n_passed == 3 else "partly" if n_passed else "not reproduced"
    assert record["verdict"]["overall"] == expected_overall
    assert (tmp_path / "batch_norm.png").exists()
