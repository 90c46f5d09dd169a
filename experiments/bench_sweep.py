"""How fast is jopt.sweep.run? A 64-configuration sweep against the hand-written baselines.

Run: python -m experiments.bench_sweep [--quick]

Workload: the MNIST-1D MLP of the paper (40-100-100-10, residual on layer 2,
``jopt.models.MLP()``), SGD with heavy-ball momentum (``jopt.momentum``), batch 100, 2000
steps, 8 learning rates x 8 momenta = 64 configurations, one seed. Batches are sequential
slices ``(i * 100) % 4000`` of the 4000 training examples, drawn inside the compiled loop,
the same for every method; every method starts from the same initial parameters, so the
final train loss (mean minibatch loss over the last epoch, 40 steps) must agree.

  (a)  jopt.sweep.run(trial, space, seeds=1): trial written for one configuration
  (b)  jax.jit(jax.vmap(trial)) on one device
  (b2) the same, the configuration axis sharded over every device by hand (Mesh, NamedSharding)
  (c)  jax.jit(trial), compiled once, called once per configuration: the honest baseline
  (c2) (c) on every device at once, one configuration per device per call (what the devices
       give without batching: (a) / (c) = (c2) / (c) x (a) / (c2))
  (d)  a Python loop over a jitted step, one configuration after another
  (e)  PyTorch: nn.Module + torch.optim.SGD(momentum=beta), one configuration after another
  (f)  PyTorch: torch.func ensemble of the 64 models (functional_call + vmap + grad)

Run time excludes compilation, which is reported apart: for (b), (b2), (c) it is the time of
``jax.jit(f).lower(...).compile()``; jopt.sweep.run caches its compiled programs by what the
trial computes and its shapes, so only its first call compiles: that call's own timing of
lower + compile (``result.info["groups"][0]["compile_s"]``) is (a)'s compile time, and the
(near zero) compile time a later call reports is subtracted from that call's wall time.
Methods alternate within each repeat (so that load on the machine hits them alike) and the
best repeat counts. FLOPs are counted analytically (forward + backward = 3 x the forward's
matmul FLOPs) and cross-checked against XLA's cost analysis of one training step.

Also measured in the same run: the float32 matmul peak of this machine (a jitted ``a @ b`` on
one device, and two concurrent ones sharded over two devices), throughput, compile time and
compiled memory against vmap width (1..256, 200 steps), and where the time of one vmapped
training step goes (matmuls, optimizer, batch slicing, layer 1 as one shared matmul).

Goals: (a) >= 2x faster than (c); (a) at least as fast as (b2); (a) >= 8x
faster than (e); (a) reaches >= 60% of the measured matmul peak. ``--quick``: 4 configs, 20
steps, widths 1..4, no torch, written to runs/bench_sweep (for the tests).

Other sizes: ``--configs 1024`` (a multiple of 8: 8 momenta x configs/8 learning rates),
``--baseline-configs 64`` (time (c), (c2) on 64 configs spread over the grid and extrapolate),
``--no-torch``, ``--name`` (the output files' name). ``experiments/bench_sweep_gpu.py`` runs
it on a GPU with 64 and 1024 configurations.
"""

import os
import platform
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

import jopt
from experiments import common


# TIMING HELPERS
def compile_timed(fn, *example):
    """jax.jit(fn) compiled for these arguments: (compiled, seconds to trace + compile)."""
    start = time.perf_counter()
    compiled = jax.jit(fn).lower(*example).compile()
    return compiled, time.perf_counter() - start


def timed(fn, *fn_args):
    start = time.perf_counter()
    out = jax.block_until_ready(fn(*fn_args))
    return out, time.perf_counter() - start


class Clock:
    """Wall time and CPU time (all threads of this process) of a block: cpu / wall is how many
    cores the block kept busy (a check on the machine's load as well)."""

    def __enter__(self):
        self.start = (time.perf_counter(), time.process_time())
        return self

    def __exit__(self, *exc):
        self.wall = time.perf_counter() - self.start[0]
        self.cpu = time.process_time() - self.start[1]


def memory_bytes(compiled):
    m = compiled.memory_analysis()
    return int(m.argument_size_in_bytes + m.output_size_in_bytes + m.temp_size_in_bytes)


def add_arguments(parser):
    parser.add_argument("--repeats", type=int, default=None, help="timed repeats per method")
    parser.add_argument(
        "--configs",
        type=int,
        default=None,
        help="grid size: a multiple of 8 (default 64; 4 if --quick)",
    )
    parser.add_argument(
        "--baseline-configs",
        type=int,
        default=None,
        help="time (c) and (c2) on this many configs spread over the grid and extrapolate "
        "(default: all; for large grids on a GPU, where one config after another is slow)",
    )
    parser.add_argument("--no-torch", action="store_true", help="skip (e) and (f)")
    parser.add_argument(
        "--name",
        dest="record_name",
        metavar="NAME",
        default="bench_sweep",
        help="file name of the JSON and PNG",
    )


