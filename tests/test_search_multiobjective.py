"""Several metrics: NSGA-II's rank + crowding order in successive halving and Hyperband, and
multi-objective TPE / NSGA-II through jopt.search.tpe, checked against brute force and a
closed-form Pareto front."""

import importlib
import json
import math
import os
import socket
import subprocess
import sys
import time

import jax.numpy as jnp
import numpy as np
import optuna
import pytest

import jopt
from jopt import search
from jopt.search.tpe import tpe
from jopt.sweep.pareto import crowding_distance, hypervolume, nsga2_order, sorted_front

# --- brute-force references, independent of jopt's helpers ------------------------------------


def _dominates(a, b):
    """a dominates b, both minimized."""
    return all(x <= y for x, y in zip(a, b)) and any(x < y for x, y in zip(a, b))


def _minimized(values, modes):
    return [[v if m == "min" else -v for v, m in zip(row, modes)] for row in values]


def _brute_ranks(points):
    n = len(points)
    ranks = [n] * n
    left = [i for i in range(n) if all(math.isfinite(v) for v in points[i])]
    rank = 0
    while left:
        front = [i for i in left if not any(_dominates(points[j], points[i]) for j in left)]
        for i in front:
            ranks[i] = rank
        left = [i for i in left if i not in front]
        rank += 1
    return ranks


def _brute_crowding(points, members):
    """Deb et al.'s crowding-distance-assignment; an objective with one value adds nothing."""
    distance = {i: 0.0 for i in members}
    for k in range(len(points[members[0]]) if members else 0):
        by_k = sorted(members, key=lambda i: points[i][k])  # stable: ties by row
        low, high = points[by_k[0]][k], points[by_k[-1]][k]
        if high == low:
            continue
        distance[by_k[0]] = distance[by_k[-1]] = math.inf
        for a in range(1, len(by_k) - 1):
            distance[by_k[a]] += (points[by_k[a + 1]][k] - points[by_k[a - 1]][k]) / (high - low)
    return distance


def _brute_order(values, modes):
    """Rows by (rank, -crowding within the rank, objectives, row): (order, ranks, crowding)."""
    points = _minimized(values, modes)
    ranks = _brute_ranks(points)
    crowding = [math.nan] * len(points)
    for rank in set(ranks):
        members = [i for i in range(len(points)) if ranks[i] == rank]
        if rank < len(points):
            for i, d in _brute_crowding(points, members).items():
                crowding[i] = d

    def key(i):  # a diverged row goes by its row
        if math.isnan(crowding[i]):
            return (ranks[i], 0.0, *[0.0] * len(points[i]), i)
        return (ranks[i], -crowding[i], *points[i], i)

    return sorted(range(len(points)), key=key), ranks, crowding


def _brute_front(values, modes):
    """The non-dominated rows, by the first objective, then the next, then row."""
    points = _minimized(values, modes)
    finite = [i for i in range(len(points)) if all(math.isfinite(v) for v in points[i])]
    front = [i for i in finite if not any(_dominates(points[j], points[i]) for j in finite)]
    return sorted(front, key=lambda i: (*points[i], i))


# --- the helpers --------------------------------------------------------------------------------


def test_crowding_distance_equals_deb_and_optunas_nsga2():
    from optuna.samplers.nsgaii._elite_population_selection_strategy import (
        _calc_crowding_distance,
    )

    values = np.random.default_rng(0).random((9, 3))
    expected = _brute_crowding(values.tolist(), list(range(9)))
    np.testing.assert_allclose(crowding_distance(values), [expected[i] for i in range(9)])
    trials = []
    for i, row in enumerate(values):
        trials.append(optuna.trial.create_trial(values=row.tolist()))
        trials[-1].number = i
    theirs = _calc_crowding_distance(trials)
    np.testing.assert_allclose(crowding_distance(values), [theirs[i] for i in range(9)])
    # a constant objective adds nothing; a diverged row is nan and nobody's neighbour
    same = np.array([[0.0, 1.0], [1.0, 1.0], [3.0, 1.0], [np.nan, 1.0], [4.0, 1.0]])
    np.testing.assert_array_equal(crowding_distance(same), [np.inf, 0.75, 0.75, np.nan, np.inf])


