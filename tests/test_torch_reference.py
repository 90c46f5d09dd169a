"""experiments.mnist1d_torch_reference (PyTorch, the optional bench extra): quick form runs."""

import json

import pytest
from quick_run import run_quick

pytest.importorskip("torch")


def test_torch_reference_quick(tmp_path):
    out = run_quick("mnist1d_torch_reference", "--out-dir", str(tmp_path), fast_compile=False)
    assert "mlp" in out
    record = json.loads((tmp_path / "mnist1d_torch_reference.json").read_text())
    assert record["recipe"]["updates"] == 201
    assert set(record["results"]) == {"logistic", "mlp", "cnn", "gru"}
    for result in record["results"].values():
        assert len(result["per_seed"]) == 1
        assert 0.0 <= result["mean"] <= 100.0
        assert result["std"] == 0.0
