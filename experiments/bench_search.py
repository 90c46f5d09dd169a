"""How fast is jopt.search.tpe? Batched TPE against optuna's own one-trial-at-a-time loop.

Run: python -m experiments.bench_search [--quick]

Workload: the MNIST-1D MLP (``jopt.models.MLP()``, 40-100-100-10) trained by
``jopt.train.fit`` for 1000 steps of batch 100 with
``optax.chain(jopt.momentum(lr, beta), jopt.regularizers.weight_decay(wd))``; the searched
hyperparameters are the learning rate (log-uniform 1e-3..1), the momentum (uniform 0..0.99)
and the decoupled weight decay per step (log-uniform 1e-6..1e-3); the metric is the test
accuracy after training (a real search would hold out a validation split).
Both methods evaluate the same trial function with the same key (``PRNGKey(0)``), and use
the same sampler, ``optuna.samplers.TPESampler(seed=s, constant_liar=True)``:

  (a) jopt.search.tpe: 64 trials asked in batches of 16; each batch is one
      ``jopt.sweep.run`` call (vmapped over the batch, sharded over the CPU devices)
  (b) optuna: ``study.optimize(objective, n_trials=64)``, the objective calling
      ``jax.jit(trial)`` for one configuration at a time (compiled once)

Each search is repeated for 5 sampler seeds; the table gives the median and the range of
the wall time and of the best accuracy found. Compilation is done once per method before
the timed searches (both programs are cached afterwards: jopt's engine caches compiled
programs by what the trial computes and its shapes, and ``jax.jit`` its own) and reported
apart. Goal: (a) >= 1.8x faster than (b) on a 2-core CPU at no worse best accuracy. Prints
a table and writes it to ``paper_figures/bench_search.json`` (``--quick``: 8 trials in
batches of 4, a linear model, 20 steps, 1 seed, written to runs/ instead).
"""

import os
import platform
import statistics
import time

import jax
import jax.numpy as jnp
import optax
import optuna

import jopt
from experiments import common
from jopt.search.tpe import tpe

BATCH_SIZE = 100
DISTRIBUTIONS = {
    "learning_rate": jopt.sweep.LogUniform(1e-3, 1.0),
    "momentum": jopt.sweep.Uniform(0.0, 0.99),
    "weight_decay": jopt.sweep.LogUniform(1e-6, 1e-3),
}


