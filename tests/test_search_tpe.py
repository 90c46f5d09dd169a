"""jopt.search.tpe: optuna samplers asking batches that run as one vmapped, cached program."""

import json
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import optuna
import pytest

import jopt
from jopt.search.tpe import tpe
from jopt.sweep import engine

DISTS = {"learning_rate": jopt.sweep.LogUniform(1e-5, 1.0), "wd": jopt.sweep.Uniform(0.0, 1.0)}
OPTIMUM = 0.0  # at learning_rate = 1e-2, wd = 0.3


def quadratic(hp, key):
    """Best at learning_rate = 1e-2, wd = 0.3; a little noise from the key."""
    noise = 0.01 * jax.random.normal(key)
    return {"score": -((jnp.log10(hp["learning_rate"]) + 2) ** 2) - (hp["wd"] - 0.3) ** 2 + noise}


def test_tpe_beats_random_and_finds_the_optimum():
    tpe_best, random_best = [], []
    for seed in range(3):
        out = tpe(quadratic, DISTS, n_trials=48, batch_size=8, metric="score", seed=seed,
                  progress=False)  # fmt: skip
        sampler = optuna.samplers.RandomSampler(seed=seed)
        ran = tpe(quadratic, DISTS, n_trials=48, batch_size=8, metric="score", sampler=sampler,
                  progress=False)  # fmt: skip
        tpe_best.append(out.best_value)
        random_best.append(ran.best_value)
        assert len(out.result) == 48 and out.result.metrics["score"].shape == (48, 1)
        assert np.all(np.diff(out.history) >= 0) and out.history[-1] == out.best_value
        assert out.best == out.result.configs[int(np.argmax(out.result.metrics["score"][:, 0]))]
    assert np.median(tpe_best) > OPTIMUM - 0.05  # near the optimum
    assert np.median(tpe_best) >= np.median(random_best) - 0.01  # soft margin


def test_one_trace_per_static_group_across_batches():
    traces = []

    def trial(hp, key):
        traces.append(hp["act"])
        bonus = {"relu": 0.1, "tanh": 0.0}[hp["act"]]
        return {"score": quadratic(hp, key)["score"] + bonus - 0.01 * hp["width"] + hp["k"]}

    dists = {
        **DISTS,
        "act": jopt.sweep.Choice(["relu", "tanh"]),  # non-numeric: static
        "width": jopt.sweep.Choice([1, 2, 4]),  # numeric choice: dynamic
        "k": jopt.sweep.IntUniform(0, 2),  # dynamic, a float32 in the trial
    }
    out = tpe(trial, dists, n_trials=30, batch_size=8, metric="score", seeds=2, progress=False)
    assert sorted(traces) == ["relu", "tanh"]  # one trace per static group, for 4 batches
    assert len(out.result) == 30 and len(out.result.info["batches"]) == 4  # 8 + 8 + 8 + 6
    assert out.result.static_names == ["act"]
    assert all(all(b["cached_program"]) for b in out.result.info["batches"][1:])
    assert isinstance(out.best["k"], int) and out.best["width"] in (1, 2, 4)
    assert out.result.metrics["score"].shape == (30, 2)
    programs = len(engine.PROGRAMS)
    again = tpe(trial, dists, n_trials=8, batch_size=8, metric="score", seeds=2, progress=False)
    # a new search traces its groups again (to see what the trial computes now) and reuses
    # the compiled programs
    assert len(again.result) == 8 and len(engine.PROGRAMS) == programs


@pytest.mark.filterwarnings("ignore::optuna.exceptions.ExperimentalWarning")
@pytest.mark.parametrize(
    "sampler",
    [
        lambda: optuna.samplers.RandomSampler(seed=0),
        lambda: optuna.samplers.QMCSampler(seed=0, warn_independent_sampling=False),
        lambda: optuna.samplers.TPESampler(seed=0, multivariate=True),
        lambda: optuna.samplers.CmaEsSampler(seed=0),
        lambda: optuna.samplers.GPSampler(seed=0),
    ],
    ids=["random", "qmc", "tpe-multivariate", "cmaes", "gp"],
)
def test_other_samplers(sampler):
    try:
        out = tpe(quadratic, DISTS, n_trials=16, batch_size=8, metric="score", progress=False,
                  sampler=sampler())  # fmt: skip
    except (ImportError, ModuleNotFoundError) as error:
        pytest.skip(f"sampler needs an extra package: {error}")
    assert len(out.result) == 16 and out.best_value > -3.0
    assert len(out.study.trials) == 16


def test_minimize_and_diverged_trials_fail():
    def trial(hp, key):
        loss = (jnp.log10(hp["learning_rate"]) + 2) ** 2
        return {"loss": jnp.where(hp["learning_rate"] > 0.1, jnp.nan, loss)}

    dists = {"learning_rate": jopt.sweep.LogUniform(1e-4, 1.0)}
    out = tpe(trial, dists, n_trials=24, batch_size=8, metric="loss", mode="min", progress=False)
    failed = out.study.get_trials(states=(optuna.trial.TrialState.FAIL,))
    assert failed and all(t.user_attrs["jopt_diverged"] for t in failed)
    assert all(t.params["learning_rate"] > 0.1 for t in failed)
    assert out.result.diverged.sum() == len(failed) and len(out.result) == 24
    assert out.best["learning_rate"] <= 0.1 and out.best_value == np.nanmin(out.history)


