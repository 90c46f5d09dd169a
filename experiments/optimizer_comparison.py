"""Adam vs SGD, SGD-Nesterov, AdaGrad and RMSProp, each at its best learning rate (Kingma & Ba).

Run: python -m experiments.optimizer_comparison [--quick]

Kingma & Ba, "Adam: A Method for Stochastic Optimization" (ICLR 2015, arXiv 1412.6980), Sec. 6,
at small scale on a CPU. Three parts, each ONE compiled program (``jopt.sweep.run``):

(ii) Fig. 2a, MLP with dropout: ``jopt.models.MLP(hidden=(128, 128), residual=False,
     dropout=0.5)`` on MNIST-1D (the paper: 2 x 1000 ReLU units on MNIST, 200 epochs),
     minibatch 128, 2000 steps = 64 epochs. Five optimizers x 8 log-spaced learning rates (3
     decades each, placed per optimizer) x 3 seeds. The optimizer is a *traced* index
     (``jopt.one_of``), so all 40 configurations share one program instead of five.
(i)  Fig. 1 left, L2-regularized logistic regression: ``jopt.models.Linear`` on scikit-learn's
     8x8 digits (the paper: MNIST), L2 1e-4, minibatch 128, the paper's stepsize decay
     alpha_t = alpha / sqrt(t) (``jopt.schedules.inverse_sqrt_schedule``) for every optimizer,
     1000 steps (89 epochs); the same 5 x 8 x 3 grid with every learning rate x 100.
(iv) Fig. 4, bias correction: Adam with and without bias correction (the uncorrected Adam is
     written with ``jopt.from_rule``; a traced switch turns the correction on and off, so both
     share one program), beta2 in {0.99, 0.999, 0.9999}, lr in {1e-3, 1e-2}, beta1 = 0.9, on the
     MLP without dropout (the paper: a VAE), 3 seeds, 2000 steps; the paper's Fig. 4 shows the
     loss after 10 and after 100 epochs.

"Training cost" is the minibatch training NLL the optimizer sees (with dropout where there is
dropout), averaged over blocks of 25 steps and over seeds; each optimizer's best learning rate is
the one with the lowest final cost. Not run: AdaDelta (Fig. 2a; jopt has no AdaDelta), the
IMDB bag-of-words half of Fig. 1, SFO (Fig. 2b), the CIFAR-10 CNN (Fig. 3). Writes
``paper_figures/optimizer_comparison.{png,json}`` (``--quick``: 2 learning rates, 1 seed, 50
steps, written to runs/ instead).

What to look for: at its best learning rate Adam reaches the lowest dropout training cost (or
ties RMSProp, which is Adam without momentum and without bias correction); on logistic
regression Adam and Nesterov track each other and both beat AdaGrad early; without bias
correction, beta2 = 0.9999 and lr = 1e-2 make the first steps ~10-20x too large and the loss
spikes early in training, as Fig. 4 shows for the VAE.
"""

import time

import jax
import jax.numpy as jnp
import numpy as np
import optax

import jopt
from experiments import common

BATCH_SIZE = 128  # the paper's minibatch, in every experiment of Sec. 6
L2 = 1e-4

