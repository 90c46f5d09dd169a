"""experiments/gradual_pruning.py --quick runs end to end and writes a figure and its JSON."""

import json

from experiments import gradual_pruning


def test_gradual_pruning_quick(tmp_path, capsys):
    gradual_pruning.main(["--quick", "--out-dir", str(tmp_path)])
    out = capsys.readouterr().out
    assert "overall:" in out
    record = json.loads((tmp_path / "gradual_pruning.json").read_text())
    for key in ("paper", "claim", "pass_criterion", "pilot", "measured", "verdict", "command"):
        assert key in record, key
    assert record["wall_time_s"] > 0
    assert "--quick" in record["command"]
    measured = record["measured"]
    # the quick grid: 2 sparsities x 2 learning rates of gradual pruning, arms at 0.9
    heat = measured["heatmap_test_accuracy_mean"]
    assert len(heat) == len(record["sparsities"]) == 2
    assert all(len(row) == len(record["learning_rates"]) == 2 for row in heat)
    assert all(0.0 <= a <= 100.0 for row in heat for a in row)
    # every run (arms included) ends at exactly its target sparsity
    assert measured["final_sparsity_exact"] is True
    arms = measured["s=0.9"]
    for arm in ("gradual", "one-shot at t0", "one-shot at end", "small-dense"):
        assert 0.0 <= arms[arm]["mean"] <= 100.0
        assert len(arms[arm]["per_seed"]) == 1
    # small-dense is matched to the sparse model's nonzeros: 1500 kernel weights + 210 biases
    assert arms["sparse_nonzeros"] == 1710
    assert arms["small_dense_width"] == 23
    assert abs(arms["small_dense_params"] - arms["sparse_nonzeros"]) < 60
    # the dense row of the heatmap at lr 1e-2 is the "dense" reference
    assert abs(measured["dense"]["mean"] - heat[0][record["learning_rates"].index(0.01)]) < 0.01
    assert record["verdict"]["overall"] in ("reproduced", "partly", "not reproduced")
    passed = [record["verdict"][c]["passed"] for c in ("gradual_near_dense", "no_retraining_hurts")]
    assert all(isinstance(p, bool) for p in passed)
    assert len(record["curves"]["s=0.9"]["gradual"]) == len(record["curves"]["step"])
    assert (tmp_path / "gradual_pruning.png").stat().st_size > 10_000
