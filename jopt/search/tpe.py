"""Optuna's samplers (TPE by default) asking for a batch of trials, run as one vmapped program.

Optuna suggests one trial at a time (its "batch optimization" is a recipe of repeated
``study.ask()``; batched sampling was requested in optuna#895, #2626, #2660). ``tpe`` asks a
batch, evaluates the whole batch with one ``jopt.sweep.run`` call (the trial vmapped over
configurations and seeds, sharded over the devices) and tells the results back. Every batch
has the same shape, so the trial is traced and compiled once per static group and the
compiled program is reused by every later batch (``jopt.sweep.run`` caches programs by trial
and shape). With several metrics (``metric=["accuracy", "bytes"], mode=["max", "min"]``) the
study has one direction per metric, the default TPE sampler is multi-objective TPE and
``sampler="nsga2"`` picks NSGA-II; ``TPEResult.pareto`` holds the study's Pareto front.
"""

from __future__ import annotations

import contextlib
import datetime
import math
import os
import random
import re
import socket
import time
import warnings
import zlib
from collections.abc import Callable, Mapping, Sequence
from typing import Any, NamedTuple

import jax
import numpy as np

from jopt.sweep import engine
from jopt.sweep import runner as _runner
from jopt.sweep.pareto import sorted_front
from jopt.sweep.result import SweepResult, check_metrics
from jopt.sweep.spaces import Choice, IntUniform, LogUniform, Static, Uniform

__all__ = ["TPEResult", "tpe"]

# User attributes written on each optuna trial.
WORKER_ATTR = "jopt_worker"  # "host:pid:start" of the process that asked the trial
DIVERGED_ATTR = "jopt_diverged"  # True: evaluated, but a metric was NaN/inf (told as FAIL)
REQUEUED_ATTR = "jopt_requeued_from"  # number of the stale trial whose params this re-runs
SURPLUS_ATTR = "jopt_surplus"  # True: asked past n_trials in a race between processes, not run

# A RUNNING trial without WORKER_ATTR is younger than this while its process is inside
# ``study.ask`` (optuna creates the trial, then samples it; a slow sampler takes seconds), and
# older only when that process died before recording itself: then it is reclaimed.
ORPHAN_GRACE_S = 30.0
# How often a process with nothing left to ask looks again at the trials its peers run.
POLL_S = 1.0
# Tries of ``optuna.create_study`` while processes race to create a fresh storage.
CREATE_TRIES = 8


class TPEResult(NamedTuple):
    """What ``tpe`` returns.

    Attributes:
      result: a ``SweepResult`` of every configuration this call evaluated, in the order asked.
      study: the ``optuna.Study`` (with the trials of earlier runs and other processes).
      best: the best configuration of the study (a dict), ``None`` if every trial diverged.
        With several metrics, ``pareto[0]``: the front's member best in the first metric
        (ties by the next; the metrics' order is their priority).
      best_value: its seed-mean metric (``nan`` if every trial diverged); with several
        metrics a tuple, one seed mean per metric in ``metric``'s order.
      history: best value so far after each finished trial of the study, in trial-number
        order (``nan`` before the first that did not diverge); ``np.ndarray`` of shape
        ``(trials,)``, or ``(trials, len(metric))`` with several metrics: each column the best
        value so far of that metric alone.
      pareto: the configurations (dicts) on the Pareto front of the study's completed trials
        (of earlier runs and other processes too; a diverged trial is never on it), ordered
        by ``jopt.sweep.pareto.sorted_front``: best in the first metric first. With one
        metric, the trials tied at the best value.
      pareto_values: their seed-mean metrics, ``np.ndarray`` of shape ``(len(pareto),
        len(metric))``, columns in ``metric``'s order (the values told to optuna).
    """

    result: SweepResult
    study: Any
    best: dict[str, Any] | None
    best_value: float | tuple[float, ...]
    history: np.ndarray
    pareto: list[dict[str, Any]]
    pareto_values: np.ndarray


def _optuna():
    try:
        import optuna
    except ImportError as error:  # pragma: no cover - optuna is in the [search] extra
        raise ImportError("jopt.search.tpe needs optuna: pip install 'jopt[search]'.") from error
    return optuna


