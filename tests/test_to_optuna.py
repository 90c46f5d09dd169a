"""SweepResult.to_optuna: the trials as optuna and optuna-dashboard's own server read them."""

import contextlib
import json
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jopt
from jopt.sweep import SweepResult
from jopt.sweep.spaces import stable_repr

optuna = pytest.importorskip("optuna")

CURVATURE = 2.5  # heavy ball on h * w**2 / 2 is stable for 0 < lr * h < 2 * (1 + momentum)
STEPS, POINTS = 150, 5


def _heavy_ball(hp, key):
    """A tiny training run: heavy ball on a 1-D quadratic, its loss every 30 steps."""

    def step(carry, _):
        w, v = carry
        v = hp["momentum"] * v + CURVATURE * w
        w = w - hp["learning_rate"] * v
        return (w, v), 0.5 * CURVATURE * w**2

    w0 = 1.0 + 0.1 * jax.random.normal(key)
    _, losses = jax.lax.scan(step, (w0, jnp.zeros(())), None, length=STEPS)
    curve = losses.reshape(POINTS, -1)[:, -1]
    return {"loss": curve[-1], "curve": curve, "first_loss": losses[0]}


@pytest.fixture(scope="module")
def sweep():
    """4 learning rates x 2 momenta x 2 seeds; lr = 1, momentum = 0 overflows to inf."""
    space = jopt.sweep.grid(learning_rate=jopt.sweep.log_range(0.01, 1.0, 4), momentum=[0.0, 0.9])
    result = jopt.sweep.run(_heavy_ball, space, seeds=2, progress=False)
    assert result.diverged.any(axis=1).tolist() == [False] * 6 + [True, False]
    return result


def _two_objectives(seed=0, n_configs=12):
    rng = np.random.default_rng(seed)
    acc = rng.random((n_configs, 2))
    acc[3, 1] = np.nan
    configs = [
        {"width": int(w), "act": a} for w, a in zip(2 ** rng.integers(3, 8, n_configs), "ab" * 6)
    ]
    size = np.array([[c["width"] * 100.0] * 2 for c in configs]) + rng.random((n_configs, 2))
    return SweepResult(configs, {"accuracy": acc, "bytes": size}, seeds=[0, 1])


# --- optuna's own view -------------------------------------------------------------------------


def test_trials_hold_params_seed_means_and_curves(sweep):
    study = sweep.to_optuna(
        None,
        "lr_momentum",
        "loss",
        "min",
        intermediate="curve",
        intermediate_steps=range(30, 151, 30),
    )
    assert study.direction == optuna.study.StudyDirection.MINIMIZE
    assert study.metric_names == ["loss"]
    assert len(study.trials) == len(sweep)
    loss = sweep.metrics["loss"].astype(np.float64)
    for i, trial in enumerate(study.trials):
        assert trial.number == i
        assert trial.params == sweep.configs[i]
        assert trial.user_attrs["seeds"] == [0, 1]
        assert trial.user_attrs["jopt_config"] == i
        np.testing.assert_array_equal(trial.user_attrs["loss_per_seed"], loss[i])
        np.testing.assert_array_equal(
            trial.user_attrs["first_loss_per_seed"], sweep.metrics["first_loss"][i]
        )
        if sweep.diverged[i].any():
            assert trial.state == optuna.trial.TrialState.FAIL and trial.values is None
            assert trial.user_attrs["diverged_seeds"] == [0, 1]
        else:
            assert trial.state == optuna.trial.TrialState.COMPLETE
            assert trial.value == loss[i].mean()
            assert trial.user_attrs["diverged_seeds"] == []
            curve = sweep.metrics["curve"][i].astype(np.float64).mean(axis=0)
            assert trial.intermediate_values == dict(zip(range(30, 151, 30), curve.tolist()))
    # The diverged run's curve is kept up to its last finite point.
    failed = study.trials[6].intermediate_values
    assert 0 < len(failed) < POINTS and all(np.isfinite(list(failed.values())))


def test_best_trial_is_the_best_config(sweep):
    study = sweep.to_optuna(None, "single", metric="loss", mode="min")
    assert study.best_trial.number == sweep.best_index("loss", mode="min")
    assert study.best_params == sweep.best("loss", mode="min")
    study = sweep.to_optuna(None, "single_max", metric="first_loss", mode="max")
    assert study.best_params == sweep.best("first_loss", mode="max")


@pytest.mark.parametrize("modes", [["max", "min"], ["min", "min"], ["max", "max"]])
def test_best_trials_are_the_pareto_front(modes):
    result = _two_objectives()
    study = result.to_optuna(None, "front", ["accuracy", "bytes"], modes)
    assert [d.name.lower()[:3] for d in study.directions] == modes
    assert (
        sorted(t.number for t in study.best_trials)
        == result.pareto(["accuracy", "bytes"], modes).tolist()
    )
    assert study.trials[3].state == optuna.trial.TrialState.FAIL