# Each optimizer's learning-rate grid spans 3 decades placed around its usual range, so that the
# best learning rate lies inside the grid (the verdict checks that it is not on an edge).
OPTIMIZERS = {
    "SGD": (lambda lr: jopt.sgd(lr), (1e-2, 10.0)),
    "SGD-Nesterov": (lambda lr: jopt.sgd(lr, momentum=0.9, nesterov=True), (1e-3, 1.0)),
    "AdaGrad": (lambda lr: jopt.adagrad(lr), (3e-3, 3.0)),
    "RMSProp": (lambda lr: jopt.rmsprop(lr), (1e-4, 1e-1)),
    "Adam": (lambda lr: jopt.adam(lr), (1e-4, 1e-1)),
}
NAMES = list(OPTIMIZERS)
# alpha / sqrt(t) decays fast and digits are nearly separable, so logistic regression wants much
# larger initial steps: the pilot's best learning rates were 100x the MLP's for every optimizer.
LOGREG_SHIFT = 100.0
# Fixed before the full run, after the pilot runs (1 seed, 1000 steps) in
# paper_figures/pilots/optimizer_comparison.json.
PASS_CRITERION = {
    "mlp_dropout (ii)": "best-lr Adam's final training cost (minibatch NLL with dropout, mean of "
    "the last 4 blocks of 25 steps and of 3 seeds) is <= 1.1 x the best of the other four, and "
    "< AdaGrad's and < SGD's",
    "logreg (i)": "Adam's and SGD-Nesterov's final training NLL are within 10% of each other, "
    "and both are below AdaGrad's at 25% of the budget",
    "bias_correction (iv)": "at beta2 = 0.9999, lr = 1e-2: without correction the training cost "
    "in the first 10 epochs spikes (its max 25-step block mean, seed mean, is >= 1.5 x ln 10, "
    "or a run diverges); with correction it does not (max <= 1.1 x ln 10)",
    "grid_edges": "every optimizer's best learning rate lies strictly inside its grid (else the "
    "comparison is reported as not conclusive for that part)",
    "overall": "reproduced if (ii), (i) and (iv) all pass; partly if one or two pass; else not "
    "reproduced",
}


# OPTIMIZER AS DATA: one program for all five optimizers
# ADAM WITHOUT BIAS CORRECTION, written as a jopt rule
def adam_rule(grads, state, params, hp):
    """Adam (Algorithm 1 of the paper) with its bias correction scaled by ``hp["correction"]``.

    correction = 1 is Adam; correction = 0 leaves m_t and v_t biased towards zero, which the
    paper (Sec. 5) calls RMSProp with momentum.
    """
    del params
    count = optax.safe_increment(state.count)
    mu = optax.tree.update_moment(grads, state.mu, hp["b1"], 1)
    nu = optax.tree.update_moment_per_elem_norm(grads, state.nu, hp["b2"], 2)
    c = hp["correction"]
    mu_hat = jax.tree.map(lambda m: m / (1 - c * hp["b1"] ** count), mu)
    nu_hat = jax.tree.map(lambda v: v / (1 - c * hp["b2"] ** count), nu)
    updates = jax.tree.map(
        lambda m, v: -hp["learning_rate"] * m / (jnp.sqrt(v) + hp["eps"]), mu_hat, nu_hat
    )
    return updates, jopt.rules.AdamState(count=count, mu=mu, nu=nu)


def adam_init(params, hp):
    del hp
    zeros = optax.tree.zeros_like(params)
    return jopt.rules.AdamState(count=jnp.zeros([], jnp.int32), mu=zeros, nu=zeros)


def adam_maybe_corrected(learning_rate, b2, correction, b1=0.9, eps=1e-8):
    return jopt.from_rule(
        adam_rule,
        adam_init,
        kind="adam_maybe_corrected",
        learning_rate=learning_rate,
        b1=b1,
        b2=b2,
        eps=eps,
        correction=correction,
    )


def max_abs_difference(tx_a, tx_b, steps=5):
    """Largest parameter difference after a few steps on a toy quadratic (eager, no compile)."""
    params = {"a": jnp.array([1.0, -2.0]), "b": jnp.array([[0.5, 3.0]])}
    runs = []
    for tx in (tx_a, tx_b):
        p, state = params, tx.init(params)
        for _ in range(steps):
            grads = jax.grad(lambda q: sum(jnp.sum(x**2) for x in jax.tree.leaves(q)))(p)
            updates, state = tx.update(grads, state, p)
            p = optax.apply_updates(p, updates)
        runs.append(p)
    return float(max(jnp.max(jnp.abs(a - b)) for a, b in zip(*map(jax.tree.leaves, runs))))