def _distribution(name: str, dist: Any):
    """A jopt distribution as an optuna one, and whether the value is static."""
    optuna = _optuna()
    if isinstance(dist, Uniform):
        return optuna.distributions.FloatDistribution(dist.low, dist.high), False
    if isinstance(dist, LogUniform):
        return optuna.distributions.FloatDistribution(dist.low, dist.high, log=True), False
    if isinstance(dist, IntUniform):
        return optuna.distributions.IntDistribution(dist.low, dist.high), False
    if isinstance(dist, (Choice, Static)):
        options = dist.options if isinstance(dist, Choice) else dist.values
        numeric = all(
            isinstance(v, (int, float, np.integer, np.floating)) and not isinstance(v, bool)
            for v in options
        )
        try:
            categorical = optuna.distributions.CategoricalDistribution(list(options))
        except (TypeError, ValueError) as error:
            raise TypeError(
                f"distributions[{name!r}]: optuna accepts only None, bool, int, float and str "
                f"choices, got {options!r}."
            ) from error
        static = isinstance(dist, Static) or dist.static or not numeric
        return categorical, static
    raise TypeError(
        f"distributions[{name!r}]: unknown distribution {dist!r}; use jopt.sweep.Uniform, "
        "LogUniform, IntUniform, Choice or static([...])."
    )


def _proc_stat(pid: int) -> list[str] | None:
    """The fields of ``/proc/<pid>/stat`` after the command name; ``None`` without it."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rpartition(")")[2].split()
    except OSError:  # no /proc (not Linux), or no such process
        return None


def _worker() -> str:
    """``host:pid:start`` of this process (``host:pid`` where ``/proc`` is missing).

    The start time (in clock ticks since boot) tells this process from a later one that the
    system gave the same pid after this one died.
    """
    fields = _proc_stat(os.getpid())
    start = f":{fields[19]}" if fields and len(fields) > 19 else ""
    return f"{socket.gethostname()}:{os.getpid()}{start}"


def _alive(worker: str) -> bool | None:
    """Whether the process ``host:pid[:start]`` runs; ``None`` when it is on another host."""
    match = re.fullmatch(r"(.*):(\d+):(\d+)", worker)
    host, pid, start = match.groups() if match else (*worker.rpartition(":")[::2], None)
    if host != socket.gethostname():
        return None
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except (PermissionError, ValueError):
        return True
    fields = _proc_stat(int(pid))
    if not fields or len(fields) < 20:  # no /proc (not Linux), or the process just ended
        return True
    if fields[0] in ("Z", "X"):  # a zombie (killed, not reaped yet) still answers kill(pid, 0)
        return False
    return start is None or fields[19] == start  # another start: the pid was reused


def _age_s(trial) -> float:
    """Seconds since the trial started (``datetime_start``, the asking process's clock)."""
    started = trial.datetime_start
    if started is None:
        return 0.0
    return (datetime.datetime.now(started.tzinfo) - started).total_seconds()


def _fail_stale(study) -> int:
    """Marks abandoned RUNNING trials FAIL and re-queues their parameters; returns how many.

    Abandoned: asked by a dead process on this host (the ``host:pid:start`` recorded on the
    trial), or orphaned inside ``study.ask`` (no process recorded, and started more than
    ``ORPHAN_GRACE_S`` ago: its process died between creating the trial and recording
    itself). Several processes may reclaim at once: the trial's FAIL is the lock, only the
    process whose ``tell`` succeeds re-queues it.
    """
    optuna = _optuna()
    stale = 0
    for trial in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,)):
        worker = trial.user_attrs.get(WORKER_ATTR)
        if worker is None:
            if _age_s(trial) <= ORPHAN_GRACE_S:
                continue
        elif _alive(worker) is not False:
            continue
        try:
            study.tell(trial.number, state=optuna.trial.TrialState.FAIL)
        except (RuntimeError, ValueError):  # finished meanwhile by another process
            continue
        study.enqueue_trial(trial.params, user_attrs={REQUEUED_ATTR: trial.number})
        stale += 1
    return stale


def _is_finished(trial) -> bool:
    """COMPLETE, PRUNED, or FAIL because the metric diverged: counts toward ``n_trials``."""
    state = _optuna().trial.TrialState
    if trial.state in (state.COMPLETE, state.PRUNED):
        return True
    return trial.state == state.FAIL and bool(trial.user_attrs.get(DIVERGED_ATTR))


