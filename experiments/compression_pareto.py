"""Accuracy vs stored bytes: a pruning x quantization grid in one program vs multi-objective TPE.

Run: python -m experiments.compression_pareto [--quick] [--pilot]

The MNIST-1D MLP (``jopt.models.MLP()``: 40-100-100-10 residual, 15,210 parameters) and CNN
(``jopt.models.CNN()``: 3 strided Conv1d of 25 channels, 5,210 parameters; it takes the
``(batch, 40)`` signals as they are and adds the channel axis itself), trained on
``jopt.data.validation_split(jopt.data.mnist1d())`` (3200 train / 800 validation; the 1000 test
signals are only reported). One trial, written for one configuration and one key:
``optax.chain(jopt.adam(lr), jopt.compress.quantize(bits), jopt.compress.prune(gradual(s),
scope="layer"))`` for the whole run: quantization-aware training of the kernels on a
``bits``-bit per-channel grid from the first step, and per-layer magnitude pruning to the
sparsity ``s`` on Zhu & Gupta's cubic schedule from 1/6 to 2/3 of the run (a pruned weight
stays exactly 0; the last third fine-tunes the sparse quantized model). ``bits = 32`` is the
float model (its kernels go through a 16-bit grid, indistinguishable from float32 here, and are
stored as float32). The trial returns validation and test accuracy and
``jopt.compress.nbytes`` of its final params, computed on device from the traced ``bits``:
the cheaper of dense storage and Deep Compression's sparse storage (5-bit relative indices,
filler entries for longer gaps) of the params' own zeros, codes packed as
``quantize_params`` stores them (2-bit 4 per byte, 3-4-bit 2 per byte, 5-8-bit one byte, so
3 and 6 bits would store no smaller than 4 and 8 and are left out), float32 scales per output
channel, biases in float32. That is exactly ``size_report``'s count.

Per model:
  (a) grid: sparsity x bits x learning rate, ONE ``jopt.sweep.run`` call (one compiled
      program, run over chunks of one configuration per core); its front is
      ``result.pareto(["val_accuracy", "bytes"], ["max", "min"])``; the prune-only
      (bits 32), quantize-only (sparsity 0) and joint (both) fronts are taken from the same
      grid;
  (b) ``jopt.search.tpe(..., metric=["val_accuracy", "bytes"], mode=["max", "min"])``:
      optuna's multi-objective TPE (Ozaki et al.) at a quarter of the grid's trials, over the
      grid's box (sparsity uniform, learning rate log-uniform, bits one of the grid's), the
      same trial and, since its batches are as wide as the grid's chunks, the same compiled
      program; 2 trials per batch (one per core), the first third of the trials random.
Both fronts are scored by their hypervolume (``jopt.sweep.pareto.hypervolume``) with the
reference point (accuracy 0, the dense float32 model's bytes), reported as a fraction of
1 x dense bytes; also with log10 bytes on that axis (reference log10 of the dense bytes),
which weighs the small sizes more. One seed (seed 0) per configuration.

Scale: Han et al. compress LeNet / AlexNet / VGG on MNIST and ImageNet, and Ozaki et al. tune
CNNs for hundreds of trials; here two MNIST-1D models of 5-15k parameters, 72 (MLP: 6
sparsities x 4 bit widths x 3 learning rates) and 48 (CNN: 6 x 4 x 2) grid configurations
and 18 / 12 TPE trials, 1500 steps at batch 100 (MLP) and 600 steps
at batch 32 (CNN: a vmapped convolution costs ~40x an MLP step on this 2-core CPU), sized to
finish within ~12 minutes on a machine shared with other jobs. Writes
``paper_figures/compression_pareto.{png,json}`` (``--quick``: a 2 x 2 grid and 30 steps, to
runs/; ``--pilot``: the full steps at one learning rate, to runs/).

What to look for: the joint (pruned and quantized) front lies left of and above the
prune-only and quantize-only fronts at the small sizes; TPE's orange front lies on or near
the grid's black one with a quarter of the trials.
"""

import itertools
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax
import optuna

import jopt
from experiments import common
from jopt.compress import gradual, nbytes, prune, quantize
from jopt.sweep.pareto import hypervolume, non_dominated

