"""The MNIST-1D model benchmark (Greydanus & Kobak, ICML 2024): logistic, MLP, CNN and GRU.

Run: python -m experiments.mnist1d_baselines [--quick]

The paper's four models (``jopt.models``: Linear, MLP, CNN, GRU, with PyTorch's init and the
paper's exact parameter counts) trained with the paper's recipe (``notebooks/train.py`` and
``mnist1d-classification.ipynb`` of greydanus/mnist1d): Adam at 1e-2, batch 100, 6000 steps,
sequential (unshuffled) batches ``bix = step * 100 % 4000``, test accuracy every 250 steps.
Each model is ONE call of ``jopt.sweep.run``: the space has two configurations, the normal
data and the spatially shuffled control (one fixed permutation of the 40 positions, the same
for train and test), times 3 seeds; the trial picks its dataset with a traced switch, so both
conditions share one compiled program and run side by side on the two cores. Writes
``paper_figures/mnist1d_baselines.{png,json}`` (``--quick``: 100 steps, 1 seed, written to
runs/ instead).

What to look for: the published test accuracies are 32 / 68 / 94 / 91 % (logistic,
MLP, CNN, GRU), and 32 / 68 / 56 / 57 % on shuffled positions. A linear model and an MLP see
the positions as an unordered set, so shuffling cannot matter to them; the CNN and the GRU
lose their spatial prior and fall by tens of points.
"""

import time

import jax
import jax.numpy as jnp
import numpy as np

import jopt
from experiments import common

LEARNING_RATE, BATCH_SIZE = 1e-2, 100
MODELS = {
    "logistic": jopt.models.Linear(),
    "mlp": jopt.models.MLP(),
    "cnn": jopt.models.CNN(),
    "gru": jopt.models.GRU(),
}
# greydanus/mnist1d README, table "Comparing MNIST and MNIST-1D" (test accuracy, %)
PUBLISHED = {"logistic": 32.0, "mlp": 68.0, "cnn": 94.0, "gru": 91.0}
PUBLISHED_SHUFFLED = {"logistic": 32.0, "mlp": 68.0, "cnn": 56.0, "gru": 57.0}
# the same repo's notebook run at 6000 steps, one seed (42): a second reference
NOTEBOOK = {"logistic": 31.5, "mlp": 65.1, "cnn": 92.3, "gru": 89.1}
NOTEBOOK_SHUFFLED = {"logistic": 31.5, "mlp": 66.0, "cnn": 58.7, "gru": 53.3}
PARAMS = {"logistic": 410, "mlp": 15210, "cnn": 5210, "gru": 5134}
ACCURACY_RANGES = {"logistic": (29, 35), "mlp": (60, 72), "cnn": (88, 100), "gru": (85, 100)}
# Fixed before the full run; verdicts below are computed from these.
PASS_CRITERION = {
    "within_3_points": "each model's seed-mean test accuracy on normal MNIST-1D is within 3 "
    "points of the published table (logistic 32, MLP 68, CNN 94, GRU 91)",
    "accuracy_ranges": "seed-mean test accuracy: logistic 29-35, MLP 60-72, CNN >= 88, GRU >= 85",
    "param_counts": "parameter counts exactly 410 / 15210 / 5210 / 5134",
    "ordering": "seed means ordered logistic < MLP < GRU <= CNN + 2",
    "shuffle_effect": "shuffling drops CNN and GRU by >= 25 points while logistic and MLP "
    "move by <= 3 points (seed means)",
    "overall": "reproduced if every criterion passes; partly if the parameter counts pass and "
    "at least one accuracy criterion passes; else not reproduced. Being within 3 points of "
    "the published shuffled numbers (32/68/56/57) is reported but not gated on.",
}