def test_distributions_are_inferred_from_the_values():
    configs = [
        {
            "lr": lr,
            "momentum": beta,
            "width": width,
            "layers": layers,
            "act": act,
            "fn": fn,
            "nesterov": nesterov,
        }
        for lr, beta, width, layers, act, fn, nesterov in zip(
            jopt.sweep.log_range(1e-3, 1.0, 4),
            [0.0, 0.5, 0.9, 0.99],
            [8, 16, 32, 64],
            [1, 2, 3, 4],
            ["relu", "tanh", "relu", "gelu"],
            [jnp.tanh, jax.nn.relu, jnp.tanh, jnp.tanh],
            [True, False, True, True],
        )
    ]
    result = SweepResult(configs, {"loss": np.ones((4, 1))}, seeds=[0])
    trial = result.to_optuna(None, "d", "loss", "min").trials[1]
    D = optuna.distributions
    assert trial.distributions == {
        "lr": D.FloatDistribution(1e-3, 1.0, log=True),
        "momentum": D.FloatDistribution(0.0, 0.99),
        "width": D.IntDistribution(8, 64, log=True),
        "layers": D.IntDistribution(1, 4),
        "act": D.CategoricalDistribution(["relu", "tanh", "gelu"]),
        "fn": D.CategoricalDistribution([stable_repr(jnp.tanh), stable_repr(jax.nn.relu)]),
        "nesterov": D.CategoricalDistribution([True, False]),
    }
    assert trial.params["fn"] == stable_repr(jax.nn.relu) and trial.params["nesterov"] is False
    # Log-uniform samples are told from uniform ones.
    space = jopt.sweep.random(
        32,
        jax.random.PRNGKey(0),
        lr=jopt.sweep.LogUniform(1e-4, 1.0),
        wd=jopt.sweep.Uniform(1e-4, 1.0),
    )
    sampled = SweepResult(space.configs, {"loss": np.ones((32, 1))}, seeds=[0])
    distributions = sampled.to_optuna(None, "s", "loss", "min").trials[0].distributions
    assert distributions["lr"].log and not distributions["wd"].log


def test_an_existing_study(tmp_path, sweep):
    # A journal file (quicker to set up than SQLite's schema); the logic is the same on any.
    backend = optuna.storages.journal.JournalFileBackend(str(tmp_path / "sweep.log"))
    storage = optuna.storages.JournalStorage(backend)
    sweep.to_optuna(storage, "s", "loss", "min")
    with pytest.raises(ValueError, match=r"already holds this sweep.*overwrite=True"):
        sweep.to_optuna(storage, "s", "loss", "min")
    with pytest.raises(ValueError, match=r"directions \['minimize'\].*\['maximize'\]"):
        sweep.to_optuna(storage, "s", "loss", "max")
    with pytest.raises(ValueError, match=r"metric names \['loss'\].*\['first_loss'\]"):
        sweep.to_optuna(storage, "s", "first_loss", "min")
    study = sweep.to_optuna(storage, "s", "first_loss", "max", overwrite=True)
    assert len(study.trials) == len(sweep) and study.metric_names == ["first_loss"]
    # Another sweep (other configurations) with the same objective is appended.
    other = SweepResult(
        [{"learning_rate": 0.5, "momentum": 0.5}], {"first_loss": np.ones((1, 2))}, seeds=[0, 1]
    )
    study = other.to_optuna(storage, "s", "first_loss", "max")
    assert len(study.trials) == len(sweep) + 1
    assert optuna.load_study(study_name="s", storage=storage).trials[-1].value == 1.0
    assert study.trials[-1].distributions["learning_rate"].log  # as recorded by the first
    # A value the recorded distribution cannot hold is refused before any trial is written.
    named = SweepResult(
        [{"learning_rate": "big", "momentum": 0.5}], {"first_loss": np.ones((1, 2))}, [0, 1]
    )
    with pytest.raises(ValueError, match=r"hyperparameter 'learning_rate' takes values \["):
        named.to_optuna(storage, "s", "first_loss", "max")
    assert len(optuna.load_study(study_name="s", storage=storage).trials) == len(sweep) + 1


def test_bad_arguments_are_named(sweep):
    with pytest.raises(ValueError, match=r"metric: unknown metric\(s\) \['acc'\]; known: \["):
        sweep.to_optuna(None, "x", "acc", "max")
    with pytest.raises(ValueError, match="mode must give one 'max' or 'min' per metric"):
        sweep.to_optuna(None, "x", ["loss", "first_loss"], "min")
    with pytest.raises(ValueError, match="for metric 'loss', got None"):
        sweep.to_optuna(None, "x", "loss", None)
    with pytest.raises(
        ValueError, match=r"intermediate='loss' must be a curve.*got shape \(8, 2\)"
    ):
        sweep.to_optuna(None, "x", "loss", "min", intermediate="loss")
    with pytest.raises(ValueError, match="intermediate_steps must give one step per entry"):
        sweep.to_optuna(None, "x", "loss", "min", intermediate="curve", intermediate_steps=[1, 2])


