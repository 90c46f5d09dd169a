"""jopt.sweep: spaces, the vmapped runner against per-config runs, chunks, devices, resume."""

import functools
import math
import os
import socket
import subprocess
import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jopt
from jopt import sweep
from jopt.sweep import runner

sys.path.insert(0, str(Path(__file__).parent))
from sweep_trial import SPACE, trial

HERE = Path(__file__).parent
WORKER = HERE / "sweep_worker.py"


@pytest.fixture(scope="module")
def reference():
    """The sweep on one device, no chunks: what every other way of running it must give."""
    return sweep.run(trial, SPACE, seeds=2, devices=jax.devices()[:1], progress=False)


# --- spaces -------------------------------------------------------------------------------------


def test_grid_order_and_length():
    space = sweep.grid(learning_rate=sweep.log_range(1e-3, 1.0, 8), momentum=[0.0, 0.9, 0.99])
    assert len(space) == 24
    assert space.configs[0] == {"learning_rate": 0.001, "momentum": 0.0}
    assert space.configs[1] == {"learning_rate": 0.001, "momentum": 0.9}
    assert space.configs[3]["learning_rate"] == pytest.approx(1e-3 * 1000 ** (1 / 7))
    assert "24 configurations, 1 compiled group" in repr(space)


def test_random_and_quasirandom_spaces():
    space = sweep.random(
        200,
        jax.random.PRNGKey(0),
        lr=sweep.LogUniform(1e-4, 1.0),
        wd=sweep.Uniform(0.0, 0.1),
        layers=sweep.IntUniform(1, 3),
        act=sweep.Choice(["relu", "tanh"]),
    )
    lrs = np.array([c["lr"] for c in space])
    assert np.all((lrs >= 1e-4) & (lrs < 1.0))
    assert 0.3 < np.mean(lrs < 1e-2) < 0.7  # log-uniform: half the mass below the log midpoint
    assert {c["layers"] for c in space} == {1, 2, 3}
    assert space.static_names == ("act",)
    assert len(space.groups()) == 2
    quasi = sweep.quasirandom(16, seed=1, x=sweep.Uniform(0.0, 1.0), y=sweep.Uniform(0.0, 1.0))
    xs = np.array([c["x"] for c in quasi])
    assert sorted((xs * 16).astype(int)) == list(range(16))  # stratified in each coordinate
    assert sweep.quasirandom(4, seed=1, x=sweep.Uniform(0, 1)).configs == (
        sweep.quasirandom(4, seed=1, x=sweep.Uniform(0, 1)).configs
    )


def test_static_values_split_groups_crossed_with_samples():
    space = sweep.random(3, 0, lr=sweep.LogUniform(0.01, 0.1), width=sweep.static([8, 16]))
    assert len(space) == 6
    assert [g[0] for g in space.groups()] == [{"width": 8}, {"width": 16}]
    # a numeric Choice is dynamic unless marked static (a width changes shapes)
    sampled = sweep.random(40, 0, width=sweep.Choice([8, 16, 32]), lr=sweep.Uniform(0, 1))
    assert sampled.static_names == ()
    marked = sweep.quasirandom(40, seed=0, width=sweep.Choice([8, 16, 32], static=True))
    assert marked.static_names == ("width",)
    assert sorted(g[0]["width"] for g in marked.groups()) == [8, 16, 32]


@pytest.mark.parametrize(
    "make,error,word",
    [
        (lambda: sweep.grid(), ValueError, "at least one axis"),
        (lambda: sweep.grid(lr=[]), ValueError, "empty"),
        (lambda: sweep.grid(lr=0.1), TypeError, "list"),
        (lambda: sweep.Space([]), ValueError, "empty"),
        (lambda: sweep.LogUniform(0.0, 1.0), ValueError, "> 0"),
        (lambda: sweep.LogUniform(1.0, 0.1), ValueError, "low < high"),
        (lambda: sweep.Uniform(1.0, 1.0), ValueError, "low < high"),
        (lambda: sweep.random(4, 0, lr=(0.1, 1.0)), TypeError, "unknown distribution"),
        (lambda: sweep.random(0, 0, lr=sweep.Uniform(0, 1)), ValueError, "n must be"),
        (lambda: sweep.log_range(0.0, 1.0, 3), ValueError, "> 0"),
        (lambda: sweep.quasirandom(4, method="grid", x=sweep.Uniform(0, 1)), ValueError, "sobol"),
    ],
)
def test_bad_spaces(make, error, word):
    with pytest.raises(error, match=word):
        make()


