"""jopt's main job: a learning-rate x momentum sweep of whole training runs, in one program.

Run: python -m experiments.lr_momentum_sweep [--quick]

The MNIST-1D MLP of the paper (40-100-100-10), SGD with heavy-ball momentum, batch 100:
8 learning rates x 8 momenta x 3 seeds = 192 training runs of 2000 steps, run as ONE call of
``jopt.sweep.run`` (vmapped over configurations and seeds, sharded over every core). The
training set is split 80/20 into train and validation; the best configuration is chosen on
validation accuracy and reported on the test set. Writes
``paper_figures/lr_momentum_sweep.{png,json}`` (``--quick``: a 3x2 grid, 1 seed, 100 steps,
written to runs/ instead).

What to look for: heavy ball's steady-state step is lr / (1 - beta) times the gradient, so
the good region is the diagonal band lr / (1 - beta) = const (Shallue et al. 2019): the slope
of log(best lr) against log(1 - beta) is about 1.
"""

import time

import jax
import numpy as np

import jopt
from experiments import common

# Fixed before the full run
PASS_CRITERION = (
    "the least-squares slope of log(best lr) against log(1 - momentum), best lr per momentum "
    "on seed-mean validation accuracy, lies in [0.7, 1.3]; reproduced if it does, "
    "partly if it lies in [0.4, 1.6], else not reproduced"
)


def main(argv=None):
    jopt.devices.use_all_cores()  # before any JAX operation: one JAX device per CPU core
    args = common.parse_args(__doc__, "lr_momentum_sweep", argv)

    # CONFIG
    if args.quick:
        learning_rates = jopt.sweep.log_range(1e-2, 1.0, 3)
        momenta = [0.0, 0.9]
        seeds, steps = 1, 100
    else:
        learning_rates = jopt.sweep.log_range(1e-3, 1.0, 8)
        momenta = [1 - 2.0**-k for k in range(8)]  # 1 - beta = 1, 1/2, ..., 1/128
        seeds, steps = 3, 2000
    batch_size = 100

    # DATA: train / validation (for selection) / test (for the report)
    full = jopt.data.mnist1d()
    train_val = jopt.data.validation_split(full)
    model = jopt.models.MLP()

    # TRIAL: one configuration, one seed; jopt.sweep.run vmaps and shards it
    def trial(hp, key):
        tx = jopt.momentum(hp["learning_rate"], beta=hp["momentum"])
        state, history = jopt.train.fit(
            model,
            tx,
            train_val,
            steps=steps,
            batch_size=batch_size,
            key=key,
            eval_every=steps // 10,
            progress=False,
        )
        test = jopt.train.evaluate(state, full.x_test, full.y_test)
        return {
            "val_accuracy": history["val_accuracy"][-1],
            "val_curve": history["val_accuracy"],
            "train_loss": history["loss"][-1],
            "test_accuracy": test["accuracy"],
        }

    # SWEEP
    space = jopt.sweep.grid(learning_rate=learning_rates, momentum=momenta)
    print(space.table(max_rows=6))
    start = time.perf_counter()
    result = jopt.sweep.run(trial, space, seeds=seeds)
    sweep_wall = time.perf_counter() - start

    # REPORT
    val = result.mean("val_accuracy").reshape(len(learning_rates), len(momenta))
    best = result.best("val_accuracy", mode="max")
    i_best = result.best_index("val_accuracy", mode="max")
    print(
        f"\n{len(space)} configs x {seeds} seeds x {steps} steps in {sweep_wall:.1f} s on "
        f"{len(jax.devices())} device(s); {int(result.diverged.sum())} runs diverged"
    )
    print("validation accuracy, seed mean (rows: learning rate, columns: momentum)")
    print("lr \\ beta " + " ".join(f"{b:7.4f}" for b in momenta))
    for lr, row in zip(learning_rates, val):
        print(f"{lr:9.4f} " + " ".join("   nan " if np.isnan(a) else f"{a:7.3f}" for a in row))
    test_acc = result.mean("test_accuracy")[i_best]
    print(
        f"best on validation: lr={best['learning_rate']:.4g}, momentum={best['momentum']:.4g}; "
        f"test accuracy {test_acc:.3f} (+- {result.std('test_accuracy')[i_best]:.3f} over seeds)"
    )

    # The diagonal band: best learning rate per momentum against 1 - momentum (log-log slope).
    with np.errstate(all="ignore"):
        best_lr = np.asarray(learning_rates)[np.nanargmax(np.nan_to_num(val, nan=-1.0), axis=0)]
    slope = float(np.polyfit(np.log(1 - np.asarray(momenta)), np.log(best_lr), 1)[0])
    print(f"slope of log(best lr) vs log(1 - momentum): {slope:+.2f} (heavy ball: about +1)")
    if 0.7 <= slope <= 1.3:
        verdict = "reproduced"
    elif 0.4 <= slope <= 1.6:
        verdict = "partly"
    else:
        verdict = "not reproduced"
    print(f"verdict: {verdict} ({PASS_CRITERION})")

    common.write_record(
        args,
        {
            "paper": "Shallue et al. 2019, Measuring the Effects of Data Parallelism on Neural "
            "Network Training (JMLR); Smith et al. 2018 (noise scale eps / (B (1 - m)))",
            "claim": "for heavy-ball SGD the good learning rates lie on lr / (1 - momentum) = "
            "const (slope of log best-lr vs log(1 - momentum) about 1)",
            "pass_criterion": PASS_CRITERION,
            "measured": {"slope": slope, "best": best, "test_accuracy": float(test_acc)},
            "verdict": verdict,
            "sweep_wall_time_s": sweep_wall,
            "learning_rates": learning_rates,
            "momenta": momenta,
            "seeds": result.seeds,
            "steps": steps,
            "val_accuracy_mean": val,
            "test_accuracy_mean": result.mean("test_accuracy"),
            "best_lr_per_momentum": best_lr,
            "diverged_runs": int(result.diverged.sum()),
            "devices": result.info["devices"],
        },
    )
    result.save(args.out_dir / "lr_momentum_sweep_result")

    # FIGURE
    plt = common.pyplot()
    if plt is None:
        return
    fig, (left, right) = plt.subplots(1, 2, figsize=(12, 4.5))
    jopt.plot.heatmap(
        result,
        x="momentum",
        y="learning_rate",
        metric="val_accuracy",
        ax=left,
        title=f"validation accuracy (slope {slope:+.2f})",
        mode="max",
    )
    # one curve per momentum (every other one): its best learning rate on validation
    configs = []
    for m in momenta[::2]:
        rows = [i for i, c in enumerate(space.configs) if c["momentum"] == m]
        configs.append(
            rows[int(np.nanargmax(np.nan_to_num(result.mean("val_accuracy")[rows], nan=-1)))]
        )
    eval_steps = np.linspace(steps // 10, steps, result.metrics["val_curve"].shape[-1])
    jopt.plot.curves(result, "val_curve", configs=configs, x=eval_steps, ax=right)
    right.set_xlabel("step")
    right.set_title("validation accuracy during training (band: seeds)")
    fig.tight_layout()
    common.save_figure(args, fig, dpi=120)


if __name__ == "__main__":
    main()