def main(argv=None):
    jopt.devices.use_all_cores()  # before any JAX operation: one JAX device per CPU core
    args = common.parse_args(
        __doc__,
        "bench_search",
        argv,
        add_arguments=lambda parser: parser.add_argument(
            "--seeds", type=int, default=None, help="search seeds (default 5)"
        ),
    )
    optuna.logging.set_verbosity(optuna.logging.WARNING)

    # CONFIG
    if args.quick:
        n_trials, tpe_batch, steps, seeds = 8, 4, 20, 1
    else:
        n_trials, tpe_batch, steps, seeds = 64, 16, 1000, 5
    seeds = args.seeds or seeds
    load_before = tuple(round(x, 2) for x in os.getloadavg())

    # DATA AND TRIAL: one configuration, one key; the same function for both methods
    data = jopt.data.mnist1d()
    model = jopt.models.Linear() if args.quick else jopt.models.MLP()  # Linear: compiles faster

    def trial(hp, key):
        tx = optax.chain(
            jopt.momentum(hp["learning_rate"], beta=hp["momentum"]),
            jopt.regularizers.weight_decay(hp["weight_decay"]),
        )
        _, history = jopt.train.fit(
            model, tx, data, steps=steps, batch_size=BATCH_SIZE, key=key, progress=False
        )
        # fit's held-out split is the dataset's test split here
        return {"accuracy": history["val_accuracy"][-1]}

    def sampler(seed):
        return optuna.samplers.TPESampler(seed=seed, constant_liar=True)

    # (a) jopt.search.tpe: a batch of trials per compiled call
    def run_jopt(seed):
        out = tpe(trial, DISTRIBUTIONS, n_trials=n_trials, batch_size=tpe_batch, metric="accuracy",
                  sampler=sampler(seed), progress=False, mode="max")  # fmt: skip
        return out.best_value, len(out.study.trials)

    # (b) optuna's loop, one jitted trial at a time
    single = jax.jit(trial)
    key0 = jax.random.PRNGKey(0)

    def objective(optuna_trial):
        hp = {
            "learning_rate": optuna_trial.suggest_float("learning_rate", 1e-3, 1.0, log=True),
            "momentum": optuna_trial.suggest_float("momentum", 0.0, 0.99),
            "weight_decay": optuna_trial.suggest_float("weight_decay", 1e-6, 1e-3, log=True),
        }
        hp = {k: jnp.float32(v) for k, v in hp.items()}
        accuracy = float(single(hp, key0)["accuracy"])
        if not jnp.isfinite(accuracy):
            raise optuna.TrialPruned()  # jopt tells a diverged trial FAIL; neither counts as best
        return accuracy

    def run_optuna(seed):
        study = optuna.create_study(direction="maximize", sampler=sampler(seed))
        study.optimize(objective, n_trials=n_trials)
        return study.best_value, len(study.trials)

    # COMPILE once per method (timed apart)
    start = time.perf_counter()
    warm = jopt.sweep.run(trial, [{n: 0.01 for n in DISTRIBUTIONS}] * tpe_batch, progress=False)
    compile_jopt = warm.info["groups"][0]["compile_s"]
    start = time.perf_counter()
    hp0 = {n: jnp.float32(0.01) for n in DISTRIBUTIONS}
    single.lower(hp0, key0).compile()
    compile_optuna = time.perf_counter() - start
    jax.block_until_ready(single(hp0, key0))

    # SEARCH: the methods alternate per seed, so load on the machine hits them alike
    rows = {"jopt.search.tpe": [], "optuna study.optimize": []}
    for seed in range(seeds):
        for name, fn in (("jopt.search.tpe", run_jopt), ("optuna study.optimize", run_optuna)):
            start = time.perf_counter()
            best, n = fn(seed)
            wall = time.perf_counter() - start
            assert n == n_trials, (name, n)
            rows[name].append((wall, best))
            print(f"  seed {seed}  {name:22s} {wall:7.2f} s  best test accuracy {best:.4f}")

    # REPORT
    print(
        f"\n{n_trials} trials (MNIST-1D MLP, {steps} steps of batch {BATCH_SIZE}), TPE batches of "
        f"{tpe_batch} vs one at a time; median [min, max] over {seeds} search seed(s)"
    )
    print(
        f"machine: {platform.processor() or platform.machine()}, {jopt.devices.cpu_cores()} cores, "
        f"{len(jax.devices())} JAX devices, load average (1, 5, 15 min) before: {load_before}"
    )
    header = f"{'method':24s} {'wall s':>22s} {'best accuracy':>24s} {'compile s':>10s}"
    print(header + "\n" + "-" * len(header))
    for name, compile_s in (
        ("jopt.search.tpe", compile_jopt),
        ("optuna study.optimize", compile_optuna),
    ):
        walls = [w for w, _ in rows[name]]
        bests = [b for _, b in rows[name]]
        wall = f"{statistics.median(walls):.2f} [{min(walls):.2f}, {max(walls):.2f}]"
        acc = f"{statistics.median(bests):.4f} [{min(bests):.4f}, {max(bests):.4f}]"
        print(f"{name:24s} {wall:>22s} {acc:>24s} {compile_s:10.2f}")
    speedup = statistics.median(w for w, _ in rows["optuna study.optimize"]) / statistics.median(
        w for w, _ in rows["jopt.search.tpe"]
    )
    accuracy_gap = statistics.median(b for _, b in rows["jopt.search.tpe"]) - statistics.median(
        b for _, b in rows["optuna study.optimize"]
    )
    print(
        f"\nspeed-up of jopt (median wall time): {speedup:.2f}x (goal >= 1.8x: "
        f"{'met' if speedup >= 1.8 else 'NOT met'}); median best accuracy, jopt - optuna: "
        f"{accuracy_gap:+.4f} ({'no worse' if accuracy_gap >= 0 else 'worse'})"
    )
    load_after = tuple(round(x, 2) for x in os.getloadavg())
    print(f"load average (1, 5, 15 min) at the end: {load_after}")
    common.write_record(
        args,
        {
            "goal": "(a) jopt.search.tpe >= 1.8x faster than (b) optuna's loop at no worse best "
            "accuracy",
            "measured": {
                "speedup": speedup,
                "goal_met": speedup >= 1.8,
                "best_accuracy_jopt_minus_optuna": accuracy_gap,
                "methods": {
                    name: {
                        "wall_s": [w for w, _ in rows[name]],
                        "best_accuracy": [b for _, b in rows[name]],
                        "compile_s": compile_s,
                    }
                    for name, compile_s in (
                        ("jopt.search.tpe", compile_jopt),
                        ("optuna study.optimize", compile_optuna),
                    )
                },
            },
            "workload": {
                "model": "jopt.models.Linear()" if args.quick else "jopt.models.MLP()",
                "trials": n_trials,
                "tpe_batch": tpe_batch,
                "steps": steps,
                "batch_size": BATCH_SIZE,
                "search_seeds": seeds,
            },
            "machine": {
                "processor": platform.processor() or platform.machine(),
                "cores": jopt.devices.cpu_cores(),
                "jax_devices": len(jax.devices()),
                "load_average_before": load_before,
                "load_average_after": load_after,
            },
        },
    )


if __name__ == "__main__":
    main()
