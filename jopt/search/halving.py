"""Successive halving and Hyperband: each rung is one vmapped call over the survivors.

Successive halving (Jamieson & Talwalkar, 2016) trains ``n`` configurations for ``r`` steps,
keeps the best ``n // eta``, trains those ``eta`` times longer (they *continue* from their
carry, they are not restarted), and so on until one is left or ``max_steps`` is reached.
Hyperband (Li et al., 2018) runs several such brackets that trade the number of
configurations against the steps each gets, hedging against a too-aggressive first rung.

With several metrics (``metric=["val_accuracy", "bytes"], mode=["max", "min"]``) a rung keeps
configurations in NSGA-II's order (Deb et al., 2002): by non-dominated rank, and within the
last rank that does not fit whole, by crowding distance (``crowding_distance``); the result
holds the Pareto front of the configurations trained longest.

On device: survivors are a ``jopt.sweep.engine.Population``: gathered from its carry by index,
cut into chunks of a fixed ``width`` (padded by repeating a row), and advanced in units of
``min_steps`` steps, so every rung and every bracket with the same unit reuses ONE compiled
program.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jopt.search.resumable import Resumable
from jopt.sweep.engine import Population
from jopt.sweep.pareto import (
    crowding_distance,
    nsga2_order,
    ranks_and_crowding,
    sorted_front,
)
from jopt.sweep.result import SweepResult, check_metrics
from jopt.sweep.spaces import Space

__all__ = [
    "SearchResult",
    "check_metrics",
    "crowding_distance",
    "hyperband",
    "nsga2_order",
    "sorted_front",
    "successive_halving",
]


@dataclass
class SearchResult:
    """What a search strategy returns.

    Attributes:
      result: a ``SweepResult`` with every configuration tried: its last reported metrics
        (one seed axis of size 1) and ``steps``, the steps it was trained for.
      best: the chosen configuration (best metric among those trained longest). With
        several metrics: ``result.configs[pareto[0]]``, the front's member best in the first
        metric (ties by the next).
      best_value: its metric; with several metrics a tuple, one value per metric in
        ``metric``'s order.
      history: the strategy's own record (rungs, brackets, ...).
      compute_steps: training steps spent on real configurations (padding excluded).
      padded_steps: training steps actually computed, padding rows included.
      best_index: the row of ``best`` in ``result.configs`` (and in its metrics), e.g.
        ``result.metrics["val_accuracy"][best_index]`` for the pick's held-out score.
      pareto: rows of ``result.configs`` on the Pareto front of the configurations trained
        longest (those with the largest ``steps``; a diverged one is never on it), ordered
        by ``sorted_front``: best in the first metric first. With one metric, the rows tied
        at the best value.
    """

    result: SweepResult
    best: dict[str, Any]
    best_value: float | tuple[float, ...]
    history: list[dict[str, Any]] = field(default_factory=list)
    compute_steps: int = 0
    padded_steps: int = 0
    best_index: int = -1
    pareto: list[int] = field(default_factory=list)


def _configs(space: Space | Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    configs = [dict(c) for c in (space.configs if isinstance(space, Space) else space)]
    if not configs:
        raise ValueError("the search space is empty.")
    if isinstance(space, Space) and space.static_names:
        raise ValueError(
            f"successive halving continues one compiled population; static hyperparameters "
            f"{list(space.static_names)} would need one per value: run one search per value."
        )
    return configs


def _check_common(eta: int, min_steps: int, mode: Any, metric: Any) -> tuple[list[str], list[str]]:
    if not (isinstance(eta, (int, np.integer)) and eta >= 2):
        raise ValueError(f"eta must be an int >= 2, got {eta!r}.")
    if not (isinstance(min_steps, (int, np.integer)) and min_steps >= 1):
        raise ValueError(f"min_steps must be an int >= 1, got {min_steps!r}.")
    return check_metrics(metric, mode)


def _rank(values: np.ndarray, mode: str) -> np.ndarray:
    """Indices best first; NaN (diverged) last; ties by position."""
    score = np.where(np.isfinite(values), values, -np.inf if mode == "max" else np.inf)
    order = np.argsort(-score if mode == "max" else score, kind="stable")
    return order


def _longest_front(
    metrics: Mapping[str, np.ndarray], names: Sequence[str], modes: Sequence[str]
) -> list[int]:
    """``sorted_front`` of the rows trained for the most steps, as rows of ``metrics``."""
    rows = np.flatnonzero(metrics["steps"][:, 0] == metrics["steps"][:, 0].max())
    values = np.concatenate([metrics[name][rows] for name in names], axis=1)
    return rows[sorted_front(values, modes)].tolist()


def successive_halving(
    trial: Resumable,
    space: Space | Sequence[Mapping[str, Any]],
    *,
    min_steps: int,
    metric: str | Sequence[str],
    eta: int = 3,
    max_steps: int | None = None,
    mode: str | Sequence[str] | None = None,
    seed: int = 0,
    width: int | None = None,
    devices: Sequence[jax.Device] | None = None,
    progress: bool = True,
    _bracket: int | None = None,
) -> SearchResult:
    r"""Successive halving over ``space``, each rung one vmapped call over the survivors.

    With :math:`n` configurations, rung :math:`i = 0, 1, \dots` trains the survivors until
    :math:`r_i = r_0 \eta^i` steps in total (``min_steps`` :math:`= r_0`), ranks them by
    ``metric`` and keeps the best :math:`\lfloor n_i / \eta \rfloor` (at least one), until one
    is left or the next rung would pass ``max_steps``. Survivors continue from their carry, so
    a survivor's final params equal one uninterrupted run of :math:`r_{last}` steps. Every
    configuration uses the key ``PRNGKey(seed)`` (the same data order for all).

    With several metrics, a rung ranks its configurations in NSGA-II's order
    (``nsga2_order``): whole non-dominated fronts while they fit, then the least crowded
    members of the first front that does not (largest ``crowding_distance`` within it).
    ``pareto`` is the front of the last rung, and ``best`` its member best in the first
    metric (the metrics' order is their priority).

    Args:
      trial: a ``Resumable`` (e.g. ``jopt.search.fit_trial(...)``).
      space: a ``Space`` without static values, or a list of config dicts.
      min_steps: :math:`r_0`, the steps of the first rung (>= 1).
      metric: the metric of ``trial.advance`` to rank by, or a list of them (several
        objectives, e.g. ``["val_accuracy", "bytes"]``).
      eta: keep the top ``1/eta`` each rung (an int >= 2).
      max_steps: the most steps any configuration gets (default: enough for one survivor).
      mode: ``"max"`` or ``"min"``; with a list of metrics, a list of one per metric.
      seed: the PRNG seed every configuration uses.
      width: configurations per compiled call (default ``max(n // eta, 1)`` rounded up to the
        device count); all rungs reuse the program of this width.
      devices: devices to shard each call over (default all).
      progress: print one line per rung.
      _bracket: private, for :func:`hyperband`: the bracket recorded as ``"bracket"`` in
        each rung's ``history`` entry (``None`` for a plain successive halving).

    Returns:
      A ``SearchResult``; ``history`` holds one dict per rung (``steps``, ``configs``
      (indices), ``values``, ``kept``, best first). With several metrics, ``values`` holds
      one list of the metrics per configuration, and ``ranks`` and ``crowding`` the
      non-dominated rank and the crowding distance within that rank it was ordered by.

    Raises:
      ValueError: ``eta < 2``, ``min_steps < 1``, a ``max_steps`` below ``min_steps``, a
        ``mode`` list of another length than ``metric``, or a metric the trial does not
        report.

    Examples:
      >>> import jax.numpy as jnp, jopt
      >>> def init(hp, key):
      ...     return jnp.float32(5.0)
      >>> def advance(x, hp, steps):  # gradient descent on x**2 with this learning rate
      ...     x = x * (1 - 2 * hp["lr"]) ** steps
      ...     return x, {"loss": x**2}
      >>> space = jopt.sweep.grid(lr=[0.01, 0.05, 0.1, 0.2, 0.3, 0.4, 0.45, 0.6, 1.2])
      >>> out = jopt.search.successive_halving(jopt.search.Resumable(init, advance), space,
      ...                                      min_steps=2, metric="loss", mode="min",
      ...                                      progress=False)
      >>> out.best, [len(r["configs"]) for r in out.history], out.compute_steps
      ({'lr': 0.45}, [9, 3, 1], 42)

      Two objectives, the loss and a cost that grows with the learning rate, and at most 3
      steps: the first rung's front holds 7 of the 9 configurations, and NSGA-II keeps its
      two extremes (the lower loss first) and its least crowded member; ``best`` is the
      last rung's front's lowest loss:

      >>> def advance2(x, hp, steps):
      ...     x, metrics = advance(x, hp, steps)
      ...     return x, {**metrics, "cost": hp["lr"]}
      >>> out = jopt.search.successive_halving(jopt.search.Resumable(init, advance2), space,
      ...                                      min_steps=1, max_steps=3, metric=["loss", "cost"],
      ...                                      mode=["min", "min"], progress=False)
      >>> out.history[0]["ranks"], [out.result.configs[i]["lr"] for i in out.history[0]["kept"]]
      ([0, 0, 0, 0, 0, 0, 0, 1, 2], [0.45, 0.01, 0.2])
      >>> [out.result.configs[i]["lr"] for i in out.pareto], out.best
      ([0.45, 0.2, 0.01], {'lr': 0.45})

    References:
      Jamieson & Talwalkar, `Non-stochastic Best Arm Identification and Hyperparameter
      Optimization <https://arxiv.org/abs/1502.07943>`_, 2016.

      Deb, Pratap, Agarwal, Meyarivan, `A fast and elitist multiobjective genetic algorithm:
      NSGA-II <https://doi.org/10.1109/4235.996017>`_, IEEE TEC 2002.
    """
    names, modes = _check_common(eta, min_steps, mode, metric)
    several = not isinstance(metric, str)
    configs = _configs(space)
    n = len(configs)
    rungs = 1 + max(0, math.floor(math.log(n, eta) + 1e-9))  # until one survivor
    if max_steps is not None:
        if not (isinstance(max_steps, (int, np.integer)) and max_steps >= min_steps):
            raise ValueError(
                f"max_steps ({max_steps!r}) must be an int >= min_steps ({min_steps}): the "
                "budget does not fit even one rung."
            )
        rungs = min(rungs, 1 + math.floor(math.log(max_steps / min_steps, eta) + 1e-9))
    n_dev = len(devices) if devices is not None else len(jax.devices())
    width = width or max(n // eta, 1)
    width = n_dev * math.ceil(width / n_dev)
    keys = jnp.stack([jax.random.PRNGKey(seed)] * n)
    population = Population(trial, configs, keys, width=width, devices=devices)

    alive = list(range(n))
    last: dict[int, dict[str, float]] = {}
    steps_of = np.zeros(n, np.int64)
    history: list[dict[str, Any]] = []
    compute = 0
    done_steps = 0
    for rung in range(rungs):
        target = min_steps * eta**rung
        repeats = (target - done_steps) // min_steps
        out = population.advance(alive, min_steps, repeats)
        for name in names:
            if name not in out:
                raise ValueError(f"unknown metric {name!r}; the trial reports {sorted(out)}.")
        compute += len(alive) * (target - done_steps)
        done_steps = target
        for row, index in enumerate(alive):
            last[index] = {k: float(v[row]) for k, v in out.items()}
            steps_of[index] = target
        keep = max(len(alive) // eta, 1) if rung < rungs - 1 else len(alive)
        record = {"bracket": _bracket, "rung": rung, "steps": target, "configs": list(alive)}
        if several:
            values = np.stack([out[name] for name in names], axis=1)
            order = nsga2_order(values, modes)
            record["values"] = values.tolist()
            ranks, crowding = ranks_and_crowding(values, modes)
            record["ranks"], record["crowding"] = ranks.tolist(), crowding.tolist()
        else:
            order = _rank(out[metric], mode)
            record["values"] = out[metric].tolist()
        kept = [alive[i] for i in order[:keep]]
        history.append({**record, "kept": kept})
        if progress:
            if several:
                summary = f"front of {int(np.sum(np.asarray(record['ranks']) == 0))}"
            else:
                summary = f"best {metric} {out[metric][order[0]]:.4g}"
            print(f"rung {rung}: {len(alive)} configs at {target} steps, {summary}, keeping {keep}")
        alive = kept
    best_index = alive[0]
    reported = sorted({k for v in last.values() for k in v})
    metrics = {
        k: np.asarray([[last.get(i, {}).get(k, np.nan)] for i in range(n)], np.float32)
        for k in reported
    }
    metrics["steps"] = steps_of.reshape(n, 1)
    info = {
        "strategy": "successive_halving",
        "eta": eta,
        "min_steps": min_steps,
        "width": width,
        "compute_steps": compute,
        "padded_steps": population.padded_steps,
    }
    diverged = ~np.isfinite(np.concatenate([metrics[name] for name in names], axis=1))
    diverged = diverged.any(axis=1, keepdims=True)
    result = SweepResult(configs, metrics, [seed], info=info, diverged=diverged)
    pareto = _longest_front(metrics, names, modes)
    if several and pareto:
        best_index = pareto[0]
    best_value = tuple(last[best_index][name] for name in names)
    return SearchResult(
        result=result,
        best=dict(configs[best_index]),
        best_value=best_value if several else best_value[0],
        history=history,
        compute_steps=compute,
        padded_steps=population.padded_steps,
        best_index=best_index,
        pareto=pareto,
    )


def hyperband(
    trial: Resumable,
    sample: Callable[[int, jax.Array], Space | Sequence[Mapping[str, Any]]] | Mapping[str, Any],
    *,
    max_steps: int,
    metric: str | Sequence[str],
    min_steps: int = 1,
    eta: int = 3,
    mode: str | Sequence[str] | None = None,
    seed: int = 0,
    width: int | None = None,
    devices: Sequence[jax.Device] | None = None,
    progress: bool = True,
) -> SearchResult:
    r"""Hyperband: successive halving in brackets from many-short to few-long runs.

    With :math:`s_{max} = \lfloor \log_\eta (R / r_{min}) \rfloor` (``max_steps``
    :math:`= R`, ``min_steps`` :math:`= r_{min}`, the smallest run worth ranking), bracket
    :math:`s = s_{max}, \dots, 0` samples :math:`n_s = \lceil (s_{max}+1)\, \eta^s / (s+1)
    \rceil` configurations and runs successive halving from :math:`r_s = R \eta^{-s}` steps up
    to :math:`R` (Li et al. 2018, Algorithm 1). Each bracket is one population; within it,
    rungs reuse one compiled program per width.

    Args:
      trial: a ``Resumable``.
      sample: ``sample(n, key) -> configs`` (e.g. ``lambda n, key: jopt.sweep.random(n, key,
        lr=jopt.sweep.LogUniform(1e-4, 1))``), or a dict of jopt.sweep distributions.
      max_steps: :math:`R`, the most steps one configuration gets; must be a multiple of
        :math:`\eta^{s_{max}}` so that every rung is a whole number of steps.
      min_steps: :math:`r_{min}`, the fewest steps a configuration is trained before it is
        ranked (>= 1); e.g. an epoch, or as many steps as a learning-rate warmup. Larger
        values mean fewer, less aggressive brackets.
      width: configurations per compiled call in every bracket (default: each bracket's
        ``n_s // eta``; a fixed width lets brackets share compiled programs).
      metric, eta, mode, devices, progress: as in ``successive_halving`` (several metrics
        rank each rung in NSGA-II's order).
      seed: seeds the sampling (bracket ``s`` uses ``fold_in(PRNGKey(seed), s)``) and the runs.

    Returns:
      A ``SearchResult`` over all brackets; ``best`` is the best configuration trained for
      ``max_steps``; ``pareto`` the front of all configurations trained for ``max_steps`` (in
      every bracket), best in the first metric first, and with several metrics ``best`` is
      its first; ``history`` lists every rung with its ``bracket``.

    Examples:
      >>> import jax.numpy as jnp, jopt
      >>> trial = jopt.search.Resumable(
      ...     lambda hp, key: jnp.float32(5.0),
      ...     lambda x, hp, steps: (x * (1 - 2 * hp["lr"]) ** steps,
      ...                           {"loss": (x * (1 - 2 * hp["lr"]) ** steps) ** 2}))
      >>> out = jopt.search.hyperband(trial, {"lr": jopt.sweep.Uniform(0.0, 0.5)},
      ...                             max_steps=9, metric="loss", mode="min", progress=False)
      >>> sorted({r["bracket"] for r in out.history}), out.best_value < 1e-3
      ([0, 1, 2], True)

    References:
      Li et al., `Hyperband: A Novel Bandit-Based Approach to Hyperparameter Optimization
      <https://arxiv.org/abs/1603.06560>`_, JMLR 2018.

      Deb, Pratap, Agarwal, Meyarivan, `A fast and elitist multiobjective genetic algorithm:
      NSGA-II <https://doi.org/10.1109/4235.996017>`_, IEEE TEC 2002.
    """
    names, modes = _check_common(eta, min_steps, mode, metric)
    several = not isinstance(metric, str)
    if not (isinstance(max_steps, (int, np.integer)) and max_steps >= min_steps):
        raise ValueError(f"max_steps must be an int >= min_steps ({min_steps}), got {max_steps!r}.")
    s_max = math.floor(math.log(max_steps / min_steps, eta) + 1e-9)
    if max_steps % eta**s_max:
        fits = eta**s_max * math.ceil(max_steps / eta**s_max)
        raise ValueError(
            f"max_steps ({max_steps}) must be a multiple of eta**s_max = {eta**s_max} so every "
            f"rung is a whole number of steps; try {fits}."
        )
    if isinstance(sample, Mapping):
        from jopt.sweep.spaces import random as _random

        dists = dict(sample)
        sample = lambda n, key: _random(n, key, **dists)
    all_configs: list[dict[str, Any]] = []
    metric_rows: list[dict[str, float]] = []
    history: list[dict[str, Any]] = []
    compute = padded = 0
    best, best_value, best_index = None, None, -1
    for s in range(s_max, -1, -1):
        n_s = math.ceil((s_max + 1) * eta**s / (s + 1))
        r_s = max_steps // eta**s
        configs = _configs(sample(n_s, jax.random.fold_in(jax.random.PRNGKey(seed), s)))
        if progress:
            print(f"bracket s={s}: {n_s} configs from {r_s} steps")
        out = successive_halving(
            trial,
            configs,
            min_steps=r_s,
            metric=metric,
            eta=eta,
            max_steps=max_steps,
            mode=mode,
            seed=seed,
            width=width,
            devices=devices,
            progress=progress,
            _bracket=s,
        )
        history += out.history
        compute += out.compute_steps
        padded += out.padded_steps
        all_configs += configs
        for i in range(len(configs)):
            metric_rows.append({k: float(v[i, 0]) for k, v in out.result.metrics.items()})
        final = out.history[-1]
        if final["steps"] == max_steps and not several:
            value = out.best_value
            better = best_value is None or (
                value > best_value if mode == "max" else value < best_value
            )
            if np.isfinite(value) and better:
                best, best_value = dict(out.best), value
                best_index = len(all_configs) - len(configs) + out.best_index
    reported = sorted(metric_rows[0])
    metrics = {k: np.asarray([[row[k]] for row in metric_rows], np.float32) for k in reported}
    info = {
        "strategy": "hyperband",
        "eta": eta,
        "max_steps": max_steps,
        "min_steps": min_steps,
        "s_max": s_max,
        "compute_steps": compute,
        "padded_steps": padded,
    }
    diverged = ~np.isfinite(np.concatenate([metrics[name] for name in names], axis=1))
    result = SweepResult(
        all_configs, metrics, [seed], info=info, diverged=diverged.any(axis=1, keepdims=True)
    )
    pareto = _longest_front(metrics, names, modes) if metrics["steps"].max() == max_steps else []
    if several and pareto:
        best_index = pareto[0]
        best = dict(all_configs[best_index])
        best_value = tuple(float(metrics[name][best_index, 0]) for name in names)
    if best is None:
        raise ValueError("every configuration trained for max_steps diverged.")
    return SearchResult(result, best, best_value, history, compute, padded, best_index, pareto)
