"""AdamW vs Lion: where the good learning rates and weight decays lie.

Run: python -m experiments.lion_vs_adamw [--quick]

Chen et al., "Symbolic Discovery of Optimization Algorithms" (2023), section 5: Lion's update
sign(beta1 m + (1 - beta1) g) has norm sqrt(d) per step, larger than AdamW's, so "a suitable
learning rate for Lion is typically 3-10x smaller than that for AdamW", and, since the
effective decay is lr * lambda, Lion's decoupled lambda should be 3-10x larger "to maintain a
similar strength". Both optimizers here decay by lr_t * lambda (``jopt.adamw``, optax's form,
and ``jopt.lion``, as the paper and optax), so the prediction is a shift of the good region:
Lion's lr down by 3-10x and its lambda up by 3-10x, lr * lambda about the same.

What is run: the MNIST-1D MLP (40-100-100-10), batch 100, 1500 steps, cosine schedule (lr_t =
lr * cosine from 1 to 0), betas at each optimizer's default (AdamW 0.9 / 0.999, Lion 0.9 /
0.99), decay on every parameter. 10 learning rates 4.6e-4..0.46 (x2.15) x 8 lambdas 1e-3..3.2
(x3.16) x 2 optimizers x 2 seeds = 320 training runs, in ONE call of ``jopt.sweep.run`` and
ONE compiled program: the optimizer is a traced index (``jopt.one_of``; under vmap both
rules run and each member keeps its own, which costs little next to the MLP's passes). Scaled
down from 3000 steps to stay near 3 min on 2 cores. The training set is split
80/20; cells are compared on validation accuracy (seed mean; a diverged run counts as 0), the
best cells are reported on the test set. Writes ``paper_figures/lion_vs_adamw.{png,json}``
(``--quick``: a 3x2 grid, 1 seed, 100 steps, written to runs/ instead).

What to look for: the red squares (each optimizer's best cell) and the dashed box drawn on
Lion's heatmap, which is where the paper's rule puts Lion's best given AdamW's: lr 3-10x
smaller, lambda 3-10x larger.
"""

import time

import numpy as np

import jopt
from experiments import common

OPTIMIZERS = ["adamw", "lion"]
BATCH_SIZE = 100
PUBLISHED_RATIO = (3.0, 10.0)  # Lion's lr smaller / lambda larger by this factor (section 5)
# Fixed before the full run; the verdict below is computed from these.
PASS_CRITERION = {
    "lr_ratio": "AdamW's best lr / Lion's best lr in [2, 20] (published: 3-10); best = argmax "
    "of the seed-mean validation accuracy over the (lr, lambda) grid",
    "decay": "Lion's best lambda >= 2x AdamW's, or the best lr * lambda products agree within "
    "3x (published: lambda 3-10x larger, lr * lambda similar)",
    "accuracy": "Lion's best test accuracy (seed mean, at the best-on-validation cell) within "
    "+-1 point of AdamW's; no win required at this scale",
    "overall": "reproduced if all three pass, partly if one or two pass, else not reproduced",
}