def test_bad_arguments():
    kwargs = {"n_trials": 4, "metric": "score", "progress": False}
    with pytest.raises(ValueError, match="n_trials"):
        tpe(quadratic, DISTS, **{**kwargs, "n_trials": 0})
    with pytest.raises(ValueError, match="batch_size"):
        tpe(quadratic, DISTS, batch_size=0, **kwargs)
    with pytest.raises(ValueError, match="mode"):
        tpe(quadratic, DISTS, mode="best", **kwargs)
    with pytest.raises(TypeError, match="unknown distribution"):
        tpe(quadratic, {"learning_rate": (1e-3, 1.0)}, **kwargs)
    with pytest.raises(ValueError, match="distributions"):
        tpe(quadratic, {}, **kwargs)
    with pytest.raises(ValueError, match="seeds"):
        tpe(quadratic, DISTS, seeds=0, **kwargs)
    study = optuna.create_study(direction="minimize")
    storage, name = study._storage, study.study_name
    with pytest.raises(ValueError, match="mode='max'"):
        tpe(quadratic, DISTS, storage=storage, study_name=name, **kwargs)
    with pytest.raises(ValueError, match="unknown metric 'accuracy'"):
        tpe(quadratic, DISTS, storage=storage, study_name=name, mode="min",
            **{**kwargs, "metric": "accuracy"})  # fmt: skip
    states = {t.state for t in optuna.load_study(study_name=name, storage=storage).trials}
    assert states == {optuna.trial.TrialState.FAIL}  # no RUNNING trial left behind


# --- persistence: a worker process that can be killed, or run beside this one ------------------

WORKER = textwrap.dedent(
    """
    import json, os, signal, sys, time
    sys.path.insert(0, {tests!r})
    from test_search_tpe import DISTS, quadratic
    from jopt.search.tpe import tpe

    storage, name, n_trials, kill_after, pause = sys.argv[1:6]
    told = []

    def callback(study, frozen):
        told.append(frozen.number)
        time.sleep(float(pause))
        if len(told) == int(kill_after):
            os.kill(os.getpid(), signal.SIGKILL)  # mid-batch: trials are left RUNNING

    out = tpe(quadratic, DISTS, n_trials=int(n_trials), batch_size=4, metric="score",
              storage=storage, study_name=name, seed=os.getpid(), callbacks=[callback],
              progress=False)
    print(json.dumps({{"evaluated": len(out.result)}}))
    """
)


def _worker(tmp_path, storage, name, n_trials, kill_after=0, pause=0.0):
    script = tmp_path / "worker.py"
    script.write_text(WORKER.format(tests=str(Path(__file__).parent)))
    command = [sys.executable, str(script), storage, name, str(n_trials), str(kill_after)]
    # the repository on the path, so the worker imports this checkout's jopt even uninstalled
    root = str(Path(__file__).resolve().parents[1])
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([root, os.environ.get("PYTHONPATH", "")])}
    return subprocess.Popen(
        [*command, str(pause)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env
    )


def _states(storage, name):
    study = optuna.load_study(study_name=name, storage=storage)
    return [t.state.name for t in study.trials]


def test_sqlite_resume_after_sigkill(tmp_path):
    storage, name = f"sqlite:///{tmp_path}/s.db", "killed"
    process = _worker(tmp_path, storage, name, n_trials=16, kill_after=9)
    _, err = process.communicate(timeout=120)
    assert process.returncode == -9, err[-2000:]
    states = _states(storage, name)
    assert states.count("COMPLETE") == 9 and states.count("RUNNING") == 3  # killed in batch 3
    stale = [
        t.params
        for t in optuna.load_study(study_name=name, storage=storage).trials
        if t.state.name == "RUNNING"
    ]

    out = tpe(quadratic, DISTS, n_trials=16, batch_size=4, metric="score", storage=storage,
              study_name=name, progress=False)  # fmt: skip
    assert len(out.result) == 16 - 9  # the completed trials count toward n_trials
    assert out.result.info["stale_trials_requeued"] == 3
    assert out.result.configs[:3] == stale  # the dead process's batch is evaluated first
    states = _states(storage, name)
    assert states.count("COMPLETE") == 16 and states.count("FAIL") == 3 and "RUNNING" not in states
    assert len(out.history) == 16 and out.best_value == out.study.best_value
    # a finished study: rerunning evaluates nothing
    again = tpe(quadratic, DISTS, n_trials=16, batch_size=4, metric="score", storage=storage,
                study_name=name, progress=False)  # fmt: skip
    assert len(again.result) == 0 and again.best == out.best


def test_two_processes_share_one_study(tmp_path):
    storage, name = f"sqlite:///{tmp_path}/shared.db", "shared"
    optuna.create_study(storage=storage, study_name=name, direction="maximize")
    process = _worker(tmp_path, storage, name, n_trials=24, pause=0.05)
    deadline = time.time() + 60
    while not _states(storage, name) and time.time() < deadline:  # the worker has started
        time.sleep(0.1)
    pause = lambda study, frozen: time.sleep(0.05)
    out = tpe(quadratic, DISTS, n_trials=24, batch_size=4, metric="score", storage=storage,
              study_name=name, seed=1, callbacks=[pause], progress=False)  # fmt: skip
    stdout, err = process.communicate(timeout=120)
    assert process.returncode == 0, err[-2000:]
    theirs = json.loads(stdout.strip().splitlines()[-1])["evaluated"]
    states = _states(storage, name)
    assert theirs > 0 and len(out.result) > 0  # both did some of the work
    assert states.count("COMPLETE") == theirs + len(out.result)  # the sum of their trials
    assert 24 <= states.count("COMPLETE") <= 24 + 4  # may overshoot by a batch in a race
    assert "RUNNING" not in states
