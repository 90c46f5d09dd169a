"""Deep double descent on MNIST-1D, every width in one compiled program.

Run: python -m experiments.double_descent [--quick]

Greydanus & Kobak's MNIST-1D notebook ``deep-double-descent.ipynb`` (greydanus/mnist1d) trains
MLPs 40-h-h-10 (ReLU) of 19 widths h in 2..300 on 4000 training examples with 15% of the
training labels replaced by random ones, and measures the test error on 12000 clean examples.
The test error first falls with h, then rises to a peak of 54% at h = 47-61, the width at
which the network starts to fit every (noisy) training label, and falls again to 45% at
h = 300: double descent (Belkin et al. 2019, Nakkiran et al. 2019). Without label noise the
curve is nearly monotone.

What is run: the notebook's recipe (MNIST-1D with 16000 examples split 0.25, i.e. 4000 train /
12000 test; ``jopt.data.mnist1d(..., label_noise=0.15)``; SGD lr 0.01, momentum 0.9, batch
100, shuffled epochs, 500 epochs; PyTorch's init) for 13 of its widths, h in 4..135, with and
without label noise, as ONE call of ``jopt.sweep.run`` on ONE compiled program. Widths are
normally static shapes; here every network is padded to h_max = 135 hidden units and the width
is a traced hyperparameter that builds a 0/1 mask over the hidden units. A masked unit's
activation is multiplied by 0, so it contributes nothing to the output and every weight into
or out of it gets an exactly zero gradient (its parameters start at 0 and stay 0); the init
scale of layers 2 and 3 follows the true fan-in h (U(+-1/sqrt(h)), as PyTorch). The script
checks both: a padded network equals the unpadded one of width h (loss and gradients), and no
masked parameter moved during training. The noisy/clean switch is a traced hyperparameter
too, so the sweep is 13 widths x 2 datasets = 26 runs of one program, split over the CPU
cores.

Scaled down to fit ~3 minutes on 2 cores: widths stop at 135 instead of 300 (the masked
program costs h_max for every width) and 6 of the 19 widths are left out (2, 3, 5, 177, 230,
300); one seed, as the notebook. A pilot at 100 epochs interpolated nothing, so the
notebook's 500 epochs (20000 steps) are kept. Test and train error are recorded every 25
epochs, so the figure also shows the width x epoch picture. Writes
``paper_figures/double_descent.{png,json}`` (``--quick``: 3 widths up to 32, 500 train /
500 test examples, 40 epochs, written to runs/ instead).

What to look for: with label noise, the test error peaks where the training error first
reaches 0 and falls again for wider networks; without noise there is no such peak.
"""

import functools
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax

import jopt
from experiments import common

LABEL_NOISE = 0.15
LEARNING_RATE, MOMENTUM, BATCH_SIZE = 0.01, 0.9, 100
SEEDS = 1

# greydanus/mnist1d notebooks/deep-double-descent.ipynb @7878d96, printed output (500 epochs,
# one run per width): train and test error (%) per hidden width
PUBLISHED = {
    "widths": [2, 3, 4, 5, 7, 9, 12, 16, 21, 27, 36, 47, 61, 80, 104, 135, 177, 230, 300],
    "noisy_train": [71.68, 68.65, 62.75, 57.95, 54.45, 47.45, 46.47, 39.70, 38.08, 29.55,
                    19.02, 5.47, 0.00, 0.00, 0.00, 0.00, 0.00, 0.00, 0.00],
    "noisy_test": [69.59, 67.50, 62.55, 57.45, 54.80, 48.97, 50.28, 47.24, 50.84, 50.69,
                   52.80, 54.05, 54.02, 52.08, 50.23, 48.39, 47.88, 46.54, 45.47],
    "clean_train": [67.15, 63.88, 54.78, 57.23, 48.03, 41.28, 38.40, 28.80, 19.95, 12.05,
                    1.35, 0.00, 0.00, 0.00, 0.00, 0.00, 0.00, 0.00, 0.00],
    "clean_test": [68.53, 66.83, 58.27, 61.37, 54.20, 49.33, 50.08, 44.55, 42.63, 41.02,
                   41.66, 41.01, 41.24, 39.59, 38.61, 38.58, 38.09, 37.10, 37.25],
}  # fmt: skip
# Fixed before the pilot and the full run; the verdict is computed from these.
CLEAN_PEAK_MIN_WIDTH = 16
PASS_CRITERION = {
    "threshold": "interpolation threshold t = the smallest width whose noisy train error is < 1%",
    "noisy_peak": "the noisy test error's maximum over the widths t-1..t+1 (grid steps) is "
    ">= 3 points above both the lowest noisy test error at any smaller width and the noisy "
    "test error at the largest width",
    "zero_train_error": "noisy train error < 1% at t and exactly 0 at every width above t",
    "clean_no_peak": "the clean test error never rises more than 1.5 points above its running "
    f"minimum over widths >= {CLEAN_PEAK_MIN_WIDTH} (below that the published clean curve "
    "itself jumps 3 points between h=4 and h=5, optimization noise of tiny nets)",
    "overall": "reproduced if all three checks pass; partly if the noisy peak is >= 1.5 "
    "points (half the planned margin) on both sides, or passes while another check fails; "
    "else not reproduced. A threshold that no width reaches fails every check.",
}