# --- the runner ---------------------------------------------------------------------------------


def test_sweep_equals_per_config_runs(reference):
    single = jax.jit(trial)
    for i, config in enumerate(SPACE.configs):
        for j, seed in enumerate(reference.seeds):
            hp = {k: jnp.float32(v) for k, v in config.items()}
            out = single(hp, jax.random.PRNGKey(seed))
            np.testing.assert_allclose(reference.metrics["loss"][i, j], out["loss"], rtol=1e-5)
            np.testing.assert_allclose(reference.metrics["curve"][i, j], out["curve"], rtol=1e-5)
    assert reference.metrics["curve"].shape == (15, 2, 4)
    assert not reference.diverged.any()


def test_one_trace_per_static_group_however_many_chunks():
    traces = []

    def counted(hp, key):
        traces.append(hp["width"])
        w = jnp.ones(hp["width"])
        return {"value": hp["lr"] * jnp.sum(w) + jax.random.uniform(key)}

    space = sweep.grid(width=sweep.static([2, 3]), lr=sweep.log_range(0.1, 1.0, 7))
    result = sweep.run(counted, space, seeds=3, chunk_size=2, progress=False)
    assert sorted(traces) == [2, 3]
    expected = np.array([c["lr"] * c["width"] for c in space.configs])[:, None]
    noise = result.metrics["value"] - expected
    np.testing.assert_allclose(noise, np.broadcast_to(noise[0], noise.shape), rtol=1e-5)


def test_a_second_run_reuses_the_compiled_program():
    traces = []

    def counted(hp, key):
        traces.append(1)
        return {"value": hp["lr"] * jax.random.uniform(key)}

    first = sweep.run(counted, sweep.grid(lr=[0.1, 0.2, 0.3]), seeds=2, progress=False)
    second = sweep.run(counted, sweep.grid(lr=[0.4, 0.5, 0.6]), seeds=2, progress=False)
    # each call traces once (to see what the trial computes now), the second compiles nothing
    assert len(traces) == 2
    assert not first.info["groups"][0]["cached_program"]
    assert second.info["groups"][0]["cached_program"]
    ratio = np.array([[0.4 / 0.1], [0.5 / 0.2], [0.6 / 0.3]])
    np.testing.assert_allclose(second.metrics["value"], ratio * first.metrics["value"], rtol=1e-6)


def test_chunked_and_sharded_equal_unchunked(reference):
    for chunk_size in (1, 4, 7):
        result = sweep.run(trial, SPACE, seeds=2, chunk_size=chunk_size, progress=False)
        for name in reference.metrics:
            np.testing.assert_allclose(result.metrics[name], reference.metrics[name], rtol=1e-5)


def test_default_cpu_chunks_are_equal_and_pad_little():
    n_dev = len(jax.devices())
    per_call = runner.CPU_CONFIGS_PER_DEVICE * n_dev
    n = per_call + per_call // 2 + 1  # needs two calls
    result = sweep.run(
        lambda hp, key: {"v": hp["x"] * 2.0}, sweep.grid(x=list(range(n))), progress=False
    )
    chunk = result.info["groups"][0]["chunk_size"]
    assert chunk <= per_call and math.ceil(n / chunk) == 2
    assert 2 * chunk - n < 2 * n_dev  # equal halves rounded up to the devices
    np.testing.assert_array_equal(result.metrics["v"][:, 0], 2.0 * np.arange(n))


