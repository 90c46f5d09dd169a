"""Deep Compression (Han, Mao & Dally, ICLR 2016): prune, share weights by k-means, Huffman-code.

Run: python -m experiments.deep_compression [--quick]

A LeNet-300-100-shaped MLP (64-300-100-10, ReLU, 50,610 parameters, 202 KB in float32) on
scikit-learn's digits (1437 train / 360 test, stratified), in three stages, each ONE compiled
program vmapped over everything it runs:
  1. dense: Adam 1e-3, batch 64, vmapped over seeds;
  2. prune + retrain: ``optax.chain(jopt.adam, jopt.compress.prune(gradual(...), scope="layer")
     per layer)``: the three kernels pruned gradually (cubic schedule) to their keep fractions
     over the first 2/3 of the retraining, vmapped over keep fractions (traced) x seeds. Keep
     rows: uniform 100/50/20/10/5% and the paper's per-layer 8% / 9% / 26% (Table 2);
  3. trained quantization: ``jopt.compress.share_weights(2**b - 1, exclude_zeros=True)`` after
     ``jopt.sgd`` (k-means with linear init over the nonzeros of each layer, then the centroids
     fine-tuned with the summed gradients of their weights; pruned weights stay 0), one program
     per bit width b (the codebook size is a shape), vmapped over keep rows x seeds.
Storage is counted from bytes actually written: each compressed layer is encoded as Deep
Compression stores it (5-bit relative indices with filler entries for gaps over 32, b-bit
codes, a float32 codebook of 2**b entries whose code 0 is zero) into packed uint8 buffers
whose ``.nbytes`` are counted and which are decoded back and checked equal to the weights;
``jopt.compress.size_report`` must agree. Huffman coding (heapq) of the code and gap streams
is the optional third stage. Biases stay float32 and are counted. P-only = stage 2 (float32
values, relative indices); Q-only = keep 100% + stage 3 (dense code arrays, ``share_nbytes``).

Scale: LeNet-300-100 on MNIST (266k parameters, 60k images) in the paper; here the same shape
on 8x8 digits. Writes ``paper_figures/deep_compression.{png,json}`` (``--quick``: tiny, to
runs/ instead; ``--pilot``: the full run's steps with 1 seed and a small grid, to runs/).

What to look for: at the paper's keep fractions and 6 bits the accuracy barely moves
while the model shrinks ~25-40x; on the accuracy-vs-size plane (their Fig. 6) P+Q stays
accurate far below the sizes where pruning alone or quantization alone break down.
"""

import heapq
import math
import time
from collections import Counter

import jax
import jax.numpy as jnp
import numpy as np
import optax

import jopt
from experiments import common
from jopt.compress import gradual, prune, share_nbytes, share_weights, size_report

PAPER_KEEP = (0.08, 0.09, 0.26)  # Table 2, LeNet-300-100: ip1 / ip2 / ip3
HEADLINE_BITS = 6  # the paper's LeNet-300-100 weight bits
LEARNING_RATE, SHARE_LEARNING_RATE, BATCH_SIZE = 1e-3, 1e-2, 64
INDEX_BITS = 5  # relative-index bits for fc layers in the paper
LAYERS = ["Dense_0", "Dense_1", "Dense_2"]
# Fixed before the full run (the pilot: paper_figures/pilots/deep_compression.json).
PASS_CRITERION = {
    "accuracy": "P+Q at the paper's keep fractions (8/9/26%) and 6 bits: seed-mean test "
    "accuracy drops by <= 1 point from dense (digits: 1 test sample = 0.28 points)",
    "ratio_no_huffman": "the same model's whole-model compression (stored bytes, biases and "
    "codebooks included, no Huffman) >= 30x",
    "ratio_huffman": "with Huffman coding of the index and gap streams >= 38x",
    "dominance": "for every P-only and Q-only point compressed >= 8x there is a P+Q point at "
    "least as small whose seed-mean accuracy is >= its accuracy - 0.3 points",
    "overall": "reproduced if all pass; partly if 'accuracy' passes and one other does; else "
    "not reproduced",
}


def only(layer):
    """The static leaf mask 'this layer's kernel'."""
    return lambda p: {k: {n: k == layer and n == "kernel" for n in v} for k, v in p.items()}


