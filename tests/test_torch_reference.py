"""experiments.mnist1d_torch_reference (PyTorch, the optional bench extra): quick form runs."""

import json

import pytest

pytest.importorskip("torch")
pytest.importorskip("mnist1d")

from experiments import mnist1d_torch_reference


def test_torch_reference_quick(tmp_path, capsys):
    mnist1d_torch_reference.main(["--quick", "--out-dir", str(tmp_path)])
    assert "mlp" in capsys.readouterr().out
    record = json.loads((tmp_path / "mnist1d_torch_reference.json").read_text())
    assert record["recipe"]["updates"] == 201
    assert "--quick" in record["command"] and record["wall_time_s"] > 0
    assert record["pilot"]["authors_train_model_seed_0"]
    models = {"logistic", "mlp", "cnn", "gru"}
    assert set(record["results"]) == models
    for result in record["results"].values():
        assert result["seeds"] == [0] and len(result["per_seed"]) == 1
        assert all(0.0 <= a <= 100.0 for a in result["per_seed"])
        assert 0.0 <= result["mean"] <= 100.0 and result["std"] == 0.0
        assert 0.0 < result["published"] <= 100.0
        assert 0.0 < result["notebook_single_run"] <= 100.0
