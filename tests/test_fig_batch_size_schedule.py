"""The --quick form of experiments/batch_size_schedule.py runs and is right."""

import json

import numpy as np

from experiments import batch_size_schedule


def test_batch_size_schedule_quick(tmp_path, capsys):
    batch_size_schedule.main(["--quick", "--out-dir", str(tmp_path)])
    out = capsys.readouterr().out
    assert "overall:" in out
    record = json.loads((tmp_path / "batch_size_schedule.json").read_text())
    keys = ("paper", "claim", "pass_criterion", "pilot", "measured", "verdict", "command")
    assert all(key in record for key in keys)
    assert record["wall_time_s"] > 0 and record["command"].endswith("--quick")
    levels = ("reproduced", "partly", "not reproduced")
    assert all(record["verdict"][k] in levels for k in ("4B", "4C", "overall"))

    # (B) quick: 6 epochs of 80 minibatches of 50, boundaries at epochs 2 and 4. The update
    # counts come from the optimizer state: 480 vs 2*80 + 2*80/5 + floor(2*80/25) = 198.
    b = record["measured"]["4B"]
    assert b["parameter_updates"] == {"lr_decay": [480], "batch_increase": [198]}
    assert b["expected_updates"] == {"lr_decay": 480, "batch_increase": 198}
    assert b["minibatches"] == {"lr_decay": [480], "batch_increase": [480]}
    curves = record["curves"]["4B"]
    assert curves["epoch"] == list(range(1, 7))
    assert curves["updates"]["lr_decay"][-1] == 480
    assert curves["updates"]["batch_increase"][:2] == [80, 160]  # batch 50 for 2 epochs
    for arm in ("lr_decay", "batch_increase"):
        accuracy = b["final_test_accuracy"][arm]["mean"]
        assert 25.0 < accuracy <= 100.0  # learned something in 6 epochs (chance: 10)
        assert len(curves["test_accuracy_seed_mean"][arm]) == 6
    # the arms share batches until epoch 2, but not the later updates
    a, c = (curves["test_accuracy_seed_mean"][arm] for arm in ("lr_decay", "batch_increase"))
    assert a[:2] == c[:2] and a[2:] != c[2:]

    # (C) quick: 4 epochs of minibatches of 32; batch B takes 4 * 4000 // B updates
    measured = record["measured"]["4C"]
    assert measured["parameter_updates"] == {"32": [500, 500], "128": [125, 125], "512": [31, 31]}
    final = measured["final_test_accuracy_mean"]
    assert sorted(final, key=int) == ["32", "128", "512"]
    # at B = 32 the warmup ramps from lr(32) to lr(32): the same run as no warmup
    assert final["32"]["warmup"] == final["32"]["none"]
    values = np.array([[v["warmup"], v["none"]] for v in final.values()])
    assert np.all((values > 10.0) & (values <= 100.0))
    spread = values[:, 0].max() - values[:, 0].min()
    assert np.isclose(measured["spread_with_warmup"], spread)
    assert record["recipe"]["4C"]["lr"] == {"32": 0.0125, "128": 0.05, "512": 0.2}
    assert len(record["curves"]["4C"]["epoch"]) == 4 and record["curves"]["4C"]["epoch"][-1] == 4
    assert (tmp_path / "batch_size_schedule.png").exists()
