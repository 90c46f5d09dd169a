"""experiments/momentum_init.py --quick runs end to end and writes a sensible record."""

import json

import numpy as np

from experiments import momentum_init


def test_momentum_init_quick(tmp_path, capsys):
    momentum_init.main(["--quick", "--out-dir", str(tmp_path)])
    out = capsys.readouterr().out
    assert "overall:" in out
    record = json.loads((tmp_path / "momentum_init.json").read_text())
    keys = ("paper", "claim", "pass_criterion", "pilot", "measured", "verdict", "command")
    assert all(key in record for key in keys) and record["wall_time_s"] > 0
    setup = record["setup"]
    assert setup["mu_max"] == [0.0, 0.99] and setup["steps"] == 150

    # the schedule: after 150 steps (period 20) the last update used
    # mu = 1 - 2^(-1 - log2(floor(149 / 20) + 1)) = 1 - 1/16, capped by mu_max
    for method in ("CM", "NAG"):
        final_mu = record["final_mu"][method]
        assert np.isclose(final_mu["0.0"], 0.0)
        assert np.isclose(final_mu["0.99"], 1 - 1 / 16)

    # squared errors: 2 mu_max x 1 lr x 1 seed per method, within [0, 64] (64 pixels in
    # [0, 1]); with mu = 0 both methods are the same plain SGD run
    errors = record["train_error"]
    for method in ("CM", "NAG"):
        for mu in ("0.0", "0.99"):
            (per_seed,) = errors[method][mu]
            assert len(per_seed) == 1 and 0.0 < per_seed[0] < 64.0
    assert np.isclose(errors["CM"]["0.0"][0][0], errors["NAG"]["0.0"][0][0], rtol=1e-5)
    assert errors["CM"]["0.99"][0][0] < errors["CM"]["0.0"][0][0]
    assert record["curves"]["step"] == [50, 100, 150]
    assert len(record["curves"]["train_cross_entropy_best_lr"]) == 4

    # the quadratic side check is exact: measured rates match the closed forms
    quad = record["measured"]["quadratic_rates"]
    kappa = np.asarray(quad["kappa"])
    np.testing.assert_allclose(quad["gd"]["closed_form"], (kappa - 1) / (kappa + 1))
    np.testing.assert_allclose(quad["gd"]["measured"], (kappa - 1) / (kappa + 1), atol=1e-3)
    root = np.sqrt(kappa)
    np.testing.assert_allclose(quad["heavy_ball"]["measured"], (root - 1) / (root + 1), atol=1e-3)
    # heavy ball at its optimum has a double root: |x_t| ~ t r^t
    np.testing.assert_allclose(quad["heavy_ball"]["log_t_coefficient"], 1.0, atol=0.2)
    np.testing.assert_allclose(quad["gd"]["log_t_coefficient"], 0.0, atol=0.2)

    checks = record["verdict"]["checks"]
    assert checks["quadratic_rates"] is True
    assert record["verdict"]["overall"] in ("reproduced", "partly", "not reproduced")
    assert (tmp_path / "momentum_init.png").exists()
