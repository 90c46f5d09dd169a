"""Batch normalization (Ioffe & Szegedy, ICML 2015), Fig. 1 at digits scale.

Run: python -m experiments.batch_norm [--quick]

The paper's MNIST test of Section 4.1: a fully connected net with 3 hidden layers of 100
sigmoid units, minibatches of 60, plain SGD, with and without batch normalization before
each sigmoid. Here the data are scikit-learn's 8x8 digits (1437 train / 360 test, pixels in
[0, 1]; MNIST itself is not available offline) and a run is 3000 steps instead of 50k.
The model is ``jopt.models.MLP(hidden=(100, 100, 100), residual=False,
activation=nn.sigmoid, batch_norm=...)`` with PyTorch's default init.

What is run, as two ``jopt.sweep.run`` calls:

1. an SGD learning-rate grid (7 rates, 3 seeds) for each of {no BN, BN}: ``batch_norm`` is a
   static axis, so the sweep is two compiled programs, each vmapped over rates and seeds;
2. both models at 1.5x to 100x the best no-BN rate, 5x and 30x among them (the paper's
   BN-x5 and BN-x30 of its Inception runs, here on the small net); as many rates as in
   sweep 1, so ``jopt.sweep.run`` reuses the two compiled programs of sweep 1.

Every run records the test accuracy and, every 100 steps (and at step 0), the 15th, 50th and
85th percentiles over the test set of the input to each sigmoid of the last hidden layer
(the BatchNorm output with BN, normalized with the test set's batch statistics as in
training; the Dense output without): the paper's Fig. 1(b, c).

What to look for: BN reaches the no-BN net's final accuracy in a fraction of the steps,
still trains at 5x and 30x the learning rate, and its sigmoid inputs keep a steady
distribution while the no-BN net's drift. Writes ``paper_figures/batch_norm.{png,json}``
(``--quick``: 3 rates, 1 seed, 200 steps, written to runs/ instead).
"""

import time

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

import jopt
from experiments import common

BATCH_SIZE = 60  # the paper's minibatch
MULTIPLIERS = (5.0, 30.0)  # BN-x5 and BN-x30, relative to the best no-BN learning rate
PERCENTILES = (15.0, 50.0, 85.0)
# Fixed before the full run, after the pilot in paper_figures/pilots/batch_norm.json.
PASS_CRITERION = {
    "faster": "BN reaches the target test accuracy (no-BN's final accuracy at its best lr, "
    "minus 1 point; seed means) in <= 1/3 of the steps no-BN needs, each at its best lr",
    "higher_lr": "at 5x the best no-BN lr, BN's final test accuracy reaches the target while "
    "no-BN's is lower than BN's (or diverges)",
    "stable_inputs": "drift of the last hidden layer's sigmoid inputs (std over checkpoints "
    "of the 15/50/85th test-set percentiles, averaged over the three, median over the 100 "
    "units, seed mean) with BN <= 0.5x that without BN, each at its best lr",
    "overall": "reproduced if all three pass; partly if one or two pass; else not reproduced",
}


def sigmoid_inputs(model, state, x):
    """The input to each sigmoid of the last hidden layer, (n, 100), for the whole of ``x``.

    With BN, ``x`` is normalized with its own batch statistics (train mode; the updated
    running averages are dropped): the distribution the sigmoid sees while training. The
    running averages would lag behind it for the first few hundred steps.
    """
    _, captured = model.apply(
        state.variables,
        x,
        train=True,
        capture_intermediates=True,
        mutable=["intermediates", "batch_stats"],
    )
    layer = "BatchNorm_2" if model.batch_norm else "Dense_2"
    return captured["intermediates"][layer]["__call__"][0]


def runs(result, bn, row):
    """Per-seed arrays of one configuration (row within its batch_norm group)."""
    index = [i for i, c in enumerate(result.configs) if c["batch_norm"] == bn][row]
    return {name: value[index] for name, value in result.metrics.items()}


def drift(percentiles):
    """Std over checkpoints of each percentile, mean over the three: (seeds, units)."""
    return np.asarray(percentiles, float).std(axis=1).mean(axis=1)


