"""Quantization: PTQ, QAT at 1-8 bits, BinaryConnect, and DoReFa's activation-vs-weight asymmetry.

Run: python -m experiments.quantization [--quick]

An MLP 64-128-128-10 on scikit-learn's digits (1437 train, split 80/20 into train / validation,
360 test), Adam, batch 64, 1500 steps. Hidden activations are DoReFa's: a = clip(h, 0, 1),
quantized to ``a_bits`` (2^k - 1 levels, straight-through gradient; 32 = not quantized). Arms:
  - float: ``jopt.adam(lr)``; also with 8/4/2-bit activations (the DoReFa asymmetry);
  - PTQ: the float runs' weights stored by ``jopt.compress.quantize_params`` (round to nearest,
    per-channel min/max scales, real int8 / packed int4 .. int2) and evaluated dequantized;
  - QAT: ``optax.chain(jopt.adam(lr), jopt.compress.quantize(w_bits))`` with w_bits in 1..8 a
    traced hyperparameter (fake quant + straight-through; 1 bit = sign x mean|w| per channel),
    plus 8-bit weights with 8-bit activations (Jacob et al.'s integer setting);
  - BinaryConnect: ``jopt.compress.binary_connect()``, deterministic and stochastic (+-H, H the
    Glorot bound, latent clipped to [-H, H]). Test-time rule of the paper (Sec. 2.6, from
    memory): deterministic BC is evaluated with its binary weights, stochastic BC with the
    real-valued latent weights (its last sampled binary weights are reported too).
Everything is ONE call of ``jopt.sweep.run``: the bits x learning-rate heatmap of QAT is one
compiled program (bits and lr traced, vmapped, sharded over the cores); float, deterministic BC
and stochastic BC are one program each (a static ``method``). 2 seeds. The learning rate of
each arm is picked on validation accuracy, test accuracy is reported.

Scale: the papers use ImageNet CNNs (Jacob et al., DoReFa) and 3x1024 MLPs / CNNs on MNIST,
CIFAR-10, SVHN (BinaryConnect); here a 26k-parameter MLP on 8x8 digits (hidden 128 rather
than 512, to fit ~3 min on 2 CPU cores). Writes ``paper_figures/quantization.{png,json}``
(``--quick``: a tiny grid and 40 steps, to runs/ instead).

What to look for: 8 bits (PTQ or QAT) cost nothing; QAT holds up to ~3-4 bits, then falls;
binary weights cost a few points; 2-bit activations cost more than 2-bit weights.
"""

import itertools
import time

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax

import jopt
from experiments import common
from jopt.compress import binary_connect, quantize, quantize_params

PTQ_BITS = [2, 3, 4, 5, 6, 7, 8]
HIDDEN, BATCH_SIZE = (128, 128), 64
# Fixed before the full run (the pilot: paper_figures/pilots/quantization.json).
PASS_CRITERION = {
    "int8": "int8 PTQ and 8-bit QAT each within 0.5 points of float (seed means, each arm at "
    "its validation-best lr)",
    "int4": "4-bit QAT within 1.5 points of float and >= 2 points better than 4-bit PTQ",
    "monotone": "QAT accuracy non-decreasing in weight bits 1..8 (tolerance 0.5 points)",
    "binary_connect": "deterministic BinaryConnect within 3 points of float; stochastic >= "
    "deterministic - 0.5",
    "dorefa_asymmetry": "2-bit activations (float weights) cost more than 2-bit weights (float "
    "activations): acc(W32/A2) < acc(W2/A32)",
    "overall": "reproduced if all pass; partly if at least 3 of the 5 pass; else not reproduced",
}


# MODEL: DoReFa activations, a_bits traced (>= 16: clip only)
def quantize_activation(h, bits):
    """DoReFa: quantize_k(clip(h, 0, 1)) with 2^k - 1 levels, straight-through gradient."""
    a = jnp.clip(h, 0.0, 1.0)
    levels = jnp.exp2(bits) - 1.0
    q = jnp.where(bits >= 16, a, jnp.round(a * levels) / levels)
    return a + jax.lax.stop_gradient(q - a)


