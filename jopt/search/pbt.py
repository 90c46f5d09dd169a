"""Population-based training (PBT), compiled whole: one program for every round of a population.

PBT (Jaderberg et al. 2017) trains a population of models in parallel and, every few steps,
lets the worst members copy the weights of the best (*exploit*) and perturb the copied
hyperparameters (*explore*), so the population discovers hyperparameter *schedules* rather
than constants.

Here the population is one batched (vmapped) carry of a ``Resumable`` trial, sharded over the
devices, and the whole run is one ``jax.jit``-compiled ``lax.scan`` over rounds. Each round
advances every member ``ready_every`` steps with ``vmap(trial.advance)``, then ranks, copies and
perturbs with array operations on device; nothing returns to Python between rounds.

A round's two decisions are public functions of arrays, for a loop of one's own: ``exploit``
(truncation selection: whom each member copies) and ``explore`` (perturbation within ranges).

Hyperparameters are state: explore rewrites them inside the carry with
``jopt.scale_hparams``, which searches any pytree for jopt optimizer states, so it works on a
``fit_trial`` carry (``{"state": TrainState, "key": key}``) and on any carry that holds a jopt
optimizer state somewhere.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from jopt.hyperparams import Check, scale_hparams
from jopt.hyperparams import checks as _checks
from jopt.hyperparams import hparams as _hparams
from jopt.search.resumable import Resumable
from jopt.sweep import engine
from jopt.sweep.result import SweepResult, check_mode

__all__ = ["PBTResult", "exploit", "explore", "pbt", "plot_lineage"]


class PBTResult(NamedTuple):
    """The outcome of ``pbt``.

    Attributes:
      result: a ``jopt.sweep.SweepResult`` of the final population: ``configs`` are the final
        hyperparameters (those the last round trained with), ``metrics[name]`` has shape
        ``(population, 1)`` (the last round's value of every metric ``advance`` reports) and
        ``metrics[name + "_per_round"]`` has shape ``(population, 1, rounds)`` (member slot
        ``i`` over rounds; a slot's curve jumps where it copied another member).
      history: name -> ``np.ndarray`` of shape ``(rounds, population)``: every searched
        hyperparameter (the value member ``i`` trained with in round ``r``), ``"metric"`` (the
        ranked metric at the end of round ``r``) and ``"parent"`` (the member whose carry member
        ``i`` started round ``r`` from: itself, or the top member it copied; row 0 is
        ``arange(population)``).
      best: the best final member: ``{"index", "config", "metric", "lineage", "trajectory"}``;
        ``lineage[r]`` is the member slot its weights came through in round ``r`` (traced back
        through ``parent``) and ``trajectory[name][r]`` the hyperparameter it trained with
        there, i.e. the schedule PBT found.
      carry: the final batched carry (leading axis ``population``), to continue training or
        evaluate.
      metric, mode: what was ranked, and how.
    """

    result: SweepResult
    history: dict[str, np.ndarray]
    best: dict[str, Any]
    carry: Any
    metric: str
    mode: str


def _check_int(name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"pbt: {name} must be an int >= 1, got {value!r}.")
    return int(value)


def _as_configs(space_or_configs, population, key) -> list[dict[str, Any]]:
    from jopt.sweep.spaces import Space, random

    if isinstance(space_or_configs, Mapping):  # distributions: sample `population` of them
        if population is None:
            raise ValueError("pbt: population is needed to sample a space of distributions.")
        _check_int("population", population)
        space_or_configs = random(int(population), key, **space_or_configs)
    configs = list(
        space_or_configs.configs if isinstance(space_or_configs, Space) else space_or_configs
    )
    if population is not None and len(configs) != population:
        raise ValueError(f"pbt: population={population!r} but {len(configs)} configs were given.")
    if len(configs) < 2:
        raise ValueError(f"pbt: population must be >= 2, got {len(configs)} configs.")
    names = list(configs[0])
    for config in configs:
        if list(config) != names:
            raise ValueError(f"pbt: every config needs the same names: {names} vs {list(config)}.")
        for name, value in config.items():
            if isinstance(value, bool) or not isinstance(value, (int, float, np.number)):
                raise ValueError(
                    f"pbt: hyperparameter {name!r} must be a number in every config (PBT runs "
                    f"one compiled program), got {value!r}."
                )
    return [dict(c) for c in configs]


def _resolve(name: str, bare: Sequence[str], qualified: Sequence[str]) -> str | None:
    """The key under which ``jopt.hparams`` of the whole carry reports config name ``name``.

    Bare names and fully qualified names match as they are. A name qualified relative to the
    optimizer state (``"1/rate"``, as ``fit_trial`` accepts) is matched to the unique carry-level
    qualified name that ends with it (``"state/1/rate"``).
    """
    if name in bare or name in qualified:
        return name
    matches = [q for q in qualified if q.endswith("/" + name)]
    return matches[0] if len(matches) == 1 else None


def _check_fraction(fraction: Any, who: str) -> float:
    if isinstance(fraction, bool) or not (
        isinstance(fraction, (int, float)) and 0 < fraction <= 0.5
    ):
        raise ValueError(f"{who}: fraction must be in (0, 0.5], got {fraction!r}.")
    return fraction


def _check_perturb(perturb: Any, who: str) -> np.ndarray:
    factors = np.asarray(perturb, np.float32).reshape(-1)
    if factors.size == 0 or not np.all(np.isfinite(factors) & (factors > 0)):
        raise ValueError(
            f"{who}: perturb must be a non-empty list of factors > 0, got {perturb!r}."
        )
    return factors


def _check_bounds(bounds: Any, names: Sequence[str], who: str) -> dict[str, tuple[float, float]]:
    bounds = dict(bounds or {})
    for name, bound in bounds.items():
        if name not in names:
            raise ValueError(f"{who}: unknown hyperparameter {name!r} in bounds; known: {names}.")
        if len(bound) != 2 or not bound[0] <= bound[1]:
            raise ValueError(f"{who}: bounds[{name!r}] must be (low, high), got {bound!r}.")
    return bounds


# --- exploit and explore: one round's decisions, as array operations ---------------------------


def exploit(key: jax.Array, metric: jax.Array, *, mode: str, fraction: float = 0.2) -> jax.Array:
    r"""Truncation selection: the member whose carry each member continues from.

    With population :math:`N` and :math:`k = \max(1, \lfloor fN \rfloor)` for ``fraction``
    :math:`f`, members are ranked by ``metric``, best first; each of the bottom :math:`k` draws
    its parent uniformly (with replacement) from the top :math:`k`, and every other member is
    its own parent.

    .. code-block:: text

        s_i = m_i ("max") or -m_i ("min");  s_i = -inf where m_i is NaN
        rank by s, largest first (stable: of equal scores the lower slot ranks higher)
        p_i ~ Uniform(top k)    for i in the bottom k
        p_i = i                 otherwise

    A diverged member (NaN metric) ranks last, tied with any ``-inf`` score, and ties keep slot
    order, so the result depends only on ``key`` and the ranking. Traceable (``metric`` may be
    a tracer); ``mode`` and ``fraction`` are static.

    Args:
      key: a PRNG key for the parent draws.
      metric: the ranked metric, shape ``(N,)``.
      mode: ``"max"`` or ``"min"``.
      fraction: the truncation fraction in (0, 0.5].

    Returns:
      ``parent``, int32 of shape ``(N,)``: member ``i`` continues from member ``parent[i]``'s
      carry (``parent[i] == i`` where it keeps its own). Copy a batched carry with
      ``jax.tree.map(lambda x: x[parent], carry)``.

    Raises:
      ValueError: ``mode`` not ``"max"``/``"min"``, ``fraction`` outside (0, 0.5], or a
        ``metric`` that is not one-dimensional.

    Examples:
      >>> import jax, jax.numpy as jnp
      >>> from jopt.search.pbt import exploit
      >>> accuracy = jnp.array([0.3, jnp.nan, 0.1, 0.5])  # member 1 diverged
      >>> exploit(jax.random.PRNGKey(0), accuracy, mode="max", fraction=0.25).tolist()
      [0, 3, 2, 3]
      >>> exploit(jax.random.PRNGKey(0), accuracy, mode="max", fraction=0.5).tolist()
      [0, 3, 0, 3]
    """
    check_mode(mode, "metric")
    fraction = _check_fraction(fraction, "exploit")
    value = jnp.asarray(metric).astype(jnp.float32)
    if value.ndim != 1:
        raise ValueError(f"exploit: metric must have shape (N,), got shape {value.shape}.")
    n = value.shape[0]
    k = max(1, math.floor(fraction * n))
    score = jnp.where(jnp.isnan(value), -jnp.inf, value if mode == "max" else -value)
    order = jnp.argsort(-score, stable=True)
    top, bottom = order[:k], order[n - k :]
    sources = top[jax.random.randint(key, (k,), 0, k)]
    return jnp.arange(n).at[bottom].set(sources)


def explore(
    key: jax.Array,
    hparams: Mapping[str, jax.Array],
    copied: jax.Array,
    *,
    perturb: Sequence[float] = (0.8, 1.2),
    bounds: Mapping[str, tuple[float, float]] | None = None,
    ranges: Mapping[str, Check] | None = None,
) -> tuple[dict[str, jax.Array], dict[str, jax.Array]]:
    r"""Perturbs the hyperparameters of the members that copied another, inside their ranges.

    Each hyperparameter :math:`j` of each member :math:`i` that copied a parent is multiplied
    by a factor drawn uniformly from ``perturb``, independently per member and hyperparameter,
    then clipped to ``bounds`` and to the transform's own range; a member that kept its own
    carry keeps its values.

    .. code-block:: text

        u_ij ~ Uniform(perturb)   if copied_i,  else 1
        h'_ij = clip(clip(h_ij * u_ij, bounds_j), range_j)    if copied_i,  else h_ij
        f_ij  = h'_ij / h_ij   where clipping changed the value (1 where h_ij = 0),  else u_ij

    The factor :math:`f` is returned too: a hyperparameter held in an optimizer state is
    explored with ``jopt.scale_hparams(state, name=f)``, which multiplies the rest of a schedule
    instead of pinning its value.

    Args:
      key: a PRNG key for the factor draws.
      hparams: name -> the current values, shape ``(N,)`` (those of each member's parent, after
        ``exploit``). The draws follow the dict's order.
      copied: bool, shape ``(N,)``: which members copied another (``parent != arange(N)``).
      perturb: the factors (> 0) to draw from.
      bounds: name -> ``(low, high)`` to clip explored values to.
      ranges: name -> a ``jopt.hyperparams.Check``, the range the transform allows (as
        ``jopt.hyperparams.checks(state)`` reports it); an open bound clips to the nearest float
        inside.

    Returns:
      ``(new, factor)``: dicts name -> float32 arrays of shape ``(N,)``, the explored values and
      the factor that turns the old values into them.

    Raises:
      ValueError: an empty or non-positive ``perturb``, or a name in ``bounds`` or ``ranges``
        that is not in ``hparams``.

    Examples:
      >>> import jax, jax.numpy as jnp
      >>> from jopt.search.pbt import explore
      >>> lr = jnp.array([0.1, 0.1, 0.1])
      >>> copied = jnp.array([False, True, True])  # member 0 kept its own carry
      >>> new, factor = explore(jax.random.PRNGKey(1), {"learning_rate": lr}, copied,
      ...                       perturb=(0.5, 2.0), bounds={"learning_rate": (0.0, 0.15)})
      >>> [round(float(x), 3) for x in new["learning_rate"]]  # 0.1 * 2.0 clipped to 0.15
      [0.1, 0.15, 0.05]
      >>> [round(float(x), 3) for x in factor["learning_rate"]]
      [1.0, 1.5, 0.5]
    """
    factors = _check_perturb(perturb, "explore")
    names = list(hparams)
    bounds = _check_bounds(bounds, names, "explore")
    ranges = dict(ranges or {})
    for name in ranges:
        if name not in names:
            raise ValueError(f"explore: unknown hyperparameter {name!r} in ranges; known: {names}.")
    draws = jax.random.randint(key, (len(names), jnp.shape(copied)[0]), 0, factors.size)
    new_values, applied = {}, {}
    for j, name in enumerate(names):
        old = hparams[name]
        u = jnp.where(copied, jnp.asarray(factors)[draws[j]], 1.0)
        new = old * u
        if name in bounds or name in ranges:
            clipped = new
            if name in bounds:
                clipped = jnp.clip(clipped, *bounds[name])
            if name in ranges:  # never explore outside the transform's own range
                clipped = ranges[name].clip(clipped)
            ratio = jnp.where(old != 0, clipped / old, 1.0)
            u = jnp.where(copied & (clipped != new), ratio, u)
            new = jnp.where(copied, clipped, new)
        new_values[name], applied[name] = new, u
    return new_values, applied


# --- one round, and the driver -----------------------------------------------------------------


class _Plan(NamedTuple):
    """The static settings of a run: what each round reads, ranks and explores."""

    names: list[str]  # every config name, in config order
    searched: list[str]  # the names explore perturbs
    where: dict[str, str | None]  # name -> its key in jopt.hparams(carry); None: held by PBT
    ranges: dict[str, Check]  # searched name -> the transform's range, where the carry has one
    bounds: dict[str, tuple[float, float]]
    perturb: np.ndarray
    fraction: float
    metric: str
    mode: str
    population: int  # members; the carry may have more rows (padding to the devices)
    rounds: int


def _locate(carry: Any, names: Sequence[str], searched: Sequence[str]):
    """Where each config name lives: ``(where, ranges)`` for ``_Plan``."""
    in_carry = list(jax.eval_shape(lambda c: _hparams(c), carry))
    in_carry_q = list(jax.eval_shape(lambda c: _hparams(c, qualified=True), carry))
    where = {name: _resolve(name, in_carry, in_carry_q) for name in names}
    all_ranges = {**_checks(carry), **_checks(carry, qualified=True)}
    ranges = {name: all_ranges[where[name]] for name in searched if where[name] in all_ranges}
    return where, ranges


def _read_hparams(carry: Any, extra: dict[str, jax.Array], plan: _Plan) -> dict[str, jax.Array]:
    """Every config name's current values: from the carry's states, or PBT's own ``extra``."""
    found = {**_hparams(carry), **_hparams(carry, qualified=True)}
    where = plan.where
    return {
        name: (extra[name] if where[name] is None else found[where[name]]).astype(jnp.float32)
        for name in plan.names
    }


def _write_hparams(carry, extra, new, factor, plan: _Plan):
    """Explored values into ``extra``, or (scaled by ``factor``) into the carry's states."""
    scale = {}
    for name in new:
        if plan.where[name] is None:
            extra = {**extra, name: new[name]}
        else:
            scale[plan.where[name]] = factor[name]
    if scale:
        carry = scale_hparams(carry, **scale)
    return carry, extra


def _round(plan: _Plan, advance: Callable, sharding: Any, state: tuple, r: jax.Array):
    """Round ``r``: advance every member, then exploit and explore (not after the last)."""
    carry, extra, search_key = state
    carry = jax.lax.with_sharding_constraint(carry, sharding)
    hp = _read_hparams(carry, extra, plan)
    carry, metrics = advance(carry, hp)
    if plan.metric not in metrics:
        raise ValueError(f"pbt: advance reports {sorted(metrics)}, not metric {plan.metric!r}.")
    n = plan.population
    pick_key, factor_key = jax.random.split(jax.random.fold_in(search_key, r))
    chosen = exploit(pick_key, metrics[plan.metric][:n], mode=plan.mode, fraction=plan.fraction)
    identity = jnp.arange(jax.tree.leaves(carry)[0].shape[0])  # padding rows copy no one
    parent = jnp.where(r < plan.rounds - 1, jnp.concatenate([chosen, identity[n:]]), identity)
    carry = jax.tree.map(lambda x: x[parent], carry)
    extra = jax.tree.map(lambda x: x[parent], extra)
    old = _read_hparams(carry, extra, plan)
    new, factor = explore(
        factor_key,
        {name: old[name] for name in plan.searched},
        parent != identity,
        perturb=plan.perturb,
        bounds=plan.bounds,
        ranges=plan.ranges,
    )
    carry, extra = _write_hparams(carry, extra, new, factor, plan)
    record = {
        "hparams": {name: hp[name][:n] for name in plan.names},
        "metrics": {name: v[:n] for name, v in metrics.items()},
        "parent": parent[:n],
    }
    return (carry, extra, search_key), record


def _initial_population(trial, configs, base, seeds_share_data, devices) -> Any:
    """``trial.init`` of every config, batched, sharded over the devices and padded to fill them.

    Members start with key ``base``, or ``fold_in(base, i)`` when they do not share data.
    """
    n = len(configs)
    member_keys = (
        jnp.broadcast_to(base, (n, *base.shape))
        if seeds_share_data
        else jax.vmap(lambda i: jax.random.fold_in(base, i))(jnp.arange(n))
    )
    return engine.init_population(trial, configs, member_keys, devices=devices)


def _run_rounds(plan: _Plan, advance: Callable, carry, extra, search_key, devices):
    """Every round as one compiled ``lax.scan``: the final carry and the per-round records."""
    one_round = functools.partial(_round, plan, advance, engine.layout(devices).config)

    def run(carry, extra, search_key):
        state = (carry, extra, search_key)
        (carry, _, _), records = jax.lax.scan(one_round, state, jnp.arange(plan.rounds))
        return carry, records

    # The whole run is one program, cached by what it computes: a second pbt call with new
    # seeds or starting values (same shapes and settings) reuses it.
    args = (carry, extra, search_key)
    program, _ = engine.compile_by_content(
        run, args, tag=("pbt", engine.layout(devices).device_ids)
    )
    carry, records = program(*args)
    return carry, jax.device_get(records)


def _lineage(parent: np.ndarray, member: int) -> list[int]:
    """The slot ``member``'s carry came through in each round, traced back through ``parent``."""
    lineage = [member]
    for r in range(parent.shape[0] - 1, 0, -1):
        lineage.append(int(parent[r, lineage[-1]]))
    return lineage[::-1]


def _summarize(records: dict, carry: Any, plan: _Plan, info: dict) -> PBTResult:
    """The ``PBTResult`` from the per-round records (host arrays)."""
    n, rounds, names = plan.population, plan.rounds, plan.names
    # parent[r] is whom member i started round r from: the decision after round r - 1
    parent = np.concatenate([np.arange(n)[None], np.asarray(records["parent"][:-1])], 0)
    history = {name: np.asarray(v, np.float64) for name, v in records["hparams"].items()}
    history["metric"] = np.asarray(records["metrics"][plan.metric])
    history["parent"] = parent.astype(np.int64)

    final_configs = [{name: float(history[name][-1, i]) for name in names} for i in range(n)]
    metrics = {}
    for name, value in records["metrics"].items():
        value = np.asarray(value)  # (rounds, n)
        metrics[name] = value[-1][:, None]
        metrics[name + "_per_round"] = value.T[:, None, :]
    result = SweepResult(final_configs, metrics, seeds=[0], info=info)
    try:
        b = result.best_index(plan.metric, plan.mode)
    except ValueError:  # every member diverged
        b = 0
    lineage = _lineage(parent, b)
    best = {
        "index": b,
        "config": final_configs[b],
        "metric": float(history["metric"][-1, b]),
        "lineage": lineage,
        "trajectory": {name: history[name][np.arange(rounds), lineage] for name in names},
    }
    return PBTResult(result, history, best, carry, plan.metric, plan.mode)


def pbt(
    trial: Resumable,
    space_or_configs,
    *,
    rounds: int,
    ready_every: int,
    metric: str,
    mode: str | None = None,
    population: int | None = None,
    fraction: float = 0.2,
    perturb: Sequence[float] = (0.8, 1.2),
    hparams: Sequence[str] | None = None,
    bounds: Mapping[str, tuple[float, float]] | None = None,
    key: int | jax.Array = 0,
    seeds_share_data: bool = True,
    devices=None,
) -> PBTResult:
    r"""Population-based training, the whole run compiled as one program.

    With population :math:`N`, :math:`k = \max(1, \lfloor fN \rfloor)` for ``fraction``
    :math:`f`, and carries :math:`c_i` with hyperparameters :math:`h_i`, each of ``rounds``
    rounds is

    .. code-block:: text

        c_i, m_i = advance(c_i, h_i, ready_every)          for all i (vmapped)
        if not the last round:
            rank members by m (best first; NaN is worst)
            for i in the bottom k:                            # exploit (truncation)
                p_i ~ Uniform(top k);  c_i = c_{p_i}         # every leaf: params, opt state, ...
                h_i = clip(h_{p_i} * u_i, bounds)             # explore, u_i ~ Uniform(perturb)
                                                              # per hyperparameter, kept
                                                              # inside the transform's range

    No exploit follows the last round, so the final metrics belong to the final carries.
    Ranking (``exploit``), copying (``jax.tree.map(lambda x: x[parent], carry)``) and perturbing
    (``explore``) are array operations inside one ``jax.jit``-compiled ``lax.scan`` over rounds:
    ``trial.advance`` is traced once for the whole run.

    Where hyperparameters live. Searched names that ``jopt.hparams(carry)`` finds in the carry
    (any jopt optimizer state anywhere in it; ``trial.init`` must write the config's values
    there, as ``fit_trial`` does) are read from the carry and explored with
    ``jopt.scale_hparams`` on the whole carry, so a scheduled hyperparameter keeps its schedule,
    multiplied. A name qualified relative to the optimizer state (``"1/rate"``) is matched to the
    carry's ``"state/1/rate"``. Names the carry does not hold are kept by PBT, copied and
    perturbed the same way, and passed to ``advance`` in its ``hparams`` argument (which always
    receives every config name at its current value).

    Args:
      trial: a ``jopt.search.Resumable``; ``advance`` must report ``metric`` (a scalar).
      space_or_configs: the initial population: a ``jopt.sweep.Space`` or a list of config dicts
        (population = their number), or a dict name -> distribution (``jopt.sweep.LogUniform``,
        ...) sampled with ``jopt.sweep.random(population, key)``. Values must be numbers.
      rounds: number of rounds (a static int >= 1); ``rounds * ready_every`` steps in all.
      ready_every: training steps per round (a static int >= 1).
      metric: the name of the reported metric to rank by.
      mode: ``"max"`` or ``"min"``.
      population: the population size (>= 2); needed for a dict of distributions, otherwise
        checked against the number of configs.
      fraction: the truncation fraction in (0, 0.5]: the bottom ``k`` copy the top ``k``.
      perturb: the explore factors; each copied hyperparameter is multiplied by one of them,
        drawn uniformly and independently per member and hyperparameter.
      hparams: the names to explore (default: every config name). The others are copied with
        the carry but never perturbed.
      bounds: name -> ``(low, high)``: explored values are clipped to it.
      key: an int seed or a ``jax.random.PRNGKey`` ``K``. Members start with key ``K`` (the
        same data order for all, as ``jopt.sweep.run`` gives seed ``s`` the key
        ``PRNGKey(s)``) or, with ``seeds_share_data=False``, ``fold_in(K, i)``; exploit and
        explore draw from ``split(K)[1]``. A copied member takes over its parent's whole carry,
        a key held in it included.
      seeds_share_data: see ``key``.
      devices: the devices to shard the population over (default: all).

    Returns:
      A ``PBTResult`` (``.result``, ``.history``, ``.best``, ``.carry``).

    Raises:
      ValueError: a population < 2, ``fraction`` outside (0, 0.5], ``rounds`` or
        ``ready_every`` not an int >= 1, an unknown ``mode``, an empty or non-positive
        ``perturb``, a name in ``hparams`` or ``bounds`` that the configs do not have, or a
        ``metric`` that ``advance`` does not report.

    Examples:
      Noisy gradient descent on a quadratic: the population settles on a learning rate.

      >>> import jax, jax.numpy as jnp, jopt
      >>> from jopt.search.pbt import pbt
      >>> tx = jopt.sgd(0.0)
      >>> def init(hp, key):
      ...     w = jnp.full(4, 3.0)
      ...     return {"w": w, "opt": jopt.set_hparams(tx.init(w), **hp), "key": key}
      >>> def advance(carry, hp, steps):
      ...     def step(c, i):
      ...         noise = jax.random.normal(jax.random.fold_in(c["key"], i), (4,))
      ...         u, opt = tx.update(c["w"] + 0.5 * noise, c["opt"])
      ...         return {**c, "w": c["w"] + u, "opt": opt}, None
      ...     carry, _ = jax.lax.scan(step, carry, carry["opt"].count + jnp.arange(steps))
      ...     return carry, {"loss": 0.5 * jnp.sum(carry["w"] ** 2)}
      >>> configs = [{"learning_rate": lr} for lr in (0.01, 0.03, 0.1, 0.3)]
      >>> out = pbt(jopt.search.Resumable(init, advance), configs, rounds=4, ready_every=10,
      ...           metric="loss", mode="min", fraction=0.25)
      >>> out.history["parent"].tolist()  # who each member started each round from
      [[0, 1, 2, 3], [3, 1, 2, 3], [0, 0, 2, 3], [0, 1, 0, 3]]
      >>> out.best["lineage"], out.best["trajectory"]["learning_rate"].round(3).tolist()
      ([3, 0, 0, 2], [0.3, 0.24, 0.24, 0.192])

    References:
      Jaderberg et al., `Population Based Training of Neural Networks
      <https://arxiv.org/abs/1711.09846>`_, 2017.
    """
    rounds = _check_int("rounds", rounds)
    ready_every = _check_int("ready_every", ready_every)
    check_mode(mode, metric)
    fraction = _check_fraction(fraction, "pbt")
    factors = _check_perturb(perturb, "pbt")
    base = jax.random.PRNGKey(key) if isinstance(key, (int, np.integer)) else jnp.asarray(key)
    configs = _as_configs(space_or_configs, population, base)
    n = len(configs)
    names = list(configs[0])
    searched = names if hparams is None else list(hparams)
    for name in searched:
        if name not in names:
            raise ValueError(f"pbt: unknown hyperparameter {name!r} in hparams; known: {names}.")
    bounds = _check_bounds(bounds, names, "pbt")

    carry = _initial_population(trial, configs, base, seeds_share_data, devices)
    where, ranges = _locate(carry, names, searched)
    plan = _Plan(names, searched, where, ranges, bounds, factors, fraction, metric, mode, n, rounds)
    rows = engine.pad(configs, jax.tree.leaves(carry)[0].shape[0])
    held = [name for name in names if where[name] is None]  # passed to advance by PBT
    extra = {name: jnp.asarray([row[name] for row in rows], jnp.float32) for name in held}
    advance = jax.vmap(lambda c, h: trial.advance(c, h, ready_every))
    carry, records = _run_rounds(plan, advance, carry, extra, jax.random.split(base)[1], devices)
    info = {
        "strategy": "pbt",
        "rounds": rounds,
        "ready_every": ready_every,
        "fraction": fraction,
        "truncation": max(1, math.floor(fraction * n)),
        "perturb": factors.tolist(),
        "initial_configs": configs,
        "searched": searched,
    }
    return _summarize(records, jax.tree.map(lambda x: x[:n], carry), plan, info)


def plot_lineage(result: PBTResult, hparam: str, *, ax=None, log: bool | None = None):
    """Every member's ``hparam`` over rounds, coloured by final rank, the winner highlighted.

    Each member slot is a line (dark = best final rank). A dotted segment marks an exploit:
    the member took over a top member's carry, so its curve jumps from the parent's value in
    the previous round. The best member's lineage (the schedule PBT found) is drawn thick.

    Args:
      result: what ``pbt`` returned.
      hparam: a searched hyperparameter name.
      ax: matplotlib axes to draw on (a new figure when None).
      log: log-scale the y axis (default: when every value is positive).

    Returns:
      The matplotlib axes.
    """
    from jopt.plot import pyplot

    plt = pyplot()
    if hparam not in result.history or hparam in ("metric", "parent"):
        known = [k for k in result.history if k not in ("metric", "parent")]
        raise ValueError(f"unknown hyperparameter {hparam!r}; known: {known}.")
    values = result.history[hparam]
    parent = result.history["parent"]
    rounds, n = values.shape
    final = result.history["metric"][-1].astype(float)
    score = np.where(np.isnan(final), -np.inf, final if result.mode == "max" else -final)
    rank = np.empty(n, int)
    rank[np.argsort(-score, kind="stable")] = np.arange(n)
    if ax is None:
        _, ax = plt.subplots(figsize=(6, 4))
    cmap = plt.get_cmap("viridis")
    x = np.arange(rounds)
    for i in range(n):
        colour = cmap(0.85 * rank[i] / max(n - 1, 1))
        start = 0
        for r in range(1, rounds + 1):  # solid runs of a slot between exploits
            if r == rounds or parent[r, i] != i:
                segment = slice(start, r)
                ax.plot(x[segment], values[segment, i], ".-", color=colour, lw=1, ms=3, alpha=0.8)
                if r < rounds:
                    p = parent[r, i]
                    ax.plot([r - 1, r], [values[r - 1, p], values[r, i]], ":", color=colour, lw=1)
                start = r
    best = result.best
    ax.plot(x, best["trajectory"][hparam], color="crimson", lw=2.5, label="best lineage")
    if log is None:
        log = bool(np.all(values > 0))
    if log:
        ax.set_yscale("log")
    ax.set_xlabel("round")
    ax.set_ylabel(hparam)
    ax.set_title(f"PBT lineage ({result.metric}, {result.mode}; dotted = exploit)")
    ax.legend(fontsize=7)
    return ax
