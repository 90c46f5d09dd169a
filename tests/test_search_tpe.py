"""jopt.search.tpe: optuna samplers asking batches that run as one vmapped, cached program."""

import importlib
import json
import os
import socket
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
                  progress=False, mode="max")  # fmt: skip
        sampler = optuna.samplers.RandomSampler(seed=seed)
        ran = tpe(quadratic, DISTS, n_trials=48, batch_size=8, metric="score", sampler=sampler,
                  progress=False, mode="max")  # fmt: skip
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
    out = tpe(
        trial, dists, n_trials=30, batch_size=8, metric="score", seeds=2, progress=False, mode="max"
    )
    assert sorted(traces) == ["relu", "tanh"]  # one trace per static group, for 4 batches
    assert len(out.result) == 30 and len(out.result.info["batches"]) == 4  # 8 + 8 + 8 + 6
    assert out.result.static_names == ["act"]
    assert all(all(b["cached_program"]) for b in out.result.info["batches"][1:])
    assert isinstance(out.best["k"], int) and out.best["width"] in (1, 2, 4)
    assert out.result.metrics["score"].shape == (30, 2)
    programs = len(engine.PROGRAMS)
    again = tpe(
        trial, dists, n_trials=8, batch_size=8, metric="score", seeds=2, progress=False, mode="max"
    )
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
                  sampler=sampler(), mode="max")  # fmt: skip
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
    kwargs = {"n_trials": 4, "metric": "score", "mode": "max", "progress": False}
    with pytest.raises(ValueError, match="n_trials"):
        tpe(quadratic, DISTS, **{**kwargs, "n_trials": 0})
    with pytest.raises(ValueError, match="batch_size"):
        tpe(quadratic, DISTS, batch_size=0, **kwargs)
    with pytest.raises(ValueError, match="mode"):
        tpe(quadratic, DISTS, **{**kwargs, "mode": "best"})
    with pytest.raises(ValueError, match="no default direction"):
        tpe(quadratic, DISTS, **{**kwargs, "mode": None})
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
        tpe(quadratic, DISTS, storage=storage, study_name=name,
            **{**kwargs, "mode": "min", "metric": "accuracy"})  # fmt: skip
    states = {t.state for t in optuna.load_study(study_name=name, storage=storage).trials}
    assert states == {optuna.trial.TrialState.FAIL}  # no RUNNING trial left behind


# --- persistence: a worker process that can be killed, or run beside this one ------------------

WORKER = textwrap.dedent(
    """
    import json, os, signal, sys, time
    sys.path.insert(0, {tests!r})
    from test_search_tpe import DISTS, quadratic
    from jopt.search.tpe import tpe

    storage, name, n_trials, kill_after, pause, together = sys.argv[1:7]
    told = []
    if together:  # "folder:count": start when count workers are ready, past the slow imports
        folder, count = together.rsplit(":", 1)
        open(os.path.join(folder, str(os.getpid())), "w").close()
        while len(os.listdir(folder)) < int(count):
            time.sleep(0.001)

    def callback(study, frozen):
        told.append(frozen.number)
        time.sleep(float(pause))
        if len(told) == int(kill_after):
            os.kill(os.getpid(), signal.SIGKILL)  # mid-batch: trials are left RUNNING

    out = tpe(quadratic, DISTS, n_trials=int(n_trials), batch_size=4, metric="score",
              mode="max", storage=storage, study_name=name, callbacks=[callback],
              progress=False)
    print(json.dumps({{"evaluated": len(out.result)}}))
    """
)


def _worker(tmp_path, storage, name, n_trials, kill_after=0, pause=0.0, together=""):
    script = tmp_path / "worker.py"
    script.write_text(WORKER.format(tests=str(Path(__file__).parent)))
    command = [sys.executable, str(script), storage, name, str(n_trials), str(kill_after)]
    command += [str(pause), together]
    # the repository on the path, so the worker imports this checkout's jopt even uninstalled
    root = str(Path(__file__).resolve().parents[1])
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([root, os.environ.get("PYTHONPATH", "")])}
    return subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env
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
              study_name=name, progress=False, mode="max")  # fmt: skip
    assert len(out.result) == 16 - 9  # the completed trials count toward n_trials
    assert out.result.info["stale_trials_requeued"] == 3
    assert out.result.configs[:3] == stale  # the dead process's batch is evaluated first
    states = _states(storage, name)
    assert states.count("COMPLETE") == 16 and states.count("FAIL") == 3 and "RUNNING" not in states
    assert len(out.history) == 16 and out.best_value == out.study.best_value
    # a finished study: rerunning evaluates nothing
    again = tpe(quadratic, DISTS, n_trials=16, batch_size=4, metric="score", storage=storage,
                study_name=name, progress=False, mode="max")  # fmt: skip
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
              study_name=name, callbacks=[pause], progress=False, mode="max")  # fmt: skip
    stdout, err = process.communicate(timeout=120)
    assert process.returncode == 0, err[-2000:]
    theirs = json.loads(stdout.strip().splitlines()[-1])["evaluated"]
    states = _states(storage, name)
    assert theirs > 0 and len(out.result) > 0  # both did some of the work
    assert states.count("COMPLETE") == theirs + len(out.result) == 24  # the sum of their trials
    assert _finished(out.study) == (24, 0)  # the same seed, yet no trial drawn twice


