"""Momentum and initialization (Sutskever, Martens, Dahl & Hinton, ICML 2013), digits scale.

Run: python -m experiments.momentum_init [--quick]

The paper trains the deep autoencoders of Hinton & Salakhutdinov (2006) with SGD from a
*sparse initialization* (every unit gets 15 nonzero incoming weights, here drawn from a unit
Gaussian with zero biases, as we remember Martens 2010's recipe) and a momentum schedule
that rises slowly to a cap:

    mu_t = min(1 - 2^(-1 - log2(floor(t / 250) + 1)), mu_max)

with classical momentum (CM) or Nesterov's accelerated gradient (NAG). Here, at a scale a
2-core CPU runs in minutes:

- data: scikit-learn's 8x8 digits (1437 train / 360 test, pixels in [0, 1]);
- model: a 64-100-50-25-6-25-50-100-64 autoencoder, logistic hidden units, a linear 6-unit
  code layer and logistic outputs trained on the cross-entropy of the pixels, as in the
  paper's MNIST and CURVES tasks; the sparse init is written below (fan-ins under 15, the
  6-unit code layer's, are fully connected);
- runs: {CM, NAG} x mu_max in {0, 0.9, 0.99, 0.995} x learning rates {0.01, 0.03, 0.1} x
  2 seeds, batch 100, 4000 steps. mu_max and the learning rate are traced (the schedule is
  a jopt hyperparameter schedule closing over mu_max), so each method is ONE compiled
  program vmapped over 12 configurations and 2 seeds. The pilot put every best learning
  rate with momentum inside that grid; plain SGD's best is at 0.3, above it, and is still
  more than 2x worse than the best run (see ``pilot`` in the JSON);
- NAG is ``jopt.momentum(nesterov=True)``, the optax form u_t = -lr (mu_t v_t + g_t) of
  Sutskever's v_{t+1} = mu v_t - lr grad f(theta_t + mu v_t) (the same method for a constant
  mu; with the schedule both terms use the current mu_t);
- the schedule's period is scaled from 250 to 20 updates: with 250, mu_t would still be
  0.97 after 4000 steps and mu_max in {0.99, 0.995} could not differ; with 20 it reaches
  0.99 at step 980 and 0.995 at step 1980;
- the error reported is the paper's: squared reconstruction error, summed over the 64
  pixels and averaged over the training set, after the last step.

A side check, exact rather than statistical: on a quadratic with condition number kappa,
gradient descent at its best step converges at (kappa - 1) / (kappa + 1) per step and heavy
ball (``jopt.momentum``) at its best (lr, beta) at (sqrt(kappa) - 1) / (sqrt(kappa) + 1)
(Polyak 1964, the rate the paper's Section 2 builds on). Both are measured from runs of the
jopt optimizers and compared with the closed forms.

What to look for: the error falls as mu_max grows, plain SGD (mu_max = 0) is far behind,
and NAG is at least as good as CM at large mu_max. Writes
``paper_figures/momentum_init.{png,json}`` (``--quick``: 2 mu_max values, 1 learning rate,
1 seed, 150 steps, written to runs/ instead).
"""

import time

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax

import jopt
from experiments import common

BATCH_SIZE = 100
PERIOD = 20  # the momentum schedule's period, in updates (the paper's 250, scaled)
METHODS = ("CM", "NAG")
LAYERS = (100, 50, 25, 6, 25, 50, 100, 64)  # after the 64 inputs; 6 is the linear code
NONZERO = 15  # incoming weights per unit in the sparse init
KAPPAS = [10.0, 100.0, 1000.0]
QUADRATIC_STEPS = 400
# Fixed before the full run, after the pilot in paper_figures/pilots/momentum_init.json.
PASS_CRITERION = {
    "more_momentum_helps": "for CM and for NAG, the best-lr train error (seed mean) falls "
    "strictly as mu_max goes 0 -> 0.9 -> 0.99",
    "nag_beats_cm": "NAG's final train error <= CM's in >= 2/3 of the (mu_max, lr, seed) "
    "triples with mu_max >= 0.99 (a diverged run counts as infinite error)",
    "momentum_needed": "the best mu_max = 0 run (best lr, seed mean, either method) has >= 2x "
    "the train error of the best run overall",
    "quadratic_rates": "measured per-step rates of GD and heavy ball on quadratics with "
    "kappa in {10, 100, 1000} match (kappa-1)/(kappa+1) and (sqrt kappa-1)/(sqrt kappa+1) "
    "to 1e-3",
    "overall": "reproduced if all four pass; partly if the quadratic check and at least one "
    "autoencoder criterion pass; else not reproduced",
}


