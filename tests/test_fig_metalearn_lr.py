"""The --quick form of experiments/metalearn_lr.py runs and writes real content."""

import json

import numpy as np

from experiments import metalearn_lr


def test_metalearn_lr_quick(tmp_path, capsys):
    metalearn_lr.main(["--quick", "--out-dir", str(tmp_path)])
    out = capsys.readouterr().out
    assert "verdict" in out
    record = json.loads((tmp_path / "metalearn_lr.json").read_text())
    keys = ("paper", "claim", "pass_criterion", "pilot", "measured", "verdict", "command")
    assert all(key in record for key in keys)
    assert record["wall_time_s"] > 0 and record["command"].endswith("--quick")
    assert record["claim"]["numbers"]["metalearned_lr"] == 0.62

    grid = {k: np.array(v, dtype=float) for k, v in record["grid"].items()}
    assert grid["lr"].shape == grid["objective"].shape == grid["hypergradient"].shape == (8,)
    np.testing.assert_allclose(grid["lr"][[0, -1]], [0.05, 3.0], rtol=1e-6)
    # a 10-class cross-entropy mean over the run: below log(10) once it learns, never negative
    assert np.all(grid["objective"] > 0) and grid["objective"].min() < np.log(10)
    # small lrs learn too slowly: the objective falls, then the hypergradient is negative there
    assert grid["objective"][0] > grid["objective"].min()
    assert grid["hypergradient"][0] < 0

    # the hypergradient (jax.grad through the whole scanned run) equals a finite difference
    for row in record["measured"]["hypergradient_check"]:
        assert abs(row["autodiff"] - row["finite_difference"]) <= 0.02 * abs(row["autodiff"]) + 1e-3

    trace = record["outer_trace"]
    lr = np.array(trace["lr"], dtype=float)
    assert lr.shape == (2, 5) and np.all(np.isfinite(lr)) and np.all(lr > 0)
    # each outer step moves the lr against the hypergradient: from 0.15 up, from 1.5 down
    assert lr[0, -1] < 1.5 and lr[1, -1] > 0.15
    # a good outer step lowers the objective from the 0.15 start
    objective = np.array(trace["objective"], dtype=float)
    assert objective[1, -1] < objective[1, 0]

    measured = record["measured"]
    assert measured["grid_argmin"] == grid["lr"][np.argmin(grid["objective"])]
    final = [measured["final_lr"]["start_1.5"], measured["final_lr"]["start_0.15"]]
    assert final == lr[:, -1].tolist()
    verdict = record["verdict"]
    assert verdict["starts_agree"] == (abs(final[0] - final[1]) / np.mean(final) <= 0.1)
    assert verdict["argmin_range"] == (0.4 <= measured["grid_argmin"] <= 0.9)
    assert verdict["overall"] in ("reproduced", "partly", "not reproduced")
    assert (tmp_path / "metalearn_lr.png").exists()