def test_auto_chunk_size_respects_the_memory_budget():
    def wide(hp, key):
        h = jax.random.normal(key, (64, 64)) * hp["scale"]
        for _ in range(3):
            h = jnp.tanh(h @ h.T)
        return {"norm": jnp.linalg.norm(h)}

    space = sweep.grid(scale=np.linspace(0.1, 1.0, 256).tolist())
    budget = 200_000
    result = sweep.run(wide, space, chunk_size="auto", memory_budget=budget, progress=False)
    group = result.info["groups"][0]
    n_dev = len(result.info["devices"])
    assert group["chunk_size"] < 256
    assert group["memory"]["total_bytes"] <= budget  # the compiled chunk, per device
    assert group["chunk_size"] // n_dev * group["auto"]["bytes_per_config"] <= budget
    assert np.isfinite(result.metrics["norm"]).all()


def test_diverging_configs_are_flagged_and_isolated(reference):
    space = sweep.Space([*SPACE.configs, {"learning_rate": 1e6, "momentum": 0.9}])
    result = sweep.run(trial, space, seeds=2, progress=False)
    assert result.diverged[-1].all()
    assert not result.diverged[:-1].any()
    np.testing.assert_allclose(result.metrics["loss"][:-1], reference.metrics["loss"], rtol=1e-5)
    assert result.best("loss", mode="min") != space.configs[-1]


def test_trial_must_return_a_dict_and_arguments_are_checked():
    with pytest.raises(TypeError, match="dict"):
        sweep.run(lambda hp, key: hp["lr"] * 2, sweep.grid(lr=[0.1]), progress=False)
    with pytest.raises(ValueError, match="chunk_size"):
        sweep.run(trial, SPACE, chunk_size=0, progress=False)
    with pytest.raises(ValueError, match="seeds"):
        sweep.run(trial, SPACE, seeds=0, progress=False)


def test_result_table_and_save_load(tmp_path, reference):
    frame = reference.to_dataframe()
    assert len(frame) == 15 * 2
    assert {"learning_rate", "momentum", "seed", "loss", "error", "diverged"} <= set(frame)
    assert "curve" not in frame  # not a scalar
    best = reference.best("error", mode="min")
    i = reference.best_index("error", mode="min")
    assert reference.mean("error")[i] == pytest.approx(np.nanmin(reference.mean("error")))
    assert best == SPACE.configs[i]
    np.testing.assert_allclose(reference.std("loss"), reference.metrics["loss"].std(axis=1))
    reference.to_csv(tmp_path / "sweep.csv")
    assert (tmp_path / "sweep.csv").read_text().count("\n") == 31
    reference.save(tmp_path / "sweep")
    loaded = sweep.SweepResult.load(tmp_path / "sweep")
    assert loaded.configs == reference.configs
    np.testing.assert_array_equal(loaded.metrics["curve"], reference.metrics["curve"])
    with np.load(tmp_path / "sweep.npz") as raw:  # readable without jopt
        assert raw["loss"].shape == (15, 2)


def test_checkpoint_of_another_sweep_is_refused(tmp_path):
    sweep.run(trial, SPACE, seeds=1, checkpoint_dir=tmp_path, progress=False)
    again = sweep.run(trial, SPACE, seeds=1, checkpoint_dir=tmp_path, progress=False)
    assert again.info["resumed_configs"] == len(SPACE)
    other = sweep.grid(learning_rate=[0.5], momentum=[0.0])
    with pytest.raises(ValueError, match="different sweep"):
        sweep.run(trial, other, seeds=1, checkpoint_dir=tmp_path, progress=False)
    with pytest.raises(ValueError, match=r"seeds \[0\] -> \[0, 1\]"):
        sweep.run(trial, SPACE, seeds=2, checkpoint_dir=tmp_path, progress=False)