OBJECTIVES, MODES = ["val_accuracy", "bytes"], ["max", "min"]
FLOAT_BITS = 32  # the "bits" of an unquantized model: float32 storage
TPE_FRACTION = 4  # TPE gets 1/4 of the grid's trials
INDEX_BITS = 5  # nbytes' default relative index: b-bit codes store sparse only above 1 - b/(b+5)
SMALL = 4  # "small sizes": compressed >= 4x (bytes <= dense / 4)
# Fixed before the full run (the pilot: paper_figures/pilots/compression_pareto.json).
PASS_CRITERION = {
    "tpe_hypervolume": "for each model, the hypervolume of TPE's front (1/4 of the grid's "
    "trials) is >= 0.9x the grid's, with bytes on a linear axis (reference: accuracy 0 and "
    "the dense float32 bytes) AND with log10 bytes (reference: accuracy 0 and log10 of the "
    "dense bytes)",
    "joint_dominates": "for each model, every point of the prune-only (bits 32) and the "
    "quantize-only (sparsity 0) grid fronts compressed >= 4x is matched by a joint grid point "
    "(sparsity > 0 and bits < 32) at most as large whose validation accuracy is >= its "
    "accuracy - 1 point (800 validation signals: 1 point = 8 signals), AND the joint front "
    "reaches a size below every prune-only and quantize-only point at an accuracy >= the "
    "accuracy of the smallest of them - 1 point",
    "overall": "common.overall over the four checks (2 claims x 2 models): reproduced if all "
    "pass, partly if some, not reproduced if none; each claim gets its own verdict the same way",
}
ACCURACY_TOLERANCE = 0.01  # 1 point, in accuracy as a fraction
HYPERVOLUME_RATIO = 0.9


