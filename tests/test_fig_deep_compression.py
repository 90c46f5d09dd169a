"""experiments/deep_compression.py --quick runs end to end and writes a sensible record."""

import json

from experiments import deep_compression


def test_deep_compression_quick(tmp_path, capsys):
    deep_compression.main(["--quick", "--out-dir", str(tmp_path)])
    out = capsys.readouterr().out
    assert "overall:" in out
    record = json.loads((tmp_path / "deep_compression.json").read_text())
    for key in ("paper", "claim", "pass_criterion", "pilot", "measured", "verdict", "command"):
        assert key in record
    assert record["wall_time_s"] > 0
    assert record["verdict"]["overall"] in ("reproduced", "partly", "not reproduced")
    measured = record["measured"]
    # 64-300-100-10: 50,610 float32 parameters
    assert measured["dense_bytes"] == 4 * 50610
    assert 0 <= measured["dense_accuracy"] <= 100
    # the paper's per-layer keep fractions are hit exactly (to rounding of k = round(s n))
    kept = measured["headline_kept_fraction_per_layer"]
    for layer, target in zip(("Dense_0", "Dense_1", "Dense_2"), (0.08, 0.09, 0.26)):
        assert abs(kept[layer] - target) < 1e-3, (layer, kept[layer])
    points = {(p["method"], p["keep"], p["bits"]): p for p in measured["points"]}
    # Q only: dense b-bit codes + a 2**b float32 codebook per layer + float32 biases
    kernels = [64 * 300, 300 * 100, 100 * 10]
    for bits in (3, 6):
        expected = sum(-(-n * bits // 8) + 4 * 2**bits for n in kernels) + 4 * 410
        assert points[("Q", "100%", bits)]["bytes"] == expected
    # P+Q is smaller than P alone at the same mask, and Huffman never makes it bigger
    paper = "paper 8/9/26%"
    p_only, pq = points[("P", paper, 32)], points[("P+Q", paper, 6)]
    assert pq["bytes"] < p_only["bytes"] < measured["dense_bytes"]
    assert pq["bytes_huffman"] <= pq["bytes"] + 3 * 2 * 64  # table bytes at most
    # a sparse 6-bit layer costs at least its nonzeros x (6 + 5) bits
    nonzeros = sum(k * n for k, n in zip((0.08, 0.09, 0.26), kernels))
    assert pq["bytes"] >= nonzeros * 11 / 8 + 4 * 410
    for p in measured["points"]:
        assert abs(p["ratio"] - measured["dense_bytes"] / p["bytes"]) < 1e-9
        assert 0 <= p["accuracy"] <= 100
    assert measured["headline"] == pq
    assert (tmp_path / "deep_compression.png").exists()