def _counts(study) -> tuple[int, int, int]:
    """(finished trials, RUNNING trials, RUNNING trials whose end this host will see).

    The last are the trials of live processes on this host and those without a process yet
    (being asked, or orphaned: reclaimed after ``ORPHAN_GRACE_S``); a process that waits for
    them sees each finish or become reclaimable. Not those of other hosts: whether their
    process lives cannot be told from here.
    """
    state = _optuna().trial.TrialState
    finished = running = seen = 0
    for trial in study.get_trials(deepcopy=False):
        if _is_finished(trial):
            finished += 1
        elif trial.state == state.RUNNING:
            running += 1
            worker = trial.user_attrs.get(WORKER_ATTR)
            seen += worker is None or _alive(worker) is not None
    return finished, running, seen


def _surplus(study, asked: list, n_trials: int) -> list:
    """The trials of ``asked`` past the study's first ``n_trials`` live trials.

    Live: finished, RUNNING or WAITING (re-queued), in trial-number order. The storage
    numbers trials in the order it creates them, and a process looks after its own trials
    exist, so it sees every trial numbered below them: processes that asked at the same
    moment agree on which trials are past ``n_trials``, and those go back unevaluated. The
    study then never ends above ``n_trials``.
    """
    state = _optuna().trial.TrialState
    live = sorted(
        t.number
        for t in study.get_trials(deepcopy=False)
        if _is_finished(t) or t.state in (state.RUNNING, state.WAITING)
    )
    keep = set(live[:n_trials])
    return [t for t in asked if t.number not in keep]


def _create_study(**kwargs):
    """``optuna.create_study``, tried again while processes race to create a fresh storage.

    Processes started together on a new database each create its tables, its schema version
    and the study; all but one then meet what another has just created (a table or row that
    exists, a locked file) as an error of the database. After a short random pause, another
    try finds it all there and loads it.
    """
    optuna = _optuna()
    from sqlalchemy import exc  # optuna's dependency

    races = (
        exc.OperationalError,
        exc.IntegrityError,
        exc.ProgrammingError,
        optuna.exceptions.StorageInternalError,
    )
    if kwargs.get("load_if_exists"):
        races += (optuna.exceptions.DuplicatedStudyError,)
    for attempt in range(1, CREATE_TRIES):
        try:
            return optuna.create_study(**kwargs)
        except races:
            time.sleep(random.uniform(0.05, 0.2) * attempt)
    return optuna.create_study(**kwargs)


def _history(study, modes: Sequence[str]) -> np.ndarray:
    """``(finished trials, len(modes))``: each metric's best value so far, in trial order."""
    state = _optuna().trial.TrialState
    best, out = [math.nan] * len(modes), []
    for trial in sorted(study.get_trials(deepcopy=False), key=lambda t: t.number):
        if trial.state == state.COMPLETE and trial.values is not None:
            for k, (value, mode) in enumerate(zip(trial.values, modes)):
                value = float(value)
                if math.isnan(best[k]) or (value > best[k] if mode == "max" else value < best[k]):
                    best[k] = value
        elif not (trial.state == state.FAIL and trial.user_attrs.get(DIVERGED_ATTR)):
            continue
        out.append(list(best))
    return np.asarray(out, np.float64).reshape(len(out), len(modes))


def _front(study, names: Sequence[str], modes: Sequence[str]):
    """The study's Pareto front: (configs, values ``(k, len(modes))``), ``sorted_front`` order."""
    state = _optuna().trial.TrialState
    complete = sorted(
        (t for t in study.get_trials(deepcopy=False, states=(state.COMPLETE,)) if t.values),
        key=lambda t: t.number,
    )
    values = np.asarray([t.values for t in complete], np.float64).reshape(-1, len(modes))
    rows = sorted_front(values, modes)
    return [{n: complete[i].params[n] for n in names} for i in rows], values[rows]


def _sampler(sampler: Any, seed: int):
    """``sampler``, or the optuna sampler a name stands for (``None``: ``"tpe"``)."""
    samplers = _optuna().samplers
    if sampler is None or sampler == "tpe":
        return samplers.TPESampler(seed=seed, constant_liar=True)
    if sampler == "nsga2":
        return samplers.NSGAIISampler(seed=seed)
    if isinstance(sampler, str):
        raise ValueError(f"sampler must be 'tpe', 'nsga2' or an optuna sampler, got {sampler!r}.")
    return sampler