# Each pair: the same trial before and after an edit a user makes between two runs. The old
# fingerprint (the outer function's bytecode) could not tell any of these apart.
EDITS = {
    "a constant": (
        "def trial(hp, key):\n    steps = 40\n    return {'y': hp['x'] * steps}",
        "def trial(hp, key):\n    steps = 5\n    return {'y': hp['x'] * steps}",
    ),
    "a nested function": (
        "def trial(hp, key):\n    def loss(v):\n        return jnp.tanh(v)\n"
        "    return {'y': loss(hp['x'])}",
        "def trial(hp, key):\n    def loss(v):\n        return jax.nn.relu(v)\n"
        "    return {'y': loss(hp['x'])}",
    ),
    "a global": (
        "SCALE = 1.0\ndef trial(hp, key):\n    return {'y': SCALE * hp['x']}",
        "SCALE = 3.0\ndef trial(hp, key):\n    return {'y': SCALE * hp['x']}",
    ),
}


@pytest.mark.parametrize("edit", [*EDITS, "a partial"])
def test_an_edited_trial_is_refused_then_overwritten(tmp_path, edit):
    if edit == "a partial":
        scaled = lambda hp, key, scale: {"y": scale * hp["x"]}
        before, after = (functools.partial(scaled, scale=s) for s in (1.0, 3.0))
    else:
        trials = []
        for source in EDITS[edit]:
            namespace = {"jax": jax, "jnp": jnp}
            exec(source, namespace)
            trials.append(namespace["trial"])
        before, after = trials
    space = sweep.grid(x=[-1.0, 0.5, 2.0])
    first = sweep.run(before, space, checkpoint_dir=tmp_path, progress=False)
    with pytest.raises(ValueError, match=r"different sweep(.|\n)*trial program of group all"):
        sweep.run(after, space, checkpoint_dir=tmp_path, progress=False)
    redone = sweep.run(after, space, checkpoint_dir=tmp_path, overwrite=True, progress=False)
    assert redone.info["resumed_configs"] == 0
    expected = sweep.run(after, space, progress=False)
    np.testing.assert_array_equal(redone.metrics["y"], expected.metrics["y"])
    assert not np.array_equal(redone.metrics["y"], first.metrics["y"])


def test_resume_is_bit_identical_whatever_is_left(tmp_path):
    """Chunks are cut from the whole group, so what a rerun redoes runs at the same width."""
    space = sweep.Space(SPACE.configs[:12])
    whole = sweep.run(trial, space, seeds=2, chunk_size=8, checkpoint_dir=tmp_path / "a",
                      progress=False)  # fmt: skip
    sweep.run(trial, space, seeds=2, chunk_size=8, checkpoint_dir=tmp_path / "b", progress=False)
    last = sorted((tmp_path / "b").glob("chunk-*.npz"))[-1]
    last.unlink()  # 4 of 12 configurations left to do: fewer than a chunk
    resumed = sweep.run(
        trial, space, seeds=2, chunk_size=8, checkpoint_dir=tmp_path / "b", progress=False
    )
    assert resumed.info["resumed_configs"] == 8
    assert resumed.info["groups"][0]["chunk_size"] == whole.info["groups"][0]["chunk_size"] == 8
    for name in whole.metrics:
        np.testing.assert_array_equal(resumed.metrics[name], whole.metrics[name])


def test_plots(tmp_path, reference):
    import matplotlib

    matplotlib.use("Agg")
    ax = jopt.plot.heatmap(reference, x="learning_rate", y="momentum", metric="loss", mode="min")
    assert ax.get_xlabel() == "learning_rate (log)"
    ax.figure.savefig(tmp_path / "heatmap.png")
    jopt.plot.curves(reference, "curve", label="learning_rate", configs=[0, 3])
    jopt.plot.scatter(reference, "learning_rate", "momentum", "loss")
    ax = jopt.plot.parallel(reference, "loss", mode="min")
    assert len(ax.get_xticks()) == 2
    assert (tmp_path / "heatmap.png").stat().st_size > 1000


# --- other processes: several devices, SIGKILL and resume, jax.distributed ------------------------


