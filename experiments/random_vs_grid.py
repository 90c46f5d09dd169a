"""Random search vs grid search at equal budget (Bergstra & Bengio, JMLR 2012).

Run: python -m experiments.random_vs_grid [--quick]

Bergstra & Bengio, "Random Search for Hyper-Parameter Optimization", JMLR 13 (2012) 281-305.
Their argument: when only a few hyperparameters matter (low effective dimensionality), a grid
spends its budget re-testing the same few values of the ones that matter, while every random
trial tests a new value of each. Two parts:

(i)  The Fig. 1 toy, pure numpy (a second): f(x, y) = g(x) + lam * h(y) on the unit square,
     g and h random sums of three Gaussian bumps, lam = 0.1 (f ~ g). Nine trials: a 3 x 3 grid
     (cell centres) tests 3 values of x, nine random points test 9. Over 1000 random functions,
     how often is random's best-of-9 higher? Also as lam grows to 1 (both matter: effective
     dimension 2), and in d = 2..6 dimensions with one important axis and 2^d trials (a grid of
     2 levels per axis tests only 2 values of the important one).
(ii) A real search: the MNIST-1D MLP (40-100-100-10 with the residual, ``jopt.models.MLP``'s
     architecture, written here so that the dropout rate is a traced hyperparameter), AdamW,
     batch 100, 2000 steps, over 5 hyperparameters: learning rate (log 1e-4..1e-1), 1 - beta1
     (log 0.01..0.5), weight decay (log 1e-5..1e-1, optax's form), init scale (log 0.5..2, a
     factor on PyTorch's init) and dropout (0..0.5). A 2^5 = 32 grid (levels at the 1/4 and 3/4
     points of each range, the centres of 2 cells), 128 random points and 32 scrambled Sobol
     points (``jopt.sweep.quasirandom``): 192 training runs, all in ONE ``jopt.sweep.run``
     (one compiled program). Validation = 800 of the 4000 training examples; the test set (1000)
     only reports. Random experiment efficiency curves (the paper's way of plotting random
     search, Sec. 2.1): draw 2000 subsets of s = 1..32 trials from the 128 random ones, keep the
     best on validation, plot the distribution of its test accuracy against s.

``experiments/search_compare.py`` compares seven search strategies at equal compute; this
script is only Bergstra & Bengio's claim. Writes ``paper_figures/random_vs_grid.{png,json}``
(``--quick``: 100 toy draws, 30 training steps, 32 random + 8 Sobol points, written to runs/).

What to look for: in the toy, random wins most draws when f ~ g, and the advantage shrinks as
lam -> 1; in the MLP search the learning rate explains most of the variance of the validation
accuracy (low effective dimensionality), the grid tries 2 learning rates and random search 32.
"""

import time

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax

import jopt
from experiments import common

BUDGET = 32  # trials per search: the 2^5 grid's size
BATCH_SIZE = 100
LAMBDAS = [0.0, 0.1, 0.25, 0.5, 1.0]  # weight of the unimportant axis in the toy
HEADLINE_LAMBDA = 0.1
DIMS = [2, 3, 4, 5, 6]
SPACE = {
    "learning_rate": jopt.sweep.LogUniform(1e-4, 1e-1),
    "one_minus_b1": jopt.sweep.LogUniform(0.01, 0.5),
    "weight_decay": jopt.sweep.LogUniform(1e-5, 1e-1),
    "init_scale": jopt.sweep.LogUniform(0.5, 2.0),
    "dropout": jopt.sweep.Uniform(0.0, 0.5),
}
HPS = list(SPACE)
# Fixed before the full run; the pilot (paper_figures/pilots/random_vs_grid.json: 1000 toy
# draws and, for (ii), 32 grid + 32 random + 8 Sobol trials of 1000 steps) did not change it.
PASS_CRITERION = {
    "toy (i)": f"in the 2-D toy with lam = {HEADLINE_LAMBDA} (f ~ g), random search's best of 9 "
    "beats the 3 x 3 grid's in >= 70% of 1000 draws",
    "equal_budget (ii)": "median over 2000 resamples of 32 of the 128 random trials of the best "
    "validation accuracy >= the 32-point grid's best validation accuracy",
    "half_budget (ii)": "in >= 50% of 2000 resamples of 16 random trials (half the grid's "
    "budget), the best validation accuracy >= the grid's best",
    "overall": "reproduced if all three pass; partly if one or two pass; else not reproduced. "
    "Test accuracies and the Sobol search are reported, not gated.",
}