# TRIAL: one training run, minibatch NLL at every step
def train_curve(model, tx, data, steps, key):
    """A training run as one lax.scan; returns the final state and the per-step minibatch loss."""
    init_key, data_key, step_key = jax.random.split(key, 3)
    state = jopt.train.create_train_state(model, tx, data.x_train[:1], init_key)
    n = data.x_train.shape[0]

    def step(state, t):
        idx = jopt.data.batch_indices(data_key, t, n, BATCH_SIZE, "replacement")
        batch = (data.x_train[idx], data.y_train[idx])
        state, metrics = jopt.train.train_step(state, batch, jax.random.fold_in(step_key, t))
        return state, metrics["loss"]

    return jax.lax.scan(step, state, jnp.arange(steps))


def best_per_optimizer(result, lr_scale=1.0):
    """Per optimizer: the lr with the lowest final cost (seed mean of the last 4 blocks)."""
    curves = result.metrics["curve"].astype(float)  # (configs, seeds, blocks)
    final = curves[..., -4:].mean(axis=(1, 2))  # NaN if any seed diverged
    final = np.where(np.isfinite(final), final, np.inf)
    out = {}
    for i, name in enumerate(NAMES):
        rows = [c for c, config in enumerate(result.configs) if config["optimizer"] == i]
        best = rows[int(np.argmin(final[rows]))]
        out[name] = {
            "best_learning_rate": result.configs[best]["learning_rate"] * lr_scale,
            "best_on_grid_edge": best in (rows[0], rows[-1]),
            "final_cost": float(final[best]),
            "final_cost_per_lr": [None if np.isinf(v) else float(v) for v in final[rows]],
            "train_nll_full_set": float(result.metrics["train_nll_full"][best].mean()),
            "curve_seed_mean": curves[best].mean(0).round(4).tolist(),
            "curve_seed_min": curves[best].min(0).round(4).tolist(),
            "curve_seed_max": curves[best].max(0).round(4).tolist(),
            "diverged_lrs": int(result.diverged[rows].any(axis=1).sum()),
        }
    return out