# --- trials that nobody will finish: orphans, dead peers, concurrent starts, any storage ------

TPE = importlib.import_module("jopt.search.tpe")  # the module (jopt.search.tpe is the function)
OPTUNA_DISTS = {
    "learning_rate": optuna.distributions.FloatDistribution(1e-5, 1.0, log=True),
    "wd": optuna.distributions.FloatDistribution(0.0, 1.0),
}


def _dead_pid():
    """The pid of a process that ran on this host and is gone (reaped)."""
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait()
    return process.pid


def _finished(study):
    complete = study.get_trials(states=(optuna.trial.TrialState.COMPLETE,))
    running = study.get_trials(states=(optuna.trial.TrialState.RUNNING,))
    params = [tuple(sorted(t.params.items())) for t in complete]
    assert len(set(params)) == len(params), "a parameter set was evaluated twice"
    return len(complete), len(running)


def test_orphan_of_a_crash_inside_ask_is_reclaimed(tmp_path, monkeypatch):
    monkeypatch.setattr(TPE, "ORPHAN_GRACE_S", 0.5, raising=False)
    storage, name = f"sqlite:///{tmp_path}/orphan.db", "orphan"
    study = optuna.create_study(storage=storage, study_name=name, direction="maximize")
    # what a process leaves when it dies between study.ask and recording itself on the trial:
    # a RUNNING trial without the worker attribute
    orphan = study.ask(OPTUNA_DISTS)
    time.sleep(0.6)
    out = tpe(quadratic, DISTS, n_trials=12, batch_size=4, metric="score", storage=storage,
              study_name=name, progress=False, mode="max")  # fmt: skip
    assert _finished(out.study) == (12, 0)
    assert out.result.info["stale_trials_requeued"] == 1
    assert out.result.configs[0] == orphan.params  # its parameters are evaluated first
    assert out.study.trials[orphan.number].state == optuna.trial.TrialState.FAIL


def test_young_orphan_is_waited_for_then_reclaimed(tmp_path, monkeypatch):
    monkeypatch.setattr(TPE, "ORPHAN_GRACE_S", 2.0, raising=False)
    monkeypatch.setattr(TPE, "POLL_S", 0.05, raising=False)
    storage, name = f"sqlite:///{tmp_path}/young.db", "young"
    study = optuna.create_study(storage=storage, study_name=name, direction="maximize")
    study.ask(OPTUNA_DISTS)  # maybe another process in its ask: not reclaimed before the grace
    out = tpe(quadratic, DISTS, n_trials=8, batch_size=4, metric="score", storage=storage,
              study_name=name, progress=False, mode="max")  # fmt: skip
    assert _finished(out.study) == (8, 0) and out.result.info["stale_trials_requeued"] == 1


def _storage(kind, tmp_path):
    if kind == "sqlite-url":
        return f"sqlite:///{tmp_path}/study.db"
    if kind == "rdb-object":
        return optuna.storages.RDBStorage(f"sqlite:///{tmp_path}/study.db")
    from optuna.storages.journal import JournalFileBackend

    return optuna.storages.JournalStorage(JournalFileBackend(str(tmp_path / "journal.log")))