@pytest.mark.parametrize("seed", range(3))
def test_nsga2_order_and_front_equal_brute_force(seed):
    rng = np.random.default_rng(seed)
    values = rng.integers(0, 6, size=(30, 2)).astype(float)  # many ties and several fronts
    values[[3, 17]] = np.nan
    modes = ["max", "min"]
    order, ranks, _ = _brute_order(values.tolist(), modes)
    assert nsga2_order(values, modes).tolist() == order
    assert sorted_front(values, modes).tolist() == _brute_front(values.tolist(), modes)
    assert order[-2:] == [3, 17] and ranks[3] == 30  # diverged rows last, in their order


# --- successive halving and Hyperband ------------------------------------------------------------


def _loss(a, b, t):
    return (a - 0.5) ** 2 + 1.0 / (1.0 + 3.0 * b * t)


def _saving(a, b):
    return 1.0 - b - 0.2 * a


def mo_trial():
    """A closed form in the steps t: the loss falls faster with b, which costs saving."""

    def init(hp, key):
        return jnp.float32(0.0)

    def advance(t, hp, steps):
        t = t + steps
        loss = _loss(hp["a"], hp["b"], t)
        loss = jnp.where(hp["a"] > 1.0, jnp.nan, loss)  # a > 1 diverges
        return t, {"loss": loss, "saving": _saving(hp["a"], hp["b"]), "t": t}

    return search.Resumable(init, advance)


METRICS, MODES = ["loss", "saving"], ["min", "max"]


def _configs(n, seed=0):
    ab = np.random.default_rng(seed).random((n, 2)).round(3)
    configs = [{"a": float(a), "b": float(b)} for a, b in ab]
    if n > 5:
        configs[5] = {"a": 1.5, "b": 0.5}  # diverges
    return configs


def _check_rungs(out):
    """Each rung kept what the brute-force rank + crowding sort keeps; returns #crowding cuts."""
    cuts, offset, offsets = 0, 0, {}
    for rung in out.history:  # Hyperband's brackets index their own configurations
        if rung["rung"] == 0:
            offsets[rung["bracket"]], offset = offset, offset + len(rung["configs"])
    for rung in out.history:
        configs = [out.result.configs[offsets[rung["bracket"]] + i] for i in rung["configs"]]
        expected = [
            [_loss(c["a"], c["b"], rung["steps"]), _saving(c["a"], c["b"])] for c in configs
        ]
        expected = [[math.nan, s] if c["a"] > 1 else [v, s] for c, (v, s) in zip(configs, expected)]
        np.testing.assert_allclose(rung["values"], expected, rtol=1e-5)  # the real numbers
        order, ranks, crowding = _brute_order(rung["values"], MODES)
        keep = len(rung["kept"])
        assert rung["kept"] == [rung["configs"][i] for i in order[:keep]]
        assert rung["ranks"] == ranks
        np.testing.assert_allclose(rung["crowding"], crowding)
        by_rank_alone = sorted(range(len(ranks)), key=lambda i: (ranks[i], i))[:keep]
        cuts += sorted(by_rank_alone) != sorted(order[:keep])
    return cuts


def test_halving_promotes_exactly_the_nsga2_picks():
    configs = _configs(27)
    out = search.successive_halving(
        mo_trial(), configs, min_steps=1, metric=METRICS, mode=MODES, progress=False
    )
    assert [len(r["configs"]) for r in out.history] == [27, 9, 3, 1]
    assert _check_rungs(out) >= 1  # some rung cut a front by crowding distance
    assert out.result.diverged[5, 0] and 5 not in out.history[1]["configs"]
    assert out.pareto == [out.best_index] == out.history[-1]["kept"]
    row = out.result.configs[out.best_index]
    assert out.best == row and out.best_value == pytest.approx(
        (_loss(row["a"], row["b"], 27), _saving(row["a"], row["b"])), rel=1e-5
    )

    # capped at 3 steps: the last rung holds 9 configurations; its front is reported
    capped = search.successive_halving(
        mo_trial(), configs, min_steps=1, max_steps=3, metric=METRICS, mode=MODES, progress=False
    )
    _check_rungs(capped)
    last = capped.history[-1]
    front = _brute_front(last["values"], MODES)
    assert len(front) > 1 and capped.pareto == [last["configs"][i] for i in front]
    assert capped.best_index == capped.pareto[0] and capped.best == configs[capped.pareto[0]]
    loss = capped.result.metrics["loss"][capped.pareto, 0]
    assert np.all(np.diff(loss) >= 0)  # best loss first; savings then rise along the front
    assert np.all(np.diff(capped.result.metrics["saving"][capped.pareto, 0]) > 0)