def make_trial(model, data, test, steps, batch_size):
    """``trial(hp, key)``: one pruned + quantized training run, its accuracy and bytes."""

    def stored_bytes(params, bits):
        """Bytes of the cheaper of dense and sparse (relative-index) storage."""
        b = jnp.clip(bits, 2, 8)
        sparse = {"sparse": True, "index_bits": INDEX_BITS}
        quantized = jnp.minimum(nbytes(params, bits=b), nbytes(params, bits=b, **sparse))
        floats = jnp.minimum(nbytes(params), nbytes(params, **sparse))
        return jnp.where(bits > 8, floats, quantized)

    def trial(hp, key):
        # OPTIMIZER: Adam, then QAT on the kernels, then per-layer gradual magnitude pruning
        schedule = gradual(hp["sparsity"], steps // 6, 2 * steps // 3, max(steps // 30, 1))
        tx = optax.chain(
            jopt.adam(hp["learning_rate"]),
            quantize(jnp.minimum(hp["bits"], 16.0)),
            prune(schedule, scope="layer"),
        )
        # TRAIN: fit's held-out split is the validation split
        state, history = jopt.train.fit(
            model, tx, data, steps=steps, batch_size=batch_size, key=key, progress=False
        )
        # MEASURE: accuracy, and the bytes of the params as they would be stored
        logits = model.apply({"params": state.params}, test.x_test)
        return {
            "val_accuracy": history["val_accuracy"][-1],
            "test_accuracy": jnp.mean(jnp.argmax(logits, -1) == test.y_test),
            "bytes": stored_bytes(state.params, hp["bits"]),
            "sparsity": jopt.compress.sparsity(state.params),
        }

    return trial


def span(values, log=False):
    """The TPE distribution over a grid axis' range (one value: that value)."""
    low, high = min(values), max(values)
    if low == high:
        return jopt.sweep.Choice([low])
    return jopt.sweep.LogUniform(low, high) if log else jopt.sweep.Uniform(low, high)


def front_of(values, rows):
    """Indices (into ``values``) of the non-dominated rows among ``rows``, by bytes."""
    rows = np.asarray(rows, dtype=int)
    if rows.size == 0:
        return []
    on = rows[non_dominated(values[rows], MODES)]
    return sorted(on.tolist(), key=lambda i: values[i, 1])


def hypervolumes(values, dense_bytes):
    """(linear, log10) hypervolume of ``(accuracy, bytes)`` rows, normalized as stated."""
    linear = hypervolume(values, MODES, [0.0, dense_bytes]) / dense_bytes
    logged = np.column_stack([values[:, 0], np.log10(values[:, 1])])
    return linear, hypervolume(logged, MODES, [0.0, np.log10(dense_bytes)])


def table(result, rows=None):
    """Seed-mean metrics of a SweepResult's configurations as JSON-ready columns."""
    rows = range(len(result.configs)) if rows is None else rows
    out = {"configs": [result.configs[i] for i in rows]}
    for name in ("val_accuracy", "test_accuracy", "bytes", "sparsity"):
        out[name] = [float(result.mean(name)[i]) for i in rows]
    return out


def joint_matches(values, configs, dense_bytes):
    """The dominance check of one model's grid: (parts, passed, what failed)."""
    sparse = np.array([c["sparsity"] > 0 for c in configs])
    quantized = np.array([c["bits"] < FLOAT_BITS for c in configs])
    joint = np.flatnonzero(sparse & quantized)
    fronts = {
        "prune_only": front_of(values, np.flatnonzero(~quantized)),
        "quantize_only": front_of(values, np.flatnonzero(~sparse)),
    }
    parts, missed = {}, []
    for name, front in fronts.items():
        for i in front:
            acc, size = values[i]
            if size * SMALL > dense_bytes:
                continue
            ok = bool(
                np.any(
                    (values[joint, 1] <= size)
                    & (values[joint, 0] >= acc - ACCURACY_TOLERANCE - 1e-9)
                )
            )
            parts[f"{name} {configs[i]}"] = ok
            if not ok:
                missed.append(f"{name} point {configs[i]} ({100 * acc:.1f}%, {size:.0f} B)")
    single = np.flatnonzero(~(sparse & quantized))
    smallest = single[np.argmin(values[single, 1])]
    below = joint[
        (values[joint, 1] < values[single, 1].min())
        & (values[joint, 0] >= values[smallest, 0] - ACCURACY_TOLERANCE - 1e-9)
    ]
    parts["joint reaches below the single methods"] = bool(below.size)
    if not below.size:
        missed.append(
            "no joint point smaller than every single-method point at "
            f">= {100 * values[smallest, 0] - 1:.1f}%"
        )
    return parts, all(parts.values()), missed, fronts


def main(argv=None):
    jopt.devices.use_all_cores()  # before any JAX operation: one JAX device per CPU core
    args = common.parse_args(__doc__, "compression_pareto", argv, pilot="full steps, one lr")

    # CONFIG: per model, the grid axes, steps and batch size
    if args.quick:
        configs = {
            "mlp": {"sparsity": [0.0, 0.9], "bits": [2, 32], "lr": [1e-2], "steps": 30},
            "cnn": {"sparsity": [0.0, 0.9], "bits": [2, 32], "lr": [1e-2], "steps": 30},
        }
    else:
        configs = {
            "mlp": {
                "sparsity": [0.0, 0.5, 0.7, 0.8, 0.9, 0.95],
                "bits": [2, 4, 8, FLOAT_BITS],
                "lr": [1e-2] if args.pilot else [3e-3, 1e-2, 3e-2],
                "steps": 1500,
            },
            "cnn": {
                "sparsity": [0.0, 0.5, 0.6, 0.75, 0.9, 0.95],
                "bits": [2, 4, 8, FLOAT_BITS],
                "lr": [1e-2] if args.pilot else [1e-2, 3e-2],
                "steps": 600,
            },
        }
    configs["mlp"].update(model=jopt.models.MLP(), batch_size=100)
    configs["cnn"].update(model=jopt.models.CNN(), batch_size=32)
    seeds = 1
    per_batch = len(jax.devices())  # TPE's batch = the grid's chunk: one trial per core

    # DATA: train / validation (the fronts) / test (reported at the chosen configurations)
    full = jopt.data.mnist1d()
    data = jopt.data.validation_split(full)

    measured, compute, checks, reasons = {}, {}, {}, {}
    plot_data = {}
    start = time.perf_counter()
    for name, cfg in configs.items():
        model, steps = cfg["model"], cfg["steps"]
        shapes = jax.eval_shape(model.init, jax.random.PRNGKey(0), data.x_train[:1])["params"]
        n_params = jopt.models.count_params(shapes)
        dense_bytes = 4.0 * n_params
        trial = make_trial(model, data, full, steps, cfg["batch_size"])

        # (a) GRID: every configuration in one compiled program
        space = [
            {"sparsity": s, "bits": b, "learning_rate": lr}
            for s, b, lr in itertools.product(cfg["sparsity"], cfg["bits"], cfg["lr"])
        ]
        t0 = time.perf_counter()
        grid = jopt.sweep.run(trial, space, seeds=seeds, chunk_size=per_batch, progress=False)
        grid_wall = time.perf_counter() - t0
        grid_values = np.column_stack([grid.mean(k) for k in OBJECTIVES])
        grid_front = sorted(
            grid.pareto(OBJECTIVES, MODES).tolist(), key=lambda i: grid_values[i, 1]
        )

        # (b) TPE: multi-objective, a quarter of the grid's trials, the same trial and box
        n_trials = max(per_batch, len(space) // TPE_FRACTION)
        n_startup = max(per_batch, n_trials // 3)
        sampler = optuna.samplers.TPESampler(seed=0, constant_liar=True, n_startup_trials=n_startup)
        box = {
            "sparsity": span(cfg["sparsity"]),
            "bits": jopt.sweep.Choice(list(cfg["bits"])),
            "learning_rate": span(cfg["lr"], log=True),
        }
        t0 = time.perf_counter()
        searched = jopt.search.tpe(
            trial,
            box,
            n_trials=n_trials,
            batch_size=per_batch,
            metric=OBJECTIVES,
            mode=MODES,
            seeds=seeds,
            sampler=sampler,
            progress=False,
        )
        tpe_wall = time.perf_counter() - t0
        tpe = searched.result
        tpe_values = np.column_stack([tpe.mean(k) for k in OBJECTIVES])
        tpe_front = sorted(tpe.pareto(OBJECTIVES, MODES).tolist(), key=lambda i: tpe_values[i, 1])
        # the study's own front holds the same points
        assert sorted(map(tuple, searched.pareto_values.tolist())) == sorted(
            map(tuple, tpe_values[tpe_front].tolist())
        )

        # SCORE: hypervolumes, and the joint front against the single-method fronts
        hv_grid, hv_grid_log = hypervolumes(grid_values[grid_front], dense_bytes)
        hv_tpe, hv_tpe_log = hypervolumes(tpe_values[tpe_front], dense_bytes)
        parts, joint_ok, missed, single_fronts = joint_matches(grid_values, space, dense_bytes)
        joint_front = front_of(
            grid_values,
            [i for i, c in enumerate(space) if c["sparsity"] > 0 and c["bits"] < FLOAT_BITS],
        )
        ratio, ratio_log = hv_tpe / hv_grid, hv_tpe_log / hv_grid_log
        checks[f"tpe_hypervolume/{name}"] = bool(
            ratio >= HYPERVOLUME_RATIO and ratio_log >= HYPERVOLUME_RATIO
        )
        checks[f"joint_dominates/{name}"] = joint_ok
        if not checks[f"tpe_hypervolume/{name}"]:
            reasons[f"tpe_hypervolume/{name}"] = (
                f"TPE's {n_trials} trials ({n_startup} random) reach hypervolume ratios "
                f"{ratio:.3f} (linear) / {ratio_log:.3f} (log bytes); its front has "
                f"{len(tpe_front)} points against the grid's {len(grid_front)}"
            )
        if not joint_ok:
            reasons[f"joint_dominates/{name}"] = "; ".join(missed) + (
                f" (likely: with {INDEX_BITS}-bit relative indices, pruning shrinks b-bit codes "
                f"only above sparsity 1 - b/(b + {INDEX_BITS}), 56% at 4 bits, and there this "
                f"{n_params}-parameter model loses more accuracy than coarser codes do)"
            )

        # REPORT: test accuracy at every chosen (front) configuration
        measured[name] = {
            "parameters": n_params,
            "dense_float32_bytes": dense_bytes,
            "grid": table(grid),
            "grid_front": grid_front,
            "prune_only_front": single_fronts["prune_only"],
            "quantize_only_front": single_fronts["quantize_only"],
            "joint_front": joint_front,
            "tpe": table(tpe),
            "tpe_front": tpe_front,
            "hypervolume": {
                "reference": {"val_accuracy": 0.0, "bytes": dense_bytes},
                "normalization": "linear: divided by 1.0 x dense bytes; log: (accuracy, "
                "log10 bytes) against (0, log10 dense bytes), not divided",
                "grid": hv_grid,
                "tpe": hv_tpe,
                "ratio": ratio,
                "grid_log_bytes": hv_grid_log,
                "tpe_log_bytes": hv_tpe_log,
                "ratio_log_bytes": ratio_log,
            },
            "joint_dominance_parts": parts,
        }
        compute[name] = {
            "grid": {"trials": len(space), "seeds": seeds, "wall_time_s": grid_wall},
            "tpe": {
                "trials": len(tpe.configs),
                "random_startup_trials": n_startup,
                "batch_size": per_batch,
                "seeds": seeds,
                "wall_time_s": tpe_wall,
                "reused_grid_program": all(
                    all(b["cached_program"]) for b in tpe.info.get("batches", [])
                )
                if tpe.info.get("batches")
                else None,
            },
            "steps": steps,
            "batch_size": cfg["batch_size"],
        }
        plot_data[name] = (grid_values, tpe_values)
        print(
            f"{name}: {n_params} params ({dense_bytes:.0f} B); grid {len(space)} trials "
            f"{grid_wall:.0f} s, HV {hv_grid:.4f} / log {hv_grid_log:.4f}; TPE {n_trials} "
            f"trials {tpe_wall:.0f} s, HV {hv_tpe:.4f} / log {hv_tpe_log:.4f} (ratios "
            f"{ratio:.3f} / {ratio_log:.3f}); joint dominates: {joint_ok}",
            flush=True,
        )
        for i in grid_front:
            c = space[i]
            print(
                f"  front: s {c['sparsity']:.2f} b {c['bits']:2d} lr {c['learning_rate']:g}: "
                f"val {100 * grid_values[i, 0]:.1f}% test "
                f"{100 * grid.mean('test_accuracy')[i]:.1f}% {grid_values[i, 1]:.0f} B "
                f"({dense_bytes / grid_values[i, 1]:.1f}x)"
            )
    wall = time.perf_counter() - start

    claims = {
        claim: common.overall({k: v for k, v in checks.items() if k.startswith(claim)})
        for claim in ("tpe_hypervolume", "joint_dominates")
    }
    overall = common.overall(checks)
    for key, ok in checks.items():
        print(f"{key:28s} {'pass' if ok else 'FAIL'} {reasons.get(key, '')}")
    print(f"overall: {overall}")

    record = {
        "paper": "Ozaki, Tanigaki, Watanabe & Onishi, Multiobjective tree-structured Parzen "
        "estimator for computationally expensive optimization problems, GECCO 2020; Han, Mao "
        "& Dally, Deep Compression: Compressing Deep Neural Networks with Pruning, Trained "
        "Quantization and Huffman Coding, ICLR 2016 (arXiv 1510.00149)",
        "claim": {
            "tpe_hypervolume": "MOTPE 'approximates the Pareto fronts of a variety of "
            "benchmark problems and a convolutional neural network design problem better than "
            "existing methods' with few evaluations (verified in the abstract of the journal "
            "version, Ozaki, Tanigaki, Watanabe, Nomura & Onishi, JAIR 73, 2022; the GECCO "
            "2020 paper's numbers not checked): here, a front about as good as a 4x larger "
            "grid's",
            "joint_dominates": "pruning and quantization together keep accuracy at sizes where "
            "pruning alone or quantization alone lose it (Han et al. 2016, Fig. 6; from memory "
            "of the paper, not verified)",
        },
        "pass_criterion": PASS_CRITERION,
        "pilot": None if args.pilot or args.quick else common.read_pilot(args.name),
        "measured": measured,
        "verdict": {"checks": checks, "claims": claims, "overall": overall, "reasons": reasons},
        "compute": compute,
        "compute_wall_time_s": wall,
        "recipe": {
            "data": "MNIST-1D (jopt.data.mnist1d), validation_split: 3200 train / 800 "
            "validation; 1000 test reported only",
            "trial": "optax.chain(jopt.adam(lr), quantize(min(bits, 16)), prune(gradual(s, "
            "steps // 6, 2 * steps // 3, steps // 30), scope='layer')), fit for the whole run",
            "break_even_sparsity": {
                str(b): 1 - b / (b + INDEX_BITS) for b in (2, 4, 8, FLOAT_BITS)
            },
            "bytes": "jopt.compress.nbytes of the final params: min(dense, sparse with 5-bit "
            "relative index) at quantize_params' packing (bits 2/4/8) or float32 (bits 32); "
            "biases float32",
            "grid": {
                name: {k: cfg[k] for k in ("sparsity", "bits", "lr", "steps", "batch_size")}
                for name, cfg in configs.items()
            },
            "tpe": "optuna TPESampler(seed=0, constant_liar=True, n_startup_trials=max(2, "
            "n_trials // 3)), multi-objective; sparsity Uniform and lr LogUniform over the "
            "grid's range, bits Choice of the grid's values; 2 trials per batch",
            "seeds": seeds,
            "scale": "MNIST-1D MLP (15,210) and CNN (5,210 parameters), 1 seed; CNN at 600 "
            "steps of batch 32 and 2 learning rates to fit the ~12-minute budget on 2 shared "
            "CPU cores",
        },
    }
    common.write_record(args, record)

    plt = common.pyplot()
    if plt is None:
        return
    fig, axes = plt.subplots(1, len(configs), figsize=(7 * len(configs), 5.2))
    for ax, name in zip(np.atleast_1d(axes), configs):
        grid_values, tpe_values = plot_data[name]
        m = measured[name]
        dense_bytes = m["dense_float32_bytes"]
        ax.scatter(
            grid_values[:, 1],
            100 * grid_values[:, 0],
            color="0.7",
            s=16,
            label=f"grid: {len(grid_values)} configurations",
            zorder=1,
        )
        ax.scatter(
            tpe_values[:, 1],
            100 * tpe_values[:, 0],
            marker="x",
            color="C1",
            s=30,
            label=f"TPE: {len(tpe_values)} trials",
            zorder=2,
        )
        fronts = [
            (m["prune_only_front"], grid_values, "C0", "o", ":", "prune only (bits 32)"),
            (m["quantize_only_front"], grid_values, "C2", "s", ":", "quantize only (sparsity 0)"),
            (m["grid_front"], grid_values, "k", "D", "-", "grid front"),
            (m["tpe_front"], tpe_values, "C1", "^", "--", "TPE front"),
        ]
        for rows, values, color, marker, ls, label in fronts:
            ax.step(
                values[rows, 1],
                100 * values[rows, 0],
                where="post",
                color=color,
                ls=ls,
                lw=1.4,
                marker=marker,
                ms=5,
                mfc="none",
                label=label,
                zorder=3,
            )
        ax.axvline(dense_bytes, color="0.4", lw=0.8, ls="-.")
        ax.axvline(dense_bytes / SMALL, color="0.4", lw=0.8, ls=":")
        top = ax.get_ylim()[1]
        ax.text(dense_bytes, top, "dense float32 ", fontsize=7, va="top", ha="right")
        ax.text(dense_bytes / SMALL, top, f"{SMALL}x smaller ", fontsize=7, va="top", ha="right")
        ax.set_xscale("log")
        ax.set_xlabel("stored bytes (log scale; biases, scales and indices included)")
        ax.set_ylabel("validation accuracy (%)")
        hv = m["hypervolume"]
        c = compute[name]
        ax.set_title(
            f"{name.upper()} ({m['parameters']:,} params)\n"
            f"hypervolume grid {hv['grid']:.3f} vs TPE {hv['tpe']:.3f} ({hv['ratio']:.2f}x; "
            f"log bytes {hv['ratio_log_bytes']:.2f}x)\n"
            f"grid {c['grid']['trials']} trials, {c['grid']['wall_time_s']:.0f} s; "
            f"TPE {c['tpe']['trials']} trials, {c['tpe']['wall_time_s']:.0f} s",
            fontsize=9,
        )
        ax.legend(fontsize=7, loc="lower right")
        ax.grid(alpha=0.3, which="both", lw=0.5)
    fig.suptitle(
        f"MNIST-1D, accuracy vs stored bytes. TPE at 1/{TPE_FRACTION} budget: "
        f"{claims['tpe_hypervolume']}; joint front dominates single methods: "
        f"{claims['joint_dominates']}; overall {overall}",
        fontsize=10,
    )
    fig.tight_layout()
    common.save_figure(args, fig)


if __name__ == "__main__":
    main()
