"""How fast is jopt.train.fit? Against a hand-written optax + lax.scan loop and a Python loop.

Run: python -m experiments.bench_fit [--quick]

Trains two MNIST-1D models of the paper, the MLP (40-100-100-10, about 130 us of compute
per step on one CPU core) and logistic regression (40-10, a few us per step), with Adam,
batch 100, shuffled epochs, for the same number of steps in six ways, and evaluates once
at the end on the full train and test sets:

  fit            jopt.train.fit(..., progress=False): one compiled lax.scan
  fit+progress   the same with the tqdm bar fed by jax.debug.callback (bar sent to a buffer)
  (a) scan       a hand-written optax + lax.scan loop, jitted whole: the honest baseline
  (b) python     a Python for-loop over a jitted train step, numpy batches
  fit seq        fit(..., batch_mode="sequential"): batch t is examples [100 t, 100 t + 100)
  (a) scan seq   (a) on the same sequential batches, sliced with lax.dynamic_slice

Compile time (first call minus the median run) is reported apart from run time (the median
of the repeats, the methods alternating within each repeat so that load on the machine
hits all of them alike). Goals: fit <= 1.05x (a), fit >= 5x faster than (b),
fit+progress <= 1.05x fit. How much (b) loses depends on how long one step computes next to
the ~20-50 us Python spends dispatching it: little on a CPU for the MLP (compute-bound), much
for logistic regression or on a GPU (dispatch-bound). Batches: (a) draws each epoch with
``jax.random.permutation`` (what a hand-written loop does; XLA's CPU sort costs about 1 ms
per epoch here), fit evaluates its keyed shuffle for a block of up to 8192 positions at a
time (no sort) and gathers the block's examples in one go. ``fit seq`` and ``(a) scan seq``
run both loops on sequential batches (no shuffle on either side): what fit's own
bookkeeping costs. Writes the tables to ``paper_figures/bench_fit.json`` (``--quick``: the
logistic model, 400 steps, 2 repeats, written to runs/ instead).
"""

import contextlib
import io
import os
import statistics
import time

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax

import jopt.data
import jopt.train
from experiments import common


# The MNIST-1D paper's models, defined here so that the benchmark depends only on train.py.
class Logistic(nn.Module):
    @nn.compact
    def __call__(self, x, *, train=False):
        return nn.Dense(10)(x)


class MLP(nn.Module):
    @nn.compact
    def __call__(self, x, *, train=False):
        x = nn.relu(nn.Dense(100)(x))
        x = nn.relu(nn.Dense(100)(x))
        return nn.Dense(10)(x)


def loss_fn(model, params, x, y):
    logits = model.apply({"params": params}, x)
    return optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()


def accuracy(model, params, x, y):
    return jnp.mean(jnp.argmax(model.apply({"params": params}, x), -1) == y)


# (a) A HAND-WRITTEN OPTAX + LAX.SCAN LOOP: epochs of shuffled (or sequential) batches, then
# one evaluation
def make_scan_train(model, tx, data, steps, batch_size, sequential=False):
    n = data.n_train
    steps_per_epoch = n // batch_size
    epochs = steps // steps_per_epoch

    def train(key):
        init_key, data_key = jax.random.split(key)
        params = model.init(init_key, data.x_train[:1])["params"]

        def epoch(carry, e):
            if sequential:  # batch t is the slice starting at t * batch_size: no gather
                batches = jnp.arange(steps_per_epoch) * batch_size
            else:
                perm = jax.random.permutation(jax.random.fold_in(data_key, e), n)
                batches = perm[: steps_per_epoch * batch_size].reshape(-1, batch_size)

            def step(carry, batch):
                params, opt_state = carry
                if sequential:
                    x = jax.lax.dynamic_slice_in_dim(data.x_train, batch, batch_size)
                    y = jax.lax.dynamic_slice_in_dim(data.y_train, batch, batch_size)
                else:
                    x, y = data.x_train[batch], data.y_train[batch]
                loss, grads = jax.value_and_grad(loss_fn, 1)(model, params, x, y)
                updates, opt_state = tx.update(grads, opt_state, params)
                return (optax.apply_updates(params, updates), opt_state), loss

            carry, losses = jax.lax.scan(step, carry, batches)
            return carry, losses.mean()

        (params, _), losses = jax.lax.scan(epoch, (params, tx.init(params)), jnp.arange(epochs))
        train_acc = accuracy(model, params, data.x_train, data.y_train)
        test_acc = accuracy(model, params, data.x_test, data.y_test)
        return params, losses, train_acc, test_acc

    return jax.jit(train)


# (b) A PYTHON FOR-LOOP OVER A JITTED STEP, batches sliced in numpy
def make_python_train(model, tx, data, steps, batch_size):
    x_train, y_train = np.asarray(data.x_train), np.asarray(data.y_train)
    n = len(x_train)
    steps_per_epoch = n // batch_size

    @jax.jit
    def step(params, opt_state, x, y):
        loss, grads = jax.value_and_grad(loss_fn, 1)(model, params, x, y)
        updates, opt_state = tx.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state, loss

    evaluate = jax.jit(lambda params, x, y: accuracy(model, params, x, y))

    def train(seed):
        rng = np.random.default_rng(seed)
        params = model.init(jax.random.PRNGKey(seed), x_train[:1])["params"]
        opt_state = tx.init(params)
        for t in range(steps):
            if t % steps_per_epoch == 0:
                perm = rng.permutation(n)
            idx = perm[(t % steps_per_epoch) * batch_size :][:batch_size]
            params, opt_state, loss = step(params, opt_state, x_train[idx], y_train[idx])
        test_acc = evaluate(params, data.x_test, data.y_test)
        return params, loss, evaluate(params, data.x_train, data.y_train), test_acc

    return train