def _run_batch(
    trial: Callable,
    batch: list[dict[str, Any]],
    static_names: Sequence[str],
    seeds: list[int],
    *,
    width: int,
    calls: int,
    where: engine.Layout,
    traced: dict[tuple, engine.TracedTrial],
) -> SweepResult:
    """Runs a batch on the engine: each static group padded to ``calls`` calls of ``width``.

    Every group of every batch then has the same shapes, so each group's program is compiled
    once for the whole search; ``traced`` keeps each group's trace across batches.
    """
    start = time.perf_counter()
    keys = np.stack([np.asarray(jax.random.PRNGKey(s)) for s in seeds])
    names = [n for n in batch[0] if n not in static_names]
    groups: dict[tuple, list[int]] = {}
    for i, config in enumerate(batch):
        groups.setdefault(tuple(repr(config[n]) for n in static_names), []).append(i)
    per_row: list[dict[str, np.ndarray]] = [{} for _ in batch]
    group_info = []
    for label, rows in groups.items():
        if label not in traced:
            static = {n: batch[rows[0]][n] for n in static_names}
            traced[label] = engine.trace_trial(trial, static, names)
        traced[label].verify(
            {n: np.asarray([batch[i][n] for i in rows], np.float32) for n in names},
            lambda row, rows=rows: f"trial {batch[rows[row]]}",
        )
        padded = engine.pad(rows, width * calls)
        call_info: dict[str, Any] = {}
        for first in range(0, len(rows), width):
            chunk = padded[first : first + width]
            hp = engine.stack_configs([batch[i] for i in chunk], names)
            hp = hp or {engine.ROW: np.arange(width, dtype=np.float32)}
            out = engine.run_trials(traced[label], hp, keys, where, info=call_info)
            for j, i in enumerate(chunk[: len(rows) - first]):
                per_row[i] = {k: v[j] for k, v in out.items()}
        group_info.append(call_info)
    metrics = {k: np.stack([r[k] for r in per_row]) for k in per_row[0]}
    info = {"groups": group_info, "wall_time_s": time.perf_counter() - start}
    return SweepResult(batch, metrics, seeds, static_names, info)


def _score(result: SweepResult, metric: str) -> np.ndarray:
    """Seed mean of ``metric`` per config (the last entry of a metric with extra axes)."""
    if metric not in result.metrics:
        raise ValueError(
            f"unknown metric {metric!r}; the trial returns {sorted(result.metrics)} "
            "(check the metric argument)."
        )
    value = result.metrics[metric]
    value = value.reshape(value.shape[0], value.shape[1], -1)[..., -1]
    return value.astype(np.float64).mean(axis=1)


def _check_int(name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"{name} must be an int >= 1, got {value!r}.")
    return int(value)