def test_one_metric_in_a_list_ranks_like_the_metric():
    configs = _configs(27, seed=1)
    one = search.successive_halving(
        mo_trial(), configs, min_steps=1, metric="loss", mode="min", progress=False
    )
    listed = search.successive_halving(
        mo_trial(), configs, min_steps=1, metric=["loss"], mode=["min"], progress=False
    )
    assert [r["kept"] for r in listed.history] == [r["kept"] for r in one.history]
    assert listed.best == one.best and listed.best_value == (one.best_value,)
    assert one.pareto == [one.best_index]


def test_hyperband_several_metrics():
    out = search.hyperband(
        mo_trial(),
        {"a": jopt.sweep.Uniform(0.0, 1.0), "b": jopt.sweep.Uniform(0.0, 1.0)},
        max_steps=9,
        metric=METRICS,
        mode=MODES,
        progress=False,
    )
    _check_rungs(out)
    assert [r["bracket"] for r in out.history if r["rung"] == 0] == [2, 1, 0]
    longest = np.flatnonzero(out.result.metrics["steps"][:, 0] == 9)
    values = [[out.result.metrics[m][i, 0] for m in METRICS] for i in longest]
    assert out.pareto == [int(longest[i]) for i in _brute_front(values, MODES)]
    assert out.best == out.result.configs[out.pareto[0]] and out.best_index == out.pareto[0]
    assert len(out.best_value) == 2


@pytest.mark.parametrize(
    "kwargs,match",
    [
        ({"metric": ["loss", "saving"], "mode": "min"}, "one 'max'/'min' per metric"),
        ({"metric": ["loss", "saving"], "mode": ["min"]}, r"mode=\['min'\]"),
        ({"metric": ["loss", "saving"], "mode": ["min", "best"]}, "metric 'saving', got 'best'"),
        ({"metric": ["loss", "loss"], "mode": ["min", "min"]}, "twice"),
        ({"metric": [], "mode": []}, "at least one"),
        ({"metric": ["loss", "speed"], "mode": ["min", "max"]}, "unknown metric 'speed'"),
    ],
)
def test_bad_metric_and_mode(kwargs, match):
    with pytest.raises(ValueError, match=match):
        search.successive_halving(mo_trial(), _configs(3), min_steps=1, progress=False, **kwargs)
    if "unknown" in match:  # tpe learns the trial's metrics from its first batch
        kwargs = {**kwargs, "metric": ["accuracy", "speed"]}
    else:
        with pytest.raises(ValueError, match=match):
            search.hyperband(mo_trial(), {"a": jopt.sweep.Uniform(0, 1)}, max_steps=3, **kwargs)
    with pytest.raises(ValueError, match=match):
        tpe(zdt1, ZDT, n_trials=4, progress=False, **kwargs)


# --- multi-objective TPE on ZDT1 ---------------------------------------------------------------

ZDT = {"x0": jopt.sweep.Uniform(0.0, 1.0), "x1": jopt.sweep.Uniform(0.0, 1.0)}
ZDT_MODES = ["max", "min"]
REFERENCE = [0.0, 2.0]  # accuracy 0 (f1 = 1), bytes 2
# ZDT1's front is f2 = 1 - sqrt(f1) on [0, 1] (x1 = 0); up to f2 = 2 it dominates
# int_0^1 (2 - 1 + sqrt(f1)) df1 = 1 + 2/3
TRUE_HYPERVOLUME = 1.0 + 2.0 / 3.0


def zdt1(hp, key):
    """ZDT1 (Zitzler, Deb, Thiele 2000) on two variables, as accuracy = 1 - f1 and bytes = f2."""
    f1 = hp["x0"]
    g = 1.0 + 9.0 * hp["x1"]
    return {"accuracy": 1.0 - f1, "bytes": g * (1.0 - jnp.sqrt(f1 / g)), "g": g}