def main(argv=None):
    jopt.devices.use_all_cores()  # before any JAX operation: one JAX device per CPU core
    args = common.parse_args(__doc__, "optimizer_comparison", argv)

    # CONFIG
    if args.quick:
        n_lrs, n_seeds, block = 2, 1, 5
        mlp_steps, logreg_steps, ablation_steps = 50, 50, 50
    else:
        n_lrs, n_seeds, block = 8, 3, 25
        mlp_steps, logreg_steps, ablation_steps = 2000, 1000, 2000  # 64, 89, 64 epochs

    # DATA
    mnist1d = jopt.data.mnist1d()  # 4000 train / 1000 test, 40 features
    digits = jopt.data.digits()  # 1437 train / 360 test, 64 pixels in [0, 1]
    mlp = jopt.models.MLP(hidden=(128, 128), residual=False, dropout=0.5)
    mlp_no_dropout = jopt.models.MLP(hidden=(128, 128), residual=False)
    logreg = jopt.models.Linear()

    # Self-checks, cheap and eager: the rule with correction = 1 is jopt.adam, and one_of(i) is
    # optimizer i.
    t_checks = time.perf_counter()
    checks = {
        "adam_rule_vs_jopt_adam": max_abs_difference(
            adam_maybe_corrected(0.1, 0.999, 1.0), jopt.adam(0.1)
        ),
        "one_of_vs_each_optimizer": max(
            max_abs_difference(
                jopt.one_of(i, [make(0.05) for make, _ in OPTIMIZERS.values()]), make_i(0.05)
            )
            for i, (make_i, _) in enumerate(OPTIMIZERS.values())
        ),
    }
    print(f"self-checks (max |difference|, {time.perf_counter() - t_checks:.1f} s):", checks)

    # TRIAL: one training run, minibatch NLL at every step, averaged in blocks of `block` steps
    def comparison_trial(model, data, steps, lr_scale=1.0, decay=False, l2=0.0):
        def trial(hp, key):
            lr = hp["learning_rate"] * lr_scale
            if decay:  # alpha_t = alpha / sqrt(t), t counted from 1
                lr = jopt.schedules.inverse_sqrt_schedule(lr)
            txs = [make(lr) for make, _ in OPTIMIZERS.values()]
            tx = jopt.one_of(hp["optimizer"], txs)
            if l2:
                tx = optax.chain(jopt.regularizers.l2(l2), tx)
            state, losses = train_curve(model, tx, data, steps, key)
            full = jopt.train.evaluate(state, data.x_train, data.y_train)
            return {"curve": losses.reshape(-1, block).mean(-1), "train_nll_full": full["loss"]}

        return trial

    def ablation_trial(hp, key):
        tx = adam_maybe_corrected(hp["learning_rate"], hp["b2"], hp["correction"])
        _, losses = train_curve(mlp_no_dropout, tx, mnist1d, ablation_steps, key)
        return {"curve": losses.reshape(-1, block).mean(-1)}

    # SWEEPS: (ii) MLP with dropout, (i) logistic regression, (iv) bias-correction ablation
    def lr_grid(i):
        return jopt.sweep.log_range(*OPTIMIZERS[NAMES[i]][1], n_lrs)

    space = jopt.sweep.Space(
        [
            {"optimizer": float(i), "learning_rate": lr}
            for i in range(len(NAMES))
            for lr in lr_grid(i)
        ]
    )
    ablation_space = jopt.sweep.grid(
        correction=[0.0, 1.0], b2=[0.99, 0.999, 0.9999], learning_rate=[1e-3, 1e-2]
    )
    start, cpu_start = time.perf_counter(), time.process_time()
    times = {}
    t0 = time.perf_counter()
    mlp_result = jopt.sweep.run(
        comparison_trial(mlp, mnist1d, mlp_steps), space, seeds=n_seeds, progress=False
    )
    times["mlp_dropout"] = time.perf_counter() - t0
    print(
        f"(ii) MLP + dropout: {len(space)} configs x {n_seeds} seeds in "
        f"{times['mlp_dropout']:.1f} s"
    )
    t0 = time.perf_counter()
    logreg_trial = comparison_trial(
        logreg, digits, logreg_steps, lr_scale=LOGREG_SHIFT, decay=True, l2=L2
    )
    logreg_result = jopt.sweep.run(logreg_trial, space, seeds=n_seeds, progress=False)
    times["logreg"] = time.perf_counter() - t0
    print(f"(i) logistic regression: {len(space)} configs in {times['logreg']:.1f} s")
    t0 = time.perf_counter()
    ablation = jopt.sweep.run(ablation_trial, ablation_space, seeds=n_seeds, progress=False)
    times["bias_correction"] = time.perf_counter() - t0
    print(
        f"(iv) bias correction: {len(ablation_space)} configs in {times['bias_correction']:.1f} s"
    )
    wall = time.perf_counter() - start
    cpu = time.process_time() - cpu_start  # all threads: about 2 x wall on an idle 2-core machine

    # REPORT
    # REPORT
    mlp_best = best_per_optimizer(mlp_result)
    logreg_best = best_per_optimizer(logreg_result, LOGREG_SHIFT)
    blocks = np.arange(1, mlp_steps // block + 1) * block
    logreg_blocks = np.arange(1, logreg_steps // block + 1) * block

    for title, best in (("(ii) MLP + dropout", mlp_best), ("(i) logistic regression", logreg_best)):
        print(f"\n{title}: final training cost at the best learning rate (seed mean)")
        for name, b in best.items():
            edge = "  (on grid edge)" if b["best_on_grid_edge"] else ""
            print(
                f"  {name:13s} lr {b['best_learning_rate']:9.3g}  cost {b['final_cost']:.4f}  "
                f"full-set NLL {b['train_nll_full_set']:.4f}{edge}"
            )

    # (ii) Adam <= 1.1 x best other, < AdaGrad, < SGD
    cost = {n: mlp_best[n]["final_cost"] for n in NAMES}
    best_other = min(cost[n] for n in NAMES if n != "Adam")
    parts_ii = {
        "adam <= 1.1 x best other": cost["Adam"] <= 1.1 * best_other,
        "adam < adagrad": cost["Adam"] < cost["AdaGrad"],
        "adam < sgd": cost["Adam"] < cost["SGD"],
    }
    # (i) Adam within 10% of Nesterov at the end; both below AdaGrad at 25% of the budget
    quarter = len(logreg_blocks) // 4 - 1
    at_quarter = {n: logreg_best[n]["curve_seed_mean"][quarter] for n in NAMES}
    end = {n: logreg_best[n]["final_cost"] for n in NAMES}
    parts_i = {
        "adam and nesterov within 10% at the end": abs(end["Adam"] - end["SGD-Nesterov"])
        <= 0.1 * min(end["Adam"], end["SGD-Nesterov"]),
        "adam < adagrad at 25%": at_quarter["Adam"] < at_quarter["AdaGrad"],
        "nesterov < adagrad at 25%": at_quarter["SGD-Nesterov"] < at_quarter["AdaGrad"],
    }
    # (iv) the early spike without correction at beta2 = 0.9999, lr = 1e-2
    # blocks covering the first 10 epochs (all of them in --quick)
    ten_epochs = min(
        round(10 * mnist1d.x_train.shape[0] / BATCH_SIZE) // block, ablation_steps // block
    )
    ablation_curves = ablation.metrics["curve"].astype(float)  # (configs, seeds, blocks)
    ablation_rows = []
    for c, config in enumerate(ablation.configs):
        curve = ablation_curves[c]
        early = curve[:, :ten_epochs]
        ablation_rows.append(
            {
                **config,
                "early_max_cost": float(np.max(early.mean(0)))
                if np.isfinite(early).all()
                else None,
                "cost_after_10_epochs": float(curve[:, ten_epochs - 1].mean()),
                "final_cost": float(curve[:, -4:].mean()),
                "diverged_seeds": int(ablation.diverged[c].sum()),
                "curve_seed_mean": curve.mean(0).round(4).tolist(),
            }
        )
    print("\n(iv) Adam with / without bias correction (seed means)")
    print(" corr  beta2   lr     early max   after ~10 ep   final")
    for r in ablation_rows:
        early = "  diverged" if r["early_max_cost"] is None else f"{r['early_max_cost']:10.3f}"
        print(
            f"  {int(r['correction'])}   {r['b2']:.4f} {r['learning_rate']:6.0e} {early}   "
            f"{r['cost_after_10_epochs']:10.3f}   {r['final_cost']:8.3f}"
        )

    def ablation_row(correction, b2=0.9999, lr=1e-2):
        return next(
            r
            for r in ablation_rows
            if r["correction"] == correction and r["b2"] == b2 and r["learning_rate"] == lr
        )

    ln10 = float(np.log(10.0))
    off, on = ablation_row(0.0), ablation_row(1.0)
    parts_iv = {
        "no correction spikes": off["diverged_seeds"] > 0
        or (off["early_max_cost"] is not None and off["early_max_cost"] >= 1.5 * ln10),
        "with correction no spike": on["diverged_seeds"] == 0
        and on["early_max_cost"] is not None
        and on["early_max_cost"] <= 1.1 * ln10,
    }
    edges = {
        f"{part} {name}": not best[name]["best_on_grid_edge"]
        for part, best in (("mlp", mlp_best), ("logreg", logreg_best))
        for name in NAMES
    }
    checks_all = {
        "mlp_dropout (ii)": parts_ii,
        "logreg (i)": parts_i,
        "bias_correction (iv)": parts_iv,
    }
    passed = {k: all(v.values()) for k, v in checks_all.items()}
    overall = common.overall(passed)
    verdict = {k: {"passed": passed[k], "parts": v} for k, v in checks_all.items()}
    verdict["best_lr_inside_grid (reported)"] = edges
    verdict["overall"] = overall
    print()
    for k, v in checks_all.items():
        failed = [p for p, ok in v.items() if not ok]
        print(f"{k:22s} {'pass' if passed[k] else 'FAIL'} {failed or ''}")
    edge_hits = [k for k, ok in edges.items() if not ok]
    print(f"best lr on a grid edge: {edge_hits or 'none'}")
    print(f"overall: {overall}")

    record = {
        "paper": "Kingma & Ba, Adam: A Method for Stochastic Optimization, ICLR 2015 "
        "(arXiv 1412.6980)",
        "claim": {
            "source": "verified against the paper's text (arXiv 1412.6980, Sec. 6.1, 6.2, 6.4 and "
            "the captions of Fig. 1, 2 and 4)",
            "fig_2a": "MNIST MLP, 2 x 1000 ReLU hidden units, minibatch 128, dropout: 'Adam shows "
            "better convergence than other methods' (AdaGrad, RMSProp, SGDNesterov, AdaDelta), "
            "training cost over 200 epochs",
            "fig_1_left": "L2-regularized logistic regression on MNIST, minibatch 128, alpha_t = "
            "alpha / sqrt(t): 'Adam yields similar convergence as SGD with momentum and both "
            "converge faster than Adagrad'",
            "fig_4": "VAE, beta1 in {0, 0.9}, beta2 in {0.99, 0.999, 0.9999}, log10(alpha) in "
            "[-5, -1]: 'values beta2 close to 1 indeed lead to instabilities in training when no "
            "bias correction term was present, especially at first few epochs of the training'",
            "fig_3_not_run": "CIFAR-10 CNN: Adam and SGD converge considerably faster than AdaGrad",
        },
        "pass_criterion": PASS_CRITERION,
        "pilot": common.read_pilot("optimizer_comparison"),
        "measured": {
            "mlp_dropout": {
                n: {k: v for k, v in b.items() if "curve" not in k} for n, b in mlp_best.items()
            },
            "logreg": {
                n: {k: v for k, v in b.items() if "curve" not in k} for n, b in logreg_best.items()
            },
            "logreg_cost_at_25_percent": at_quarter,
            "bias_correction": [
                {k: v for k, v in r.items() if k != "curve_seed_mean"} for r in ablation_rows
            ],
            "self_checks_max_abs_difference": checks,
        },
        "verdict": verdict,
        "sweep_wall_time_s": wall,
        "cpu_time_s": cpu,
        "wall_time_per_part_s": times,
        "recipe": {
            "optimizers": {n: f"{src[1]} lr range" for n, src in OPTIMIZERS.items()},
            "learning_rates": {n: lr_grid(i) for i, n in enumerate(NAMES)},
            "logreg_learning_rates": {
                n: [lr * LOGREG_SHIFT for lr in lr_grid(i)] for i, n in enumerate(NAMES)
            },
            "batch_size": BATCH_SIZE,
            "steps": {"mlp": mlp_steps, "logreg": logreg_steps, "bias_correction": ablation_steps},
            "block": block,
            "seeds": mlp_result.seeds,
            "mlp": "MNIST-1D, MLP 40-128-128-10, ReLU, dropout 0.5 after each hidden layer, "
            "PyTorch init, batches drawn with replacement",
            "logreg": f"digits 64-10, L2 {L2} (coupled), alpha / sqrt(1 + t) for every optimizer",
            "bias_correction": "MNIST-1D MLP 40-128-128-10 without dropout, beta1 0.9, eps 1e-8",
        },
        "curves": {
            "mlp_step": blocks.tolist(),
            "mlp": {n: {k: v for k, v in b.items() if "curve" in k} for n, b in mlp_best.items()},
            "logreg_step": logreg_blocks.tolist(),
            "logreg": {
                n: {k: v for k, v in b.items() if "curve" in k} for n, b in logreg_best.items()
            },
            "bias_correction_step": (np.arange(1, ablation_steps // block + 1) * block).tolist(),
            "bias_correction": [
                {k: r[k] for k in ("correction", "b2", "learning_rate", "curve_seed_mean")}
                for r in ablation_rows
            ],
        },
        "devices": mlp_result.info["devices"],
    }
    common.write_record(args, record)

    plt = common.pyplot()
    if plt is not None:
        fig, axes = plt.subplots(1, 4, figsize=(20, 4.6))
        colors = dict(zip(NAMES, ["C7", "C2", "C1", "C4", "C3"]))
        # CURVES at the best lr, seed band, as the paper's Fig. 2a and Fig. 1 left
        for ax, best, steps, title in (
            (axes[0], mlp_best, blocks, "(ii) MNIST-1D MLP + dropout (Fig. 2a)"),
            (axes[1], logreg_best, logreg_blocks, "(i) digits logistic regression (Fig. 1)"),
        ):
            for name, b in best.items():
                ax.plot(
                    steps,
                    b["curve_seed_mean"],
                    color=colors[name],
                    lw=2.2 if name == "Adam" else 1.4,
                    label=f"{name} (lr {b['best_learning_rate']:.2g})",
                )
                ax.fill_between(
                    steps,
                    b["curve_seed_min"],
                    b["curve_seed_max"],
                    color=colors[name],
                    alpha=0.2,
                    lw=0,
                )
            ax.set_xlabel("step (minibatch of 128)")
            ax.set_ylabel("training cost (minibatch NLL)")
            ax.set_title(title, fontsize=10)
            ax.legend(fontsize=8)
        # the MLP curves end within a few percent of each other: zoom in on linear axes
        lowest = min(b["final_cost"] for b in mlp_best.values())
        axes[0].set_ylim(0.9 * lowest, 1.6)
        axes[1].set_yscale("log")
        axes[1].axvline(logreg_blocks[quarter], color="k", ls=":", lw=1)
        axes[1].text(
            logreg_blocks[quarter], 0.9, " 25% of budget", transform=axes[1].get_xaxis_transform()
        )
        # LR SENSITIVITY: final cost against the learning rate, one line per optimizer
        for i, name in enumerate(NAMES):
            axes[2].plot(
                lr_grid(i),
                [np.nan if v is None else v for v in mlp_best[name]["final_cost_per_lr"]],
                "o-",
                color=colors[name],
                label=name,
            )
        axes[2].set_xscale("log")
        axes[2].set_ylim(top=2.6)
        axes[2].set_xlabel("learning rate")
        axes[2].set_ylabel("final training cost (seed mean)")
        axes[2].set_title("(ii) the lr grids (missing point: diverged)", fontsize=10)
        axes[2].legend(fontsize=8)
        # BIAS CORRECTION: early training cost, beta2 = 0.9999 and 0.99, lr 1e-2
        abl_steps = np.arange(1, ablation_steps // block + 1) * block
        window = abl_steps <= max(4 * ten_epochs * block, 4 * block)
        for r in ablation_rows:
            if r["learning_rate"] != 1e-2 or r["b2"] == 0.999:
                continue
            axes[3].plot(
                abl_steps[window],
                np.asarray(r["curve_seed_mean"])[window],
                color="C3" if r["correction"] else "C2",
                ls="-" if r["b2"] == 0.9999 else "--",
                label=f"{'with' if r['correction'] else 'without'} correction, beta2 {r['b2']}",
            )
        axes[3].axhline(ln10, color="k", lw=0.8, ls=":", label="ln 10 (initial cost)")
        axes[3].axvline(ten_epochs * block, color="gray", lw=0.8, ls=":")
        axes[3].set_yscale("log")
        axes[3].set_xlabel("step")
        axes[3].set_ylabel("training cost (25-step mean)")
        axes[3].set_title("(iv) Adam lr 1e-2, with/without bias correction (Fig. 4)", fontsize=10)
        axes[3].legend(fontsize=8)
        fig.suptitle(f"Kingma & Ba (2015) at small scale: {overall}", fontsize=11)
        fig.tight_layout()
        common.save_figure(args, fig, dpi=120)


if __name__ == "__main__":
    main()