def main(argv=None):
    jopt.devices.use_all_cores()  # before any JAX operation: one JAX device per CPU core
    args = common.parse_args(__doc__, "bench_sweep", argv, add_arguments=add_arguments)
    args.name = args.record_name  # the stem of the JSON and PNG
    # every option, so that the record names the run it comes from
    args.command = " ".join(
        ["python -m experiments.bench_sweep", *(sys.argv[1:] if argv is None else argv)]
    )

    # CONFIG
    MOMENTA = [0.0, 0.9] if args.quick else [0.0, 0.5, 0.75, 0.875, 0.9, 0.95, 0.97, 0.98]
    N_CONFIGS = args.configs or (4 if args.quick else 64)
    if N_CONFIGS < len(MOMENTA) or N_CONFIGS % len(MOMENTA):
        sys.exit(
            f"bench_sweep: --configs must be a positive multiple of {len(MOMENTA)}, got {N_CONFIGS}"
        )
    if args.baseline_configs is not None and not 1 <= args.baseline_configs <= N_CONFIGS:
        sys.exit(
            f"bench_sweep: --baseline-configs must be in [1, {N_CONFIGS}], "
            f"got {args.baseline_configs}"
        )
    LEARNING_RATES = jopt.sweep.log_range(1e-3, 0.05, N_CONFIGS // len(MOMENTA))
    if args.quick:
        STEPS, WIDTHS, WIDTH_STEPS, REPEATS = 20, [1, 2, 4], 10, 1
        N_PYLOOP, N_TORCH, USE_TORCH = 1, 0, False
    else:
        STEPS, WIDTHS, WIDTH_STEPS, REPEATS = 2000, [2**k for k in range(9)], 200, 2
        N_PYLOOP, N_TORCH, USE_TORCH = 4, 8, not args.no_torch  # (d), (e): timed, extrapolated
    N_BASELINE = args.baseline_configs or N_CONFIGS
    REPEATS = args.repeats or REPEATS
    BATCH = 100
    CORES = jopt.devices.cpu_cores()
    DEVICES = jax.devices()
    load_before = os.getloadavg()

    # DATA: the 4000 x 40 MNIST-1D training set, on the device as constants of every program
    data = jopt.data.mnist1d()
    x, y = jnp.asarray(data.x_train), jnp.asarray(data.y_train)
    N_TRAIN = x.shape[0]
    LAST_EPOCH = min(N_TRAIN // BATCH, STEPS)  # the reported loss: mean over these last steps

    space = jopt.sweep.grid(learning_rate=LEARNING_RATES, momentum=MOMENTA)
    assert len(space) == N_CONFIGS
    HP = {k: np.asarray([c[k] for c in space.configs], np.float32) for k in space.dynamic_names}
    KEY = jax.random.PRNGKey(0)  # seed 0: the key jopt.sweep.run gives seed 0

    # FLOPs, counted: forward = 2 * B * (40*100 + 100*100 + 100*10); forward + backward = 3x that
    FLOPS_PER_STEP = 3 * 2 * BATCH * (40 * 100 + 100 * 100 + 100 * 10)  # 9.0 MFLOP
    FLOPS_PER_CONFIG = STEPS * FLOPS_PER_STEP

    # THE TRAINING RUN: one configuration (what every JAX method runs). With one seed, every
    # configuration and every method (torch too) starts from the same parameters, made once here:
    # initializing inside the trial (model.init(key, ...)) costs nothing at run time but adds the
    # compile time of the init (XLA CPU compiles the threefry PRNG slowly; measured here) to
    # every program.
    model = jopt.models.MLP()
    start = time.perf_counter()
    init_compiled = jax.jit(model.init).lower(KEY, x[:1]).compile()
    INIT_COMPILE_S = time.perf_counter() - start
    params0 = init_compiled(KEY, x[:1])

    def loss_fn(params, xb, yb):
        return optax.softmax_cross_entropy_with_integer_labels(model.apply(params, xb), yb).mean()

    def batch(i):
        start = (i * BATCH) % N_TRAIN
        xb = jax.lax.dynamic_slice_in_dim(x, start, BATCH)
        return xb, jax.lax.dynamic_slice_in_dim(y, start, BATCH)

    def train_step(tx, params, opt_state, i):
        xb, yb = batch(i)
        loss, grads = jax.value_and_grad(loss_fn)(params, xb, yb)
        updates, opt_state = tx.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state, loss

    def make_trial(steps):
        def trial(hp, key):
            del key  # one seed (PRNGKey(0)): params0 = model.init(PRNGKey(0), ...)
            tx = jopt.momentum(hp["learning_rate"], beta=hp["momentum"])
            params = params0

            def step(carry, i):
                params, opt_state, loss = train_step(tx, *carry, i)
                return (params, opt_state), loss

            _, losses = jax.lax.scan(step, (params, tx.init(params)), jnp.arange(steps))
            return {"train_loss": losses[-min(LAST_EPOCH, steps) :].mean()}

        return trial

    trial = make_trial(STEPS)

    def record(name, clock, loss, scale=1.0, **extra):
        """Adds one timed repeat of a method (scale: extrapolation factor) to results[name]."""
        r = results.setdefault(name, {"run_s": [], "cpu_s": [], **extra})
        r["run_s"].append(clock.wall * scale)
        r["cpu_s"].append(clock.cpu * scale)
        r["loss"] = np.asarray(loss, np.float64).reshape(-1)

    def extrapolated(timed_configs):
        """The note of a method timed on some of the configs, or None when it ran them all."""
        if timed_configs == N_CONFIGS:
            return None
        return (
            f"{timed_configs} of {N_CONFIGS} configs timed (all {STEPS} steps), "
            f"x {N_CONFIGS / timed_configs:g}"
        )

    print(
        f"{platform.processor() or platform.machine()}, {CORES} cores, jax {jax.__version__}, "
        f"{len(DEVICES)} devices {[str(d) for d in DEVICES]}, load average {load_before}"
    )

    # MATMUL PEAK: float32 a @ b, best of a few sizes; on one device, and two at once sharded
    # over two devices (one each)
    mesh = Mesh(np.asarray(DEVICES), ("config",))
    config_sharding, replicated = NamedSharding(mesh, P("config")), NamedSharding(mesh, P())
    peak = {"one_device": {}, "all_devices": {}}
    for n in [512] if args.quick else [512, 1024, 2048]:
        a = jax.random.normal(KEY, (n, n), jnp.float32)
        matmul, _ = compile_timed(jnp.matmul, a, a)
        timed(matmul, a, a)
        seconds = min(timed(matmul, a, a)[1] for _ in range(5))
        peak["one_device"][n] = 2 * n**3 / seconds / 1e9
        stacked = jax.device_put(jnp.stack([a] * len(DEVICES)), config_sharding)
        matmuls, _ = compile_timed(jnp.matmul, stacked, stacked)
        timed(matmuls, stacked, stacked)
        seconds = min(timed(matmuls, stacked, stacked)[1] for _ in range(5))
        peak["all_devices"][n] = len(DEVICES) * 2 * n**3 / seconds / 1e9
    PEAK_1 = max(peak["one_device"].values())
    PEAK_ALL = max(peak["all_devices"].values())
    print(
        f"float32 matmul peak: {PEAK_1:.1f} GFLOP/s on one device, {PEAK_ALL:.1f} GFLOP/s with "
        f"{len(DEVICES)} concurrent matmuls on {len(DEVICES)} devices "
        f"(sizes {list(peak['one_device'])}: {[round(v, 1) for v in peak['one_device'].values()]} "
        f"and {[round(v, 1) for v in peak['all_devices'].values()]})"
    )

    # FLOP CROSS-CHECK: XLA's count for one training step of one configuration ((c)'s loop body;
    # XLA counts a while loop's body once, so the whole program's count is not steps x that)
    tx0 = jopt.momentum(0.0, beta=0.0)  # hyperparameters live in the state: set per config below
    step_compiled, step_compile_s = compile_timed(
        lambda p, s, i: train_step(tx0, p, s, i), params0, tx0.init(params0), 0
    )
    XLA_FLOPS_PER_STEP = float(step_compiled.cost_analysis()["flops"])
    print(f"compile time of model.init (threefry), kept out of the trials: {INIT_COMPILE_S:.2f} s")
    print(
        f"FLOPs per step per config: {FLOPS_PER_STEP / 1e6:.2f} M counted, "
        f"{XLA_FLOPS_PER_STEP / 1e6:.2f} M by XLA's cost analysis (matmuls + elementwise)"
    )

    # THE METHODS. results[name]: run and CPU seconds per repeat, compile seconds, final losses
    results = {}
    hp_one = {k: jnp.asarray(v) for k, v in HP.items()}  # (b): on the default device
    hp_sharded = jax.device_put(HP, config_sharding)  # (b2): split over the devices
    key_replicated = jax.device_put(KEY, replicated)
    vmapped = jax.vmap(trial, in_axes=(0, None))
    b_compiled, b_compile = compile_timed(vmapped, hp_one, KEY)
    b2_compiled, b2_compile = compile_timed(vmapped, hp_sharded, key_replicated)
    c_compiled, c_compile = compile_timed(trial, {k: v[0] for k, v in hp_one.items()}, KEY)
    # (c) and (c2) run N_BASELINE configs spread over the grid (all by default), extrapolated
    BASELINE = np.linspace(0, N_CONFIGS - 1, N_BASELINE).round().astype(int)
    hp_rows = [{k: v[i] for k, v in hp_one.items()} for i in BASELINE]
    A, B, B2, C = (
        "(a) jopt.sweep.run",
        "(b) jit(vmap), 1 device",
        "(b2) jit(vmap), sharded",
        "(c) jit",
    )
    # (c2): (c) on every device at once, one configuration per device per call: what using the
    # whole machine gives without batching, the reference for how far beyond it (a) gets
    C2 = "(c2) jit, 1 config per device"
    n_dev = len(DEVICES)
    # whole groups of one config per device, spread over the grid like (c)'s
    n_c2 = max(n_dev, N_BASELINE - N_BASELINE % n_dev)
    C2_CONFIGS = np.linspace(0, N_CONFIGS - 1, n_c2).round().astype(int)
    hp_groups = [
        jax.device_put({k: v[C2_CONFIGS[i : i + n_dev]] for k, v in HP.items()}, config_sharding)
        for i in range(0, len(C2_CONFIGS), n_dev)
    ]
    c2_compiled, c2_compile = compile_timed(vmapped, hp_groups[0], key_replicated)

    # (a)'s first call traces and compiles; JAX keeps the program, so a second call of
    # jopt.sweep.run with the same trial and shapes does not compile again (its compile_s ~ 0).
    # (a)'s compile time is the runner's own timing of lower + compile in that first call;
    # first-minus-best-later wall time is recorded as a cross-check.
    with Clock() as first:
        a_info = jopt.sweep.run(trial, space, seeds=1, progress=False).info["groups"][0]
    a_compiles = []
    for repeat in range(REPEATS):  # the methods alternate, so load on the machine hits them alike
        with Clock() as clock:
            result = jopt.sweep.run(trial, space, seeds=1, progress=False)
        a_compiles.append(result.info["groups"][0]["compile_s"])  # ~0: subtracted all the same
        clock.wall -= a_compiles[-1]
        record(A, clock, result.metrics["train_loss"], compile_s=a_info["compile_s"])
        with Clock() as clock:
            out = jax.block_until_ready(b_compiled(hp_one, KEY))
        record(B, clock, out["train_loss"], compile_s=b_compile)
        with Clock() as clock:
            out = jax.block_until_ready(b2_compiled(hp_sharded, key_replicated))
        record(B2, clock, out["train_loss"], compile_s=b2_compile)
        with Clock() as clock:  # dispatch is asynchronous: one wait at the end
            outs = jax.block_until_ready([c_compiled(hp, KEY) for hp in hp_rows])
        record(
            C,
            clock,
            [o["train_loss"] for o in outs],
            scale=N_CONFIGS / N_BASELINE,
            compile_s=c_compile,
            loss_configs=BASELINE.tolist(),
            extrapolated=extrapolated(N_BASELINE),
        )
        with Clock() as clock:
            outs = jax.block_until_ready([c2_compiled(hp, key_replicated) for hp in hp_groups])
        c2_loss = np.concatenate([np.asarray(o["train_loss"]) for o in outs])
        record(
            C2,
            clock,
            c2_loss,
            scale=N_CONFIGS / len(C2_CONFIGS),
            compile_s=c2_compile,
            loss_configs=C2_CONFIGS.tolist(),
            extrapolated=extrapolated(len(C2_CONFIGS)),
        )
        print(
            f"repeat {repeat + 1}/{REPEATS}: "
            + ", ".join(
                f"{n.split()[0]} {results[n]['run_s'][-1]:.2f} s" for n in [A, B, B2, C, C2]
            )
        )
    a_walls = [w + c for w, c in zip(results[A]["run_s"], a_compiles)]
    print(
        f"jopt.sweep.run: first call {first.wall:.2f} s (compile {a_info['compile_s']:.2f} s), "
        f"later calls {np.round(a_walls, 2)} s (compile {np.round(a_compiles, 3)} s)"
    )

    # (d) A PYTHON LOOP OVER A JITTED STEP: the first N_PYLOOP configs, all steps, extrapolated
    # (the step compiled above for the FLOP count; hyperparameters are in its state, so every
    # configuration runs the same compiled step: jopt.set_hparams keeps shapes and dtypes)
    D = "(d) python loop over jitted step"
    d_loss = []
    with Clock() as clock:
        for c in range(N_PYLOOP):
            params = params0
            state = jopt.set_hparams(
                tx0.init(params0), learning_rate=HP["learning_rate"][c], beta=HP["momentum"][c]
            )
            losses = []
            for i in range(STEPS):
                params, state, loss = step_compiled(params, state, i)
                losses.append(loss)
            d_loss.append(float(jnp.mean(jnp.stack(losses[-LAST_EPOCH:]))))
    record(
        D,
        clock,
        d_loss,
        scale=N_CONFIGS / N_PYLOOP,
        compile_s=step_compile_s,
        extrapolated=f"{N_PYLOOP} of {N_CONFIGS} configs timed (all {STEPS} steps), "
        f"x {N_CONFIGS / N_PYLOOP:g}",
    )

    # (e), (f) PYTORCH (optional: pip install 'jopt[bench]')
    try:
        if not USE_TORCH:
            raise ImportError("--quick")
        import torch
        import torch.nn.functional as F
        from torch.func import functional_call, grad_and_value, vmap
    except ImportError as error:
        torch = None
        print(f"skipping (e), (f): torch not used ({error}); pip install 'jopt[bench]' for them")
    if torch is not None:
        torch.set_num_threads(CORES)
        X_t, Y_t = torch.from_numpy(np.asarray(x)), torch.from_numpy(np.asarray(y)).long()

        class TorchMLP(torch.nn.Module):  # jopt.models.MLP(): h = relu(W1 x); h += relu(W2 h)
            def __init__(self):
                super().__init__()
                self.l1 = torch.nn.Linear(40, 100)
                self.l2 = torch.nn.Linear(100, 100)
                self.l3 = torch.nn.Linear(100, 10)

            def forward(self, xb):
                h = torch.relu(self.l1(xb))
                h = h + torch.relu(self.l2(h))
                return self.l3(h)

        def torch_init():  # the same initial parameters as the JAX runs (flax kernels transposed)
            net, dense = TorchMLP(), params0["params"]
            with torch.no_grad():
                for layer, name in zip([net.l1, net.l2, net.l3], ["Dense_0", "Dense_1", "Dense_2"]):
                    layer.weight.copy_(torch.from_numpy(np.asarray(dense[name]["kernel"]).T.copy()))
                    layer.bias.copy_(torch.from_numpy(np.asarray(dense[name]["bias"])))
            return net

        # (e) idiomatic loop, N_TORCH configs spread over the grid, all steps, extrapolated
        chosen = np.linspace(0, N_CONFIGS - 1, N_TORCH).round().astype(int)
        e_loss = []
        with Clock() as clock:
            for c in chosen:
                net = torch_init()
                opt = torch.optim.SGD(
                    net.parameters(),
                    lr=float(HP["learning_rate"][c]),
                    momentum=float(HP["momentum"][c]),
                )
                losses = []
                for i in range(STEPS):
                    s = (i * BATCH) % N_TRAIN
                    opt.zero_grad()
                    loss = F.cross_entropy(net(X_t[s : s + BATCH]), Y_t[s : s + BATCH])
                    loss.backward()
                    opt.step()
                    losses.append(loss.detach())
                e_loss.append(float(torch.stack(losses[-LAST_EPOCH:]).mean()))
        record(
            "(e) pytorch loop",
            clock,
            e_loss,
            scale=N_CONFIGS / N_TORCH,
            compile_s=0.0,
            loss_configs=chosen.tolist(),
            extrapolated=f"{N_TORCH} of {N_CONFIGS} configs timed (all {STEPS} steps), "
            f"x {N_CONFIGS / N_TORCH:g}",
        )

        # (f) torch.func ensemble: vmap(grad(functional_call)) over stacked parameters, and
        # heavy-ball momentum by hand (v = beta v + g; p -= lr v), as torch.optim cannot be vmapped
        base = torch_init()
        stacked = {
            k: v.detach().expand(N_CONFIGS, *v.shape).clone() for k, v in base.named_parameters()
        }
        velocity = {k: torch.zeros_like(v) for k, v in stacked.items()}
        lr_t, beta_t = torch.from_numpy(HP["learning_rate"]), torch.from_numpy(HP["momentum"])

        def torch_loss(p, xb, yb):
            return F.cross_entropy(functional_call(base, p, (xb,)), yb)

        ensemble_step = vmap(grad_and_value(torch_loss), in_dims=(0, None, None))
        losses = []
        with Clock() as clock, torch.no_grad():
            for i in range(STEPS):
                s = (i * BATCH) % N_TRAIN
                grads, loss = ensemble_step(stacked, X_t[s : s + BATCH], Y_t[s : s + BATCH])
                for k, g in grads.items():
                    shape = (N_CONFIGS,) + (1,) * (g.dim() - 1)
                    velocity[k].mul_(beta_t.view(shape)).add_(g)
                    stacked[k].sub_(lr_t.view(shape) * velocity[k])
                losses.append(loss)
        f_loss = torch.stack(losses[-LAST_EPOCH:]).mean(0)
        record("(f) torch.func vmap ensemble", clock, f_loss.double().numpy(), compile_s=0.0)

    # TABLE
    c_best = min(results[C]["run_s"])
    ref_loss = results[B]["loss"]
    table = {}
    print(
        f"\nMNIST-1D MLP, momentum SGD, batch {BATCH}, {STEPS} steps, {N_CONFIGS} configs, "
        f"{FLOPS_PER_CONFIG * N_CONFIGS / 1e12:.3f} TFLOP counted; best of {REPEATS} repeat(s)"
    )
    print(
        f"{'method':34s} {'run s':>7s} {'compile s':>9s} {'configs/s':>9s} {'GFLOP/s':>7s} "
        f"{'% peak':>6s} {'vs (c)':>6s} {'cores':>5s} {'loss mean':>9s} {'max |dloss|':>11s}"
    )
    for name, r in results.items():
        best = int(np.argmin(r["run_s"]))
        run_s = r["run_s"][best]
        idx = r.get("loss_configs", list(range(len(r["loss"]))))
        row = {
            "run_s": run_s,
            "run_s_all": r["run_s"],
            "cpu_s": r["cpu_s"][best],
            "cores_busy": r["cpu_s"][best] / run_s,
            "compile_s": r["compile_s"],
            "configs_per_s": N_CONFIGS / run_s,
            "gflops": N_CONFIGS * FLOPS_PER_CONFIG / run_s / 1e9,
            "speedup_vs_c": c_best / run_s,
            "final_train_loss": r["loss"].tolist(),
            "loss_configs": idx,
            "max_abs_loss_diff_vs_b": float(np.max(np.abs(r["loss"] - ref_loss[idx]))),
            "extrapolated": r.get("extrapolated"),
        }
        row["percent_of_peak"] = 100 * row["gflops"] / PEAK_ALL
        table[name] = row
        print(
            f"{name:34s} {run_s:7.2f} {r['compile_s']:9.2f} {row['configs_per_s']:9.2f} "
            f"{row['gflops']:7.1f} {row['percent_of_peak']:6.1f} {row['speedup_vs_c']:6.2f} "
            f"{row['cores_busy']:5.2f} {np.mean(r['loss']):9.4f} "
            f"{row['max_abs_loss_diff_vs_b']:11.2e}" + (" *" if r.get("extrapolated") else "")
        )
    print(
        f"% peak: of {PEAK_ALL:.1f} GFLOP/s (matmul, all devices); cores: CPU time / run time; "
        f"max |dloss|: against (b), same configs; * extrapolated:"
    )
    for name, r in results.items():
        if r.get("extrapolated"):
            print(f"  {name}: {r['extrapolated']}")

    a = table[A]
    goals = {
        "(a) >= 2x faster than (c)": (a["speedup_vs_c"], a["speedup_vs_c"] >= 2),
        "(a) at least as fast as (b2)": (
            table[B2]["run_s"] / a["run_s"],
            a["run_s"] <= table[B2]["run_s"],
        ),
        "(a) >= 60% of the matmul peak": (a["percent_of_peak"] / 100, a["percent_of_peak"] >= 60),
    }
    if "(e) pytorch loop" in table:
        e_ratio = table["(e) pytorch loop"]["run_s"] / a["run_s"]
        goals["(a) >= 8x faster than (e)"] = (e_ratio, e_ratio >= 8)
    for goal, (value, met) in goals.items():
        print(f"goal {goal}: {value:.2f} -> {'met' if met else 'NOT met'}")
    # How much of (a)'s speedup is the machine's parallelism and how much batching: (c2) runs
    # (c)'s program on every device at once, so (c2)/(c) is what the devices give by themselves
    # (below their count when concurrent programs slow each other, e.g. through shared caches).
    parallel_only = table[C2]["speedup_vs_c"]
    batching = table[C2]["run_s"] / a["run_s"]
    print(
        f"(c2) vs (c) = {parallel_only:.2f}x from {len(DEVICES)} devices alone; "
        f"(a) vs (c2) = {batching:.2f}x from batching"
    )

    # VMAP WIDTH: hand-written jit(vmap) on one device, and jopt.sweep.run, WIDTH_STEPS steps
    short_trial = make_trial(WIDTH_STEPS)
    short_vmapped = jax.vmap(short_trial, in_axes=(0, None))
    widths = []
    for width in WIDTHS:
        configs = [space.configs[i % N_CONFIGS] for i in range(width)]
        hp_w = {k: jnp.asarray([c[k] for c in configs], jnp.float32) for k in space.dynamic_names}
        compiled, compile_s = compile_timed(short_vmapped, hp_w, KEY)
        timed(compiled, hp_w, KEY)
        run_s = min(timed(compiled, hp_w, KEY)[1] for _ in range(REPEATS))
        group = jopt.sweep.run(short_trial, configs, progress=False).info["groups"][0]  # compiles
        start = time.perf_counter()
        result = jopt.sweep.run(short_trial, configs, seeds=1, progress=False)
        sweep_run_s = time.perf_counter() - start - result.info["groups"][0]["compile_s"]
        flops = width * WIDTH_STEPS * FLOPS_PER_STEP
        widths.append(
            {
                "width": width,
                "jit_vmap": {
                    "configs_per_s": width / run_s,
                    "gflops": flops / run_s / 1e9,
                    "compile_s": compile_s,
                    "memory_bytes": memory_bytes(compiled),
                },
                "sweep_run": {
                    "configs_per_s": width / sweep_run_s,
                    "gflops": flops / sweep_run_s / 1e9,
                    "compile_s": group["compile_s"],
                    "memory_bytes_per_device": group["memory"]["total_bytes"],
                    "chunk_size": group["chunk_size"],
                },
            }
        )
        print(
            f"width {width:4d}: jit(vmap) {width / run_s:8.1f} configs/s "
            f"{flops / run_s / 1e9:6.1f} GFLOP/s, compile {compile_s:5.2f} s, "
            f"{memory_bytes(compiled) / 2**20:7.2f} MiB | "
            f"sweep.run {width / sweep_run_s:8.1f} configs/s {flops / sweep_run_s / 1e9:6.1f} "
            f"GFLOP/s, compile {group['compile_s']:5.2f} s, "
            f"{group['memory']['total_bytes'] / 2**20:7.2f} MiB/device"
        )

    # WHERE THE TIME GOES: one training step of all configs (vmapped, one device), timed inside
    # a lax.scan of WIDTH_STEPS steps, with one ingredient changed at a time
    hp_all = {k: jnp.asarray(v) for k, v in HP.items()}

    def per_step_seconds(step, carry):
        run = jax.jit(
            lambda c: jax.lax.scan(lambda c, i: (step(c, i), None), c, jnp.arange(100))[0]
        )
        timed(run, carry)
        return min(timed(run, carry)[1] for _ in range(max(REPEATS, 2))) / 100

    def vmapped_step(tx_of, slicing=True, shared_input=True):
        def one(hp, params, opt_state, i):
            tx = tx_of(hp)
            xb, yb = batch(i) if slicing else (x[:BATCH], y[:BATCH])
            if not shared_input:  # make the batch depend on the config: layer 1 is then batched
                xb = xb + 0.0 * hp["learning_rate"]
            grads = jax.grad(loss_fn)(params, xb, yb)
            updates, opt_state = tx.update(grads, opt_state, params)
            return optax.apply_updates(params, updates), opt_state

        step = jax.vmap(one, in_axes=(0, 0, 0, None))
        return lambda c, i: (c[0], *step(c[0], c[1], c[2], i))

    def carry_for(tx_of):
        params = jax.tree.map(lambda p: jnp.broadcast_to(p, (N_CONFIGS, *p.shape)), params0)
        states = jax.vmap(lambda hp, p: tx_of(hp).init(p))(hp_all, params)
        return (hp_all, params, states)

    # the step's matmuls alone, same shapes: forward x@W1 (shared x: one (B,40)x(40,C*100) matmul),
    # h1@W2, h2@W3; backward dW3 = h2^T dz3, dh2 = dz3 W3^T, dW2 = h1^T dz2, dh1 = dz2 W2^T,
    # dW1 = x^T dz1 (shared x: one matmul again)
    def matmuls_only(c, i):
        xb, w1, w2, w3 = c
        h1 = jnp.einsum("bi,cij->cbj", xb, w1)
        h2 = jnp.einsum("cbi,cij->cbj", h1, w2)
        z3 = jnp.einsum("cbi,cij->cbj", h2, w3)
        dw3 = jnp.einsum("cbi,cbj->cij", h2, z3)
        dh2 = jnp.einsum("cbj,cij->cbi", z3, w3)
        dw2 = jnp.einsum("cbi,cbj->cij", h1, dh2)
        dh1 = jnp.einsum("cbj,cij->cbi", dh2, w2)
        dw1 = jnp.einsum("bi,cbj->cij", xb, dh1)
        eps = 1e-30  # keep the results live without changing the numbers
        return xb, w1 + eps * dw1, w2 + eps * dw2, w3 + eps * dw3

    momentum_tx = lambda hp: jopt.momentum(hp["learning_rate"], beta=hp["momentum"])
    sgd_tx = lambda hp: optax.sgd(hp["learning_rate"])  # plain SGD: an update with almost no work
    kernels = [params0["params"][f"Dense_{k}"]["kernel"] for k in range(3)]
    variants = {
        "full step (as in (b))": (vmapped_step(momentum_tx), carry_for(momentum_tx)),
        "optimizer -> optax.sgd (no momentum)": (vmapped_step(sgd_tx), carry_for(sgd_tx)),
        "no batch slicing (fixed batch)": (
            vmapped_step(momentum_tx, slicing=False),
            carry_for(momentum_tx),
        ),
        "layer 1 per config (not one shared matmul)": (
            vmapped_step(momentum_tx, shared_input=False),
            carry_for(momentum_tx),
        ),
        "matmuls only (same shapes)": (
            matmuls_only,
            (x[:BATCH], *(jnp.broadcast_to(k, (N_CONFIGS, *k.shape)) for k in kernels)),
        ),
        f"(c) one config's step x {N_CONFIGS}": (
            lambda c, i: train_step(tx0, c[0], c[1], i)[:2],
            (params0, jopt.set_hparams(tx0.init(params0), learning_rate=1e-3, beta=0.9)),
        ),
    }
    breakdown = {}
    if not args.quick:  # a diagnosis for the full run (six more compilations)
        for name, (step, carry) in variants.items():
            breakdown[name] = per_step_seconds(step, carry)
        breakdown[f"(c) one config's step x {N_CONFIGS}"] *= N_CONFIGS  # a step of every config
        full_step = breakdown["full step (as in (b))"]
        print(f"\nwhere the time goes: one step of {N_CONFIGS} configs, one device")
        for name, seconds in breakdown.items():
            gflops = N_CONFIGS * FLOPS_PER_STEP / seconds / 1e9
            ratio = seconds / full_step
            print(f"  {name:44s} {seconds * 1e3:7.2f} ms {gflops:6.1f} GFLOP/s {ratio:5.2f}x")

    # RECORD
    load_after = os.getloadavg()
    print(f"load average before {load_before}, after {load_after}")
    record = {
        "benchmark": "jopt.sweep.run vs hand-written baselines, MNIST-1D MLP momentum-SGD sweep",
        "goals": {g: {"value": v, "met": bool(m)} for g, (v, m) in goals.items()},
        "speedup_split": {"c2_vs_c_devices_alone": parallel_only, "a_vs_c2_batching": batching},
        "machine": {
            "cpu": platform.processor() or platform.machine(),
            "cores": CORES,
            "jax": jax.__version__,
            "torch": torch.__version__ if torch is not None else None,
            "devices": [str(d) for d in DEVICES],
            "load_average_before": load_before,
            "load_average_after": load_after,
        },
        "workload": {
            "model": "jopt.models.MLP() 40-100-100-10 (residual on layer 2), 15,210 params",
            "optimizer": "jopt.momentum(lr, beta) (heavy ball)",
            "batch_size": BATCH,
            "steps": STEPS,
            "learning_rates": LEARNING_RATES,
            "momenta": MOMENTA,
            "n_configs": N_CONFIGS,
            "loss": f"mean minibatch train loss over the last {LAST_EPOCH} steps",
            "init": "params0 = model.init(PRNGKey(0)) made once, outside the compiled programs",
            "init_compile_s": INIT_COMPILE_S,
            "flops_per_step_counted": FLOPS_PER_STEP,
            "flops_per_step_xla": XLA_FLOPS_PER_STEP,
            "total_flops_counted": N_CONFIGS * FLOPS_PER_CONFIG,
        },
        "matmul_peak_gflops": {
            "one_device": PEAK_1,
            "all_devices": PEAK_ALL,
            "by_size": {k: {str(n): v for n, v in d.items()} for k, d in peak.items()},
        },
        "methods": table,
        "sweep_run_calls": {
            "first_wall_s": first.wall,
            "first_compile_s": results[A]["compile_s"],
            "later_wall_s": a_walls,
            "later_compile_s": a_compiles,
            "first_minus_best_later_s": first.wall - min(a_walls),
        },
        "vmap_width": {"steps": WIDTH_STEPS, "rows": widths},
        "step_breakdown_s": breakdown,
    }
    common.write_record(args, record)

    plt = common.pyplot()
    if plt is None:
        return
    from matplotlib import ticker

    fig, (left, right) = plt.subplots(1, 2, figsize=(13, 4.8))
    names = list(table)
    rates = [table[n]["configs_per_s"] for n in names]
    labels = [n + (" *" if table[n]["extrapolated"] else "") for n in names]
    bars = left.barh(labels[::-1], rates[::-1], color="tab:blue")
    left.bar_label(bars, [f"{r:.2f}" for r in rates[::-1]], padding=3, fontsize=8)
    left.set_xscale("log")  # log: on a GPU the rates span several decades
    left.set_xlim(min(rates) / 1.5, max(rates) * 1.6)  # room for the bar labels
    left.xaxis.set_major_locator(ticker.LogLocator(base=10, subs=(1, 2, 5)))
    left.xaxis.set_major_formatter(ticker.FormatStrFormatter("%g"))
    left.xaxis.set_minor_formatter(ticker.NullFormatter())
    left.set_xlabel(f"configs / s ({STEPS} steps each; * extrapolated)")
    platform_name = DEVICES[0].platform.upper()
    left.set_title(
        f"{N_CONFIGS}-config sweep, {len(DEVICES)} {platform_name} device(s), {CORES} cores"
    )
    left.tick_params(axis="y", labelsize=8)
    ws = [w["width"] for w in widths]
    for method, label in [("jit_vmap", "jit(vmap), 1 device"), ("sweep_run", "jopt.sweep.run")]:
        right.plot(ws, [w[method]["gflops"] for w in widths], "o-", label=label)
    right.axhline(PEAK_1, color="gray", ls="--", label="matmul peak, 1 device")
    right.axhline(PEAK_ALL, color="black", ls="--", label="matmul peak, all devices")
    right.axhline(
        table[C]["gflops"],
        color="tab:red",
        ls=":",
        label="(c) one config after another",
    )
    right.set_xscale("log", base=2)
    right.set_xlabel(f"vmap width (configs per program, {WIDTH_STEPS} steps)")
    right.set_ylabel("GFLOP/s (counted)")
    right.set_ylim(bottom=0)
    per_config = WIDTH_STEPS * FLOPS_PER_STEP / 1e9  # GFLOP of one short run
    rate_axis = right.secondary_yaxis(
        "right", functions=(lambda g: g / per_config, lambda r: r * per_config)
    )
    rate_axis.set_ylabel("configs / s")
    right.set_title("throughput vs vmap width")
    right.legend(fontsize=8)
    fig.tight_layout()
    common.save_figure(args, fig, dpi=120)


if __name__ == "__main__":
    main()