# --- optuna-dashboard's server -----------------------------------------------------------------


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _get(url):
    with urllib.request.urlopen(url, timeout=5) as response:
        return json.load(response)


@pytest.fixture(scope="module", autouse=True)
def dashboard_process(tmp_path_factory):
    """optuna-dashboard on a new SQLite file, started before this module's first test.

    It starts while the other tests run; ``dashboard`` waits until it answers. Yields
    ``(storage URL, server URL, process, log path)``.
    """
    if shutil.which("optuna-dashboard") is None:
        yield None
        return
    folder = tmp_path_factory.mktemp("dashboard")
    storage = f"sqlite:///{folder / 'db.sqlite3'}"
    port = _free_port()
    log_path = folder / "server.log"
    # The dashboard opens a SQLite storage without creating its tables: optuna creates them
    # first, in the same background process, which then becomes the server.
    script = (
        f'"{sys.executable}" -c "import optuna, sys; optuna.storages.RDBStorage(sys.argv[1])" '
        '"$1" && exec optuna-dashboard "$1" --host 127.0.0.1 --port "$2"'
    )
    with open(log_path, "w") as log:
        server = subprocess.Popen(
            ["sh", "-c", script, "sh", storage, str(port)], stdout=log, stderr=subprocess.STDOUT
        )
    try:
        yield storage, f"http://127.0.0.1:{port}", server, log_path
    finally:
        server.terminate()
        try:
            server.wait(timeout=10)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()


@pytest.fixture
def dashboard(dashboard_process):
    """``(storage URL, server URL)`` of the running optuna-dashboard."""
    if dashboard_process is None:
        pytest.skip("optuna-dashboard is in the [test] extra")
    storage, url, server, log_path = dashboard_process
    deadline = time.monotonic() + 60
    while True:
        with contextlib.suppress(urllib.error.URLError, ConnectionError):
            _get(f"{url}/api/meta")
            return storage, url
        if server.poll() is not None or time.monotonic() > deadline:
            pytest.fail(f"optuna-dashboard did not start:\n{log_path.read_text()}")
        time.sleep(0.1)


def _study(url, name):
    studies = _get(f"{url}/api/studies")["study_summaries"]
    (study_id,) = [s["study_id"] for s in studies if s["study_name"] == name]
    return _get(f"{url}/api/studies/{study_id}")


def test_the_dashboard_serves_the_sweep(dashboard, sweep):
    storage, url = dashboard
    sweep.to_optuna(storage, "lr_momentum", "loss", "min", intermediate="curve")
    study = _study(url, "lr_momentum")
    assert study["directions"] == ["minimize"] and study["objective_names"] == ["loss"]
    assert study["has_intermediate_values"]
    trials = sorted(study["trials"], key=lambda t: t["number"])
    assert len(trials) == len(sweep)
    mean = sweep.metrics["loss"].astype(np.float64).mean(axis=1)
    for i, trial in enumerate(trials):
        params = {p["name"]: float(p["param_external_value"]) for p in trial["params"]}
        assert params == sweep.configs[i]
        attrs = {a["key"]: a["value"] for a in trial["user_attrs"]}
        assert json.loads(attrs["seeds"]) == sweep.seeds
        if sweep.diverged[i].any():
            assert trial["state"] == "Fail" and "values" not in trial
        else:
            assert trial["state"] == "Complete"
            assert trial["values"] == [mean[i]]
            assert len(trial["intermediate_values"]) == POINTS
    (best,) = study["best_trials"]
    assert best["number"] == sweep.best_index("loss", mode="min")
    distributions = {p["name"]: p["distribution"] for p in trials[0]["params"]}
    assert distributions["learning_rate"] == {
        "type": "FloatDistribution",
        "low": 0.01,
        "high": 1.0,
        "step": None,
        "log": True,
    }


def test_the_dashboard_serves_the_pareto_front(dashboard):
    storage, url = dashboard
    result = _two_objectives(seed=1)
    result.to_optuna(storage, "front", ["accuracy", "bytes"], ["max", "min"])
    study = _study(url, "front")
    assert study["directions"] == ["maximize", "minimize"]
    assert study["objective_names"] == ["accuracy", "bytes"]
    front = result.pareto(["accuracy", "bytes"], ["max", "min"]).tolist()
    assert sorted(t["number"] for t in study["best_trials"]) == front
    means = np.stack([result.mean("accuracy"), result.mean("bytes")], axis=1)
    for trial in study["trials"]:
        if trial["state"] == "Complete":
            assert trial["values"] == means[trial["number"]].tolist()