def main(argv=None):
    jopt.devices.use_all_cores()  # before any JAX operation: one JAX device per CPU core
    args = common.parse_args(__doc__, "batch_norm", argv)

    # CONFIG
    if args.quick:
        learning_rates = jopt.sweep.log_range(0.1, 10.0, 3)
        high_multipliers = [5.0, 30.0, 100.0]
        seeds, steps, eval_every = 1, 200, 20
    else:
        learning_rates = jopt.sweep.log_range(0.01, 10.0, 7)
        high_multipliers = [1.5, 2.0, 3.0, 5.0, 10.0, 30.0, 100.0]
        seeds, steps, eval_every = 3, 3000, 100
    # Sweep 2 has as many rates as sweep 1, so it reuses sweep 1's two compiled programs.
    assert len(high_multipliers) == len(learning_rates)
    assert set(MULTIPLIERS) <= set(high_multipliers)

    # DATA: the 8x8 digits, 64 pixels in [0, 1]
    data = jopt.data.digits()
    models = {
        bn: jopt.models.MLP(
            hidden=(100, 100, 100), residual=False, activation=nn.sigmoid, batch_norm=bn
        )
        for bn in (False, True)
    }

    # TRIAL: one learning rate, one model, one seed; jopt.sweep.run vmaps and shards it
    def trial(hp, key):
        model = models[hp["batch_norm"]]
        init_key, data_key = jax.random.split(key)
        state = jopt.train.create_train_state(
            model, jopt.sgd(hp["learning_rate"]), data.x_train[:1], init_key
        )

        def checkpoint(state):
            z = sigmoid_inputs(model, state, data.x_test)
            test = jopt.train.evaluate(state, data.x_test, data.y_test)
            return {
                "test_accuracy": test["accuracy"],
                "test_loss": test["loss"],
                "percentiles": jnp.percentile(z, jnp.array(PERCENTILES), axis=0),  # (3, 100)
            }

        def interval(state, _):
            def one_step(state, _):
                idx = jopt.data.batch_indices(data_key, state.step, data.n_train, BATCH_SIZE)
                state, _ = jopt.train.train_step(
                    state, (data.x_train[idx], data.y_train[idx]), data_key
                )
                return state, None

            state, _ = jax.lax.scan(one_step, state, length=eval_every)
            return state, checkpoint(state)

        first = checkpoint(state)
        state, curves = jax.lax.scan(interval, state, length=steps // eval_every)
        # (steps // eval_every + 1, ...): step 0, then every eval_every steps
        curves = jax.tree.map(lambda a, b: jnp.concatenate([a[None], b]), first, curves)
        return {
            "test_accuracy": curves["test_accuracy"][-1],
            "accuracy_curve": curves["test_accuracy"],
            "loss_curve": curves["test_loss"],
            "percentiles": curves["percentiles"],
        }

    # SWEEP 1: the learning-rate grid, without and with BN (two compile groups)
    space = jopt.sweep.grid(
        batch_norm=jopt.sweep.static([False, True]), learning_rate=learning_rates
    )
    print(space.table(max_rows=4))
    start = time.perf_counter()
    grid = jopt.sweep.run(trial, space, seeds=seeds, progress=False)
    wall_grid = time.perf_counter() - start

    eval_steps = np.arange(0, steps + 1, eval_every)
    n_lr = len(learning_rates)
    final = grid.mean("test_accuracy").reshape(2, n_lr)  # (no BN / BN, lr), seed mean
    final = np.nan_to_num(final, nan=0.0)
    best_row = {bn: int(np.argmax(final[int(bn)])) for bn in (False, True)}
    best_lr = {bn: learning_rates[best_row[bn]] for bn in (False, True)}
    print(f"grid: {len(space)} configs x {seeds} seeds x {steps} steps in {wall_grid:.1f} s")
    for bn in (False, True):
        print(
            f"{'BN   ' if bn else 'no BN'} final test accuracy by lr: "
            + " ".join(f"{lr:.3g}:{a:.3f}" for lr, a in zip(learning_rates, final[int(bn)]))
        )

    # SWEEP 2: both models at multiples of the best no-BN learning rate (5x and 30x among them)
    high_lrs = [m * best_lr[False] for m in high_multipliers]
    high_space = jopt.sweep.grid(
        batch_norm=jopt.sweep.static([False, True]), learning_rate=high_lrs
    )
    start = time.perf_counter()
    high = jopt.sweep.run(trial, high_space, seeds=seeds, progress=False)
    wall = wall_grid + time.perf_counter() - start

    # REPORT
    def steps_to(curve, target):
        """First evaluated step whose accuracy is >= target (None if never)."""
        hits = np.nonzero(curve >= target)[0]
        return int(eval_steps[hits[0]]) if hits.size else None

    best = {bn: runs(grid, bn, best_row[bn]) for bn in (False, True)}
    at = {
        (bn, m): runs(high, bn, high_multipliers.index(m))
        for bn in (False, True)
        for m in MULTIPLIERS
    }
    final_multiples = np.nan_to_num(high.mean("test_accuracy").reshape(2, -1), nan=0.0)
    target = float(final[0, best_row[False]]) - 0.01
    curve = {"no BN": best[False]["accuracy_curve"], "BN": best[True]["accuracy_curve"]}
    for bn, m in at:
        curve[f"{'BN' if bn else 'no BN'} x{m:g}"] = at[(bn, m)]["accuracy_curve"]
    mean_curve = {name: np.nan_to_num(c.mean(axis=0), nan=0.0) for name, c in curve.items()}
    steps_to_target = {name: steps_to(c, target) for name, c in mean_curve.items()}
    final_high = {name: float(c[-1]) for name, c in mean_curve.items()}
    drift_units = {bn: drift(best[bn]["percentiles"]) for bn in (False, True)}  # (seeds, units)
    drift_median = {bn: float(np.median(drift_units[bn], axis=1).mean()) for bn in (False, True)}
    drift_unit0 = {bn: float(drift_units[bn][:, 0].mean()) for bn in (False, True)}
    drift_ratio = drift_median[True] / drift_median[False]

    n_bn, n_plain = steps_to_target["BN"], steps_to_target["no BN"]
    speedup = None if n_bn is None or not n_plain else n_plain / max(n_bn, 1)
    checks = {
        "faster": n_bn is not None and bool(n_plain) and 3 * n_bn <= n_plain,
        "higher_lr": final_high["BN x5"] >= target
        and (final_high["no BN x5"] < final_high["BN x5"] or bool(high.diverged.any())),
        "stable_inputs": drift_ratio <= 0.5,
    }
    overall = common.overall(checks)

    print(f"\nbest lr: no BN {best_lr[False]:.3g}, BN {best_lr[True]:.3g}; target {target:.3f}")
    for name in curve:
        print(
            f"{name:10s} final test accuracy {final_high[name]:.3f}, "
            f"steps to target {steps_to_target[name]}"
        )
    print(f"speed-up of BN to the target: {speedup}")
    print(
        f"sigmoid-input drift (median over units): no BN {drift_median[False]:.3f}, "
        f"BN {drift_median[True]:.3f}, ratio {drift_ratio:.2f}"
    )
    for name, ok in checks.items():
        print(f"{name:14s} {'pass' if ok else 'FAIL'}")
    print(f"overall: {overall}")

    def percentile_record(bn):
        # seed 0, unit 0: the curves drawn in the figure
        return np.asarray(best[bn]["percentiles"][0, :, :, 0], float).round(4).tolist()

    record = {
        "paper": "Ioffe & Szegedy, Batch Normalization: Accelerating Deep Network Training by "
        "Reducing Internal Covariate Shift, ICML 2015 (arXiv 1502.03167)",
        "claim": {
            "headline": "'achieves the same accuracy with 14 times fewer training steps' "
            "(abstract; ImageNet Inception, verified against the arXiv/PMLR abstract)",
            "figure_1": "Section 4.1, Fig. 1: on MNIST a 3x100 sigmoid net with BN trains faster "
            "and reaches higher test accuracy than without BN, and the 15/50/85th percentiles "
            "of a last-layer sigmoid's input stay stable with BN while they drift without "
            "(setup: batch 60, 50k steps; from memory of the paper, not verified)",
            "higher_lr": "BN-x5 and BN-x30: BN allows 5x and 30x the learning rate "
            "(Section 4.2.2, Inception; from memory of the paper, not verified)",
        },
        "pass_criterion": PASS_CRITERION,
        "pilot": common.read_pilot("batch_norm"),
        "measured": {
            "best_lr": {"no_bn": best_lr[False], "bn": best_lr[True]},
            "target_accuracy": target,
            "final_test_accuracy": final_high,
            "steps_to_target": steps_to_target,
            "speedup": speedup,
            "drift_median_over_units": {"no_bn": drift_median[False], "bn": drift_median[True]},
            "drift_unit0": {"no_bn": drift_unit0[False], "bn": drift_unit0[True]},
            "drift_ratio": drift_ratio,
            "diverged_runs": int(grid.diverged.sum() + high.diverged.sum()),
        },
        "verdict": {"checks": checks, "overall": overall},
        "sweep_wall_time_s": wall,
        "setup": {
            "data": "sklearn digits (1437 train / 360 test)",
            "model": "MLP 64-100-100-100-10, sigmoid, pytorch init",
            "optimizer": "jopt.sgd",
            "batch_size": BATCH_SIZE,
            "steps": steps,
            "eval_every": eval_every,
            "seeds": grid.seeds,
            "selection": "best lr by final test accuracy (seed mean), as the paper's curves",
        },
        "learning_rates": learning_rates,
        "high_learning_rates": high_lrs,
        "final_accuracy_by_lr": {"no_bn": final[0].tolist(), "bn": final[1].tolist()},
        "high_multipliers": high_multipliers,
        "final_accuracy_at_multiples": {
            "no_bn": final_multiples[0].tolist(),
            "bn": final_multiples[1].tolist(),
        },
        "curves": {
            "step": eval_steps.tolist(),
            "test_accuracy_seed_mean": {k: v.round(4).tolist() for k, v in mean_curve.items()},
            "percentiles_seed0_unit0": {
                "percentiles": list(PERCENTILES),
                "no_bn": percentile_record(False),
                "bn": percentile_record(True),
            },
        },
        "devices": grid.info["devices"],
    }
    common.write_record(args, record)

    plt = common.pyplot()
    if plt is not None:
        fig, axes = plt.subplots(1, 4, figsize=(19, 4.3))
        # (a) TEST ACCURACY during training, seed mean and min-max band
        ax = axes[0]
        styles = {"no BN": ("C0", "-"), "BN": ("C3", "-"), "BN x5": ("C3", "--")}
        styles.update({"BN x30": ("C3", ":"), "no BN x5": ("C0", "--"), "no BN x30": ("C0", ":")})
        for name, runs_ in curve.items():
            color, style = styles[name]
            runs_ = 100 * np.asarray(runs_, float)
            ax.plot(eval_steps, runs_.mean(0), style, color=color, label=name)
            ax.fill_between(eval_steps, runs_.min(0), runs_.max(0), color=color, alpha=0.12, lw=0)
        ax.axhline(100 * target, color="gray", lw=0.8, ls="--", label="target (no BN final - 1)")
        for name in ("no BN", "BN"):
            if steps_to_target[name] is not None:
                ax.axvline(steps_to_target[name], color=styles[name][0], lw=0.8, alpha=0.6)
        ax.set_ylim(max(0, 100 * target - 40), 100)
        ax.set(xlabel="step", ylabel="test accuracy (%)", title=f"(a) test accuracy, {overall}")
        ax.legend(fontsize=7, loc="lower right")
        # (b) FINAL ACCURACY against the learning rate
        ax = axes[1]
        for bn, color, label in ((False, "C0", "no BN"), (True, "C3", "BN")):
            ax.semilogx(learning_rates, 100 * final[int(bn)], "o-", color=color, label=label)
            ax.semilogx(
                high_lrs,
                100 * final_multiples[int(bn)],
                "s--",
                mfc="none",
                color=color,
                lw=0.6,
                label=f"{label} at {high_multipliers[0]:g}x-{high_multipliers[-1]:g}x "
                "best no-BN lr",
            )
        ax.axvline(best_lr[False], color="C0", lw=0.8, ls="--")
        ax.set(xlabel="SGD learning rate", ylabel="final test accuracy (%)")
        ax.set_title(f"(b) {steps} steps, seed mean")
        ax.legend(fontsize=7)
        # (c, d) PERCENTILES of one sigmoid's input (seed 0, unit 0), as the paper's Fig. 1(b, c)
        for ax, bn, letter in ((axes[2], False, "c"), (axes[3], True, "d")):
            values = np.asarray(best[bn]["percentiles"][0, :, :, 0], float)  # (checkpoints, 3)
            for j, p in enumerate(PERCENTILES):
                color = "C3" if bn else "C0"
                ax.plot(eval_steps, values[:, j], color=color, lw=2 - abs(j - 1), label=f"{p:g}th")
            name = "with BN" if bn else "without BN"
            ax.set(xlabel="step", ylabel="input to the sigmoid")
            ax.set_title(
                f"({letter}) {name}: 15/50/85th pct, lr {best_lr[bn]:.3g}\n"
                f"drift (median unit) {drift_median[bn]:.3f}",
                fontsize=9,
            )
            ax.legend(fontsize=7, loc="upper right")
        lo = min(axes[2].get_ylim()[0], axes[3].get_ylim()[0])
        hi = max(axes[2].get_ylim()[1], axes[3].get_ylim()[1])
        axes[2].set_ylim(lo, hi)
        axes[3].set_ylim(lo, hi)
        fig.suptitle(
            "Batch norm (Ioffe & Szegedy 2015, Fig. 1) on 8x8 digits: 3x100 sigmoid MLP, "
            f"batch {BATCH_SIZE}, SGD",
            fontsize=10,
        )
        fig.tight_layout()
        common.save_figure(args, fig, dpi=120)


if __name__ == "__main__":
    main()
