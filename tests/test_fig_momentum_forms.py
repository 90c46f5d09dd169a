"""The --quick form of experiments/momentum_forms.py runs and writes real content."""

import json

import numpy as np

from experiments import momentum_forms


def test_momentum_forms_quick(tmp_path, capsys):
    momentum_forms.main(["--quick", "--out-dir", str(tmp_path)])
    out = capsys.readouterr().out
    assert "verdict" in out
    record = json.loads((tmp_path / "momentum_forms.json").read_text())
    keys = ("paper", "claim", "pass_criterion", "pilot", "measured", "verdict", "command")
    assert all(key in record for key in keys)
    assert record["wall_time_s"] > 0 and record["command"].endswith("--quick")
    lrs, betas = record["learning_rates"], record["momenta"]
    assert record["forms"] == ["heavy_ball", "ema"]
    val = np.array(record["val_accuracy_mean"], dtype=float)
    assert val.shape == (2, len(lrs), len(betas)) == (2, 3, 2)
    assert np.all((val >= 0) & (val <= 1))
    # beta = 0 is the same optimizer in both forms: identical runs, identical numbers
    assert betas[0] == 0.0
    np.testing.assert_array_equal(val[0, :, 0], val[1, :, 0])
    # with momentum the forms differ (the EMA form takes (1 - beta) times smaller steps)
    assert not np.array_equal(val[0, :, 1], val[1, :, 1])
    # the smallest lr learns something in 100 steps in either form (not a constant guess)
    assert val[:, 0, :].min() > 0.15
    measured = record["measured"]
    for form in ("heavy_ball", "ema"):
        best = measured["best_lr_per_beta"][form]
        assert len(best) == len(betas) and all(lr in lrs for lr in best)
        assert np.isfinite(measured["slope_beta_le_0.97"][form])
        # the best lr per beta is the argmax of its column
        rows = np.argmax(val[record["forms"].index(form)], axis=0)
        assert best == [lrs[r] for r in rows]
    assert record["verdict"]["overall"] in ("reproduced", "partly", "not reproduced")
    assert (tmp_path / "momentum_forms.png").exists()