def tpe(
    trial: Callable,
    distributions: Mapping[str, Uniform | LogUniform | IntUniform | Choice | Static],
    *,
    n_trials: int,
    batch_size: int = 16,
    metric: str | Sequence[str],
    mode: str | Sequence[str] | None = None,
    seeds: int | Sequence[int] = 1,
    sampler: Any = None,
    storage: Any = None,
    study_name: str | None = None,
    load_if_exists: bool = True,
    seed: int = 0,
    chunk_size: int | None = None,
    devices: Sequence[Any] | None = None,
    callbacks: Sequence[Callable[[Any, Any], None]] = (),
    progress: bool = True,
) -> TPEResult:
    """Bayesian optimization with an optuna sampler, a batch of trials per compiled call.

    The algorithm (Tree-structured Parzen Estimator, Bergstra et al. 2011): split the
    finished trials at a quantile of the metric into good and bad ones, fit a Parzen density
    ``l(x)`` to the good and ``g(x)`` to the bad hyperparameters, and propose the candidates
    that maximize ``l(x) / g(x)``. Here each round asks the sampler for ``batch_size``
    trials (with ``constant_liar`` the pending ones count as bad, so a batch spreads out),
    runs them all with one ``jopt.sweep.run`` call, and tells back each trial's seed-mean
    ``metric`` (a diverged trial, NaN/inf in any metric or seed, is told as FAIL):

    .. code-block:: text

      while the study has fewer than n_trials finished trials:
          trials  = [study.ask(distributions) for _ in range(batch_size)]
          metrics = jopt.sweep.run(trial, [t.params for t in trials], seeds)  # one program
          for t, m in zip(trials, metrics): study.tell(t, mean over seeds of m[metric])

    Each static group of a batch is padded to ``batch_size`` configurations (repeating one),
    so every call has the same shapes and the trial is traced and compiled once per static
    group for the whole search; a short last batch is padded the same way. The price is
    compute: a batch that splits into ``g`` static groups computes ``g * batch_size`` runs
    for ``batch_size`` trials. With a static choice, keep ``g`` small or make the choice
    dynamic where the trial allows it (a numeric ``Choice`` is dynamic; a width can often be
    a mask over the largest width).

    Several objectives: with ``metric=["accuracy", "bytes"]`` and ``mode=["max", "min"]`` the
    study gets one direction per metric and each trial is told its seed means in that order.
    The default sampler, ``TPESampler``, is then multi-objective TPE (Ozaki et al. 2020): it
    splits the finished trials into good and bad ones by non-dominated rank (the last rank
    that does not fit whole split by hypervolume contribution) and weights the good ones by
    their contribution, then proposes as above. ``sampler="nsga2"`` uses NSGA-II (Deb et al.
    2002), whose generations of ``population_size=50`` trials fill batch by batch. Either
    way ``TPEResult.pareto`` is the front of the study's completed trials, and ``best`` the
    front's member best in the first metric.

    Persistence and several processes: with ``storage="sqlite:///search.db"`` (any optuna
    storage: a URL, ``"postgresql://..."`` included, or an object such as ``RDBStorage`` or
    ``JournalStorage(JournalFileBackend(path))``) and a ``study_name``, the study lives in
    the storage. ``n_trials`` is the number of finished trials the *study* should hold when
    ``tpe`` returns (finished: COMPLETE, PRUNED, or FAIL because the metric diverged), like
    optuna's ``MaxTrialsCallback``. So rerunning a killed search with the same arguments
    resumes it: the finished trials count, and abandoned RUNNING trials are marked FAIL and their
    parameters re-queued with ``study.enqueue_trial`` (user attribute ``jopt_requeued_from``: the
    old trial's number), so the next batch evaluates them first. Abandoned: asked by a dead process
    on this host (for the ``host:pid:start`` recorded on each trial, ``os.kill(pid, 0)`` fails,
    finds a zombie, or finds a later process that got the same pid), or orphaned by a process that
    died inside ``study.ask``, before it could record itself (a trial without ``host:pid:start``
    that started more than ``ORPHAN_GRACE_S`` = 30 s ago). Several processes (``tpe`` calls with the
    same storage and study name, started together on a fresh database or not) share the work: before
    each batch a process reclaims the abandoned trials and asks only ``n_trials - finished -
    running`` more; trials that a race between processes asked past ``n_trials`` go back unevaluated
    (FAIL, user attribute ``jopt_surplus``), so the study ends at exactly ``n_trials``. With nothing
    left to ask, a process waits (polling every ``POLL_S`` = 1 s) for the trials its peers on this
    host run, and reclaims them if the peer dies, so every process returns with the study finished.
    RUNNING trials of processes on other hosts are neither reclaimed nor waited for: fail them with
    optuna's heartbeat (``RDBStorage(heartbeat_interval=...)``) and
    ``optuna.storages.fail_stale_trials``.

    Args:
      trial: ``trial(hparams, key) -> dict of arrays``, as for ``jopt.sweep.run`` (pure,
        written for one configuration and one key). Pass the same function object on every
        call to reuse its compiled program.
      distributions: name -> ``jopt.sweep.Uniform`` / ``LogUniform`` (optuna
        ``FloatDistribution``, ``log=True``), ``IntUniform`` (``IntDistribution``, passed to
        the trial as a float32 like every dynamic value) or ``Choice`` / ``static([...])``
        (``CategoricalDistribution``; numeric choices are dynamic, other choices and
        ``static`` values are static: one compiled program per value).
      n_trials: finished trials the study should hold at the end (see above), ``>= 1``.
      batch_size: trials per compiled call, ``>= 1``.
      metric: the metric to optimize, a name in the trial's output (a metric with extra
        axes, a learning curve, is ranked by its last entry); or a list of names, one
        objective each.
      mode: ``"max"`` or ``"min"``; with a list of metrics, a list of one per metric.
      seeds: seeds per trial, as for ``jopt.sweep.run``; the seed mean is told to optuna.
      sampler: ``"tpe"`` (default: ``TPESampler(seed=seed, constant_liar=True)``, for one
        metric or several), ``"nsga2"`` (``NSGAIISampler(seed=seed)``), or any optuna
        sampler (``TPESampler``, ``RandomSampler``, ``QMCSampler``, ``CmaEsSampler``,
        ``GPSampler``, ``NSGAIISampler``, ...).
      storage: ``None`` (in memory) or an optuna storage: a URL (``"sqlite:///file.db"``,
        ``"postgresql+psycopg://user@host/db"``, ...) or a storage object (``RDBStorage``,
        ``JournalStorage``, ...).
      study_name: name of the study in ``storage`` (default: optuna's generated name).
      load_if_exists: continue a study of that name in ``storage`` (resume / share).
      seed: seed of a sampler given by name (unused for a sampler object). With a
        ``storage``, mixed with this process's ``host:pid:start`` and the number of trials the
        study holds, so that processes sharing a study, and a rerun resuming it, do not
        draw the same random startup trials.
      chunk_size: configurations per compiled call within a batch (``jopt.sweep.run``'s);
        default the whole padded batch.
      devices: devices to shard each batch over (``jopt.sweep.run``'s); default all.
      callbacks: optuna-style ``callback(study, frozen_trial)``, called after each tell.
      progress: show a tqdm bar over trials with the best value so far. Optuna's per-trial
        log lines are silenced (to WARNING) during the call and restored after.

    Returns:
      A ``TPEResult(result, study, best, best_value, history, pareto, pareto_values)``;
      ``result`` holds only the configurations this call evaluated; the other fields cover
      the whole study.

    Raises:
      ValueError: ``n_trials`` or ``batch_size`` < 1, ``mode`` not ``"max"``/``"min"`` (or
        not a list of them as long as a ``metric`` list), an empty ``distributions``, an
        unknown sampler name, a loaded study optimizing in other directions, or an unknown
        ``metric`` (after the first batch; its trials are told FAIL).
      TypeError: ``distributions`` holds something other than a jopt distribution.

    Examples:
      >>> import jax, jax.numpy as jnp, jopt
      >>> from jopt.search.tpe import tpe
      >>> def trial(hp, key):  # best at learning_rate = 1e-2
      ...     return {"score": -(jnp.log10(hp["learning_rate"]) + 2.0) ** 2}
      >>> out = tpe(trial, {"learning_rate": jopt.sweep.LogUniform(1e-5, 1.0)},
      ...           n_trials=32, batch_size=8, metric="score", mode="max", progress=False)
      >>> len(out.result), out.result.metrics["score"].shape, out.history.shape
      (32, (32, 1), (32,))
      >>> bool(out.best_value > -0.05), bool(abs(out.best["learning_rate"] / 1e-2 - 1) < 0.7)
      (True, True)

      Two objectives: an accuracy that grows with a width, and the bytes it costs:

      >>> def trial2(hp, key):
      ...     return {"accuracy": 1 - jnp.exp(-hp["width"]), "bytes": 4 * hp["width"]}
      >>> out = tpe(trial2, {"width": jopt.sweep.Uniform(0.0, 4.0)}, n_trials=16, batch_size=8,
      ...           metric=["accuracy", "bytes"], mode=["max", "min"], progress=False)
      >>> [d.name for d in out.study.directions], out.pareto_values.shape[1], out.history.shape
      (['MAXIMIZE', 'MINIMIZE'], 2, (16, 2))
      >>> len(out.pareto) == 16, out.best == out.pareto[0]  # every trial trades one for the other
      (True, True)

    References:
      Bergstra, Bardenet, Bengio, Kégl, `Algorithms for Hyper-Parameter Optimization
      <https://papers.nips.cc/paper/2011/hash/86e8f7ab32cfd12577bc2619bc635690-Abstract.html>`_,
      NeurIPS 2011.

      Akiba, Sano, Yanase, Ohta, Koyama, `Optuna: A Next-generation Hyperparameter
      Optimization Framework <https://arxiv.org/abs/1907.10902>`_, KDD 2019.

      Ozaki, Tanigaki, Watanabe, Onishi, `Multiobjective tree-structured Parzen estimator
      for computationally expensive optimization problems
      <https://doi.org/10.1145/3377930.3389817>`_, GECCO 2020.

      Deb, Pratap, Agarwal, Meyarivan, `A fast and elitist multiobjective genetic algorithm:
      NSGA-II <https://doi.org/10.1109/4235.996017>`_, IEEE TEC 2002.
    """
    optuna = _optuna()
    n_trials = _check_int("n_trials", n_trials)
    batch_size = _check_int("batch_size", batch_size)
    names, modes = check_metrics(metric, mode)
    several = not isinstance(metric, str)
    if not callable(trial):
        raise TypeError(f"trial must be a function (hparams, key) -> dict, got {trial!r}.")
    if not isinstance(distributions, Mapping) or not distributions:
        raise ValueError(f"distributions must be a non-empty dict, got {distributions!r}.")
    converted = {name: _distribution(name, d) for name, d in distributions.items()}
    optuna_dists = {name: d for name, (d, _) in converted.items()}
    static_names = [name for name, (_, is_static) in converted.items() if is_static]
    seeds_list = _runner.as_seeds(seeds)
    directions = ["maximize" if m == "max" else "minimize" for m in modes]
    sampler_name = "tpe" if sampler is None else sampler if isinstance(sampler, str) else None
    sampler = _sampler(sampler, seed)

    verbosity = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    try:
        study = _create_study(
            storage=storage,
            sampler=sampler,
            study_name=study_name,
            **({"directions": directions} if several else {"direction": directions[0]}),
            load_if_exists=load_if_exists,
        )
        if sampler_name is not None and storage is not None:
            # the same seed would draw the same random startup trials in every process
            # sharing the study, and again in a rerun resuming it
            held = len(study.get_trials(deepcopy=False))
            mixed = [seed % 2**32, zlib.crc32(_worker().encode()), held]
            mixed_seed = int(np.random.SeedSequence(mixed).generate_state(1)[0])
            study.sampler = _sampler(sampler_name, mixed_seed)
        loaded = [d.name.lower() for d in study.directions]
        if loaded != directions:
            raise ValueError(
                f"mode={mode!r}, but the loaded study {study.study_name!r} is set to "
                f"{loaded[0] if len(loaded) == 1 else loaded}."
            )
        configs, metrics, info = _search(
            study,
            trial,
            optuna_dists,
            static_names,
            n_trials=n_trials,
            batch_size=batch_size,
            objectives=names,
            several=several,
            seeds=seeds,
            chunk_size=chunk_size,
            devices=devices,
            callbacks=callbacks,
            progress=progress,
        )
    finally:
        optuna.logging.set_verbosity(verbosity)

    if configs:
        reported = list(metrics[0])
        stacked = {n: np.stack([m[n] for m in metrics]) for n in reported}
    else:  # everything was already done (a resumed, finished study)
        stacked = {n: np.zeros((0, len(seeds_list))) for n in names}
    result = SweepResult(configs, stacked, seeds_list, static_names, info)
    pareto, pareto_values = _front(study, list(distributions), modes)
    history = _history(study, modes)
    if several:
        best = pareto[0] if pareto else None
        best_value = tuple(pareto_values[0].tolist()) if pareto else (math.nan,) * len(names)
    else:
        history = history[:, 0]
        try:
            best_trial = study.best_trial
            best = {name: best_trial.params[name] for name in distributions}
            best_value = float(best_trial.value)
        except ValueError:  # no COMPLETE trial: all diverged
            best, best_value = None, math.nan
    if best is None:
        warnings.warn("every trial of the study diverged: there is no best one.", stacklevel=2)
    return TPEResult(result, study, best, best_value, history, pareto, pareto_values)