@pytest.mark.parametrize("kind", ["sqlite-url", "rdb-object", "journal"])
def test_dead_peers_trials_are_reclaimed_during_the_run(tmp_path, kind):
    storage, name = _storage(kind, tmp_path), "peers"
    dead = f"{socket.gethostname()}:{_dead_pid()}"
    held = []

    def peer_dies(study, frozen):  # after the first batch, a peer asks two trials and dies
        if len(held) == 0 and sum(t.state.is_finished() for t in study.trials) == 4:
            for _ in range(2):
                held.append(study.ask(OPTUNA_DISTS))
                held[-1].set_user_attr(TPE.WORKER_ATTR, dead)

    out = tpe(quadratic, DISTS, n_trials=16, batch_size=4, metric="score", storage=storage,
              study_name=name, callbacks=[peer_dies], progress=False, mode="max")  # fmt: skip
    assert len(held) == 2
    assert _finished(out.study) == (16, 0)
    assert out.result.info["stale_trials_requeued"] == 2
    assert [c for c in out.result.configs if c in [t.params for t in held]] == [
        t.params for t in held
    ]  # the dead peer's parameters are evaluated, once each


def test_a_pid_reused_by_a_later_process_is_not_the_worker_that_asked(tmp_path):
    me = TPE._worker()
    host, pid, start = me.split(":")  # the start time tells two processes with one pid apart
    assert int(pid) == os.getpid() and TPE._alive(me) is True
    assert TPE._alive(f"{host}:{pid}:{int(start) + 1}") is False
    assert TPE._alive(f"{host}:{pid}") is True  # a record without a start: the pid alone
    assert TPE._alive(f"{host}:{_dead_pid()}:{start}") is False
    assert TPE._alive(f"elsewhere:{pid}:{start}") is None  # another host: cannot tell
    # a trial asked by an earlier process whose pid this process now has is reclaimed
    storage, name = f"sqlite:///{tmp_path}/reused.db", "reused"
    study = optuna.create_study(storage=storage, study_name=name, direction="maximize")
    held = study.ask(OPTUNA_DISTS)
    held.set_user_attr(TPE.WORKER_ATTR, f"{host}:{pid}:{int(start) - 1}")
    out = tpe(quadratic, DISTS, n_trials=4, batch_size=4, metric="score", storage=storage,
              study_name=name, progress=False, mode="max")  # fmt: skip
    assert _finished(out.study) == (4, 0) and out.result.info["stale_trials_requeued"] == 1
    assert held.params in out.result.configs


def test_waits_for_a_live_peer_and_reclaims_its_trials_when_it_dies(tmp_path, monkeypatch):
    monkeypatch.setattr(TPE, "POLL_S", 0.05, raising=False)
    storage, name = f"sqlite:///{tmp_path}/live.db", "live"
    study = optuna.create_study(storage=storage, study_name=name, direction="maximize")
    peer = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(4)"])
    held = study.ask(OPTUNA_DISTS)
    held.set_user_attr(TPE.WORKER_ATTR, f"{socket.gethostname()}:{peer.pid}")
    # the peer is not reaped while tpe runs: a zombie is dead too
    out = tpe(quadratic, DISTS, n_trials=8, batch_size=4, metric="score", storage=storage,
              study_name=name, progress=False, mode="max")  # fmt: skip
    assert peer.poll() == 0  # it waited for the peer to end
    assert _finished(out.study) == (8, 0) and out.result.info["stale_trials_requeued"] == 1
    assert held.params in out.result.configs


def test_journal_storage_resumes(tmp_path):
    from optuna.storages.journal import JournalFileBackend

    path = str(tmp_path / "journal.log")
    storage = lambda: optuna.storages.JournalStorage(JournalFileBackend(path))
    kwargs = {
        "batch_size": 4,
        "metric": "score",
        "mode": "max",
        "study_name": "journal",
        "progress": False,
    }
    first = tpe(quadratic, DISTS, n_trials=8, storage=storage(), **kwargs)
    assert len(first.result) == 8
    # a new storage object on the same file, as a rerun has: the study resumes
    again = tpe(quadratic, DISTS, n_trials=12, storage=storage(), **kwargs)
    assert len(again.result) == 4 and _finished(again.study) == (12, 0)
    assert len(again.history) == 12 and again.best_value >= first.best_value


def test_two_processes_start_together_on_a_fresh_database(tmp_path):
    storage, name = f"sqlite:///{tmp_path}/fresh.db", "fresh"  # no database, no study yet
    (tmp_path / "ready").mkdir()
    together = f"{tmp_path / 'ready'}:2"
    processes = [_worker(tmp_path, storage, name, n_trials=16, together=together) for _ in range(2)]
    outputs = [p.communicate(timeout=120) for p in processes]
    for process, (_, err) in zip(processes, outputs):
        assert process.returncode == 0, err[-3000:]
    evaluated = [json.loads(out.strip().splitlines()[-1])["evaluated"] for out, _ in outputs]
    study = optuna.load_study(study_name=name, storage=storage)
    assert _finished(study) == (16, 0) and sum(evaluated) == 16
