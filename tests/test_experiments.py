"""Every experiment's --quick form runs end to end (the full runs are done by hand)."""

import json

import pytest
from quick_run import run_quick

from experiments import (
    bench_fit,
    bench_rules,
    bench_search,
    bench_sweep,
    bench_sweep_gpu,
    lr_momentum_sweep,
    search_compare,
)


def test_lr_momentum_sweep_quick(tmp_path, capsys):
    lr_momentum_sweep.main(["--quick", "--out-dir", str(tmp_path)])
    assert "slope" in capsys.readouterr().out
    record = json.loads((tmp_path / "lr_momentum_sweep.json").read_text())
    accuracy = record["val_accuracy_mean"]
    assert len(accuracy) == len(record["learning_rates"]) == 3
    assert all(0.0 <= a <= 1.0 for row in accuracy for a in row)
    assert record["measured"]["best"]["learning_rate"] in record["learning_rates"]
    assert record["wall_time_s"] >= record["sweep_wall_time_s"] > 0
    assert record["command"] == "python -m experiments.lr_momentum_sweep --quick"
    assert (tmp_path / "lr_momentum_sweep.png").exists()


@pytest.mark.parametrize(
    "module,word",
    [
        (bench_rules, "ratio"),
        (bench_search, "speed-up"),
        (bench_fit, "fit seq / (a) scan seq"),
    ],
)
def test_benchmark_quick(module, word, tmp_path, capsys):
    module.main(["--quick", "--out-dir", str(tmp_path)])
    assert word in capsys.readouterr().out
    name = module.__name__.split(".")[-1]
    record = json.loads((tmp_path / f"{name}.json").read_text())
    assert record["command"].endswith("--quick") and record["wall_time_s"] > 0


def test_bench_sweep_quick_methods_compute_the_same_runs(tmp_path, capsys):
    bench_sweep.main(["--quick", "--out-dir", str(tmp_path)])
    out = capsys.readouterr().out
    assert "goal (a) >= 2x faster than (c)" in out and "from batching" in out
    record = json.loads((tmp_path / "bench_sweep.json").read_text())
    methods = record["methods"]
    assert {"(a) jopt.sweep.run", "(c) jit", "(c2) jit, 1 config per device"} <= set(methods)
    for name, row in methods.items():  # 20 steps at small learning rates: rounding only
        if not name.startswith(("(e)", "(f)")):
            assert row["max_abs_loss_diff_vs_b"] < 1e-4, name
    assert set(record["speedup_split"]) == {"c2_vs_c_devices_alone", "a_vs_c2_batching"}


def test_mnist1d_baselines_quick(tmp_path):
    # A subprocess: the GRU's quick form (a scan inside a scan) spends its time running, not
    # compiling, so it needs XLA's optimizations (fast_compile=False), which the test process
    # turns off.
    out = run_quick("mnist1d_baselines", "--out-dir", str(tmp_path), fast_compile=False)
    assert "overall:" in out
    record = json.loads((tmp_path / "mnist1d_baselines.json").read_text())
    for key in ("paper", "claim", "pass_criterion", "measured", "verdict", "command", "curves"):
        assert key in record
    assert record["wall_time_s"] > 0
    models = ["logistic", "mlp", "cnn", "gru"]
    steps = record["curves"]["step"]
    assert steps[-1] == 100
    for condition in ("normal", "shuffled"):
        assert sorted(record["measured"][condition]) == sorted(models)
        for name in models:
            measured = record["measured"][condition][name]
            assert len(measured["per_seed"]) == 1
            assert 0.0 <= measured["mean"] <= 100.0
            assert len(record["curves"]["test_accuracy_seed_mean"][condition][name]) == len(steps)
    params = {name: record["measured"]["normal"][name]["params"] for name in models}
    assert params == {"logistic": 410, "mlp": 15210, "cnn": 5210, "gru": 5134}
    assert record["verdict"]["overall"] in ("reproduced", "partly", "not reproduced")
    assert (tmp_path / "mnist1d_baselines.png").exists()


def test_search_compare_quick(tmp_path, capsys):
    search_compare.main(["--quick", "--out-dir", str(tmp_path)])
    assert "overall" in capsys.readouterr().out
    record = json.loads((tmp_path / "search_compare.json").read_text())
    keys = ("paper", "claim", "pass_criterion", "pilot", "measured", "verdict", "command")
    assert all(key in record for key in (*keys, "curves")) and record["wall_time_s"] > 0
    strategies = ["grid", "random", "quasirandom", "tpe", "halving", "hyperband", "pbt"]
    budget = record["setup"]["budget_steps_per_seed"]
    for name in strategies:
        measured = record["measured"][name]
        assert len(measured["test_accuracy_per_seed"]) == 2
        assert 0.0 <= measured["test_accuracy_mean"] <= 100.0
        assert 0 < measured["compute_steps_mean"] <= budget
        assert len(record["curves"]["per_seed_events"][name]) == 2
    assert record["measured"]["halving"]["compute_steps_mean"] <= budget / 3
    for claim in ("hyperband_and_halving", "pbt", "tpe", "random_vs_grid", "overall"):
        assert record["verdict"][claim] in ("reproduced", "partly", "not reproduced")
    assert (tmp_path / "search_compare.png").exists()


def test_bench_sweep_gpu_quick_gathers_both_sizes(tmp_path, capsys):
    # in-process; the two sizes run as subprocesses of bench_sweep, as on a GPU
    bench_sweep_gpu.main(["--quick", "--allow-cpu", "--out-dir", str(tmp_path)])
    out = capsys.readouterr().out
    summary = json.loads((tmp_path / "bench_sweep_gpu.json").read_text())
    assert set(summary["runs"]) == {"4", "8"}
    for n, run in summary["runs"].items():
        record = json.loads((tmp_path / run["record"]).read_text())
        assert record["workload"]["n_configs"] == int(n)
        methods = record["methods"]
        assert "2 of" in methods["(c) jit"]["extrapolated"]  # (c) timed on 2 configs
        assert methods["(c) jit"]["loss_configs"] == [0, int(n) - 1]
        for name, row in methods.items():  # the baselines' configs match (b)'s losses
            assert row["max_abs_loss_diff_vs_b"] < 1e-4, name
        assert run["methods"]["(a) jopt.sweep.run"]["configs_per_s"] > 0
    (goal,) = summary["goal"]
    assert goal.endswith("at 8 configs") and "goal" in out


def test_parse_args_pilot_goes_to_its_own_directory_and_into_the_command(tmp_path):
    from experiments import common

    pilot = common.parse_args("doc", "demo", ["--pilot"], pilot="a short run")
    assert pilot.pilot and pilot.out_dir == common.ROOT / "runs" / "demo_pilot"
    assert pilot.command == "python -m experiments.demo --pilot"
    chosen = common.parse_args("doc", "demo", ["--pilot", "--out-dir", str(tmp_path)], pilot="p")
    assert chosen.out_dir == tmp_path
    quick = common.parse_args("doc", "demo", ["--quick"], pilot="a short run")
    assert not quick.pilot and quick.out_dir == common.ROOT / "runs" / "demo"
    full = common.parse_args("doc", "demo", [])
    assert not full.pilot and full.out_dir == common.FIGURES
    with pytest.raises(SystemExit):  # no --pilot where the experiment has none
        common.parse_args("doc", "demo", ["--pilot"])