# (i) THE FIG. 1 TOY: random functions with low effective dimensionality
def bumps(rng, n_draws, n_bumps=3):
    """Random 1-D functions on [0, 1]: sums of Gaussian bumps, as (heights, centres, widths)."""
    heights = rng.uniform(0.0, 1.0, (n_draws, n_bumps))
    centres = rng.uniform(0.0, 1.0, (n_draws, n_bumps))
    widths = np.exp(rng.uniform(np.log(0.03), np.log(0.2), (n_draws, n_bumps)))
    return heights, centres, widths


def evaluate_bumps(fn, x):
    """fn at points x of shape (n_draws, n_points) -> (n_draws, n_points)."""
    heights, centres, widths = (a[:, None, :] for a in fn)
    return np.sum(heights * np.exp(-0.5 * ((x[..., None] - centres) / widths) ** 2), axis=-1)


def toy_win_rate(rng, d, levels, lam, n_draws):
    """P(random's best > grid's best): f = g(x_0) + lam * mean_k h_k(x_k), grid of levels^d."""
    n = levels**d
    centres = (np.arange(levels) + 0.5) / levels  # cell centres: a fair grid
    grid = np.stack(np.meshgrid(*[centres] * d, indexing="ij"), -1).reshape(n, d)
    grid = np.broadcast_to(grid, (n_draws, n, d))
    random = rng.uniform(0.0, 1.0, (n_draws, n, d))
    fns = [bumps(rng, n_draws) for _ in range(d)]  # g, then one h per unimportant axis

    def f(points):
        g = evaluate_bumps(fns[0], points[..., 0])
        h = sum(evaluate_bumps(fn, points[..., k]) for k, fn in enumerate(fns[1:], 1))
        return g + lam * h / max(d - 1, 1)

    return float(np.mean(f(random).max(1) > f(grid).max(1)))


# (ii) THE MODEL: the MNIST-1D MLP with a traced dropout rate
def torch_init(fan_in):
    init = jopt.models.torch_uniform_init(fan_in)
    return {"kernel_init": init, "bias_init": init}


class DropoutMLP(nn.Module):
    """MNIST-1D's MLPBase (h = relu(W1 x); h = h + relu(W2 h); W3 h), traced dropout rate."""

    @nn.compact
    def __call__(self, x, rate, key=None):
        for i in range(2):
            h = nn.relu(nn.Dense(100, **torch_init(x.shape[-1]))(x))
            if key is not None:  # dropout with a rate that may be a tracer
                keep = 1.0 - rate
                mask = jax.random.bernoulli(jax.random.fold_in(key, i), keep, h.shape)
                h = jnp.where(mask, h / keep, 0.0)
            x = x + h if x.shape[-1] == h.shape[-1] else h
        return nn.Dense(10, **torch_init(x.shape[-1]))(x)


# How much each hyperparameter matters: the share of the variance of validation accuracy that a
# 1-D function of it explains (means in 8 quantile bins, over the random and Sobol trials).
def variance_explained(u, y, bins=8):
    edges = np.quantile(u, np.linspace(0, 1, bins + 1))
    which = np.clip(np.searchsorted(edges, u, side="right") - 1, 0, bins - 1)
    fitted = np.array([y[which == b].mean() for b in range(bins)])[which]
    return float(1 - np.var(y - fitted) / np.var(y))