# MODEL: the deep autoencoder with the paper's sparse initialization
def sparse_init(key, shape, dtype=jnp.float32):
    """(fan_in, fan_out) kernel: NONZERO unit-Gaussian weights per column, the rest zero."""
    fan_in, _ = shape
    order_key, value_key = jax.random.split(key)
    # a random rank for every (input, unit); each unit keeps its NONZERO lowest-ranked inputs
    ranks = jnp.argsort(jnp.argsort(jax.random.uniform(order_key, shape), axis=0), axis=0)
    mask = ranks < min(NONZERO, fan_in)
    return jnp.where(mask, jax.random.normal(value_key, shape, dtype), 0.0).astype(dtype)


class Autoencoder(nn.Module):
    """64-100-50-25-6-25-50-100-64: logistic units, a linear code layer, output logits."""

    @nn.compact
    def __call__(self, x):
        for i, width in enumerate(LAYERS):
            x = nn.Dense(width, kernel_init=sparse_init, bias_init=nn.initializers.zeros)(x)
            if width != min(LAYERS) and i < len(LAYERS) - 1:
                x = nn.sigmoid(x)
        return x  # logits of the 64 reconstructed pixels


def cross_entropy(logits, pixels):
    """The training loss: pixel cross-entropy, summed over pixels, mean over the batch."""
    return optax.sigmoid_binary_cross_entropy(logits, pixels).sum(-1).mean()


def squared_error(logits, pixels):
    """The reported error: squared error summed over pixels, mean over examples."""
    return ((nn.sigmoid(logits) - pixels) ** 2).sum(-1).mean()


def momentum_schedule(mu_max, period=PERIOD):
    """mu_t = min(1 - 2^(-1 - log2(floor(t / period) + 1)), mu_max); mu_max may be traced."""

    def mu(count):
        k = jnp.floor(count / period)
        return jnp.minimum(1.0 - 2.0 ** (-1.0 - jnp.log2(k + 1.0)), mu_max)

    return mu


# QUADRATIC: GD vs heavy ball at their optimal constants, rates measured from jopt runs
def quadratic_log_norms(kappa):
    """log |x_t| of GD and heavy ball on f(x) = sum(lambda_i x_i^2) / 2, lambda in [1, kappa]."""
    lambdas = jnp.linspace(1.0, kappa, 50)
    root = jnp.sqrt(kappa)
    methods = {
        "gd": jopt.sgd(2.0 / (1.0 + kappa)),
        "heavy_ball": jopt.momentum(4.0 / (root + 1.0) ** 2, beta=((root - 1) / (root + 1)) ** 2),
    }
    out = {}
    for name, tx in methods.items():

        def step(carry, _, tx=tx):
            x, opt_state = carry
            updates, opt_state = tx.update(lambdas * x, opt_state, x)
            x = x + updates
            # The iteration is linear in (x, velocity): rescale both by |x| to keep float32
            # away from underflow and carry the log-norm instead.
            norm = jnp.linalg.norm(x)
            opt_state = jax.tree.map(lambda a: a / norm if a.shape == x.shape else a, opt_state)
            return (x / norm, opt_state), jnp.log(norm)

        x0 = jnp.ones(50) / jnp.sqrt(50.0)
        _, log_steps = jax.lax.scan(step, (x0, tx.init(x0)), length=QUADRATIC_STEPS)
        out[name] = log_steps
    return out


