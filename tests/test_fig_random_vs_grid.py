"""The --quick form of experiments/random_vs_grid.py (Bergstra & Bengio 2012) runs end to end."""

import json

from experiments import random_vs_grid

HPS = ["learning_rate", "one_minus_b1", "weight_decay", "init_scale", "dropout"]


def test_random_vs_grid_quick(tmp_path, capsys):
    random_vs_grid.main(["--quick", "--out-dir", str(tmp_path)])
    out = capsys.readouterr().out
    assert "overall:" in out
    record = json.loads((tmp_path / "random_vs_grid.json").read_text())
    for key in ("paper", "claim", "pass_criterion", "pilot", "measured", "verdict", "command"):
        assert key in record
    assert record["wall_time_s"] > 0
    assert record["verdict"]["overall"] in ("reproduced", "partly", "not reproduced")
    measured = record["measured"]

    # (i) toy: probabilities; a grid of 2 levels per axis falls further behind as d grows
    by_lambda = measured["toy_p_random_beats_grid_by_lambda"]
    by_dim = measured["toy_p_random_beats_grid_by_dim_2_levels"]
    assert sorted(map(float, by_lambda)) == [0.0, 0.1, 0.25, 0.5, 1.0]
    assert all(0.0 <= p <= 1.0 for p in [*by_lambda.values(), *by_dim.values()])
    assert by_lambda["0.0"] > 0.6  # only g matters: 9 values of x beat 3
    assert by_dim["6"] > by_dim["2"] + 0.2

    # (ii) the three designs, all trained in one sweep
    trials = record["trials"]
    designs = [t["design"] for t in trials]
    assert (designs.count("grid"), designs.count("random"), designs.count("sobol")) == (32, 32, 8)
    grid = [t for t in trials if t["design"] == "grid"]
    random = [t for t in trials if t["design"] == "random"]
    for hp in HPS:
        assert len({round(t[hp], 9) for t in grid}) == 2  # a 2^5 grid
    assert len({t["learning_rate"] for t in random}) == 32
    assert measured["distinct_learning_rates_tried"] == {"grid": 2, "random": 32, "sobol": 8}
    assert all(1e-4 <= t["learning_rate"] <= 1e-1 for t in trials)
    assert all(0.0 <= t["dropout"] <= 0.5 for t in trials)
    assert all(0.0 <= t["val"] <= 1.0 and 0.0 <= t["test"] <= 1.0 for t in trials)

    # the summaries agree with the trials they summarize
    assert measured["grid_best"]["val_accuracy"] == max(t["val"] for t in grid)
    # in --quick the random pool is exactly 32 trials, so every resample of 32 is the pool
    assert measured["random_median_best_val_at_32"] == max(t["val"] for t in random)
    curve = measured["efficiency_curve_percentiles_10_25_50_75_90"]
    assert sorted(map(int, curve)) == [1, 2, 4, 8, 16, 32]
    medians = [curve[s]["val"][2] for s in ("1", "2", "4", "8", "16", "32")]
    assert medians == sorted(medians)  # more trials never make the best worse
    for s in curve.values():
        assert s["val"] == sorted(s["val"]) and 0.0 <= s["p_val_at_least_grid"] <= 1.0
    assert measured["random_p_reaches_grid_at_16"] == curve["16"]["p_val_at_least_grid"]
    assert sorted(measured["variance_explained_by_each_hp"]) == sorted(HPS)
    assert (tmp_path / "random_vs_grid.png").exists()