def main(argv=None):
    jopt.devices.use_all_cores()  # before any JAX operation: one JAX device per CPU core
    args = common.parse_args(__doc__, "random_vs_grid", argv)

    # CONFIG
    if args.quick:
        toy_draws, steps, n_random, n_sobol, resamples = 100, 30, 32, 8, 200
    else:
        toy_draws, steps, n_random, n_sobol, resamples = 1000, 2000, 128, 32, 2000

    # (i) THE FIG. 1 TOY
    rng = np.random.default_rng(0)
    t0 = time.perf_counter()
    toy_lambda = {lam: toy_win_rate(rng, 2, 3, lam, toy_draws) for lam in LAMBDAS}
    toy_dims = {d: toy_win_rate(rng, d, 2, HEADLINE_LAMBDA, toy_draws) for d in DIMS}
    toy_time = time.perf_counter() - t0
    print(f"(i) toy, {toy_draws} draws each ({toy_time:.1f} s)")
    print(
        "  2-D, 9 trials: P(random beats grid) by lam:",
        {k: round(v, 3) for k, v in toy_lambda.items()},
    )
    print("  2^d trials, one important axis:", {k: round(v, 3) for k, v in toy_dims.items()})

    # (ii) THE MNIST-1D MLP SEARCH
    full = jopt.data.mnist1d()
    split = jopt.data.validation_split(full)  # the first 800 training examples validate
    x_train, y_train = split.x_train, split.y_train  # 3200
    x_val, y_val = split.x_test, split.y_test  # 800

    model = DropoutMLP()

    # TRIAL: one configuration, one key; jopt.sweep.run vmaps it over all 192 configurations
    def trial(hp, key):
        init_key, data_key, dropout_key = jax.random.split(key, 3)
        params = model.init(init_key, x_train[:1], 0.0)["params"]
        params = jax.tree.map(lambda p: p * hp["init_scale"], params)
        tx = jopt.adamw(
            hp["learning_rate"], b1=1.0 - hp["one_minus_b1"], weight_decay=hp["weight_decay"]
        )

        def loss_fn(params, x, y, key):
            logits = model.apply({"params": params}, x, hp["dropout"], key)
            return jopt.train.cross_entropy(logits, y)

        def step(carry, t):
            params, opt_state = carry
            idx = jopt.data.batch_indices(data_key, t, x_train.shape[0], BATCH_SIZE, "replacement")
            key = jax.random.fold_in(dropout_key, t)
            grads = jax.grad(loss_fn)(params, x_train[idx], y_train[idx], key)
            updates, opt_state = tx.update(grads, opt_state, params)
            return (optax.apply_updates(params, updates), opt_state), None

        (params, _), _ = jax.lax.scan(step, (params, tx.init(params)), jnp.arange(steps))

        def accuracy(x, y):
            return jnp.mean(jnp.argmax(model.apply({"params": params}, x, 0.0), -1) == y)

        return {
            "val_accuracy": accuracy(x_val, y_val),
            "test_accuracy": accuracy(full.x_test, full.y_test),
        }

    # THE THREE DESIGNS, one space: 32 grid + n_random random + n_sobol Sobol configurations
    grid = jopt.sweep.grid(
        **{k: d.from_unit(np.array([0.25, 0.75])).tolist() for k, d in SPACE.items()}
    )
    random = jopt.sweep.random(n_random, 1, **SPACE)
    sobol = jopt.sweep.quasirandom(n_sobol, seed=1, **SPACE)
    space = jopt.sweep.Space(list(grid.configs) + list(random.configs) + list(sobol.configs))
    design = np.array(["grid"] * len(grid) + ["random"] * n_random + ["sobol"] * n_sobol)
    print(
        f"\n(ii) {len(space)} configurations ({len(grid)} grid, {n_random} random, {n_sobol} Sobol)"
    )
    start = time.perf_counter()
    result = jopt.sweep.run(trial, space, seeds=1, progress=False)
    sweep_time = time.perf_counter() - start
    val = result.metrics["val_accuracy"][:, 0].astype(float)
    test = result.metrics["test_accuracy"][:, 0].astype(float)
    val = np.where(np.isfinite(val), val, 0.0)  # a diverged run counts as chance-or-worse
    print(f"{len(space)} runs x {steps} steps in {sweep_time:.1f} s")

    # REPORT
    def best(indices):
        """(best validation accuracy, test accuracy of that trial) among indices."""
        i = indices[int(np.argmax(val[indices]))]
        return val[i], test[i]

    grid_rows = np.flatnonzero(design == "grid")
    random_rows = np.flatnonzero(design == "random")
    sobol_rows = np.flatnonzero(design == "sobol")
    grid_val, grid_test = best(grid_rows)
    sobol_val, sobol_test = best(sobol_rows)
    sizes = [s for s in (1, 2, 4, 8, 16, 32) if s <= n_random]
    resample_rng = np.random.default_rng(1)
    efficiency = {}
    for s in sizes:
        picks = np.array(
            [resample_rng.choice(random_rows, s, replace=False) for _ in range(resamples)]
        )
        bests = np.array([best(p) for p in picks])  # (resamples, 2): val, test
        efficiency[s] = {
            "val": np.percentile(bests[:, 0], [10, 25, 50, 75, 90]).tolist(),
            "test": np.percentile(bests[:, 1], [10, 25, 50, 75, 90]).tolist(),
            "p_val_at_least_grid": float(np.mean(bests[:, 0] >= grid_val)),
        }
    half = BUDGET // 2
    median_random_val = efficiency[BUDGET]["val"][2] if BUDGET in efficiency else float("nan")
    p_half = efficiency[half]["p_val_at_least_grid"] if half in efficiency else float("nan")

    spread = np.concatenate([random_rows, sobol_rows])
    importance = {
        k: variance_explained(
            np.log([space.configs[i][k] for i in spread])
            if isinstance(SPACE[k], jopt.sweep.LogUniform)
            else np.array([space.configs[i][k] for i in spread]),
            val[spread],
        )
        for k in HPS
    }
    distinct_lrs = {
        name: len({round(space.configs[i]["learning_rate"], 12) for i in rows})
        for name, rows in (
            ("grid", grid_rows),
            ("random", random_rows[:BUDGET]),
            ("sobol", sobol_rows),
        )
    }

    print(f"grid (32):   best val {grid_val:.3f}, its test {grid_test:.3f}")
    print(f"Sobol ({n_sobol}): best val {sobol_val:.3f}, its test {sobol_test:.3f}")
    print("random, best of s trials (median [25%, 75%] over resamples):")
    for s, e in efficiency.items():
        print(
            f"  s={s:3d}  val {e['val'][2]:.3f} [{e['val'][1]:.3f}, {e['val'][3]:.3f}]  test "
            f"{e['test'][2]:.3f}  P(val >= grid's best) {e['p_val_at_least_grid']:.2f}"
        )
    print("variance of val accuracy explained by each hyperparameter alone:")
    print("  " + ", ".join(f"{k} {v:.2f}" for k, v in importance.items()))

    checks = {
        "toy (i)": toy_lambda[HEADLINE_LAMBDA] >= 0.70,
        "equal_budget (ii)": bool(median_random_val >= grid_val),
        "half_budget (ii)": bool(p_half >= 0.5),
    }
    overall = common.overall(checks)
    for k, ok in checks.items():
        print(f"{k:18s} {'pass' if ok else 'FAIL'}")
    print(f"overall: {overall}")

    record = {
        "paper": "Bergstra & Bengio, Random Search for Hyper-Parameter Optimization, JMLR 13 "
        "(2012) 281-305",
        "claim": {
            "abstract": "'Compared with neural networks configured by a pure grid search, we find "
            "that random search over the same domain is able to find models that are as good or "
            "better within a small fraction of the computation time. Granting random search the "
            "same computational budget, random search finds better models by effectively "
            "searching a larger, less promising configuration space.' (abstract, checked against "
            "the JMLR text)",
            "fig_1": "nine trials on f(x, y) = g(x) + h(y) ~ g(x): the 3 x 3 grid tests g at 3 "
            "distinct values, random search at 9 (Fig. 1; described as in secondary sources, e.g. "
            "the AutoML book's Fig. 1.1, not checked against the PDF)",
            "cause": "low effective dimensionality: for most data sets only a few hyper-parameters "
            "really matter, and different ones on different data sets (abstract)",
        },
        "pass_criterion": PASS_CRITERION,
        "pilot": common.read_pilot("random_vs_grid"),
        "measured": {
            "toy_p_random_beats_grid_by_lambda": toy_lambda,
            "toy_p_random_beats_grid_by_dim_2_levels": toy_dims,
            "grid_best": {"val_accuracy": grid_val, "test_accuracy": grid_test},
            "sobol_best": {"val_accuracy": sobol_val, "test_accuracy": sobol_test, "n": n_sobol},
            "random_median_best_val_at_32": median_random_val,
            "random_p_reaches_grid_at_16": p_half,
            "efficiency_curve_percentiles_10_25_50_75_90": efficiency,
            "variance_explained_by_each_hp": importance,
            # what 8 bin means explain in pure noise: (bins - 1) / (n - 1)
            "variance_explained_chance_level": 7 / (len(spread) - 1),
            "distinct_learning_rates_tried": distinct_lrs,
            "diverged_runs": int(result.diverged.sum()),
        },
        "verdict": {"checks": checks, "overall": overall},
        "wall_time_per_part_s": {"toy": toy_time, "mlp_sweep": sweep_time},
        "recipe": {
            "toy": "g, h: sums of 3 Gaussian bumps, heights U(0,1), centres U(0,1), widths "
            "log-U(0.03, 0.2); grid at cell centres; f = g(x_0) + lam * mean of h over the "
            "other axes",
            "toy_draws": toy_draws,
            "mlp": "MNIST-1D MLPBase 40-100-100-10 (residual), PyTorch init x init_scale, "
            "dropout after each hidden ReLU, jopt.adamw, batch 100 drawn with replacement, 1 seed "
            "per trial",
            "steps": steps,
            "space": {k: repr(d) for k, d in SPACE.items()},
            "grid_levels": {
                k: d.from_unit(np.array([0.25, 0.75])).tolist() for k, d in SPACE.items()
            },
            "split": "3200 train / 800 validation (first 800 of the training set) / 1000 test",
            "resamples": resamples,
        },
        "trials": [
            {"design": str(design[i]), **space.configs[i], "val": val[i], "test": test[i]}
            for i in range(len(space))
        ],
        "devices": result.info["devices"],
    }
    common.write_record(args, record)

    plt = common.pyplot()
    if plt is not None:
        fig, axes = plt.subplots(1, 4, figsize=(20, 4.6))
        # (a) FIG. 1: one toy draw, the grid and random designs over f = g(x) + 0.1 h(y)
        ax = axes[0]
        draw_rng = np.random.default_rng(3)
        g, h = bumps(draw_rng, 1), bumps(draw_rng, 1)
        xs = np.linspace(0, 1, 200)
        gx, hy = evaluate_bumps(g, xs[None])[0], evaluate_bumps(h, xs[None])[0]
        ax.imshow(
            gx[None, :] + HEADLINE_LAMBDA * hy[:, None],
            origin="lower",
            extent=(0, 1, 0, 1),
            cmap="Greens",
            aspect="auto",
        )
        centres = np.array([1, 3, 5]) / 6
        gridx, gridy = np.meshgrid(centres, centres)
        rand = draw_rng.uniform(0, 1, (9, 2))
        ax.scatter(gridx, gridy, marker="s", color="k", label="3 x 3 grid: 3 values of x")
        ax.scatter(rand[:, 0], rand[:, 1], marker="o", color="C3", label="random: 9 values of x")
        ax.plot(xs, 0.02 + 0.25 * gx / gx.max(), color="C2", lw=2, label="g(x), what matters")
        ax.set_xlabel("x (important)")
        ax.set_ylabel("y (unimportant)")
        ax.set_title("(i) Fig. 1 toy: f = g(x) + 0.1 h(y)", fontsize=10)
        ax.legend(fontsize=7, loc="upper right")
        # (b) toy win rates: by the weight of the unimportant axis, and by dimension
        ax = axes[1]
        ax.plot(LAMBDAS, list(toy_lambda.values()), "o-", label="2-D, 9 trials, by lam")
        ax.axhline(0.7, color="k", ls=":", lw=1, label="criterion: 70%")
        ax.axhline(0.5, color="gray", ls="--", lw=0.8)
        ax.set_xlabel("lam (weight of the unimportant axis)")
        ax.set_ylabel("P(random's best > grid's best)")
        ax.set_ylim(0, 1)
        top = ax.twiny()
        top.plot(DIMS, list(toy_dims.values()), "s-", color="C1", label="2^d trials, lam = 0.1")
        top.set_xlabel("d (one important axis, 2 levels per axis)", color="C1")
        ax.legend(fontsize=7, loc="lower left")
        top.legend(fontsize=7, loc="lower right")
        ax.set_title(f"(i) {toy_draws} random functions per point", fontsize=10)
        # (c) what matters: validation accuracy against the learning rate, every trial
        ax = axes[2]
        lrs = np.array([c["learning_rate"] for c in space.configs])
        for name, marker, color in (
            ("random", "o", "C3"),
            ("sobol", "^", "C0"),
            ("grid", "s", "k"),
        ):
            rows = design == name
            ax.scatter(
                lrs[rows], val[rows], marker=marker, color=color, s=18, alpha=0.7, label=name
            )
        ax.set_xscale("log")
        ax.set_xlabel("learning rate")
        ax.set_ylabel("validation accuracy")
        shares = ", ".join(f"{k.replace('_', ' ')} {v:.2f}" for k, v in importance.items())
        ax.set_title(f"(ii) every trial; variance explained:\n{shares}", fontsize=8)
        ax.legend(fontsize=7)
        # (d) random experiment efficiency curve (test accuracy of the best-on-validation trial)
        ax = axes[3]
        pct = np.array([efficiency[s]["test"] for s in sizes])
        ax.fill_between(sizes, pct[:, 0], pct[:, 4], color="C3", alpha=0.15, lw=0, label="10-90%")
        ax.fill_between(sizes, pct[:, 1], pct[:, 3], color="C3", alpha=0.3, lw=0, label="25-75%")
        ax.plot(sizes, pct[:, 2], "o-", color="C3", label="random search, median")
        ax.scatter([BUDGET], [grid_test], marker="s", color="k", s=60, zorder=3, label="grid (32)")
        ax.scatter([n_sobol], [sobol_test], marker="^", color="C0", s=60, zorder=3, label="Sobol")
        ax.axhline(grid_test, color="k", ls=":", lw=1)
        ax.set_xscale("log", base=2)
        ax.set_xlabel("trials (experiment size)")
        ax.set_ylabel("test accuracy of the best-on-validation trial")
        ax.set_title("(ii) random experiment efficiency curve", fontsize=10)
        ax.legend(fontsize=7, loc="lower right")
        fig.suptitle(f"Bergstra & Bengio (2012) at small scale: {overall}", fontsize=11)
        fig.tight_layout()
        common.save_figure(args, fig, dpi=120)


if __name__ == "__main__":
    main()
