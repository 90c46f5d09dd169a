"""What does a compression transform cost per training step? Each one vs the plain optimizer.

Run: python -m experiments.bench_compress [--quick]

Trains the MNIST-1D MLP (40-100-100-10, batch 100; random inputs, the data content does not
matter for timing) for N steps inside ONE jitted lax.scan per variant: jopt.adam(1e-3) alone,
then chained with each weight-compression transform (after the optimizer) and, if
jopt.compress.gradients is present, each gradient-compression transform (before it). Variants
alternate over several repeats; the table gives the median run time after compilation and the
ratio to plain Adam. Goal: pruning and QAT <= 1.3x. Writes the table to
``paper_figures/bench_compress.json`` (``--quick``: 20 steps, 1 repeat, written to runs/
instead).
"""

import statistics
import time

import flax.linen as nn
import jax
import jax.numpy as jnp
import optax

import jopt
from experiments import common
from jopt import compress


class MLP(nn.Module):  # the MNIST-1D paper's MLP, 15,210 parameters
    @nn.compact
    def __call__(self, x):
        x = nn.relu(nn.Dense(100)(x))
        x = nn.relu(nn.Dense(100)(x))
        return nn.Dense(10)(x)


def make_train(steps, batch_size=100):
    model = MLP()

    def train(tx, key):
        # INIT NETWORK AND DATA
        key, init_key, x_key, y_key = jax.random.split(key, 4)
        x = jax.random.normal(x_key, (batch_size, 40))  # (batch, 40)
        y = jax.random.randint(y_key, (batch_size,), 0, 10)
        params = model.init(init_key, x[:1])

        def loss_fn(params, xb):
            logits = model.apply(params, xb)
            return optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()

        # TRAIN LOOP
        def step(carry, i):
            params, opt_state = carry
            xb = x + 0.01 * i  # a different batch each step, no gather cost
            loss, grads = jax.value_and_grad(loss_fn)(params, xb)
            updates, opt_state = tx.update(grads, opt_state, params)
            return (optax.apply_updates(params, updates), opt_state), loss

        (params, _), losses = jax.lax.scan(step, (params, tx.init(params)), jnp.arange(steps))
        return params, losses

    return train


def variants(steps):
    adam = lambda: jopt.adam(1e-3)
    gradual = lambda: compress.gradual(0.9, 0, steps, max(steps // 10, 1))  # every N/10 steps
    out = {
        "adam (baseline)": adam,
        # regrow="dpf": latent weights, mask re-selected every 16 steps; the rows without it
        # are the default, classic pruning (no latent)
        "adam + prune(0.8, dpf)": lambda: optax.chain(adam(), compress.prune(0.8, regrow="dpf")),
        "adam + prune(0.8, layer, dpf)": lambda: optax.chain(
            adam(), compress.prune(0.8, scope="layer", regrow="dpf")
        ),
        "adam + prune(gradual N/10, dpf)": lambda: optax.chain(
            adam(), compress.prune(gradual(), regrow="dpf")
        ),
        "adam + prune(0.8, dpf, every=1)": lambda: optax.chain(
            adam(), compress.prune(0.8, regrow="dpf", regrow_every=1)
        ),
        "adam + prune(0.8)": lambda: optax.chain(adam(), compress.prune(0.8)),
        "adam + prune(gradual N/10)": lambda: optax.chain(adam(), compress.prune(gradual())),
        "adam + prune(2:4, dpf)": lambda: optax.chain(
            adam(), compress.prune(None, structure="2:4", regrow="dpf")
        ),
        "adam + quantize(8)": lambda: optax.chain(adam(), compress.quantize(8)),
        "adam + quantize(4, per_tensor)": lambda: optax.chain(
            adam(), compress.quantize(4, per_channel=False)
        ),
        "adam + share_weights(16)": lambda: optax.chain(adam(), compress.share_weights(16)),
    }
    try:  # gradient compression: written separately, placed BEFORE the optimizer
        from jopt.compress import gradients
    except ImportError:
        return out
    out.update(
        {
            "topk(0.01) + adam": lambda: optax.chain(gradients.topk(0.01), adam()),
            "sign() + adam": lambda: optax.chain(gradients.sign(), adam()),
            "qsgd(16) + adam": lambda: optax.chain(gradients.qsgd(16), adam()),
            "powersgd(2) + adam": lambda: optax.chain(gradients.powersgd(2), adam()),
        }
    )
    return out


def add_arguments(parser):
    parser.add_argument("--steps", type=int, default=1000)
    parser.add_argument("--repeats", type=int, default=7)


def main(argv=None):
    jopt.devices.use_all_cores()  # before any JAX operation: one JAX device per CPU core
    args = common.parse_args(__doc__, "bench_compress", argv, add_arguments=add_arguments)
    steps, repeats = (20, 1) if args.quick else (args.steps, args.repeats)

    train = make_train(steps)
    key = jax.random.PRNGKey(0)
    runs = {}
    for name, make in variants(steps).items():
        runs[name] = jax.jit(lambda k, make=make: train(make(), k))
        t0 = time.perf_counter()
        jax.block_until_ready(runs[name](key))  # compile
        print(f"compiled {name:<36} {time.perf_counter() - t0:6.1f} s", flush=True)

    # TIME: alternate variants so machine noise hits all of them alike
    times = {name: [] for name in runs}
    for _ in range(repeats):
        for name, run in runs.items():
            t0 = time.perf_counter()
            jax.block_until_ready(run(key))
            times[name].append(time.perf_counter() - t0)

    base = statistics.median(times["adam (baseline)"])
    print(f"\n{steps} steps, median of {repeats} runs, {jax.devices()[0].platform}")
    print(f"{'variant':<36} {'ms/run':>9} {'us/step':>9} {'ratio':>7}")
    for name, ts in times.items():
        median = statistics.median(ts)
        per_step = 1e6 * median / steps
        print(f"{name:<36} {1e3 * median:9.1f} {per_step:9.1f} {median / base:7.2f}")
    common.write_record(
        args,
        {
            "goal": "pruning and QAT <= 1.3x the plain optimizer's run time",
            "measured": {
                name: {
                    "run_s": ts,
                    "median_run_s": statistics.median(ts),
                    "us_per_step": 1e6 * statistics.median(ts) / steps,
                    "ratio": statistics.median(ts) / base,
                }
                for name, ts in times.items()
            },
            "workload": {"steps": steps, "repeats": repeats, "batch_size": 100},
            "platform": jax.devices()[0].platform,
        },
    )


if __name__ == "__main__":
    main()