def _worker(out, *args, env=None, check=True):
    env = {**os.environ, **(env or {})}
    env["PYTHONPATH"] = os.pathsep.join([str(HERE.parent), env.get("PYTHONPATH", "")])
    proc = subprocess.run(
        [sys.executable, str(WORKER), str(out), *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=240,
    )
    if check:
        assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc


def test_four_forced_host_devices_equal_one_device(tmp_path, reference):
    env = {"XLA_FLAGS": "--xla_force_host_platform_device_count=4"}
    _worker(tmp_path / "four.npz", env=env)
    with np.load(tmp_path / "four.npz") as four:
        assert int(four["devices"]) == 4
        np.testing.assert_allclose(four["loss"], reference.metrics["loss"], rtol=1e-5)


def test_sigkill_mid_sweep_then_resume(tmp_path, reference):
    """Killed mid-write, then an edited trial (refused), a corrupt chunk (recomputed), resume."""
    ckpt = tmp_path / "ckpt"
    killed = _worker(
        tmp_path / "x.npz", "--checkpoint", str(ckpt), "--kill-after", "2", check=False
    )
    assert killed.returncode == -9, killed.stdout + killed.stderr  # SIGKILL
    assert not (tmp_path / "x.npz").exists()
    saved = sorted(ckpt.glob("chunk-*.npz"))
    assert len(saved) == 2 and len(list(ckpt.glob(".tmp-*"))) == 1  # the write it died in
    edited = _worker(tmp_path / "e.npz", "--checkpoint", str(ckpt), "--edited", check=False)
    assert edited.returncode != 0 and "different sweep" in edited.stderr, edited.stderr
    assert "trial program of group all changed" in edited.stderr
    saved[0].write_bytes(saved[0].read_bytes()[:100])  # a truncated chunk
    resumed_run = _worker(tmp_path / "resumed.npz", "--checkpoint", str(ckpt))
    assert saved[0].name in resumed_run.stderr  # warned about, by name
    assert not list(ckpt.glob(".tmp-*"))  # the dead process's temporary file is gone
    with np.load(tmp_path / "resumed.npz") as resumed:
        assert int(resumed["resumed"]) == 4  # one intact chunk of 4 configs
        np.testing.assert_allclose(resumed["loss"], reference.metrics["loss"], rtol=1e-5)
        np.testing.assert_allclose(resumed["curve"], reference.metrics["curve"], rtol=1e-5)
    _worker(tmp_path / "again.npz", "--checkpoint", str(ckpt))
    with np.load(tmp_path / "again.npz") as again, np.load(tmp_path / "resumed.npz") as first:
        assert int(again["resumed"]) == len(SPACE)
        np.testing.assert_array_equal(again["loss"], first["loss"])


def test_function_valued_statics_resume_in_another_process(tmp_path):
    ckpt = tmp_path / "ckpt"
    _worker(tmp_path / "first.npz", "--space", "activations", "--checkpoint", str(ckpt))
    _worker(tmp_path / "second.npz", "--space", "activations", "--checkpoint", str(ckpt))
    with np.load(tmp_path / "first.npz") as first, np.load(tmp_path / "second.npz") as second:
        assert int(first["resumed"]) == 0 and int(second["resumed"]) == 9
        np.testing.assert_array_equal(first["mean"], second["mean"])


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_two_processes_with_jax_distributed_equal_one(tmp_path, reference):
    port = str(_free_port())
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(HERE.parent), env.get("PYTHONPATH", "")])
    procs = [
        subprocess.Popen(
            [
                sys.executable,
                str(WORKER),
                str(tmp_path / f"p{i}.npz"),
                "--process-id",
                str(i),
                "--num-processes",
                "2",
                "--port",
                port,
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env=env,
        )
        for i in range(2)
    ]
    outputs = [p.communicate(timeout=240)[0] for p in procs]
    assert all(p.returncode == 0 for p in procs), outputs
    assert "done 2 2" in outputs[0]
    with np.load(tmp_path / "p0.npz") as two:
        np.testing.assert_allclose(two["loss"], reference.metrics["loss"], rtol=1e-5)
