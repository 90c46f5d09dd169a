"""experiments/quantization.py --quick runs end to end and writes a sensible record."""

import json

from experiments import quantization


def test_quantization_quick(tmp_path, capsys):
    quantization.main(["--quick", "--out-dir", str(tmp_path)])
    out = capsys.readouterr().out
    assert "overall:" in out
    record = json.loads((tmp_path / "quantization.json").read_text())
    for key in ("paper", "claim", "pass_criterion", "pilot", "measured", "verdict", "command"):
        assert key in record
    assert record["wall_time_s"] > 0
    assert record["verdict"]["overall"] in ("reproduced", "partly", "not reproduced")
    assert set(record["verdict"]["passed"]) == {
        "int8",
        "int4",
        "monotone",
        "binary_connect",
        "dorefa_asymmetry",
    }
    measured = record["measured"]
    # 64-128-128-10: 25,856 kernel weights in 266 output channels, 266 biases
    assert measured["float_bytes"] == 4 * (25856 + 266)
    for bits in (2, 4, 8):  # packed codes + float32 scale per channel + float32 biases
        expected = -(-25856 * bits // 8) + 4 * 266 + 4 * 266
        assert measured["ptq"][str(bits)]["bytes"] == expected
    float_acc = measured["float"]["test_accuracy"]
    assert 0 <= float_acc <= 100
    # int8 storage of trained weights barely moves the accuracy (1 test sample = 0.28 points)
    assert abs(measured["ptq"]["8"]["test_accuracy"] - float_acc) <= 2.0
    heat = measured["heatmap"]
    assert len(heat["test_accuracy_seed_mean"]) == len(heat["w_bits"]) == 4
    assert all(len(row) == len(heat["learning_rates"]) for row in heat["test_accuracy_seed_mean"])
    assert all(0 <= a <= 100 for row in heat["test_accuracy_seed_mean"] for a in row)
    for arm in ("deterministic", "stochastic"):
        assert 0 <= measured["binary_connect"][arm]["test_accuracy"] <= 100
    assert record["recipe"]["programs"] == ["bc_deterministic", "bc_stochastic", "float", "qat"]
    assert (tmp_path / "quantization.png").exists()
