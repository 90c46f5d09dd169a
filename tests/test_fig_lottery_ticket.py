"""experiments/lottery_ticket.py --quick runs end to end and writes a figure and its JSON."""

import json

import numpy as np

from experiments import lottery_ticket


def test_lottery_ticket_quick(tmp_path, capsys):
    lottery_ticket.main(["--quick", "--out-dir", str(tmp_path)])
    out = capsys.readouterr().out
    assert "overall:" in out
    record = json.loads((tmp_path / "lottery_ticket.json").read_text())
    for key in ("paper", "claim", "pass_criterion", "pilot", "measured", "verdict", "command"):
        assert key in record, key
    assert record["wall_time_s"] > 0
    sparsities = record["sparsities"]
    assert sparsities == [0.0, 0.9, 0.99]
    last = np.array(record["last_test_accuracy"])  # (round, arm, seed)
    assert last.shape == (3, 3, 1)
    assert np.all((last >= 0) & (last <= 100))
    # round 0 is unpruned: the lottery and random-mask arms are the same run (same init,
    # same batches, all-ones masks); reinit differs only by its init
    assert last[0, 0, 0] == last[0, 1, 0]
    # the masks reach the round's sparsity in every layer (biases included; floor)
    kept = np.array(record["kept_fraction"])  # (round, arm, seed)
    assert np.allclose(kept[0], 1.0)
    for r, s in enumerate(sparsities):
        assert np.all(np.abs(kept[r] - (1 - s)) < 0.01), (s, kept[r])
    # lottery and reinit share the mask, so they keep exactly the same count
    assert np.array_equal(kept[:, 0], kept[:, 2])
    checks = record["verdict"]["checks"]
    assert set(checks) == {
        "lottery_beats_dense_at_90",
        "lottery_beats_random_at_90",
        "both_collapse_at_99",
    }
    expected = (
        "reproduced"
        if all(checks.values())
        else "partly"
        if any(checks.values())
        else ("not reproduced")
    )
    assert record["verdict"]["overall"] == expected
    curves = np.array(record["test_curves_seed_mean"])
    assert curves.shape == (3, 3, len(record["eval_steps"]))
    assert (tmp_path / "lottery_ticket.png").stat().st_size > 10_000