def _run(seed, sampler=None, n_trials=64, **kwargs):
    return tpe(zdt1, ZDT, n_trials=n_trials, batch_size=16, metric=["accuracy", "bytes"],
               mode=ZDT_MODES, seed=seed, sampler=sampler, progress=False, **kwargs)  # fmt: skip


def test_motpe_front_nears_the_true_hypervolume_and_beats_random():
    found, random = [], []
    for seed in range(3):
        out = _run(seed)
        found.append(hypervolume(out.pareto_values, ZDT_MODES, REFERENCE))
        baseline = _run(seed, optuna.samplers.RandomSampler(seed=seed))
        random.append(hypervolume(baseline.pareto_values, ZDT_MODES, REFERENCE))
    assert min(found) > 0.8 * TRUE_HYPERVOLUME  # 0.83 to 0.92 of it over ten seeds
    assert min(found) <= TRUE_HYPERVOLUME + 1e-6
    assert np.mean(found) > np.mean(random) + 0.2  # random: 0.59 to 0.81 of it


def test_front_is_the_brute_force_front_and_optuna_holds_jopts_numbers():
    out = _run(0, n_trials=48)
    study, result = out.study, out.result
    assert study.directions == [
        optuna.study.StudyDirection.MAXIMIZE,
        optuna.study.StudyDirection.MINIMIZE,
    ]
    trials = sorted(study.trials, key=lambda t: t.number)
    assert [t.params for t in trials] == result.configs  # one trial per row, in order
    values = np.stack([result.mean("accuracy"), result.mean("bytes")], axis=1)
    np.testing.assert_array_equal([t.values for t in trials], values)  # told exactly
    assert [t.user_attrs["g"] for t in trials] == result.mean("g").tolist()  # other metrics
    front = _brute_front(values.tolist(), ZDT_MODES)
    assert out.pareto == [result.configs[i] for i in front]
    np.testing.assert_array_equal(out.pareto_values, values[front])
    assert {t.number for t in study.best_trials} == set(front)  # optuna agrees
    assert out.best == out.pareto[0] and out.best_value == tuple(values[front[0]])
    assert out.best_value[0] == values[:, 0].max()  # the front's first: the best accuracy
    best_so_far = np.stack(
        [np.maximum.accumulate(values[:, 0]), np.minimum.accumulate(values[:, 1])], axis=1
    )
    np.testing.assert_array_equal(out.history, best_so_far)


def test_nsga2_by_name_and_diverged_trials_fail():
    def trial(hp, key):
        out = zdt1(hp, key)
        return {**out, "bytes": jnp.where(hp["x1"] > 0.8, jnp.inf, out["bytes"])}

    out = tpe(trial, ZDT, n_trials=64, batch_size=16, metric=["accuracy", "bytes"],
              mode=ZDT_MODES, sampler="nsga2", progress=False)  # fmt: skip
    assert isinstance(out.study.sampler, optuna.samplers.NSGAIISampler)
    failed = out.study.get_trials(states=(optuna.trial.TrialState.FAIL,))
    assert failed and all(t.user_attrs["jopt_diverged"] for t in failed)
    assert sorted(t.number for t in failed) == np.flatnonzero(out.result.diverged[:, 0]).tolist()
    assert all(c["x1"] <= 0.8 for c in out.pareto) and len(out.history) == 64
    assert np.isfinite(out.pareto_values).all()
    with pytest.raises(ValueError, match="sampler must be 'tpe', 'nsga2'"):
        _run(0, sampler="cmaes")