# Why a check failed, where the cause is known from the setup (not used by the verdict)
REASONS = {
    "noisy_peak": "fewer widths or epochs than the notebook, or one seed: the peak is a "
    "single-run measurement",
    "zero_train_error": "too few epochs for the widest nets to fit every noisy label",
    "clean_no_peak": "one run per width, as in the notebook: the published clean curve itself "
    "moves by up to 3.1 points between neighbouring widths (h = 4 -> 5), so a bump of this "
    "size is within single-seed noise; more seeds per width would settle it",
}
# The pilot (paper_figures/pilots/double_descent.json: 8 widths, 100 epochs) interpolated
# nothing, so the full run keeps the notebook's 500 epochs; the criterion was not changed.


# MODEL: a 40-h-h-10 ReLU MLP padded to h_max hidden units; `mask` (h_max,) keeps the first h
def forward(params, x, mask):
    h = jax.nn.relu(x @ params["w1"] + params["b1"]) * mask
    h = jax.nn.relu(h @ params["w2"] + params["b2"]) * mask
    return h @ params["w3"] + params["b3"]


def masked_part(tree, mask):
    """The entries of a params-shaped tree that belong to masked units (all zero if unused)."""
    pair = 1 - mask[:, None] * mask  # w2 entries with a masked input or output unit
    return {
        "w1": tree["w1"] * (1 - mask),
        "b1": tree["b1"] * (1 - mask),
        "w2": tree["w2"] * pair,
        "b2": tree["b2"] * (1 - mask),
        "w3": tree["w3"] * (1 - mask[:, None]),
    }


def max_abs(tree):
    return jnp.max(jnp.stack([jnp.max(jnp.abs(leaf)) for leaf in jax.tree.leaves(tree)]))


def loss_fn(params, x, y, mask):
    return optax.softmax_cross_entropy_with_integer_labels(forward(params, x, mask), y).mean()


def double_descent_checks(widths, train_noisy, test_noisy, test_clean):
    """The criterion's checks on one set of curves (run on ours and on the published ones)."""
    widths, train_noisy = np.asarray(widths), np.asarray(train_noisy)
    test_noisy, test_clean = np.asarray(test_noisy), np.asarray(test_clean)
    below_1 = np.nonzero(train_noisy < 1.0)[0]
    rise = {
        int(widths[i]): float(test_clean[i] - test_clean[: i + 1].min())
        for i in range(len(widths))
        if widths[i] >= CLEAN_PEAK_MIN_WIDTH
    }
    worst = max(rise, key=rise.get)
    out = {
        "clean_max_rise": rise[worst],
        "clean_max_rise_width": worst,
        "clean_no_peak": rise[worst] <= 1.5,
    }
    if below_1.size == 0:
        return {**out, "threshold": None, "noisy_peak": False, "zero_train_error": False}
    t = int(below_1[0])
    window = np.arange(max(t - 1, 0), min(t + 2, len(widths)))
    p = int(window[np.argmax(test_noisy[window])])
    above_below = float(test_noisy[p] - test_noisy[:p].min()) if p > 0 else 0.0
    above_largest = float(test_noisy[p] - test_noisy[-1])
    return {
        **out,
        "threshold": int(widths[t]),
        "peak_width": int(widths[p]),
        "peak_test_error": float(test_noisy[p]),
        "peak_minus_best_below": above_below,
        "peak_minus_largest": above_largest,
        "noisy_peak": above_below >= 3.0 and above_largest >= 3.0,
        "zero_train_error": bool(train_noisy[t] < 1.0 and np.all(train_noisy[t + 1 :] == 0)),
    }