# STORAGE: encode each compressed layer as Deep Compression stores it, count .nbytes, decode
def relative_entries(flat, span):
    """Deep Compression's sparse format: (gap codes, positions, is_filler) of stored entries."""
    positions = np.flatnonzero(flat)
    gaps = np.diff(np.concatenate([[-1], positions]))
    fillers = (gaps - 1) // span  # filler zeros bridging gaps longer than the index range
    codes, where, filler = [], [], []
    previous = -1
    for position, n_fill in zip(positions, fillers):
        for _ in range(n_fill):
            previous += span
            codes.append(span - 1)
            where.append(previous)
            filler.append(True)
        codes.append(position - previous - 1)
        where.append(position)
        filler.append(False)
        previous = position
    return np.array(codes, np.int64), np.array(where, np.int64), np.array(filler, bool)


def pack(values, width):
    """Unsigned ints of ``width`` bits each into a packed uint8 buffer."""
    bits = (values[:, None] >> np.arange(width - 1, -1, -1)[None, :]) & 1
    return np.packbits(bits.astype(np.uint8).ravel())


def unpack(buffer, width, count):
    bits = np.unpackbits(buffer)[: count * width].reshape(count, width).astype(np.int64)
    return bits @ (1 << np.arange(width - 1, -1, -1))


def huffman_lengths(symbols):
    """Code length of each symbol of an optimal prefix code (Huffman, with heapq)."""
    counts = Counter(symbols.tolist())
    if len(counts) == 1:
        return {next(iter(counts)): 1}
    heap = [(n, i, (s,)) for i, (s, n) in enumerate(counts.items())]
    heapq.heapify(heap)
    depth = dict.fromkeys(counts, 0)
    tie = len(heap)
    while len(heap) > 1:
        n1, _, a = heapq.heappop(heap)
        n2, _, b = heapq.heappop(heap)
        for s in a + b:
            depth[s] += 1
        heapq.heappush(heap, (n1 + n2, tie, a + b))
        tie += 1
    return depth


def huffman_bits(symbols):
    lengths = huffman_lengths(symbols)
    return sum(lengths[s] for s in symbols.tolist()), len(lengths)


def store_layer(kernel, bits, sparse):
    """Bytes of one kernel: (raw, huffman), after checking the raw buffer decodes to it.

    With ``bits``, code 0 of the float32 codebook means 0 (pruned weights and the filler
    entries of long gaps) and codes 1..2**bits - 1 the shared values.
    """
    flat = np.asarray(kernel).ravel()
    if bits is None:  # float32 values (P only)
        codebook, width = None, 32
    else:
        shared_values = np.unique(flat[flat != 0])
        assert shared_values.size <= 2**bits - 1, (shared_values.size, bits)
        codebook = np.zeros(2**bits, np.float32)
        codebook[1 : 1 + shared_values.size] = shared_values
        width = bits
    if not sparse:  # a dense array of codes (Q only): one per position
        codes = np.searchsorted(codebook[1 : 1 + shared_values.size], flat) + 1
        codes = np.where(flat == 0, 0, codes)
        buffer = pack(codes, width)
        assert np.array_equal(codebook[unpack(buffer, width, flat.size)], flat)
        huff, table = huffman_bits(codes)
        return buffer.nbytes + codebook.nbytes, math.ceil(huff / 8) + codebook.nbytes + table
    gaps, where, filler = relative_entries(flat, 2**INDEX_BITS)
    if bits is None:
        values = flat[where].view(np.uint32).astype(np.int64)  # fillers: +0.0
    else:
        values = np.searchsorted(codebook[1 : 1 + shared_values.size], flat[where]) + 1
        values = np.where(filler, 0, values)
    gap_stream, value_stream = pack(gaps, INDEX_BITS), pack(values, width)
    raw = gap_stream.nbytes + value_stream.nbytes + (0 if codebook is None else codebook.nbytes)
    # DECODE from the two buffers alone: positions from the cumulative gaps, then the values
    decoded_where = np.cumsum(unpack(gap_stream, INDEX_BITS, gaps.size) + 1) - 1
    decoded_values = unpack(value_stream, width, values.size)
    out = np.zeros_like(flat)
    if bits is None:
        out[decoded_where] = decoded_values.astype(np.uint32).view(np.float32)
    else:
        out[decoded_where] = codebook[decoded_values]
    assert np.array_equal(out, flat), "the stored layer does not decode to the weights"
    if bits is None:
        return raw, raw
    huff_gaps, table_gaps = huffman_bits(gaps)
    huff_values, table_values = huffman_bits(values)
    huff = math.ceil((huff_gaps + huff_values) / 8) + codebook.nbytes + table_gaps + table_values
    return raw, huff


