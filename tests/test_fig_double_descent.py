"""The --quick form of experiments/double_descent.py runs and writes real content."""

import json

import numpy as np

from experiments import double_descent


def test_double_descent_quick(tmp_path, capsys):
    double_descent.main(["--quick", "--out-dir", str(tmp_path)])
    out = capsys.readouterr().out
    assert "verdict" in out
    record = json.loads((tmp_path / "double_descent.json").read_text())
    keys = ("paper", "claim", "pass_criterion", "pilot", "measured", "verdict", "command")
    assert all(key in record for key in keys)
    assert record["wall_time_s"] > 0 and record["command"].endswith("--quick")

    widths = record["widths"]
    assert widths == [4, 16, 32]
    assert record["params_unpadded"] == [40 * w + w + w * w + w + 10 * w + 10 for w in widths]
    for split in ("train_error", "test_error"):
        for data in ("noisy", "clean"):
            errors = np.array(record[split][data], dtype=float)
            assert errors.shape == (3,) and np.all((errors >= 0) & (errors <= 100))
    # 40 epochs learn something: every net beats chance (90% error) on the clean test set
    assert max(record["test_error"]["clean"]) < 88
    # about 15% of the labels were redrawn, a tenth of them to their old value
    assert 0.12 <= record["measured"]["noise_fraction_changed"] <= 0.15
    # the noisy and clean runs of one width share init and batches, so they differ only by
    # the labels: their train errors (each on its own labels) must differ
    assert record["train_error"]["noisy"] != record["train_error"]["clean"]

    curves = record["curves"]
    assert curves["epoch"] == [20, 40]
    test_curves = np.array(curves["test_error"]["noisy"], dtype=float)
    assert test_curves.shape == (3, 2)
    np.testing.assert_allclose(test_curves[:, -1], record["test_error"]["noisy"], atol=1e-4)

    # masking: padded == unpadded network, masked units get no gradient and never move
    measured = record["measured"]
    check = measured["mask_equivalence"]
    assert check["width"] in widths and check["width"] < max(widths)
    assert abs(check["loss_padded"] - check["loss_unpadded"]) < 1e-5
    assert check["max_abs_grad_diff"] < 1e-5
    assert check["masked_grad_max_abs"] == 0.0
    assert measured["masked_params_max_abs_after_training"] == 0.0

    # the criterion's checks pass on the published notebook curves (the criterion can pass)
    published = record["claim"]["published_checks"]
    assert published["threshold"] == 61 and published["peak_width"] == 47
    assert published["noisy_peak"] and published["zero_train_error"] and published["clean_no_peak"]
    verdict = record["verdict"]
    assert verdict["overall"] in ("reproduced", "partly", "not reproduced")
    if measured["threshold"] is None:  # no width interpolates in 40 epochs
        assert not verdict["noisy_peak"] and not verdict["zero_train_error"]
    assert (tmp_path / "double_descent.png").exists()