def main(argv=None):
    jopt.devices.use_all_cores()  # before any JAX operation: one JAX device per CPU core
    args = common.parse_args(__doc__, "mnist1d_baselines", argv)

    # CONFIG
    if args.quick:
        seeds, steps, eval_every = 1, 100, 25
    else:
        seeds, steps, eval_every = 3, 6000, 250

    # DATA: the normal and the spatially shuffled MNIST-1D (4000 train / 1000 test, 40 positions)
    normal = jopt.data.mnist1d()
    shuffled = jopt.data.mnist1d(shuffle_positions=True)

    # TRIAL: one model, one condition (hp["shuffled"] is 0 or 1, traced), one seed
    def make_trial(model):
        def trial(hp, key):
            data = jax.tree.map(
                lambda a, b: jnp.where(hp["shuffled"] > 0.5, b, a), normal, shuffled
            )
            _, history = jopt.train.fit(
                model,
                jopt.adam(LEARNING_RATE),
                data,
                steps=steps,
                batch_size=BATCH_SIZE,
                key=key,
                eval_every=eval_every,
                batch_mode="sequential",
                progress=False,
            )
            # the paper's recipe: fit's held-out split is the test set here (not a validation one)
            return {
                "test_accuracy": history["val_accuracy"][-1],
                "test_curve": history["val_accuracy"],  # (steps // eval_every,)
                "train_accuracy": history["train_accuracy"][-1],
                "test_loss": history["val_loss"][-1],
            }

        return trial

    # SWEEP: one program per model (2 conditions x seeds seeds, conditions sharded over cores)
    space = jopt.sweep.grid(shuffled=[0.0, 1.0])
    results, params, times = {}, {}, {}
    start = time.perf_counter()
    for name, model in MODELS.items():
        shapes = jax.eval_shape(model.init, jax.random.PRNGKey(0), normal.x_train[:1])  # no FLOPs
        params[name] = jopt.models.count_params(shapes["params"])
        t0 = time.perf_counter()
        results[name] = jopt.sweep.run(make_trial(model), space, seeds=seeds, progress=False)
        times[name] = time.perf_counter() - t0
        print(f"{name:8s} {params[name]:6d} params, {times[name]:6.1f} s", flush=True)
    wall = time.perf_counter() - start

    # REPORT
    def summary(name, row):
        result = results[name]
        acc = 100 * result.metrics["test_accuracy"][row].astype(float)  # (seeds,)
        return {
            "mean": float(acc.mean()),
            "std": float(acc.std()),  # over seeds, ddof=0 (as SweepResult.std)
            "per_seed": acc.round(2).tolist(),
            "train_accuracy_mean": float(100 * result.metrics["train_accuracy"][row].mean()),
            "test_loss_mean": float(result.metrics["test_loss"][row].mean()),
            "params": params[name],
            "diverged_runs": int(result.diverged[row].sum()),
        }

    measured = {name: summary(name, 0) for name in MODELS}
    measured_shuffled = {name: summary(name, 1) for name in MODELS}
    mean = {name: measured[name]["mean"] for name in MODELS}
    mean_shuffled = {name: measured_shuffled[name]["mean"] for name in MODELS}
    drop = {name: mean[name] - mean_shuffled[name] for name in MODELS}

    print(f"\n{steps} steps x {seeds} seed(s) x 2 conditions x 4 models in {wall:.1f} s")
    print("test accuracy (%), seed mean +- std; published (README) in brackets")
    print(f"{'model':8s} {'params':>6s} {'normal':>18s} {'shuffled':>18s} {'drop':>6s}")
    for name in MODELS:
        m, s = measured[name], measured_shuffled[name]
        print(
            f"{name:8s} {params[name]:6d} {m['mean']:5.1f} +- {m['std']:3.1f} "
            f"[{PUBLISHED[name]:2.0f}]  {s['mean']:5.1f} +- {s['std']:3.1f} "
            f"[{PUBLISHED_SHUFFLED[name]:2.0f}]"
            f"  {drop[name]:+5.1f}"
        )

    checks = {
        "within_3_points": {n: abs(mean[n] - PUBLISHED[n]) <= 3 for n in MODELS},
        "accuracy_ranges": {
            n: ACCURACY_RANGES[n][0] <= mean[n] <= ACCURACY_RANGES[n][1] for n in MODELS
        },
        "param_counts": {n: params[n] == PARAMS[n] for n in MODELS},
        "ordering": {
            "logistic < mlp": mean["logistic"] < mean["mlp"],
            "mlp < gru": mean["mlp"] < mean["gru"],
            "gru <= cnn + 2": mean["gru"] <= mean["cnn"] + 2,
        },
        "shuffle_effect": {
            "cnn drops >= 25": drop["cnn"] >= 25,
            "gru drops >= 25": drop["gru"] >= 25,
            "logistic moves <= 3": abs(drop["logistic"]) <= 3,
            "mlp moves <= 3": abs(drop["mlp"]) <= 3,
        },
    }
    passed = {criterion: all(parts.values()) for criterion, parts in checks.items()}
    accuracy_criteria = ["within_3_points", "accuracy_ranges", "ordering", "shuffle_effect"]
    if all(passed.values()):
        overall = "reproduced"
    elif passed["param_counts"] and any(passed[c] for c in accuracy_criteria):
        overall = "partly"
    else:
        overall = "not reproduced"
    verdict = {
        criterion: {"passed": passed[criterion], "parts": parts}
        for criterion, parts in checks.items()
    }
    verdict["within_3_points_shuffled (not gated)"] = {
        n: abs(mean_shuffled[n] - PUBLISHED_SHUFFLED[n]) <= 3 for n in MODELS
    }
    verdict["overall"] = overall
    for criterion in checks:
        failed = [part for part, ok in checks[criterion].items() if not ok]
        print(f"{criterion:16s} {'pass' if passed[criterion] else 'FAIL'} {failed or ''}")
    print(f"overall: {overall}")

    eval_steps = list(range(eval_every, steps + 1, eval_every))
    curves = {
        condition: {
            name: (100 * results[name].metrics["test_curve"][row].mean(axis=0)).round(2).tolist()
            for name in MODELS
        }
        for condition, row in (("normal", 0), ("shuffled", 1))
    }
    record = {
        "paper": "Greydanus & Kobak, Scaling down deep learning with MNIST-1D, ICML 2024 / "
        "arXiv 2011.14439",
        "claim": {
            "source": "greydanus/mnist1d README, table 'Comparing MNIST and MNIST-1D' (test "
            "accuracy, %, default 4000/1000 split)",
            "normal": PUBLISHED,
            "shuffled": PUBLISHED_SHUFFLED,
            "notebook_run_6000_steps": {"normal": NOTEBOOK, "shuffled": NOTEBOOK_SHUFFLED},
        },
        "pass_criterion": PASS_CRITERION,
        "measured": {"normal": measured, "shuffled": measured_shuffled, "shuffle_drop": drop},
        "verdict": verdict,
        "compute_wall_time_s": wall,
        "wall_time_per_model_s": times,
        "recipe": {
            "optimizer": f"jopt.adam({LEARNING_RATE})",
            "batch_size": BATCH_SIZE,
            "steps": steps,
            "batch_mode": "sequential",
            "eval_every": eval_every,
            "seeds": results["logistic"].seeds,
            "init": "pytorch (U(+-1/sqrt(fan_in)))",
        },
        "curves": {"step": eval_steps, "test_accuracy_seed_mean": curves},
        "devices": results["logistic"].info["devices"],
    }
    common.write_record(args, record)

    plt = common.pyplot()
    if plt is None:
        return
    fig, (left, right) = plt.subplots(1, 2, figsize=(13, 4.8))
    # BARS: measured (seed mean, error bar: std) next to published, normal and shuffled
    x, width = np.arange(len(MODELS)), 0.2
    bars = [
        ("measured", measured, "C0", None),
        ("published", PUBLISHED, "C0", "//"),
        ("measured, shuffled", measured_shuffled, "C3", None),
        ("published, shuffled", PUBLISHED_SHUFFLED, "C3", "//"),
    ]
    for i, (label, values, color, hatch) in enumerate(bars):
        heights = [v["mean"] if isinstance(v, dict) else v for v in values.values()]
        errors = [v["std"] if isinstance(v, dict) else 0 for v in values.values()]
        filled = hatch is None
        left.bar(
            x + (i - 1.5) * width,
            heights,
            width,
            yerr=errors if filled else None,
            color=color if filled else "white",
            edgecolor=color,
            hatch=hatch,
            label=label,
        )
    notebook = [NOTEBOOK, NOTEBOOK_SHUFFLED]
    for j, (offset, values) in enumerate(zip((-0.5, 1.5), notebook)):
        left.scatter(
            x + offset * width,
            list(values.values()),
            marker="x",
            color="black",
            zorder=3,
            label="notebook's own run (6000 steps)" if j == 0 else None,
        )
    left.set_xticks(x, [f"{n}\n({params[n]} params)" for n in MODELS])
    left.set_ylabel("test accuracy (%)")
    left.set_ylim(0, 100)
    left.set_title(f"MNIST-1D: measured ({seeds} seed(s)) vs published; overall: {overall}")
    left.legend(fontsize=8, loc="upper left")
    # CURVES: test accuracy during training, seed mean and min-max band
    for i, name in enumerate(MODELS):
        for row, style in ((0, "-"), (1, "--")):
            runs = 100 * results[name].metrics["test_curve"][row].astype(float)  # (seeds, T)
            label = name + (", shuffled" if row else "")
            right.plot(eval_steps, runs.mean(0), style, color=f"C{i}", label=label)
            right.fill_between(eval_steps, runs.min(0), runs.max(0), color=f"C{i}", alpha=0.2, lw=0)
    right.set_xlabel("step")
    right.set_ylabel("test accuracy (%)")
    right.set_ylim(0, 100)
    right.set_title("test accuracy during training (band: min-max over seeds)")
    right.legend(fontsize=7, ncol=4, loc="lower center")
    fig.tight_layout()
    common.save_figure(args, fig, dpi=120)


if __name__ == "__main__":
    main()