def store_model(params, bits, sparse):
    """Whole-model bytes (raw, huffman), biases float32; cross-checked with size_report."""
    raw = huff = sum(4 * np.asarray(params[layer]["bias"]).size for layer in LAYERS)
    for layer in LAYERS:
        r, h = store_layer(params[layer]["kernel"], bits, sparse)
        raw, huff = raw + r, huff + h
    if sparse:
        report = size_report(
            params, clusters=None if bits is None else 2**bits, sparse=True, index_bits=INDEX_BITS
        )
    else:
        report = {"bytes_after": share_nbytes(params, 2**bits)}
    # size_report rounds once per layer, the buffers once per stream: <= 2 bytes per layer apart
    assert abs(report["bytes_after"] - raw) <= 2 * len(LAYERS), (report["bytes_after"], raw)
    return raw, huff


def take(tree, s, k):
    return jax.tree.map(lambda a: np.asarray(a[s, k]), tree)


def main(argv=None):
    jopt.devices.use_all_cores()  # before any JAX operation: one JAX device per CPU core
    args = common.parse_args(
        __doc__, "deep_compression", argv, pilot="full steps, 1 seed, a small grid"
    )

    # CONFIG
    if args.quick:
        n_seeds, dense_steps, prune_steps, share_steps = 1, 100, 60, 20
        keeps = [(1.0,) * 3, PAPER_KEEP]
        bit_widths = [3, 6]
    elif args.pilot:
        n_seeds, dense_steps, prune_steps, share_steps = 1, 3000, 1500, 300
        keeps = [(1.0,) * 3, (0.1,) * 3, PAPER_KEEP]
        bit_widths = [3, 6]
    else:
        n_seeds, dense_steps, prune_steps, share_steps = 2, 3000, 1500, 300
        keeps = [(k,) * 3 for k in (1.0, 0.5, 0.2, 0.1, 0.05)] + [PAPER_KEEP]
        bit_widths = [2, 3, 4, 5, 6, 8]

    # DATA AND MODEL
    data = jopt.data.digits()
    model = jopt.models.MLP(hidden=(300, 100), residual=False)
    x_train, y_train = data.x_train, data.y_train  # (1437, 64), (1437,)

    def loss_fn(params, x, y):
        logits = model.apply({"params": params}, x)
        return optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()

    def accuracy(params):
        logits = model.apply({"params": params}, data.x_test)
        return jnp.mean(jnp.argmax(logits, -1) == data.y_test)

    def train(params, tx, key, steps):
        """``steps`` minibatch updates of ``tx`` from ``params`` (one lax.scan)."""

        def step(carry, step_key):
            params, opt_state = carry
            idx = jax.random.randint(step_key, (BATCH_SIZE,), 0, x_train.shape[0])
            grads = jax.grad(loss_fn)(params, x_train[idx], y_train[idx])
            updates, opt_state = tx.update(grads, opt_state, params)
            return (optax.apply_updates(params, updates), opt_state), None

        keys = jax.random.split(key, steps)
        (params, _), _ = jax.lax.scan(step, (params, tx.init(params)), keys)
        return params

    # STAGE 1: dense, vmapped over seeds
    def dense_run(key):
        init_key, train_key = jax.random.split(key)
        params = model.init(init_key, x_train[:1])["params"]
        return train(params, jopt.adam(LEARNING_RATE), train_key, dense_steps)

    # STAGE 2: prune + retrain; keep (3,) is traced, one threshold per layer
    def prune_run(params, keep, key):
        end, every = 2 * prune_steps // 3, max(prune_steps // 15, 1)
        pruners = [
            prune(
                gradual(1.0 - keep[i], 0, end, every),
                scope="layer",
                mask=only(layer),
                regrow=None,  # the default, Han et al.'s: a pruned connection stays pruned
                name=layer,
            )
            for i, layer in enumerate(LAYERS)
        ]
        tx = optax.chain(jopt.adam(LEARNING_RATE), *pruners)
        return train(params, tx, jax.random.fold_in(key, 1), prune_steps)

    # STAGE 3: k-means weight sharing over the nonzeros + centroid fine-tuning (clusters static)
    def make_share_run(bits):
        def share_run(params, key):
            clusters = 2**bits - 1  # code 0 is kept for zero (pruned weights, fillers)
            tx = optax.chain(
                jopt.sgd(SHARE_LEARNING_RATE), share_weights(clusters, exclude_zeros=True)
            )
            # one update of 0: the k-means codebook only
            zero = jax.tree.map(jnp.zeros_like, params)
            updates, _ = tx.update(zero, tx.init(params), params)
            clustered = optax.apply_updates(params, updates)
            tuned = train(params, tx, jax.random.fold_in(key, 2), share_steps)
            return clustered, tuned

        return share_run

    start = time.perf_counter()
    seed_keys = jax.random.split(jax.random.PRNGKey(0), n_seeds)
    dense = jax.jit(jax.vmap(dense_run))(seed_keys)
    over_keeps = jax.vmap(prune_run, in_axes=(None, 0, None))
    pruned = jax.jit(jax.vmap(over_keeps, in_axes=(0, None, 0)))(
        dense, jnp.asarray(keeps), seed_keys
    )  # leaves (n_seeds, keeps, ...)
    shared = {}
    for bits in bit_widths:
        run = jax.vmap(jax.vmap(make_share_run(bits), in_axes=(0, None)), in_axes=(0, 0))
        shared[bits] = jax.jit(run)(pruned, seed_keys)  # (clustered, tuned), leaves (S, K, ...)
        print(f"shared {bits}-bit: {time.perf_counter() - start:6.1f} s", flush=True)
    batched_accuracy = jax.jit(jax.vmap(jax.vmap(accuracy)))
    acc_dense = 100 * np.asarray(jax.jit(jax.vmap(accuracy))(dense))  # (n_seeds,)
    acc_pruned = 100 * np.asarray(batched_accuracy(pruned))  # (n_seeds, keeps)
    acc_clustered = {b: 100 * np.asarray(batched_accuracy(shared[b][0])) for b in bit_widths}
    acc_shared = {b: 100 * np.asarray(batched_accuracy(shared[b][1])) for b in bit_widths}
    train_wall = time.perf_counter() - start
    print(f"trained everything in {train_wall:.1f} s", flush=True)

    # STORAGE: every compressed model encoded and decoded (store_model, above), bytes counted
    dense_bytes = sum(4 * np.asarray(leaf[0]).size for leaf in jax.tree.leaves(dense))
    points = []  # one per (method, keep row, bits): seed means
    for k, keep in enumerate(keeps):
        label = "paper 8/9/26%" if keep == PAPER_KEEP else f"{keep[0]:.0%}"
        if keep[0] < 1.0:
            stored = [store_model(take(pruned, s, k), None, True) for s in range(n_seeds)]
            points.append(
                {
                    "method": "P",
                    "keep": label,
                    "bits": 32,
                    "accuracy": float(acc_pruned[:, k].mean()),
                    "bytes": float(np.mean([r for r, _ in stored])),
                }
            )
        for bits in bit_widths:
            sparse = keep[0] < 1.0
            stored = [
                store_model(take(shared[bits][1], s, k), bits, sparse) for s in range(n_seeds)
            ]
            points.append(
                {
                    "method": "P+Q" if sparse else "Q",
                    "keep": label,
                    "bits": bits,
                    "accuracy": float(acc_shared[bits][:, k].mean()),
                    "accuracy_before_finetune": float(acc_clustered[bits][:, k].mean()),
                    "bytes": float(np.mean([r for r, _ in stored])),
                    "bytes_huffman": float(np.mean([h for _, h in stored])),
                }
            )
    bias_bytes = sum(4 * np.asarray(dense[layer]["bias"][0]).size for layer in LAYERS)
    for p in points:
        p["ratio"] = dense_bytes / p["bytes"]
        p["ratio_kernels_only"] = (dense_bytes - bias_bytes) / (p["bytes"] - bias_bytes)
        if "bytes_huffman" in p:
            p["ratio_huffman"] = dense_bytes / p["bytes_huffman"]
    wall = time.perf_counter() - start

    # REPORT
    dense_mean = float(acc_dense.mean())
    print(
        f"\ndense: {dense_bytes} bytes, test accuracy {dense_mean:.2f}% "
        f"(seeds {acc_dense.round(2)})"
    )
    print(
        f"{'method':6s} {'keep':>14s} {'bits':>4s} {'acc':>6s} {'bytes':>8s} {'ratio':>6s} "
        f"{'huff':>6s}"
    )
    for p in points:
        huff = f"{p['ratio_huffman']:6.1f}" if "ratio_huffman" in p else "     -"
        print(
            f"{p['method']:6s} {p['keep']:>14s} {p['bits']:4d} {p['accuracy']:6.2f} "
            f"{p['bytes']:8.0f} {p['ratio']:6.1f} {huff}"
        )
    headline = next(
        p for p in points if p["keep"] == "paper 8/9/26%" and p["bits"] == HEADLINE_BITS
    )
    k_paper = keeps.index(PAPER_KEEP)
    kept = {
        layer: float(
            np.mean(
                [
                    np.count_nonzero(take(pruned, s, k_paper)[layer]["kernel"])
                    for s in range(n_seeds)
                ]
            )
        )
        / np.asarray(dense[layer]["kernel"][0]).size
        for layer in LAYERS
    }
    pq = [p for p in points if p["method"] == "P+Q"]
    others = [p for p in points if p["method"] in ("P", "Q") and p["ratio"] >= 8]
    dominated = {
        f"{p['method']} keep {p['keep']} bits {p['bits']}": any(
            q["bytes"] <= p["bytes"] and q["accuracy"] >= p["accuracy"] - 0.3 for q in pq
        )
        for p in others
    }
    checks = {
        "accuracy": dense_mean - headline["accuracy"] <= 1.0,
        "ratio_no_huffman": headline["ratio"] >= 30,
        "ratio_huffman": headline["ratio_huffman"] >= 38,
        "dominance": all(dominated.values()),
    }
    if all(checks.values()):
        overall = "reproduced"
    elif checks["accuracy"] and sum(checks.values()) >= 2:
        overall = "partly"
    else:
        overall = "not reproduced"
    for name, ok in checks.items():
        print(f"{name:18s} {'pass' if ok else 'FAIL'}")
    print(
        f"headline P+Q (8/9/26%, {HEADLINE_BITS} bits): {headline['accuracy']:.2f}% "
        f"({headline['accuracy'] - dense_mean:+.2f}), {headline['ratio']:.1f}x, "
        f"{headline['ratio_huffman']:.1f}x with Huffman ({headline['ratio_kernels_only']:.1f}x for "
        f"the kernels alone, no Huffman); overall: {overall}"
    )

    record = {
        "paper": "Han, Mao & Dally, Deep Compression: Compressing Deep Neural Networks with "
        "Pruning, Trained Quantization and Huffman Coding, ICLR 2016 (arXiv 1510.00149)",
        "claim": {
            "text": "LeNet-300-100 on MNIST: 1070 KB -> 27 KB (40x) with top-1 error 1.64% -> "
            "1.58% (Table 1); keeps 8% / 9% / 26% of ip1 / ip2 / ip3 weights (8% overall) with "
            "6-bit weights (Table 2); pruning and quantization together keep accuracy at sizes "
            "where either alone fails (Fig. 6)",
            "numbers": {"ratio": 40, "error_before": 1.64, "error_after": 1.58},
            "verified": "(from memory of the paper, not verified): the search tool found the "
            "paper's title pages but not its tables",
        },
        "pass_criterion": PASS_CRITERION,
        # the --pilot run: full steps, 1 seed, keep rows {100%, 10%, paper}, bits {3, 6}
        "pilot": common.read_pilot("deep_compression"),
        "measured": {
            "dense_accuracy": dense_mean,
            "dense_accuracy_per_seed": acc_dense.round(2).tolist(),
            "dense_bytes": dense_bytes,
            "headline": headline,
            "headline_kept_fraction_per_layer": kept,
            "points": points,
            "dominance_parts": dominated,
            "accounting": "bytes of packed uint8 buffers actually written (5-bit relative gaps, "
            "b-bit codes or float32 values, float32 codebooks), decoded back and checked; biases "
            "float32; size_report / share_nbytes agree within rounding; Huffman: code lengths "
            "from heapq, + 1 byte per table entry",
        },
        "verdict": {"checks": checks, "overall": overall},
        "compute_wall_time_s": wall,
        "recipe": {
            "model": "MLP 64-300-100-10 (ReLU, PyTorch init)",
            "data": "sklearn digits, 1437 train / 360 test (jopt.data.digits)",
            "dense": f"adam({LEARNING_RATE}), batch {BATCH_SIZE}, {dense_steps} steps",
            "prune": f"adam({LEARNING_RATE}), {prune_steps} steps, per-layer gradual (cubic) to "
            "the keep fraction over the first 2/3",
            "share": f"sgd({SHARE_LEARNING_RATE}) + share_weights(2**bits - 1, "
            f"exclude_zeros=True), {share_steps} steps",
            "keeps": [list(k) for k in keeps],
            "bits": bit_widths,
            "seeds": n_seeds,
            "index_bits": INDEX_BITS,
        },
    }
    common.write_record(args, record)

    plt = common.pyplot()
    if plt is not None:
        from matplotlib import ticker

        fig, (left, right) = plt.subplots(1, 2, figsize=(13, 4.8))
        # FIG. 6: accuracy loss vs fraction of the dense size, per method
        styles = {"P": ("C0", "o", "pruning only"), "Q": ("C1", "s", "quantization only")}
        for method, (color, marker, label) in styles.items():
            ps = sorted((p for p in points if p["method"] == method), key=lambda p: p["bytes"])
            size = [100 * p["bytes"] / dense_bytes for p in ps]
            left.plot(
                size,
                [p["accuracy"] - dense_mean for p in ps],
                marker=marker,
                color=color,
                label=label,
            )
        for b, bits in enumerate(bit_widths):
            ps = sorted((p for p in pq if p["bits"] == bits), key=lambda p: p["bytes"])
            size = [100 * p["bytes"] / dense_bytes for p in ps]
            left.plot(
                size,
                [p["accuracy"] - dense_mean for p in ps],
                marker="^",
                ls=":",
                color=plt.cm.viridis(b / max(len(bit_widths) - 1, 1)),
                label=f"P+Q, {bits} bits",
            )
        left.scatter(
            [100 / 40],
            [1.64 - 1.58],
            marker="*",
            s=200,
            color="red",
            zorder=5,
            label="paper: 40x, +0.06 points",
        )
        left.axhline(0, color="gray", lw=0.8)
        left.axhline(-1, color="gray", lw=0.8, ls="--")
        left.set_xscale("log")
        left.xaxis.set_major_formatter(ticker.ScalarFormatter())
        left.xaxis.set_minor_formatter(ticker.NullFormatter())
        left.set_xlabel("stored size (% of dense float32)")
        left.set_ylabel("test accuracy - dense (points)")
        floor = -6.0  # zoom on the 1-point band; points below are drawn at the floor, labelled
        for p in points:
            if p["accuracy"] - dense_mean < floor:
                size = 100 * p["bytes"] / dense_bytes
                left.annotate(
                    f"{p['method']} {p['keep']} {p['bits']}-bit: {p['accuracy'] - dense_mean:+.1f}",
                    (size, floor),
                    xytext=(size, floor + 1.5),
                    fontsize=7,
                    ha="center",
                    arrowprops={"arrowstyle": "->"},
                )
        left.set_ylim(floor, 2.5)
        left.set_title("accuracy vs size (the paper's Fig. 6)")
        left.legend(fontsize=7, ncol=2)
        # HEADLINE: bytes per stage of the pipeline
        stages = {
            "dense": dense_bytes,
            "pruned\n(8/9/26%)": next(
                p for p in points if p["method"] == "P" and p["keep"] == "paper 8/9/26%"
            )["bytes"],
            f"+ {HEADLINE_BITS}-bit\nsharing": headline["bytes"],
            "+ Huffman": headline["bytes_huffman"],
        }
        bars = right.bar(list(stages), list(stages.values()), color=["C7", "C0", "C2", "C3"])
        for bar, value in zip(bars, stages.values()):
            right.text(
                bar.get_x() + bar.get_width() / 2,
                value,
                f"{value / 1024:.1f} KB\n{dense_bytes / value:.1f}x",
                ha="center",
                va="bottom",
                fontsize=8,
            )
        right.set_yscale("log")
        right.set_ylim(top=4 * dense_bytes)  # room for the labels above the bars
        right.set_ylabel("bytes stored (biases included)")
        right.set_title(
            f"pipeline: {dense_mean:.1f}% -> {headline['accuracy']:.1f}% test accuracy; {overall}"
        )
        fig.tight_layout()
        common.save_figure(args, fig, dpi=120)


if __name__ == "__main__":
    main()