def main(argv=None):
    jopt.devices.use_all_cores()  # before any JAX operation: one JAX device per CPU core
    args = common.parse_args(__doc__, "lion_vs_adamw", argv)

    # CONFIG
    if args.quick:
        learning_rates = [1e-3, 1e-2, 1e-1]
        weight_decays = [1e-2, 1.0]
        seeds, steps = 1, 100
    else:
        learning_rates = [10 ** (-10 / 3 + k / 3) for k in range(10)]  # 4.6e-4 .. 0.46
        weight_decays = [10 ** (-3 + k / 2) for k in range(8)]  # 1e-3 .. 3.16
        seeds, steps = 2, 1500

    # DATA: train / validation (for selection) / test (for the report)
    full = jopt.data.mnist1d()
    train_val = jopt.data.validation_split(full)
    model = jopt.models.MLP()

    # TRIAL: one (optimizer, lr, lambda), one seed; optimizer 0 = AdamW, 1 = Lion (traced)
    def trial(hp, key):
        learning_rate = jopt.schedules.cosine_decay_schedule(hp["learning_rate"], steps)
        decay = hp["weight_decay"]
        tx = jopt.one_of(
            hp["optimizer"],
            [
                jopt.adamw(learning_rate, weight_decay=decay),
                jopt.lion(learning_rate, weight_decay=decay),
            ],
        )
        state, history = jopt.train.fit(
            model,
            tx,
            train_val,
            steps=steps,
            batch_size=BATCH_SIZE,
            key=key,
            eval_every=steps,
            progress=False,
        )
        test = jopt.train.evaluate(state, full.x_test, full.y_test)
        return {
            "val_accuracy": history["val_accuracy"][-1],
            "train_loss": history["loss"][-1],
            "test_accuracy": test["accuracy"],
        }

    # SWEEP
    space = jopt.sweep.grid(
        optimizer=list(range(len(OPTIMIZERS))),
        learning_rate=learning_rates,
        weight_decay=weight_decays,
    )
    print(space.table(max_rows=6))
    start = time.perf_counter()
    result = jopt.sweep.run(trial, space, seeds=seeds, progress=False)
    wall = time.perf_counter() - start

    # REPORT: one (lr, lambda) grid per optimizer; a diverged run scores accuracy 0 (not skipped)
    shape = (len(OPTIMIZERS), len(learning_rates), len(weight_decays))
    val = np.where(result.diverged, 0.0, result.metrics["val_accuracy"]).mean(1).reshape(shape)
    test = np.where(result.diverged, 0.0, result.metrics["test_accuracy"]).mean(1).reshape(shape)
    test_sd = np.where(result.diverged, 0.0, result.metrics["test_accuracy"]).std(1).reshape(shape)
    diverged = result.diverged.any(axis=1).reshape(shape)
    print(
        f"\n{len(space)} configs x {seeds} seeds x {steps} steps in {wall:.1f} s; "
        f"{int(result.diverged.sum())} runs diverged (scored as accuracy 0)"
    )
    best, top5 = {}, {}
    for o, name in enumerate(OPTIMIZERS):
        i, j = np.unravel_index(np.argmax(val[o]), val[o].shape)
        best[name] = {
            "learning_rate": learning_rates[i],
            "weight_decay": weight_decays[j],
            "lr_times_lambda": learning_rates[i] * weight_decays[j],
            "val_accuracy": float(val[o, i, j]),
            "test_accuracy": float(test[o, i, j]),
            "test_accuracy_seed_sd": float(test_sd[o, i, j]),
        }
        # NOT GATED (defined before the full run): the argmax sits on a flat plateau, so also
        # report the geometric centre of the 5 best cells, a steadier location of the good region.
        rows, cols = np.unravel_index(np.argsort(val[o], axis=None)[::-1][:5], val[o].shape)
        top5[name] = {
            "learning_rate": float(np.exp(np.log(learning_rates)[rows].mean())),
            "weight_decay": float(np.exp(np.log(weight_decays)[cols].mean())),
        }
        print(f"{name}: validation accuracy, seed mean (rows: lr, columns: lambda)")
        print("lr \\ lam  " + " ".join(f"{d:7.1e}" for d in weight_decays))
        for lr, row in zip(learning_rates, val[o]):
            print(f"{lr:9.2e} " + " ".join(f"{a:7.3f}" for a in row))
        print(f"  best {best[name]}; top-5 centre {top5[name]}")

    adamw, lion = best["adamw"], best["lion"]
    lr_ratio = adamw["learning_rate"] / lion["learning_rate"]
    decay_ratio = lion["weight_decay"] / adamw["weight_decay"]
    product_ratio = lion["lr_times_lambda"] / adamw["lr_times_lambda"]
    accuracy_gap = 100 * (lion["test_accuracy"] - adamw["test_accuracy"])
    checks = {
        "lr_ratio": bool(2.0 <= lr_ratio <= 20.0),
        "decay": bool(decay_ratio >= 2.0 or 1 / 3 <= product_ratio <= 3.0),
        "accuracy": bool(abs(accuracy_gap) <= 1.0),
    }
    overall = common.overall(checks)
    verdict = {**checks, "overall": overall}
    # WHY (for the verdict): each failed check with its number, and the scale caveat
    seed_sd = 100 * np.where(result.diverged, 0.0, result.metrics["val_accuracy"]).std(1).mean()
    failed = {
        "lr_ratio": f"AdamW's best lr is {lr_ratio:.3g}x Lion's (criterion: 2-20)",
        "decay": f"Lion's best lambda is {decay_ratio:.3g}x AdamW's and lr * lambda "
        f"{product_ratio:.3g}x (criterion: >= 2x, or within 3x)",
        "accuracy": f"Lion's best test accuracy is {accuracy_gap:+.1f} points from AdamW's "
        f"(criterion: +-1); best validation accuracy {100 * lion['val_accuracy']:.1f} vs "
        f"{100 * adamw['val_accuracy']:.1f}",
    }
    if overall != "reproduced":
        verdict["likely_reason"] = (
            "; ".join(failed[k] for k, ok in checks.items() if not ok)
            + f". Seeds differ by {seed_sd:.1f} points per cell (mean sd over {seeds} seeds). The "
            "paper's gains are for large models and large batches (its gain over AdamW grows with "
            "batch size); this "
            f"is a 15k-parameter MLP at batch {BATCH_SIZE} for {steps} steps."
        )
    print(
        f"AdamW / Lion best lr: {lr_ratio:.3g}x; Lion / AdamW best lambda: {decay_ratio:.3g}x; "
        f"lr*lambda ratio (Lion / AdamW): {product_ratio:.3g}; Lion - AdamW test accuracy: "
        f"{accuracy_gap:+.1f} points"
    )
    print(f"verdict: {verdict}")

    record = {
        "paper": "Chen, Liang, Huang, Real, Wang, Liu, Pham, Dong, Luong, Hsieh, Lu & Le, Symbolic "
        "Discovery of Optimization Algorithms, NeurIPS 2023 (arXiv 2302.06675)",
        "claim": "section 5 (hyperparameter guidance): 'a suitable learning rate for Lion is "
        "typically 3-10x smaller than that for AdamW'; since the effective weight decay is "
        "lr * lambda, Lion's lambda should be 3-10x larger to keep a similar strength. Wording "
        "verified through the lion-pytorch README and the Keras / MLX docs, which quote section 5; "
        "not checked against the PDF itself.",
        "pass_criterion": PASS_CRITERION,
        "pilot": common.read_pilot("lion_vs_adamw"),
        "measured": {
            "best": best,
            "adamw_over_lion_lr": lr_ratio,
            "lion_over_adamw_lambda": decay_ratio,
            "lion_over_adamw_lr_times_lambda": product_ratio,
            "lion_minus_adamw_test_points": accuracy_gap,
            "val_accuracy_seed_sd_points": float(seed_sd),
            "top5_centre_not_gated": {
                "cells": top5,
                "adamw_over_lion_lr": top5["adamw"]["learning_rate"]
                / top5["lion"]["learning_rate"],
                "lion_over_adamw_lambda": top5["lion"]["weight_decay"]
                / top5["adamw"]["weight_decay"],
            },
        },
        "verdict": verdict,
        "sweep_wall_time_s": wall,
        "recipe": {
            "model": "jopt.models.MLP() (40-100-100-10, residual, PyTorch init)",
            "data": "MNIST-1D 4000 train split 3200 train / 800 validation; 1000 test",
            "optimizers": "jopt.adamw(lr_t, weight_decay=lambda) (b1 0.9, b2 0.999) and "
            "jopt.lion(lr_t, weight_decay=lambda) (b1 0.9, b2 0.99); both decay by lr_t * lambda",
            "schedule": "lr_t = lr * cosine(t / steps), to 0",
            "decay_on": "every parameter (biases too)",
            "batch_size": BATCH_SIZE,
            "steps": steps,
            "seeds": result.seeds,
        },
        "optimizers": OPTIMIZERS,
        "learning_rates": learning_rates,
        "weight_decays": weight_decays,
        # [optimizer][lr][lambda], seed means (a diverged run counts as accuracy 0)
        "val_accuracy_mean": val.tolist(),
        "test_accuracy_mean": test.tolist(),
        "any_seed_diverged": diverged.tolist(),
        "diverged_runs": int(result.diverged.sum()),
        "devices": result.info["devices"],
    }
    common.write_record(args, record)

    plt = common.pyplot()
    if plt is None:
        return
    fig, axes = plt.subplots(1, 3, figsize=(18, 5.2), gridspec_kw={"width_ratios": [1, 1, 0.9]})
    low = max(10.0, 100 * np.percentile(val, 25) - 5)
    log_lr, log_wd = np.log10(learning_rates), np.log10(weight_decays)

    def cell(axis_log, value):  # fractional cell index of a value on a log-spaced axis
        return (np.log10(value) - axis_log[0]) / (axis_log[1] - axis_log[0])

    for o, (name, ax) in enumerate(zip(OPTIMIZERS, axes[:2])):
        image = ax.imshow(
            100 * val[o],
            origin="lower",
            cmap="viridis",
            vmin=low,
            vmax=100 * val.max(),
            aspect="auto",
        )
        ys, xs = np.nonzero(diverged[o])
        ax.scatter(xs, ys, marker="x", color="grey", s=25)
        i, j = np.unravel_index(np.argmax(val[o]), val[o].shape)
        ax.add_patch(plt.Rectangle((j - 0.5, i - 0.5), 1, 1, fill=False, color="red", lw=2.5))
        if name == "lion":  # the paper's rule applied to AdamW's best cell
            lr_box = [adamw["learning_rate"] / r for r in PUBLISHED_RATIO[::-1]]
            wd_box = [adamw["weight_decay"] * r for r in PUBLISHED_RATIO]
            x0, x1 = cell(log_wd, wd_box[0]), cell(log_wd, wd_box[1])
            y0, y1 = cell(log_lr, lr_box[0]), cell(log_lr, lr_box[1])
            ax.add_patch(
                plt.Rectangle(
                    (x0, y0), x1 - x0, y1 - y0, fill=False, color="white", ls="--", lw=1.5
                )
            )
            i, j = (
                learning_rates.index(adamw["learning_rate"]),
                weight_decays.index(adamw["weight_decay"]),
            )
            ax.scatter([j], [i], marker="*", color="orange", s=120, label="AdamW's best")
            ax.legend(loc="lower left", fontsize=8)
        ax.set_xticks(range(len(weight_decays)), [f"{d:.2g}" for d in weight_decays])
        ax.set_yticks(range(len(learning_rates)), [f"{lr:.2g}" for lr in learning_rates])
        ax.set_xlabel("lambda (decoupled, multiplied by lr_t)")
        ax.set_ylabel("initial learning rate")
        b = best[name]
        label = "AdamW (optax form)" if name == "adamw" else "Lion"
        title = f"{label}: best lr {b['learning_rate']:.2g}, lambda {b['weight_decay']:.2g}"
        if name == "lion":
            title += "\ndashed: AdamW's best with lr / 3-10, lambda x 3-10 (paper)"
        ax.set_title(title, fontsize=10)
        fig.colorbar(image, ax=ax, label="validation accuracy (%), seed mean")
    # ACCURACY VS LR at each lr's best lambda, with the seeds' spread at that cell
    ax = axes[2]
    per_seed = np.where(result.diverged, 0.0, result.metrics["test_accuracy"]).reshape(
        *shape, len(result.seeds)
    )
    for o, (name, color) in enumerate(zip(OPTIMIZERS, ("C0", "C3"))):
        cols = np.argmax(val[o], axis=1)
        rows = np.arange(len(learning_rates))
        seeds = 100 * per_seed[o, rows, cols]  # (lr, seed)
        ax.plot(learning_rates, seeds.mean(1), "o-", color=color, label=f"{name} (best lambda)")
        ax.fill_between(learning_rates, seeds.min(1), seeds.max(1), color=color, alpha=0.2)
    ax.axvspan(
        *[adamw["learning_rate"] / r for r in PUBLISHED_RATIO[::-1]],
        color="C3",
        alpha=0.1,
        label="AdamW's best lr / 3-10 (paper)",
    )
    ax.axvline(adamw["learning_rate"], color="C0", ls=":", label="AdamW's best lr")
    ax.set_xscale("log")
    ax.set_xlabel("initial learning rate")
    ax.set_ylabel("test accuracy (%) at the lr's best lambda (band: seeds)")
    ax.set_ylim(bottom=max(0.0, low - 10))
    ax.set_title(f"lr ratio {lr_ratio:.2g}x, lambda ratio {decay_ratio:.2g}x; verdict: {overall}")
    ax.legend(fontsize=8)
    fig.tight_layout()
    common.save_figure(args, fig, dpi=110)


if __name__ == "__main__":
    main()