def fitted_rate(log_steps):
    """r from log |x_t| = a + b log t + t log r over the second half of the run.

    The b log t term absorbs heavy ball's t r^t: at its optimal constants the extreme
    eigenvalues give a double root (b is then about 1; about 0 for GD).
    """
    t = np.arange(1, QUADRATIC_STEPS + 1)
    log_norm = np.cumsum(np.asarray(log_steps, np.float64))
    tail = slice(QUADRATIC_STEPS // 2, None)
    design = np.stack([np.ones_like(t), np.log(t), t], axis=1)[tail].astype(np.float64)
    (_, b, log_rate), *_ = np.linalg.lstsq(design, log_norm[tail], rcond=None)
    return float(np.exp(log_rate)), float(b)


def finite(array):
    return np.where(np.isfinite(array), np.round(array, 4), None).tolist()


def main(argv=None):
    jopt.devices.use_all_cores()  # before any JAX operation: one JAX device per CPU core
    args = common.parse_args(__doc__, "momentum_init", argv)

    # CONFIG
    if args.quick:
        mu_max_grid = [0.0, 0.99]
        learning_rates = [0.01]
        n_seeds, steps, eval_every = 1, 150, 50
    else:
        mu_max_grid = [0.0, 0.9, 0.99, 0.995]
        learning_rates = [0.01, 0.03, 0.1]
        n_seeds, steps, eval_every = 2, 4000, 200

    # DATA: reconstruct the digits (float targets: fit treats it as regression)
    digits = jopt.data.digits()
    data = jopt.data.Dataset(digits.x_train, digits.x_train, digits.x_test, digits.x_test)
    model = Autoencoder()

    # TRIAL: one (mu_max, learning rate), one method (static), one seed
    def trial(hp, key):
        tx = jopt.momentum(
            hp["learning_rate"], beta=momentum_schedule(hp["mu_max"]), nesterov=hp["nesterov"]
        )
        state, history = jopt.train.fit(
            model,
            tx,
            data,
            steps=steps,
            batch_size=BATCH_SIZE,
            key=key,
            eval_every=eval_every,
            loss=cross_entropy,
            progress=False,
        )
        train_logits = state.apply_fn(state.variables, data.x_train)
        test_logits = state.apply_fn(state.variables, data.x_test)
        return {
            "train_error": squared_error(train_logits, data.x_train),
            "test_error": squared_error(test_logits, data.x_test),
            "loss_curve": history["train_loss"],  # cross-entropy on the whole train set
            "final_mu": jopt.hparams(state.opt_state)["beta"],
        }

    # SWEEP: CM and NAG (two compile groups) x mu_max x learning rate x seeds
    space = jopt.sweep.grid(
        nesterov=jopt.sweep.static([False, True]), mu_max=mu_max_grid, learning_rate=learning_rates
    )
    print(space.table(max_rows=4))
    start = time.perf_counter()
    result = jopt.sweep.run(trial, space, seeds=n_seeds, progress=False)
    wall_sweep = time.perf_counter() - start
    print(f"sweep: {len(space)} configs x {n_seeds} seeds x {steps} steps in {wall_sweep:.1f} s")

    # QUADRATIC: GD vs heavy ball at their optimal constants, rates measured from jopt runs
    start = time.perf_counter()
    log_norms = jax.jit(jax.vmap(quadratic_log_norms))(jnp.asarray(KAPPAS))
    kappas = np.asarray(KAPPAS)
    closed_forms = {
        "gd": (kappas - 1) / (kappas + 1),
        "heavy_ball": (np.sqrt(kappas) - 1) / (np.sqrt(kappas) + 1),
    }
    rates = {}
    for name in ("gd", "heavy_ball"):
        fits = [fitted_rate(log_norms[name][k]) for k in range(len(KAPPAS))]
        rates[name] = {
            "measured": np.array([f[0] for f in fits]),
            "closed_form": closed_forms[name],
            "log_t_coefficient": np.array([f[1] for f in fits]),
        }
    wall = wall_sweep + time.perf_counter() - start

    # REPORT
    n_mu, n_lr = len(mu_max_grid), len(learning_rates)
    errors = result.metrics["train_error"].astype(float)  # (configs, seeds)
    errors = np.where(np.isfinite(errors), errors, np.inf).reshape(2, n_mu, n_lr, n_seeds)
    mean_error = errors.mean(axis=-1)  # (method, mu_max, lr)
    best_error = mean_error.min(axis=-1)  # (method, mu_max)
    best_lr_index = mean_error.argmin(axis=-1)
    print("train squared error at the best lr (seed mean); rows CM, NAG; columns mu_max")
    print("       " + " ".join(f"{m:8g}" for m in mu_max_grid))
    for name, row in zip(METHODS, best_error):
        print(f"{name:6s} " + " ".join(f"{e:8.3f}" for e in row))

    mu_index = {m: i for i, m in enumerate(mu_max_grid)}
    checks = {}
    if all(m in mu_index for m in (0.0, 0.9, 0.99)):
        path = [mu_index[m] for m in (0.0, 0.9, 0.99)]
        checks["more_momentum_helps"] = bool(
            all(np.all(np.diff(best_error[j, path]) < 0) for j in range(2))
        )
    high = [i for i, m in enumerate(mu_max_grid) if m >= 0.99]
    nag_wins = errors[1, high] <= errors[0, high]  # (high mu, lr, seed)
    nag_win_fraction = float(nag_wins.mean())
    checks["nag_beats_cm"] = nag_win_fraction >= 2 / 3
    best_zero = float(best_error[:, mu_index[0.0]].min())
    best_overall = float(best_error.min())
    checks["momentum_needed"] = best_zero >= 2 * best_overall
    rate_gap = {
        name: np.abs(rates[name]["measured"] - rates[name]["closed_form"]).tolist()
        for name in ("gd", "heavy_ball")
    }
    checks["quadratic_rates"] = bool(max(max(g) for g in rate_gap.values()) <= 1e-3)
    autoencoder = [c for c in checks if c != "quadratic_rates"]
    if all(checks.values()):
        overall = "reproduced"
    elif checks["quadratic_rates"] and any(checks[c] for c in autoencoder):
        overall = "partly"
    else:
        overall = "not reproduced"

    for k, kappa in enumerate(KAPPAS):
        print(
            f"kappa {kappa:6g}: GD {rates['gd']['measured'][k]:.5f} "
            f"(closed form {rates['gd']['closed_form'][k]:.5f}), heavy ball "
            f"{rates['heavy_ball']['measured'][k]:.5f} "
            f"(closed form {rates['heavy_ball']['closed_form'][k]:.5f})"
        )
    print(f"NAG <= CM in {nag_win_fraction:.0%} of the (mu_max >= 0.99, lr, seed) runs")
    print(f"best mu_max = 0 error {best_zero:.3f} vs best overall {best_overall:.3f}")
    for name, ok in checks.items():
        print(f"{name:20s} {'pass' if ok else 'FAIL'}")
    print(f"overall: {overall}")

    eval_steps = list(range(eval_every, steps + 1, eval_every))
    # the momentum used by the last update (the schedule, capped by mu_max)
    final_mu = result.metrics["final_mu"].astype(float).reshape(2, n_mu, n_lr, n_seeds)
    loss_curves = result.metrics["loss_curve"].astype(float)  # (configs, seeds, evals)
    loss_curves = loss_curves.reshape(2, n_mu, n_lr, n_seeds, -1)
    best_curves = {
        f"{method} mu_max={m:g}": np.nanmean(loss_curves[j, i, best_lr_index[j, i]], axis=0)
        for j, method in enumerate(METHODS)
        for i, m in enumerate(mu_max_grid)
    }
    record = {
        "paper": "Sutskever, Martens, Dahl & Hinton, On the importance of initialization and "
        "momentum in deep learning, ICML 2013 (PMLR 28(3):1139-1147)",
        "claim": {
            "abstract": "with a well-designed random initialization and a slowly increasing "
            "momentum schedule, SGD trains deep autoencoders to levels previously reached only "
            "with Hessian-free optimization; well-initialized networks perform markedly worse "
            "when momentum is absent or poorly tuned (abstract, verified on PMLR)",
            "schedule": "mu_t = min(1 - 2^(-1 - log2(floor(t/250) + 1)), mu_max), mu_max in "
            "{0.999, 0.995, 0.99, 0.9, 0}; sparse init with 15 incoming connections per unit "
            "(Section 3; checked against two secondary summaries of the paper, not the PDF)",
            "nag": "NAG tolerates larger momentum than CM and does better at large mu_max "
            "(Sections 2-3, Table 1; qualitative, from secondary summaries, table numbers not "
            "verified)",
            "quadratic": "heavy ball's optimal rate (sqrt k - 1)/(sqrt k + 1) vs gradient "
            "descent's (k - 1)/(k + 1) (Polyak 1964; closed form)",
        },
        "pass_criterion": PASS_CRITERION,
        "pilot": common.read_pilot("momentum_init"),
        "measured": {
            "best_lr_train_error": {
                method: dict(zip(map(str, mu_max_grid), finite(best_error[j])))
                for j, method in enumerate(METHODS)
            },
            "best_lr": {
                method: {
                    str(m): learning_rates[best_lr_index[j, i]] for i, m in enumerate(mu_max_grid)
                }
                for j, method in enumerate(METHODS)
            },
            "nag_win_fraction_high_mu": nag_win_fraction,
            "best_mu0_error": best_zero,
            "best_error": best_overall,
            "quadratic_rates": {
                "kappa": KAPPAS,
                **{name: {k: v.tolist() for k, v in rates[name].items()} for name in rates},
                "abs_gap": rate_gap,
            },
            "diverged_runs": int(result.diverged.sum()),
        },
        "verdict": {"checks": checks, "overall": overall},
        "compute_wall_time_s": wall,
        "setup": {
            "data": "sklearn digits (1437 train / 360 test), pixels in [0, 1]",
            "model": "64-100-50-25-6-25-50-100-64, logistic, linear code, sparse init (15)",
            "loss": "pixel cross-entropy (train), squared error (reported)",
            "batch_size": BATCH_SIZE,
            "steps": steps,
            "schedule_period": PERIOD,
            "mu_max": mu_max_grid,
            "learning_rates": learning_rates,
            "seeds": result.seeds,
        },
        "train_error": {
            method: {
                str(m): [finite(errors[j, i, k]) for k in range(n_lr)]
                for i, m in enumerate(mu_max_grid)
            }
            for j, method in enumerate(METHODS)
        },
        "final_mu": {
            method: {str(m): float(final_mu[j, i, 0, 0]) for i, m in enumerate(mu_max_grid)}
            for j, method in enumerate(METHODS)
        },
        "test_error_seed_mean": finite(
            result.mean("test_error").reshape(2, n_mu, n_lr).astype(float)
        ),
        "curves": {
            "step": eval_steps,
            "train_cross_entropy_best_lr": {k: finite(v) for k, v in best_curves.items()},
        },
        "devices": result.info["devices"],
    }
    common.write_record(args, record)

    plt = common.pyplot()
    if plt is not None:
        fig, axes = plt.subplots(1, 4, figsize=(19, 4.3))
        # (a) BEST-LR ERROR against mu_max, each seed as a dot
        ax = axes[0]
        x = np.arange(n_mu)
        for j, (method, color) in enumerate(zip(METHODS, ("C0", "C3"))):
            ax.plot(x, best_error[j], "o-", color=color, label=method)
            for i in range(n_mu):
                seeds = errors[j, i, best_lr_index[j, i]]
                ax.scatter([i + 0.06 * (2 * j - 1)] * n_seeds, seeds, s=10, color=color, alpha=0.5)
        ax.set_xticks(x, [f"{m:g}" for m in mu_max_grid])
        ax.set_yscale("log")
        ax.set(xlabel="mu_max", ylabel="train squared error (best lr)")
        ax.set_title(f"(a) reconstruction error, {overall}")
        ax.legend()
        # (b) HEATMAPS: NAG / CM error ratio per (mu_max, lr), seed mean
        ax = axes[1]
        with np.errstate(all="ignore"):
            ratio = mean_error[1] / mean_error[0]
        image = ax.imshow(np.log2(ratio).T, cmap="coolwarm", vmin=-2, vmax=2, origin="lower")
        for i in range(n_mu):
            for k in range(n_lr):
                ax.text(i, k, f"{ratio[i, k]:.2f}", ha="center", va="center", fontsize=8)
        ax.set_xticks(x, [f"{m:g}" for m in mu_max_grid])
        ax.set_yticks(range(n_lr), [f"{lr:g}" for lr in learning_rates])
        ax.set(xlabel="mu_max", ylabel="learning rate", title="(b) NAG / CM error (blue: NAG wins)")
        fig.colorbar(image, ax=ax, label="log2 ratio")
        # (c) TRAINING CURVES at each best lr
        ax = axes[2]
        for name, values in best_curves.items():
            method, mu = name.split(" ")
            i = mu_max_grid.index(float(mu.split("=")[1]))
            ax.plot(
                eval_steps,
                values,
                "-" if method == "NAG" else "--",
                color=plt.cm.viridis(i / max(n_mu - 1, 1)),
                label=name,
            )
        ax.set_yscale("log")
        ax.set(xlabel="step", ylabel="train cross-entropy", title="(c) training, best lr each")
        ax.legend(fontsize=6, ncol=2)
        # (d) QUADRATIC: measured rates on the closed-form curves
        ax = axes[3]
        grid_k = np.logspace(0.5, 3.5, 100)
        ax.semilogx(grid_k, 1 - (grid_k - 1) / (grid_k + 1), "C0-", label="GD: (k-1)/(k+1)")
        root_k = np.sqrt(grid_k)
        ax.semilogx(
            grid_k, 1 - (root_k - 1) / (root_k + 1), "C3-", label="HB: (sqrt k-1)/(sqrt k+1)"
        )
        ax.semilogx(KAPPAS, 1 - rates["gd"]["measured"], "C0o", mfc="none", label="GD, measured")
        ax.semilogx(
            KAPPAS, 1 - rates["heavy_ball"]["measured"], "C3o", mfc="none", label="HB, measured"
        )
        ax.set_yscale("log")
        ax.set(xlabel="condition number kappa", ylabel="1 - rate per step")
        ax.set_title("(d) quadratic: heavy ball vs GD, jopt runs")
        ax.legend(fontsize=7)
        fig.suptitle(
            "Sutskever et al. 2013 on 8x8 digits: deep autoencoder, sparse init, momentum "
            f"schedule (period {PERIOD}), {steps} steps",
            fontsize=10,
        )
        fig.tight_layout()
        common.save_figure(args, fig, dpi=120)


if __name__ == "__main__":
    main()