def _search(
    study,
    trial,
    optuna_dists,
    static_names,
    *,
    n_trials,
    batch_size,
    objectives,
    several,
    seeds,
    chunk_size,
    devices,
    callbacks,
    progress,
):
    """The ask / run / tell loop; returns (configs, per-config metrics, info)."""
    optuna = _optuna()
    worker = _worker()
    where = engine.layout(devices)
    seeds_list = _runner.as_seeds(seeds)
    width = where.round_up(
        min(chunk_size, batch_size) if chunk_size else _runner.default_chunk_size(batch_size, where)
    )
    calls = math.ceil(batch_size / width)
    traced: dict[tuple, engine.TracedTrial] = {}  # each static group traced once per search
    finished_trial = optuna.exceptions.UpdateFinishedTrialError
    configs: list[dict[str, Any]] = []
    metrics: list[dict[str, np.ndarray]] = []
    info: dict[str, Any] = {"stale_trials_requeued": 0, "surplus_trials": 0, "batches": []}
    start = time.perf_counter()
    finished, _, _ = _counts(study)
    info["finished_at_start"] = finished

    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=n_trials, initial=min(finished, n_trials), desc="tpe", unit="trial")
    try:
        while True:
            # before every batch, not only the first: a peer may die at any time
            info["stale_trials_requeued"] += _fail_stale(study)
            finished, running, seen = _counts(study)
            if bar is not None and min(finished, n_trials) > bar.n:
                bar.update(min(finished, n_trials) - bar.n)
            if finished >= n_trials:
                break
            todo = min(batch_size, n_trials - finished - running)
            if todo <= 0:
                if not seen:  # only other hosts' trials run: their processes finish them
                    break
                time.sleep(POLL_S)  # until the peers' trials finish or can be reclaimed
                continue
            batch_start = time.perf_counter()
            asked = []
            try:
                for _ in range(todo):
                    asked_trial = study.ask(optuna_dists)
                    try:
                        asked_trial.set_user_attr(WORKER_ATTR, worker)
                    except finished_trial:  # reclaimed as an orphan meanwhile: re-queued
                        continue
                    asked.append(asked_trial)
                surplus = {t.number for t in _surplus(study, asked, n_trials)}
                for t in asked:
                    if t.number in surplus:  # another process asked the same places first
                        with contextlib.suppress(finished_trial):
                            t.set_user_attr(SURPLUS_ATTR, True)
                        study.tell(t, state=optuna.trial.TrialState.FAIL, skip_if_finished=True)
                info["surplus_trials"] += len(surplus)
                asked = [t for t in asked if t.number not in surplus]
                if not asked:
                    continue
                batch = [{n: t.params[n] for n in optuna_dists} for t in asked]
                result = _run_batch(
                    trial,
                    batch,
                    static_names,
                    seeds_list,
                    width=width,
                    calls=calls,
                    where=where,
                    traced=traced,
                )
                scores = np.stack([_score(result, name) for name in objectives], axis=1)
                scalars = [
                    n for n, v in result.metrics.items() if v.ndim == 2 and n not in objectives
                ]
                for row, t in enumerate(asked):
                    values = [float(v) for v in scores[row]]
                    try:
                        if result.diverged[row].any() or not np.isfinite(values).all():
                            t.set_user_attr(DIVERGED_ATTR, True)
                            frozen = study.tell(t, state=optuna.trial.TrialState.FAIL)
                        else:
                            for name in scalars:  # other scalar metrics, seed means, on record
                                t.set_user_attr(name, float(result.mean(name)[row]))
                            frozen = study.tell(t, values if several else values[0])
                    except finished_trial:
                        # reclaimed by a peer that took it for an orphan (an ask slower than
                        # ORPHAN_GRACE_S): its parameters are re-queued and run again there
                        continue
                    for callback in callbacks:
                        callback(study, frozen)
            except BaseException:
                # leave no RUNNING trial behind: peers on this host would wait for it
                for t in asked:
                    study.tell(t, state=optuna.trial.TrialState.FAIL, skip_if_finished=True)
                raise
            configs += batch
            metrics += [{n: v[row] for n, v in result.metrics.items()} for row in range(len(batch))]
            group_info = result.info.get("groups", [])
            info["batches"].append(
                {
                    "n_trials": len(asked),
                    "wall_s": time.perf_counter() - batch_start,
                    "run_s": result.info.get("wall_time_s"),
                    "cached_program": [g.get("cached_program") for g in group_info],
                }
            )
            if bar is not None and several:
                bar.set_postfix(front=len(study.best_trials))
            elif bar is not None:
                try:
                    bar.set_postfix(best=f"{study.best_value:.4g}")
                except ValueError:
                    pass
    finally:
        if bar is not None:
            bar.close()
    info["wall_time_s"] = time.perf_counter() - start
    return configs, metrics, info