class QMLP(nn.Module):
    @nn.compact
    def __call__(self, x, a_bits):
        for width in HIDDEN:
            x = quantize_activation(nn.Dense(width)(x), a_bits)
        return nn.Dense(10)(x)


def main(argv=None):
    jopt.devices.use_all_cores()  # before any JAX operation: one JAX device per CPU core
    args = common.parse_args(
        __doc__, "quantization", argv, pilot="full steps, 1 seed, a small grid"
    )

    # CONFIG
    if args.quick:
        learning_rates, qat_bits, act_bits = [3e-3], [1, 2, 4, 8], [32, 2]
        seeds, steps = 1, 40
    elif args.pilot:
        learning_rates, qat_bits, act_bits = [1e-3, 3e-3], [2, 4, 8], [32, 2]
        seeds, steps = 1, 1500
    else:
        learning_rates, qat_bits, act_bits = (
            [3e-4, 1e-3, 3e-3, 1e-2],
            list(range(1, 9)),
            [32, 8, 4, 2],
        )
        seeds, steps = 2, 1500

    # DATA: train / validation (lr selection) / test (report)
    full = jopt.data.digits()
    split = jopt.data.validation_split(full)
    x_train, y_train = split.x_train, split.y_train
    x_val, y_val = split.x_test, split.y_test
    model = QMLP()

    def accuracy(params, x, y, a_bits):
        return jnp.mean(jnp.argmax(model.apply({"params": params}, x, a_bits), -1) == y)

    # TRIAL: one configuration, one seed
    def trial(hp, key):
        init_key, data_key, bc_key = jax.random.split(key, 3)
        params = model.init(init_key, x_train[:1], 32.0)["params"]
        method = hp["method"]
        if method == "float":
            tx = jopt.adam(hp["learning_rate"])
        elif method == "qat":
            tx = optax.chain(jopt.adam(hp["learning_rate"]), quantize(hp["w_bits"]))
        else:
            stochastic = method == "bc_stochastic"
            tx = optax.chain(
                jopt.adam(hp["learning_rate"]), binary_connect(stochastic=stochastic, key=bc_key)
            )

        def loss_fn(params, x, y):
            logits = model.apply({"params": params}, x, hp["a_bits"])
            return optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()

        def step(carry, step_key):
            params, opt_state = carry
            idx = jax.random.randint(step_key, (BATCH_SIZE,), 0, x_train.shape[0])
            grads = jax.grad(loss_fn)(params, x_train[idx], y_train[idx])
            updates, opt_state = tx.update(grads, opt_state, params)
            return (optax.apply_updates(params, updates), opt_state), None

        (params, opt_state), _ = jax.lax.scan(
            step, (params, tx.init(params)), jax.random.split(data_key, steps)
        )
        evaluated = params
        if method == "bc_stochastic":  # the paper's test-time rule for stochastic BC: real weights
            latent = opt_state[1].inner.latent
            evaluated = jax.tree.map(lambda w, p: w if p.ndim >= 2 else p, latent, params)
        out = {
            "val_accuracy": accuracy(evaluated, x_val, y_val, hp["a_bits"]),
            "test_accuracy": accuracy(evaluated, full.x_test, full.y_test, hp["a_bits"]),
            "test_accuracy_trained_params": accuracy(
                params, full.x_test, full.y_test, hp["a_bits"]
            ),
        }
        for layer, leaves in params.items():  # the weights, for PTQ on the host
            for name, value in leaves.items():
                out[f"params/{layer}/{name}"] = value
        return out

    # SPACE: every arm in one list; "method" is static (one program per method)
    def config(method, lr, w_bits=32, a_bits=32):
        return {"method": method, "learning_rate": lr, "w_bits": w_bits, "a_bits": a_bits}

    space = [config("float", lr, a_bits=a) for a in act_bits for lr in learning_rates]
    space += [config("qat", lr, w_bits=b) for b in qat_bits for lr in learning_rates]
    space += [config("qat", lr, w_bits=8, a_bits=8) for lr in learning_rates]
    space += [config(m, lr) for m in ("bc_deterministic", "bc_stochastic") for lr in learning_rates]
    start = time.perf_counter()
    result = jopt.sweep.run(trial, space, seeds=seeds, progress=False)
    wall_train = time.perf_counter() - start
    print(f"{len(space)} configs x {seeds} seeds x {steps} steps in {wall_train:.1f} s", flush=True)

    # SELECT: per arm, the lr of best seed-mean validation accuracy; report its test accuracy
    def arm(method, w_bits=32, a_bits=32):
        rows = [
            i
            for i, c in enumerate(space)
            if c["method"] == method and c["w_bits"] == w_bits and c["a_bits"] == a_bits
        ]
        val = result.metrics["val_accuracy"][rows].mean(axis=1)  # (lrs,)
        best = rows[int(np.argmax(val))]
        test = 100 * result.metrics["test_accuracy"][best].astype(float)  # (seeds,)
        return {
            "row": best,
            "learning_rate": space[best]["learning_rate"],
            "test_accuracy": float(test.mean()),
            "test_per_seed": test.round(2).tolist(),
            "val_accuracy": float(100 * val.max()),
            "test_accuracy_trained_params": float(
                100 * result.metrics["test_accuracy_trained_params"][best].mean()
            ),
        }

    def params_of(row, seed):
        tree = {}
        for key, value in result.metrics.items():
            if key.startswith("params/"):
                _, layer, name = key.split("/")
                tree.setdefault(layer, {})[name] = jnp.asarray(value[row, seed])
        return tree

    float_arm = arm("float")
    qat = {b: arm("qat", w_bits=b) for b in qat_bits}
    activations = {a: arm("float", a_bits=a) for a in act_bits}
    bc = {m: arm(f"bc_{m}") for m in ("deterministic", "stochastic")}
    qat_8_8 = arm("qat", w_bits=8, a_bits=8)

    # PTQ: real integer storage of the float runs at the float arm's lr
    ptq = {}
    float_bytes = None
    for bits in PTQ_BITS:
        accs, sizes = [], []
        for s in range(seeds):
            params = params_of(float_arm["row"], s)
            float_bytes = sum(4 * leaf.size for leaf in jax.tree.leaves(params))
            stored = quantize_params(params, bits=bits)
            sizes.append(stored.nbytes)
            acc = accuracy(stored.dequantize(), full.x_test, full.y_test, 32.0)
            accs.append(100 * float(acc))
        ptq[bits] = {
            "test_accuracy": float(np.mean(accs)),
            "test_per_seed": np.round(accs, 2).tolist(),
            "bytes": int(np.mean(sizes)),
            "ratio": float_bytes / float(np.mean(sizes)),
        }
    wall = time.perf_counter() - start

    # REPORT
    f = float_arm["test_accuracy"]
    print(f"float: {f:.2f}% (lr {float_arm['learning_rate']:g}), {float_bytes} bytes")
    print("bits   QAT     PTQ   (PTQ bytes)")
    for b in qat_bits:
        p = (
            f"{ptq[b]['test_accuracy']:6.2f}  ({ptq[b]['bytes']} B, {ptq[b]['ratio']:.1f}x)"
            if b in ptq
            else ""
        )
        print(f"{b:4d} {qat[b]['test_accuracy']:6.2f}  {p}")
    print(
        "activations (float weights): "
        + ", ".join(f"A{a}: {activations[a]['test_accuracy']:.2f}" for a in act_bits)
    )
    print(f"W8/A8 QAT: {qat_8_8['test_accuracy']:.2f}")
    print(
        f"BinaryConnect: det {bc['deterministic']['test_accuracy']:.2f}, stoch (real weights) "
        f"{bc['stochastic']['test_accuracy']:.2f}, stoch (last sampled binary weights) "
        f"{bc['stochastic']['test_accuracy_trained_params']:.2f}"
    )

    parts = {
        "int8": {
            "ptq8 within 0.5": abs(ptq[8]["test_accuracy"] - f) <= 0.5 if 8 in ptq else False,
            "qat8 within 0.5": abs(qat[8]["test_accuracy"] - f) <= 0.5 if 8 in qat else False,
        },
        "int4": {
            "qat4 within 1.5": f - qat[4]["test_accuracy"] <= 1.5 if 4 in qat else False,
            "qat4 >= ptq4 + 2": qat[4]["test_accuracy"] >= ptq[4]["test_accuracy"] + 2
            if 4 in qat
            else False,
        },
        "monotone": {
            f"{a}->{b}": qat[b]["test_accuracy"] >= qat[a]["test_accuracy"] - 0.5
            for a, b in itertools.pairwise(qat_bits)
        },
        "binary_connect": {
            "det within 3": f - bc["deterministic"]["test_accuracy"] <= 3,
            "stoch >= det - 0.5": bc["stochastic"]["test_accuracy"]
            >= bc["deterministic"]["test_accuracy"] - 0.5,
        },
        "dorefa_asymmetry": {
            "A2 < W2": activations[2]["test_accuracy"] < qat[2]["test_accuracy"]
            if 2 in activations and 2 in qat
            else False,
        },
    }
    passed = {name: all(p.values()) for name, p in parts.items()}
    n_passed = sum(passed.values())
    overall = "reproduced" if n_passed == 5 else "partly" if n_passed >= 3 else "not reproduced"
    for name, ok in passed.items():
        failed = [k for k, v in parts[name].items() if not v]
        print(f"{name:18s} {'pass' if ok else 'FAIL'} {failed or ''}")
    print(f"overall: {overall}")

    # heatmap: seed-mean test accuracy of QAT, bits x lr
    heat = np.array(
        [
            [
                100 * result.metrics["test_accuracy"][i].mean()
                for i, c in enumerate(space)
                if c["method"] == "qat" and c["w_bits"] == b and c["a_bits"] == 32
            ]
            for b in qat_bits
        ]
    )  # (len(qat_bits), len(learning_rates))
    record = {
        "paper": "Jacob et al., Quantization and Training of Neural Networks for Efficient "
        "Integer-Arithmetic-Only Inference, CVPR 2018; Zhou et al., DoReFa-Net, arXiv 1606.06160, "
        "2016; Courbariaux, Bengio & David, BinaryConnect, NIPS 2015",
        "claim": {
            "dorefa": "AlexNet with 1-bit weights, 2-bit activations and 6-bit gradients reaches "
            "46.1% top-1 on ImageNet (abstract; verified in the arXiv abstract); accuracy falls "
            "mostly as activation bits shrink, weights tolerate 1 bit best (tables; from memory "
            "of the paper, not verified)",
            "binary_connect": "permutation-invariant MNIST test error 1.30% (no regularizer) / "
            "1.29% (deterministic BC) / 1.18% (stochastic BC) (Table 2; from memory of the paper, "
            "not verified); binarization by sign or by hard-sigmoid probabilities, latent clipped "
            "(verified in a paper review page)",
            "jacob": "8-bit integer-only inference costs ~1.5 points top-1 on ImageNet ResNets, "
            "e.g. ResNet-50 76.4 -> 74.9 (from memory of the paper, not verified)",
        },
        "pass_criterion": PASS_CRITERION,
        "pilot": common.read_pilot("quantization"),
        "measured": {
            "float": float_arm,
            "float_bytes": float_bytes,
            "qat": {str(b): v for b, v in qat.items()},
            "ptq": {str(b): v for b, v in ptq.items()},
            "activations_float_weights": {str(a): v for a, v in activations.items()},
            "qat_w8_a8": qat_8_8,
            "binary_connect": bc,
            "heatmap": {
                "w_bits": qat_bits,
                "learning_rates": learning_rates,
                "test_accuracy_seed_mean": heat.round(2).tolist(),
            },
        },
        "verdict": {"parts": parts, "passed": passed, "overall": overall},
        "compute_wall_time_s": wall,
        "recipe": {
            "model": f"MLP 64-{HIDDEN[0]}-{HIDDEN[1]}-10, DoReFa activations clip(h, 0, 1)",
            "data": "sklearn digits: 1150 train / 287 validation / 360 test",
            "optimizer": "jopt.adam(lr), batch 64",
            "steps": steps,
            "seeds": seeds,
            "programs": sorted({c["method"] for c in space}),
        },
    }
    common.write_record(args, record)

    plt = common.pyplot()
    if plt is None:
        return
    fig, (left, middle, right) = plt.subplots(1, 3, figsize=(16, 4.6))
    # HEATMAP: QAT bits x lr, one compiled program
    image = left.imshow(heat, origin="lower", aspect="auto", cmap="viridis")
    left.set_xticks(range(len(learning_rates)), [f"{lr:g}" for lr in learning_rates])
    left.set_yticks(range(len(qat_bits)), qat_bits)
    for i in range(heat.shape[0]):
        for j in range(heat.shape[1]):
            left.text(
                j,
                i,
                f"{heat[i, j]:.1f}",
                ha="center",
                va="center",
                fontsize=7,
                color="white" if heat[i, j] < (heat.min() + heat.max()) / 2 else "black",
            )
    left.set_xlabel("learning rate (Adam)")
    left.set_ylabel("weight bits (QAT)")
    left.set_title("QAT test accuracy (%): bits x lr, one program")
    fig.colorbar(image, ax=left)
    # BITS: QAT vs PTQ vs float, with BinaryConnect at 1 bit
    bits_q = [b for b in qat_bits]
    middle.plot(bits_q, [qat[b]["test_accuracy"] for b in bits_q], "o-", label="QAT (per channel)")
    middle.plot(PTQ_BITS, [ptq[b]["test_accuracy"] for b in PTQ_BITS], "s--", label="PTQ (int)")
    middle.axhline(f, color="black", lw=1, label=f"float {f:.1f}%")
    middle.axhspan(f - 0.5, f + 0.5, color="gray", alpha=0.2, lw=0)
    for m, marker in (("deterministic", "v"), ("stochastic", "^")):
        middle.scatter(
            [1],
            [bc[m]["test_accuracy"]],
            marker=marker,
            s=80,
            zorder=4,
            label=f"BinaryConnect, {m}",
        )
    middle.set_xlabel("weight bits")
    middle.set_ylabel("test accuracy (%)")
    middle.set_ylim(max(0, min(middle.get_ylim()[0], f - 30)), 100)
    middle.set_title("accuracy vs weight bits (lr picked on validation)")
    middle.legend(fontsize=7)
    # ASYMMETRY: activations vs weights at the same bits
    shared_bits = [b for b in (2, 4, 8) if b in act_bits and b in qat_bits]
    x = np.arange(len(shared_bits))
    right.bar(
        x - 0.2,
        [qat[b]["test_accuracy"] for b in shared_bits],
        0.4,
        label="weights at b bits (float activations)",
    )
    right.bar(
        x + 0.2,
        [activations[b]["test_accuracy"] for b in shared_bits],
        0.4,
        label="activations at b bits (float weights)",
    )
    right.axhline(f, color="black", lw=1)
    right.set_xticks(x, [f"{b} bits" for b in shared_bits])
    right.set_ylim(max(0, f - 30), 100)
    right.set_ylabel("test accuracy (%)")
    right.set_title(f"DoReFa asymmetry; overall: {overall}")
    right.legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    common.save_figure(args, fig, dpi=120)


if __name__ == "__main__":
    main()
