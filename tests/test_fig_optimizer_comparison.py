"""The --quick form of experiments/optimizer_comparison.py (Kingma & Ba 2015) runs end to end."""

import json
import math

from experiments import optimizer_comparison

NAMES = ["SGD", "SGD-Nesterov", "AdaGrad", "RMSProp", "Adam"]


def test_optimizer_comparison_quick(tmp_path, capsys):
    optimizer_comparison.main(["--quick", "--out-dir", str(tmp_path)])
    out = capsys.readouterr().out
    assert "overall:" in out
    record = json.loads((tmp_path / "optimizer_comparison.json").read_text())
    for key in ("paper", "claim", "pass_criterion", "pilot", "measured", "verdict", "command"):
        assert key in record
    assert record["wall_time_s"] > 0
    assert record["command"].endswith("--quick")
    assert record["verdict"]["overall"] in ("reproduced", "partly", "not reproduced")

    measured = record["measured"]
    # the from_rule Adam with correction = 1 is jopt.adam; one_of(i) is optimizer i exactly
    assert measured["self_checks_max_abs_difference"]["adam_rule_vs_jopt_adam"] < 1e-5
    assert measured["self_checks_max_abs_difference"]["one_of_vs_each_optimizer"] == 0.0

    grids = record["recipe"]["learning_rates"]
    for part, n_steps in (("mlp", 50), ("logreg", 50)):
        steps = record["curves"][f"{part}_step"]
        assert steps == list(range(5, n_steps + 1, 5))
        best = record["measured"]["mlp_dropout" if part == "mlp" else "logreg"]
        assert sorted(best) == sorted(NAMES)
        for name in NAMES:
            b = best[name]
            assert len(b["final_cost_per_lr"]) == len(grids[name]) == 2
            if part == "mlp":
                assert any(math.isclose(b["best_learning_rate"], lr) for lr in grids[name])
                # 50 steps of an MLP with dropout barely move from chance (ln 10 = 2.30)
                assert 1.5 < b["final_cost"] < 2.6
            curve = record["curves"][part][name]["curve_seed_mean"]
            assert len(curve) == len(steps)
            assert all(
                lo <= m <= hi
                for lo, m, hi in zip(
                    record["curves"][part][name]["curve_seed_min"],
                    curve,
                    record["curves"][part][name]["curve_seed_max"],
                )
            )
    # logistic regression on digits learns within 50 steps (chance is ln 10 = 2.30)
    assert min(b["final_cost"] for b in record["measured"]["logreg"].values()) < 0.6 * math.log(10)

    rows = measured["bias_correction"]
    assert len(rows) == 12  # correction x beta2 x lr
    assert {(r["correction"], r["b2"], r["learning_rate"]) for r in rows} == {
        (c, b2, lr) for c in (0.0, 1.0) for b2 in (0.99, 0.999, 0.9999) for lr in (1e-3, 1e-2)
    }
    off = next(
        r for r in rows if r["correction"] == 0 and r["b2"] == 0.9999 and r["learning_rate"] == 1e-2
    )
    on = next(
        r for r in rows if r["correction"] == 1 and r["b2"] == 0.9999 and r["learning_rate"] == 1e-2
    )
    # the first steps without correction are ~10-20x too large: the loss jumps above chance
    assert off["diverged_seeds"] > 0 or off["early_max_cost"] > 1.5 * math.log(10)
    assert on["early_max_cost"] < 1.1 * math.log(10)
    assert record["verdict"]["bias_correction (iv)"]["passed"] is True
    assert (tmp_path / "optimizer_comparison.png").exists()