def timed(fn):
    start = time.perf_counter()
    jax.block_until_ready(fn())
    return time.perf_counter() - start


def add_arguments(parser):
    parser.add_argument("--steps", type=int, default=None, help="training steps")
    parser.add_argument("--repeats", type=int, default=None, help="timed repeats")
    parser.add_argument(
        "--models",
        default=None,
        help="comma-separated: mlp, logistic (default both; logistic with --quick)",
    )


def main(argv=None):
    jopt.devices.use_all_cores()  # before any JAX operation: one JAX device per CPU core
    args = common.parse_args(__doc__, "bench_fit", argv, add_arguments=add_arguments)
    names = args.models or ("logistic" if args.quick else "mlp,logistic")
    models = {name.strip(): bench(name.strip(), args) for name in names.split(",")}
    common.write_record(
        args,
        {
            "goals": {
                "fit / (a) scan": "<= 1.05",
                "(b) python / fit": ">= 5",
                "fit+progress / fit": "<= 1.05",
            },
            "models": models,
            "platform": jax.devices()[0].platform,
            "cores": os.cpu_count(),
        },
    )


def bench(model_name, args):
    steps = args.steps or (400 if args.quick else 20_000)
    repeats = args.repeats or (2 if args.quick else 7)
    batch_size = 100

    # SETUP
    data = jopt.data.mnist1d()
    if model_name not in ("mlp", "logistic"):
        raise ValueError(f"--models: unknown model {model_name!r}; use mlp and/or logistic")
    model = MLP() if model_name == "mlp" else Logistic()
    tx = optax.adam(1e-3)
    key = jax.random.PRNGKey(0)
    steps -= steps % (data.n_train // batch_size)  # whole epochs, for the scan baseline

    def fit(progress, batch_mode="shuffle"):
        def run():
            # the tqdm bar goes to a buffer: timed, but not printed
            with contextlib.redirect_stderr(io.StringIO()):
                return jopt.train.fit(
                    model, tx, data, steps=steps, batch_size=batch_size, key=key,
                    progress=progress, batch_mode=batch_mode,
                )  # fmt: skip

        return run

    scan_train = make_scan_train(model, tx, data, steps, batch_size)
    scan_train_seq = make_scan_train(model, tx, data, steps, batch_size, sequential=True)
    python_train = make_python_train(model, tx, data, steps, batch_size)
    methods = {
        "fit": fit(False),
        "fit+progress": fit(True),
        "(a) scan": lambda: scan_train(key),
        "(b) python": lambda: python_train(0),
        # the same loop without shuffling on either side: what fit's own bookkeeping costs
        "fit seq": fit(False, "sequential"),
        "(a) scan seq": lambda: scan_train_seq(key),
    }

    # COMPILE (first call) THEN RUN (median of the repeats, methods alternating)
    first = {name: timed(fn) for name, fn in methods.items()}
    runs = {name: [] for name in methods}
    for _ in range(repeats):
        for name, fn in methods.items():
            runs[name].append(timed(fn))
    run = {name: statistics.median(times) for name, times in runs.items()}
    # compile time = first call - median run; for (b), the step's and evaluation's compiles
    compile_time = {name: max(first[name] - run[name], 0.0) for name in methods}

    # REPORT
    title = "MLP 40-100-100-10" if model_name == "mlp" else "logistic regression 40-10"
    print(f"\nMNIST-1D {title}, Adam, batch {batch_size}, {steps} steps, "
          f"median of {repeats} ({jax.devices()[0].platform}, {os.cpu_count()} cores)")  # fmt: skip
    print(f"{'method':<15} {'compile s':>10} {'run s':>9} {'us/step':>9} {'ratio vs fit':>13}")
    for name in methods:
        print(
            f"{name:<15} {compile_time[name]:>10.3f} {run[name]:>9.3f} "
            f"{1e6 * run[name] / steps:>9.1f} {run[name] / run['fit']:>13.2f}"
        )
    fit_vs_scan = run["fit"] / run["(a) scan"]
    python_vs_fit = run["(b) python"] / run["fit"]
    progress_cost = run["fit+progress"] / run["fit"]
    print(f"ratio fit / (a) scan        = {fit_vs_scan:.3f}  (goal <= 1.05)")
    print(f"ratio (b) python / fit      = {python_vs_fit:.1f}  (goal >= 5)")
    print(f"ratio fit+progress / fit    = {progress_cost:.3f}  (goal <= 1.05)")
    seq_ratio = run["fit seq"] / run["(a) scan seq"]
    print(f"ratio fit seq / (a) scan seq = {seq_ratio:.3f}  (sequential batches on both sides)")
    return {
        "steps": steps,
        "repeats": repeats,
        "batch_size": batch_size,
        "methods": {
            name: {"compile_s": compile_time[name], "run_s": runs[name], "median_run_s": run[name]}
            for name in methods
        },
        "ratios": {
            "fit / (a) scan": fit_vs_scan,
            "(b) python / fit": python_vs_fit,
            "fit+progress / fit": progress_cost,
            "fit seq / (a) scan seq": seq_ratio,
        },
    }


if __name__ == "__main__":
    main()