def main(argv=None):
    jopt.devices.use_all_cores()  # before any JAX operation: one JAX device per CPU core
    args = common.parse_args(__doc__, "double_descent", argv)

    # CONFIG
    if args.quick:
        widths = [4, 16, 32]
        num_samples, train_split = 1000, 0.5
        n_epochs, eval_every_epochs = 40, 20
    else:
        widths = [4, 7, 9, 12, 16, 21, 27, 36, 47, 61, 80, 104, 135]  # the notebook's, <= 135
        num_samples, train_split = 16000, 0.25
        n_epochs, eval_every_epochs = 500, 25
    h_max = max(widths)

    # DATA: 4000 train (15% noisy labels in the noisy copy) / 12000 test, as in the notebook
    clean = jopt.data.mnist1d(num_samples=num_samples, train_split=train_split)
    noisy = jopt.data.mnist1d(num_samples=num_samples, train_split=train_split, label_noise=0.15)
    assert np.array_equal(clean.x_train, noisy.x_train)
    assert np.array_equal(clean.y_test, noisy.y_test)
    n_train = clean.n_train
    noise_fraction = float(np.mean(np.asarray(clean.y_train) != np.asarray(noisy.y_train)))
    steps_per_epoch = n_train // BATCH_SIZE
    eval_steps = eval_every_epochs * steps_per_epoch
    num_evals = n_epochs // eval_every_epochs

    # MODEL: the padded MLP's init; the width sets the init scale of layers 2 and 3
    def init_params(key, width, mask):
        def uniform(key, shape, fan_in):  # PyTorch's nn.Linear init, U(+-1/sqrt(fan_in))
            return jax.random.uniform(key, shape, minval=-1.0, maxval=1.0) / jnp.sqrt(fan_in)

        k = jax.random.split(key, 6)
        d_in, n_out = clean.x_train.shape[1], 10
        return {
            "w1": uniform(k[0], (d_in, h_max), d_in) * mask,
            "b1": uniform(k[1], (h_max,), d_in) * mask,
            "w2": uniform(k[2], (h_max, h_max), width) * mask[:, None] * mask,
            "b2": uniform(k[3], (h_max,), width) * mask,
            "w3": uniform(k[4], (h_max, n_out), width) * mask[:, None],
            "b3": uniform(k[5], (n_out,), width),
        }

    # TRIAL: one width and one dataset (both traced), one seed
    def trial(hp, key):
        width = hp["width"]
        mask = (jnp.arange(h_max) < width).astype(jnp.float32)
        y_train = jnp.where(hp["noisy"] > 0.5, noisy.y_train, clean.y_train)
        init_key, shuffle_key = jax.random.split(key)
        params = init_params(init_key, width, mask)
        tx = jopt.sgd(LEARNING_RATE, momentum=MOMENTUM)  # = torch.optim.SGD(lr, momentum)
        opt_state = tx.init(params)

        def train_step(carry, step):
            params, opt_state = carry
            idx = jopt.data.batch_indices(shuffle_key, step, n_train, BATCH_SIZE)  # shuffled epochs
            grads = jax.grad(loss_fn)(params, clean.x_train[idx], y_train[idx], mask)
            updates, opt_state = tx.update(grads, opt_state, params)
            return (optax.apply_updates(params, updates), opt_state), None

        def error(params, x, y):
            return 100 * jnp.mean(jnp.argmax(forward(params, x, mask), -1) != y)

        def interval(carry, i):
            steps = i * eval_steps + jnp.arange(eval_steps)
            carry, _ = jax.lax.scan(train_step, carry, steps)
            params = carry[0]
            logits = forward(params, clean.x_test, mask)
            metrics = {
                "train_error": error(params, clean.x_train, y_train),  # on the labels it trains on
                "test_error": error(params, clean.x_test, clean.y_test),
                "test_loss": optax.softmax_cross_entropy_with_integer_labels(
                    logits, clean.y_test
                ).mean(),
            }
            return carry, metrics

        (params, _), curves = jax.lax.scan(interval, (params, opt_state), jnp.arange(num_evals))
        leak = max_abs(masked_part(params, mask))  # exactly 0: masked units never get a gradient
        final = {name: curve[-1] for name, curve in curves.items()}
        return {**final, **{f"{name}_curve": curve for name, curve in curves.items()}, "leak": leak}

    # MASK CHECK: a padded network of width h computes what the unpadded one computes
    @functools.partial(jax.jit, static_argnums=0)  # one compile; eager grads cost seconds
    def mask_check(width):
        mask = (jnp.arange(h_max) < width).astype(jnp.float32)
        padded = init_params(jax.random.PRNGKey(1), width, mask)

        def unpad(tree):
            return {
                "w1": tree["w1"][:, :width],
                "b1": tree["b1"][:width],
                "w2": tree["w2"][:width, :width],
                "b2": tree["b2"][:width],
                "w3": tree["w3"][:width],
                "b3": tree["b3"],
            }

        x, y = noisy.x_train[:BATCH_SIZE], noisy.y_train[:BATCH_SIZE]
        loss_padded, grads_padded = jax.value_and_grad(loss_fn)(padded, x, y, mask)
        loss_small, grads_small = jax.value_and_grad(loss_fn)(unpad(padded), x, y, jnp.ones(width))
        kept = unpad(grads_padded)
        return {
            "loss_padded": loss_padded,
            "loss_unpadded": loss_small,
            "max_abs_grad_diff": max_abs(jax.tree.map(jnp.subtract, kept, grads_small)),
            "masked_grad_max_abs": max_abs(masked_part(grads_padded, mask)),
        }

    check_width = widths[len(widths) // 2]
    mask_equivalence = {"width": check_width}
    mask_equivalence.update({k: float(v) for k, v in mask_check(check_width).items()})
    print(f"mask check at width {check_width}: {mask_equivalence}")

    # SWEEP: widths x {clean, noisy} in one program (chunk = the whole space, split over devices)
    space = jopt.sweep.grid(noisy=[0.0, 1.0], width=widths)
    start = time.perf_counter()
    result = jopt.sweep.run(trial, space, seeds=SEEDS, chunk_size=len(space), progress=False)
    wall = time.perf_counter() - start
    group = result.info["groups"][0]
    print(
        f"{len(space)} runs x {n_epochs} epochs ({n_epochs * steps_per_epoch} steps) in "
        f"{wall:.1f} s (compile {group['compile_s']:.1f} s, chunk {group['chunk_size']}, "
        f"{len(result.info['devices'])} devices)"
    )

    # REPORT
    n_w = len(widths)
    metric = {name: result.mean(name).reshape(2, n_w) for name in ("train_error", "test_error")}
    train_noisy, train_clean = metric["train_error"][1], metric["train_error"][0]
    test_noisy, test_clean = metric["test_error"][1], metric["test_error"][0]
    test_curves = result.metrics["test_error_curve"].mean(1).reshape(2, n_w, num_evals)
    train_curves = result.metrics["train_error_curve"].mean(1).reshape(2, n_w, num_evals)
    max_leak = float(result.metrics["leak"].max())

    measured_checks = double_descent_checks(widths, train_noisy, test_noisy, test_clean)
    published_checks = double_descent_checks(
        PUBLISHED["widths"],
        PUBLISHED["noisy_train"],
        PUBLISHED["noisy_test"],
        PUBLISHED["clean_test"],
    )
    gates = ("noisy_peak", "zero_train_error", "clean_no_peak")
    passed = {g: bool(measured_checks[g]) for g in gates}
    half_peak = (
        measured_checks["threshold"] is not None
        and min(measured_checks["peak_minus_best_below"], measured_checks["peak_minus_largest"])
        >= 1.5
    )
    if all(passed.values()):
        overall = "reproduced"
    elif half_peak or passed["noisy_peak"]:
        overall = "partly"
    else:
        overall = "not reproduced"
    verdict = {**passed, "overall": overall}
    verdict["likely_reasons"] = {g: REASONS[g] for g in gates if not passed[g]}

    print("width        " + " ".join(f"{w:6d}" for w in widths))
    for name, row in (
        ("noisy train", train_noisy),
        ("noisy test ", test_noisy),
        ("clean train", train_clean),
        ("clean test ", test_clean),
    ):
        print(f"{name}  " + " ".join(f"{v:6.2f}" for v in row))
    print(f"masked parameters' largest |value| after training: {max_leak}")
    print(f"checks: {measured_checks}")
    print(f"the same checks on the published curves: {published_checks}")
    print(f"verdict: {verdict}")

    eval_epochs = [eval_every_epochs * (i + 1) for i in range(num_evals)]
    record = {
        "paper": "Greydanus & Kobak, Scaling down deep learning with MNIST-1D, ICML 2024 / "
        "arXiv 2011.14439 (notebook deep-double-descent.ipynb; double descent: Belkin et al. "
        "2019, Nakkiran et al. 2019)",
        "claim": {
            "text": "with 15% label noise the MLP's test error peaks (54.05%) at the widths where "
            "train error reaches 0 (h = 47-61) and falls again for wider nets (45.47% at h = 300); "
            "without noise the curve is nearly monotone (68.5 -> 37.3%)",
            "source": "greydanus/mnist1d @7878d96, notebooks/deep-double-descent.ipynb, printed "
            "output of the MLP cells (500 epochs, one run per width); verified by reading the "
            "notebook",
            "published_curves": PUBLISHED,
            "published_checks": published_checks,
        },
        "pass_criterion": PASS_CRITERION,
        "pilot": common.read_pilot("double_descent"),
        "measured": {
            **measured_checks,
            "noise_fraction_changed": noise_fraction,
            "masked_params_max_abs_after_training": max_leak,
            "mask_equivalence": mask_equivalence,
        },
        "verdict": verdict,
        "sweep_wall_time_s": wall,
        "compile_s": group["compile_s"],
        "recipe": {
            "data": f"jopt.data.mnist1d(num_samples={num_samples}, train_split={train_split}), "
            f"{n_train} train / {clean.n_test} test, label_noise={LABEL_NOISE} for the noisy copy",
            "model": f"MLP 40-h-h-10 ReLU, padded to {h_max} hidden units with a width mask",
            "optimizer": f"jopt.sgd({LEARNING_RATE}, momentum={MOMENTUM}), batch {BATCH_SIZE}, "
            "shuffled epochs",
            "epochs": n_epochs,
            "steps": n_epochs * steps_per_epoch,
            "seeds": result.seeds,
            "scaled_down": "13 of the notebook's 19 widths: 4..135 (2, 3, 5, 177, 230, 300 left "
            "out); the notebook's 500 epochs are kept",
        },
        "widths": widths,
        "params_unpadded": [40 * w + w + w * w + w + 10 * w + 10 for w in widths],
        "train_error": {"noisy": train_noisy.tolist(), "clean": train_clean.tolist()},
        "test_error": {"noisy": test_noisy.tolist(), "clean": test_clean.tolist()},
        "curves": {
            "epoch": eval_epochs,
            "test_error": {"clean": test_curves[0].tolist(), "noisy": test_curves[1].tolist()},
            "train_error": {"clean": train_curves[0].tolist(), "noisy": train_curves[1].tolist()},
        },
        "devices": result.info["devices"],
    }
    common.write_record(args, record)

    plt = common.pyplot()
    if plt is not None:
        fig, axes = plt.subplots(1, 3, figsize=(16, 4.6), gridspec_kw={"width_ratios": [1.3, 1, 1]})
        # CURVES: error vs width, ours (markers) and the notebook's (thin grey), noisy and clean
        ax = axes[0]
        for name, test, train, color in (
            ("15% label noise", test_noisy, train_noisy, "C3"),
            ("no label noise", test_clean, train_clean, "C0"),
        ):
            ax.plot(widths, test, "o-", color=color, label=f"test, {name}")
            ax.plot(widths, train, "s--", color=color, alpha=0.6, ms=4, label=f"train, {name}")
        pw = PUBLISHED["widths"]
        ax.plot(
            pw,
            PUBLISHED["noisy_test"],
            "-",
            color="0.45",
            lw=1,
            label="published test (500 epochs), noisy",
        )
        ax.plot(pw, PUBLISHED["clean_test"], ":", color="0.45", lw=1, label="published test, clean")
        if measured_checks["threshold"] is not None:
            ax.axvline(
                measured_checks["threshold"],
                color="C3",
                ls=":",
                lw=1,
                label=f"threshold (noisy train < 1%): h = {measured_checks['threshold']}",
            )
        ax.axhline(
            100 * noise_fraction,
            color="0.7",
            lw=0.8,
            ls="-.",
            label=f"wrong labels in the noisy train set ({100 * noise_fraction:.1f}%)",
        )
        ax.set_xscale("log")
        ax.set_xticks(widths, [str(w) for w in widths], fontsize=7)
        ax.minorticks_off()
        ax.set_xlabel("hidden width h (both layers)")
        ax.set_ylabel("classification error (%)")
        ax.set_ylim(0, 75)
        ax.set_title(f"MNIST-1D MLP, {n_epochs} epochs, one program; overall: {overall}")
        ax.legend(fontsize=7, loc="lower left")
        # HEATMAPS: test and train error over width x epoch, noisy labels
        for ax, curves, label in (
            (axes[1], test_curves[1], "test error (%), noisy labels"),
            (axes[2], train_curves[1], "train error (%), noisy labels"),
        ):
            image = ax.imshow(curves.T, origin="lower", aspect="auto", cmap="magma_r")
            ax.set_xticks(range(n_w), [str(w) for w in widths], fontsize=7)
            ax.set_yticks(range(num_evals), [str(e) for e in eval_epochs])
            ax.set_xlabel("hidden width h")
            ax.set_ylabel("epoch")
            ax.set_title(label)
            fig.colorbar(image, ax=ax)
        fig.tight_layout()
        common.save_figure(args, fig, dpi=120)


if __name__ == "__main__":
    main()