def test_storage_resume_peers_and_directions(tmp_path):
    from optuna.storages.journal import JournalFileBackend

    tpe_module = importlib.import_module("jopt.search.tpe")  # the module, not the function
    path, name = str(tmp_path / "journal.log"), "mo"
    storage = lambda: optuna.storages.JournalStorage(JournalFileBackend(path))
    dists = {
        "x0": optuna.distributions.FloatDistribution(0.0, 1.0),
        "x1": optuna.distributions.FloatDistribution(0.0, 1.0),
    }
    process = subprocess.Popen([sys.executable, "-c", "pass"])  # a peer that ran here, gone
    process.wait()
    dead = process.pid
    held = []

    def peer_dies(study, frozen):  # after the first batch, a dead peer leaves two trials
        if not held and sum(t.state.is_finished() for t in study.trials) == 16:
            for _ in range(2):
                held.append(study.ask(dists))
                held[-1].set_user_attr(tpe_module.WORKER_ATTR, f"{socket.gethostname()}:{dead}")

    first = _run(0, n_trials=32, storage=storage(), study_name=name, callbacks=[peer_dies])
    assert first.result.info["stale_trials_requeued"] == 2
    assert all(t.params in first.result.configs for t in held)
    # a rerun on the same file resumes the study: 8 more trials, both directions kept
    again = _run(1, n_trials=40, storage=storage(), study_name=name)
    assert len(again.result) == 8 and len(again.history) == 40
    study = optuna.load_study(study_name=name, storage=storage())
    complete = study.get_trials(states=(optuna.trial.TrialState.COMPLETE,))
    assert len(complete) == 40 and len(study.directions) == 2
    values = np.asarray([t.values for t in sorted(complete, key=lambda t: t.number)])
    np.testing.assert_array_equal(again.pareto_values, values[_brute_front(values, ZDT_MODES)])
    with pytest.raises(ValueError, match=r"mode=\['min', 'min'\].*\['maximize', 'minimize'\]"):
        tpe(zdt1, ZDT, n_trials=4, metric=["accuracy", "bytes"], mode=["min", "min"],
            storage=storage(), study_name=name, progress=False)  # fmt: skip
    with pytest.raises(ValueError, match="mode='max'"):
        tpe(zdt1, ZDT, n_trials=4, metric="accuracy", mode="max", storage=storage(),
            study_name=name, progress=False)  # fmt: skip


WORKER = """
import json, sys, time
sys.path.insert(0, {tests!r})
import optuna
from optuna.storages.journal import JournalFileBackend
from test_search_multiobjective import ZDT, ZDT_MODES, zdt1
from jopt.search.tpe import tpe

storage = optuna.storages.JournalStorage(JournalFileBackend(sys.argv[1]))
out = tpe(zdt1, ZDT, n_trials=32, batch_size=8, metric=["accuracy", "bytes"], mode=ZDT_MODES,
          storage=storage, study_name="shared", progress=False,
          callbacks=[lambda study, frozen: time.sleep(0.1)])  # leaves work for its peer
print(json.dumps({{"evaluated": len(out.result)}}))
"""


def test_two_processes_share_a_multiobjective_study(tmp_path):
    from pathlib import Path

    from optuna.storages.journal import JournalFileBackend

    path = str(tmp_path / "journal.log")
    storage = lambda: optuna.storages.JournalStorage(JournalFileBackend(path))
    optuna.create_study(storage=storage(), study_name="shared", directions=["maximize", "minimize"])
    script = tmp_path / "worker.py"
    script.write_text(WORKER.format(tests=str(Path(__file__).parent)))
    root = str(Path(__file__).resolve().parents[1])
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([root, os.environ.get("PYTHONPATH", "")])}
    process = subprocess.Popen(
        [sys.executable, str(script), path], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        text=True, env=env,
    )  # fmt: skip
    while not optuna.load_study(study_name="shared", storage=storage()).trials:
        time.sleep(0.05)  # the worker has started asking
    pause = lambda study, frozen: time.sleep(0.02)
    out = tpe(zdt1, ZDT, n_trials=32, batch_size=8, metric=["accuracy", "bytes"],
              mode=ZDT_MODES, storage=storage(), study_name="shared", callbacks=[pause],
              progress=False)  # fmt: skip
    stdout, err = process.communicate(timeout=120)
    assert process.returncode == 0, err[-2000:]
    theirs = json.loads(stdout.strip().splitlines()[-1])["evaluated"]
    study = optuna.load_study(study_name="shared", storage=storage())
    complete = sorted(study.get_trials(states=(optuna.trial.TrialState.COMPLETE,)),
                      key=lambda t: t.number)  # fmt: skip
    assert theirs > 0 and len(out.result) > 0 and theirs + len(out.result) == len(complete) == 32
    values = np.asarray([t.values for t in complete])
    np.testing.assert_array_equal(out.pareto_values, values[_brute_front(values, ZDT_MODES)])
