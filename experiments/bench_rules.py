"""Does holding hyperparameters in the state cost anything? jopt.adam vs optax.adam.

Run: python -m experiments.bench_rules [--quick]

Trains the MNIST-1D MLP (40-100-100-10, batch 100) for 1000 steps inside ONE jitted lax.scan
with each optimizer, alternating them over several repeats, and prints the median run time
(compile time apart) and the ratio jopt / optax. Goal: ratio <= 1.03.

Also timed, for context: optax.inject_hyperparams(optax.adam), optax's own way to keep the
learning rate in the state. Writes the table to ``paper_figures/bench_rules.json``
(``--quick``: 50 steps, 2 repeats, written to runs/ instead).
"""

import statistics
import time

import flax.linen as nn
import jax
import jax.numpy as jnp
import optax

import jopt
from experiments import common


class MLP(nn.Module):  # the MNIST-1D paper's MLP, 15,210 parameters (no residual: same cost)
    @nn.compact
    def __call__(self, x):
        x = nn.relu(nn.Dense(100)(x))
        x = nn.relu(nn.Dense(100)(x))
        return nn.Dense(10)(x)


def make_train(x, y, steps, batch_size):
    model = MLP()
    n = x.shape[0]

    def train(tx, key):
        params = model.init(key, x[:1])

        def loss_fn(params, xb, yb):
            logits = model.apply(params, xb)
            return optax.softmax_cross_entropy_with_integer_labels(logits, yb).mean()

        def step(carry, i):
            params, opt_state = carry
            start = (i * batch_size) % n
            xb = jax.lax.dynamic_slice_in_dim(x, start, batch_size)
            yb = jax.lax.dynamic_slice_in_dim(y, start, batch_size)
            loss, grads = jax.value_and_grad(loss_fn)(params, xb, yb)
            updates, opt_state = tx.update(grads, opt_state, params)
            return (optax.apply_updates(params, updates), opt_state), loss

        (params, _), losses = jax.lax.scan(step, (params, tx.init(params)), jnp.arange(steps))
        return params, losses

    return train


def add_arguments(parser):
    parser.add_argument("--steps", type=int, default=1000)
    parser.add_argument("--repeats", type=int, default=7)


def main(argv=None):
    jopt.devices.use_all_cores()  # before any JAX operation: one JAX device per CPU core
    args = common.parse_args(__doc__, "bench_rules", argv, add_arguments=add_arguments)
    steps, repeats = (50, 2) if args.quick else (args.steps, args.repeats)

    data = jopt.data.mnist1d()
    x, y = jnp.asarray(data.x_train), jnp.asarray(data.y_train)
    train = make_train(x, y, steps, batch_size=100)
    key = jax.random.PRNGKey(0)

    optimizers = {
        "optax.adam": lambda lr: optax.adam(lr),
        "jopt.adam": lambda lr: jopt.adam(lr),
        "optax.inject_hyperparams(adam)": lambda lr: optax.inject_hyperparams(optax.adam)(lr),
    }
    # The learning rate is an argument of the compiled function, so it is data in every case.
    runs = {
        name: jax.jit(lambda lr, k, make=make: train(make(lr), k))
        for name, make in optimizers.items()
    }
    compile_s, times, losses = {}, {name: [] for name in runs}, {}
    for name, run in runs.items():
        start = time.perf_counter()
        params, loss = run(1e-2, key)
        jax.block_until_ready(params)
        compile_s[name] = time.perf_counter() - start
        losses[name] = float(loss[-1])
    for _ in range(repeats):  # alternate, so drift in machine load hits every optimizer alike
        for name, run in runs.items():
            start = time.perf_counter()
            jax.block_until_ready(run(1e-2, key))
            times[name].append(time.perf_counter() - start)

    base = statistics.median(times["optax.adam"])
    print(
        f"MNIST-1D MLP 40-100-100-10, batch 100, {steps} steps in one jitted lax.scan, "
        f"median of {repeats} runs ({jax.devices()[0].platform})"
    )
    print(
        f"{'optimizer':34s} {'first call s':>12s} {'run s':>8s} {'ratio':>7s} {'final loss':>11s}"
    )
    for name in runs:
        median = statistics.median(times[name])
        print(
            f"{name:34s} {compile_s[name]:12.2f} {median:8.3f} {median / base:7.3f} "
            f"{losses[name]:11.4f}"
        )
    ratio = statistics.median(times["jopt.adam"]) / base
    print(f"jopt.adam / optax.adam = {ratio:.3f} (goal <= 1.03)")
    common.write_record(
        args,
        {
            "goal": "jopt.adam / optax.adam run time <= 1.03",
            "measured": {
                "ratio": ratio,
                "goal_met": ratio <= 1.03,
                "optimizers": {
                    name: {
                        "first_call_s": compile_s[name],
                        "run_s": times[name],
                        "median_run_s": statistics.median(times[name]),
                        "final_loss": losses[name],
                    }
                    for name in runs
                },
            },
            "workload": {"steps": steps, "repeats": repeats, "batch_size": 100},
            "platform": jax.devices()[0].platform,
        },
    )


if __name__ == "__main__":
    main()
