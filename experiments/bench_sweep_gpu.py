"""The sweep benchmark on a GPU: experiments/bench_sweep.py with 64 and 1024 configurations.

Run, on a machine with a GPU: python -m experiments.bench_sweep_gpu [--out-dir DIR]

On a CPU one small configuration already keeps a core busy, so batching buys little there
(experiments/bench_sweep.py); on a GPU one configuration of the MNIST-1D MLP leaves the device
nearly idle, and running many in one program is where the big win is. This runs
``bench_sweep`` twice, in subprocesses, with ``--configs 64`` and ``--configs 1024``
(``--no-torch``; (c) and (c2) timed on 64 configurations spread over the grid and
extrapolated, since one configuration after another is slow there), and gathers, per size,
every method's configs/s, GFLOP/s and ratio to (c) in ``bench_sweep_gpu.json``, with the goal
(a) jopt.sweep.run >= 50x faster than (c) at 1024 configurations. Each size's
full record and figure are written beside it (``bench_sweep_gpu_64.json`` ...).

Refuses to run without a GPU, except with ``--allow-cpu`` (``--quick``: 4 and 8 configs, 20
steps, for the tests). The generated MNIST-1D data needs the ``mnist1d`` package: on a machine
without network access, carry its wheel (``pip download --no-deps mnist1d``).
"""

import json
import subprocess
import sys

import jax

import jopt
from experiments import common


def add_arguments(parser):
    parser.add_argument("--allow-cpu", action="store_true", help="run even without a GPU")


def main(argv=None):
    jopt.devices.use_all_cores()  # before any JAX operation (matters only for --allow-cpu)
    args = common.parse_args(__doc__, "bench_sweep_gpu", argv, add_arguments=add_arguments)
    args.command = " ".join(
        ["python -m experiments.bench_sweep_gpu", *(sys.argv[1:] if argv is None else argv)]
    )
    sizes = [4, 8] if args.quick else [64, 1024]
    baseline_configs = 2 if args.quick else 64
    goal_size, goal_ratio = sizes[-1], 50.0

    device = jax.devices()[0]
    if device.platform == "cpu" and not args.allow_cpu:
        sys.exit(
            f"bench_sweep_gpu: no GPU here (jax.devices()[0] is {device}); run it on a GPU "
            "machine, or pass --allow-cpu"
        )
    print(f"device: {device.device_kind} ({device.platform}), jax {jax.__version__}")

    # RUN: one subprocess per size, so that each measures a fresh process
    runs = {}
    for n in sizes:
        name = f"bench_sweep_gpu_{n}"
        command = [sys.executable, "-m", "experiments.bench_sweep", "--configs", str(n)]
        command += ["--baseline-configs", str(min(baseline_configs, n)), "--no-torch"]
        command += ["--out-dir", str(args.out_dir.resolve()), "--name", name]
        command += ["--quick"] if args.quick else []
        print("+", " ".join(command[1:]), flush=True)
        subprocess.run(command, check=True, cwd=common.ROOT)
        record = json.loads((args.out_dir / f"{name}.json").read_text())
        runs[str(n)] = {
            "methods": {
                method: {
                    key: row[key]
                    for key in ("run_s", "configs_per_s", "gflops", "speedup_vs_c", "extrapolated")
                }
                for method, row in record["methods"].items()
            },
            "matmul_peak_gflops": record["matmul_peak_gflops"],
            "record": f"{name}.json",
        }

    # SUMMARY
    a_name, c_name = "(a) jopt.sweep.run", "(c) jit"
    print(f"\n{'configs':>7s} {'method':34s} {'configs/s':>10s} {'GFLOP/s':>9s} {'vs (c)':>8s}")
    for n, run in runs.items():
        for method, row in run["methods"].items():
            print(
                f"{n:>7s} {method:34s} {row['configs_per_s']:10.2f} {row['gflops']:9.1f} "
                f"{row['speedup_vs_c']:8.2f}" + (" *" if row["extrapolated"] else "")
            )
    ratio = runs[str(goal_size)]["methods"][a_name]["speedup_vs_c"]
    goal = f"(a) >= {goal_ratio:g}x faster than (c) at {goal_size} configs"
    print(f"goal {goal}: {ratio:.1f} -> {'met' if ratio >= goal_ratio else 'NOT met'}")
    common.write_record(
        args,
        {
            "benchmark": "jopt.sweep.run vs hand-written baselines on a GPU, MNIST-1D MLP sweep",
            "device": {
                "kind": device.device_kind,
                "platform": device.platform,
                "jax": jax.__version__,
            },
            "goal": {goal: {"value": ratio, "met": bool(ratio >= goal_ratio)}},
            "runs": runs,
            "note": f"{c_name} and (c2) timed on {baseline_configs} configs spread over the grid, "
            "extrapolated (* in the table)",
        },
    )


if __name__ == "__main__":
    main()
