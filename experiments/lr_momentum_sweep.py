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
the good region is the diagonal band lr / (1 - beta) = const (Shallue et al. 2019, card 4A):
the slope of log(best lr) against log(1 - beta) is about 1.
"""

import argparse
import json
import time
from pathlib import Path

import jax
import numpy as np

import jopt

jopt.devices.use_all_cores()  # before any JAX operation: one JAX device per CPU core

# CONFIG
parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
parser.add_argument("--quick", action="store_true", help="tiny grid and run, for the tests")
parser.add_argument("--out-dir", default=None, help="default: paper_figures (runs/ if --quick)")
args = parser.parse_args()
if args.quick:
    LEARNING_RATES = jopt.sweep.log_range(1e-2, 1.0, 3)
    MOMENTA = [0.0, 0.9]
    SEEDS, STEPS = 1, 100
else:
    LEARNING_RATES = jopt.sweep.log_range(1e-3, 1.0, 8)
    MOMENTA = [1 - 2.0**-k for k in range(8)]  # 1 - beta = 1, 1/2, ..., 1/128
    SEEDS, STEPS = 3, 2000
BATCH_SIZE = 100
# Fixed before the full run (card 4A, pass A, heavy-ball part)
PASS_CRITERION = (
    "the least-squares slope of log(best lr) against log(1 - momentum), best lr per momentum "
    "on seed-mean validation accuracy, lies in [0.7, 1.3] (card 4A); reproduced if it does, "
    "partly if it lies in [0.4, 1.6], else not reproduced"
)
OUT_DIR = Path(args.out_dir or ("runs/lr_momentum_sweep" if args.quick else "paper_figures"))

# DATA: train / validation (for selection) / test (for the report)
full = jopt.data.mnist1d()
n_val = full.n_train // 5
train_val = jopt.data.Dataset(
    full.x_train[n_val:], full.y_train[n_val:], full.x_train[:n_val], full.y_train[:n_val]
)
model = jopt.models.MLP()


# TRIAL: one configuration, one seed; jopt.sweep.run vmaps and shards it
def trial(hp, key):
    tx = jopt.momentum(hp["learning_rate"], beta=hp["momentum"])
    state, history = jopt.train.fit(
        model,
        tx,
        train_val,
        steps=STEPS,
        batch_size=BATCH_SIZE,
        key=key,
        eval_every=STEPS // 10,
        progress=False,
    )
    test = jopt.train.evaluate(state, full.x_test, full.y_test)
    return {
        "val_accuracy": history["test_accuracy"][-1],  # fit's "test" split is our validation
        "val_curve": history["test_accuracy"],
        "train_loss": history["loss"][-1],
        "test_accuracy": test["accuracy"],
    }


# SWEEP
space = jopt.sweep.grid(learning_rate=LEARNING_RATES, momentum=MOMENTA)
print(space.table(max_rows=6))
start = time.perf_counter()
result = jopt.sweep.run(trial, space, seeds=SEEDS)
wall = time.perf_counter() - start

# REPORT
val = result.mean("val_accuracy").reshape(len(LEARNING_RATES), len(MOMENTA))
best = result.best("val_accuracy", mode="max")
i_best = result.best_index("val_accuracy", mode="max")
print(
    f"\n{len(space)} configs x {SEEDS} seeds x {STEPS} steps in {wall:.1f} s on "
    f"{len(jax.devices())} device(s); {int(result.diverged.sum())} runs diverged"
)
print("validation accuracy, seed mean (rows: learning rate, columns: momentum)")
print("lr \\ beta " + " ".join(f"{b:7.4f}" for b in MOMENTA))
for lr, row in zip(LEARNING_RATES, val):
    print(f"{lr:9.4f} " + " ".join("   nan " if np.isnan(a) else f"{a:7.3f}" for a in row))
test_acc = result.mean("test_accuracy")[i_best]
print(
    f"best on validation: lr={best['learning_rate']:.4g}, momentum={best['momentum']:.4g}; "
    f"test accuracy {test_acc:.3f} (+- {result.std('test_accuracy')[i_best]:.3f} over seeds)"
)

# The diagonal band: best learning rate per momentum against 1 - momentum (log-log slope).
with np.errstate(all="ignore"):
    best_lr = np.asarray(LEARNING_RATES)[np.nanargmax(np.nan_to_num(val, nan=-1.0), axis=0)]
slope = float(np.polyfit(np.log(1 - np.asarray(MOMENTA)), np.log(best_lr), 1)[0])
print(f"slope of log(best lr) vs log(1 - momentum): {slope:+.2f} (heavy ball: about +1)")
if 0.7 <= slope <= 1.3:
    verdict = "reproduced"
elif 0.4 <= slope <= 1.6:
    verdict = "partly"
else:
    verdict = "not reproduced"
print(f"verdict: {verdict} ({PASS_CRITERION})")

OUT_DIR.mkdir(parents=True, exist_ok=True)
record = {
    "paper": "Shallue et al. 2019, Measuring the Effects of Data Parallelism on Neural Network "
    "Training (JMLR); Smith et al. 2018 (noise scale eps / (B (1 - m)))",
    "claim": "for heavy-ball SGD the good learning rates lie on lr / (1 - momentum) = const "
    "(slope of log best-lr vs log(1 - momentum) about 1)",
    "pass_criterion": PASS_CRITERION,
    "measured": {"slope": slope, "best": best, "test_accuracy": float(test_acc)},
    "verdict": verdict,
    "command": "python -m experiments.lr_momentum_sweep" + (" --quick" if args.quick else ""),
    "wall_time_s": wall,
    "learning_rates": LEARNING_RATES,
    "momenta": MOMENTA,
    "seeds": result.seeds,
    "steps": STEPS,
    "val_accuracy_mean": np.where(np.isnan(val), None, val).tolist(),
    "test_accuracy_mean": [None if np.isnan(v) else float(v) for v in result.mean("test_accuracy")],
    "best_lr_per_momentum": best_lr.tolist(),
    "diverged_runs": int(result.diverged.sum()),
    "devices": result.info["devices"],
}
(OUT_DIR / "lr_momentum_sweep.json").write_text(json.dumps(record, indent=1))
result.save(OUT_DIR / "lr_momentum_sweep_result")

try:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
except ImportError:
    print(f"wrote {OUT_DIR / 'lr_momentum_sweep.json'} (pip install 'jopt[plot]' for the figure)")
else:
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
    for m in MOMENTA[::2]:
        rows = [i for i, c in enumerate(space.configs) if c["momentum"] == m]
        configs.append(
            rows[int(np.nanargmax(np.nan_to_num(result.mean("val_accuracy")[rows], nan=-1)))]
        )
    eval_steps = np.linspace(STEPS // 10, STEPS, result.metrics["val_curve"].shape[-1])
    jopt.plot.curves(result, "val_curve", configs=configs, x=eval_steps, ax=right)
    right.set_xlabel("step")
    right.set_title("validation accuracy during training (band: seeds)")
    fig.tight_layout()
    fig.savefig(OUT_DIR / "lr_momentum_sweep.png", dpi=120)
    print(f"wrote {OUT_DIR / 'lr_momentum_sweep.png'} and its JSON")
