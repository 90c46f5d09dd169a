"""Every experiment's --quick form runs end to end (the full runs are done by hand)."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def run_quick(module, *extra):
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    result = subprocess.run(
        [sys.executable, "-m", f"experiments.{module}", "--quick", *extra],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


def test_lr_momentum_sweep_quick(tmp_path):
    out = run_quick("lr_momentum_sweep", "--out-dir", str(tmp_path))
    assert "slope" in out
    record = json.loads((tmp_path / "lr_momentum_sweep.json").read_text())
    accuracy = record["val_accuracy_mean"]
    assert len(accuracy) == len(record["learning_rates"]) == 3
    assert all(0.0 <= a <= 1.0 for row in accuracy for a in row)
    assert record["measured"]["best"]["learning_rate"] in record["learning_rates"]
    assert (tmp_path / "lr_momentum_sweep.png").exists()


@pytest.mark.parametrize("module", ["bench_rules"])
def test_benchmark_quick(module):
    out = run_quick(module)
    assert "ratio" in out
