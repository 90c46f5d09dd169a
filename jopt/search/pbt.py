"""Population-based training (PBT), compiled whole: one program for every round of a population.

PBT (Jaderberg et al. 2017) trains a population of models in parallel and, every few steps,
lets the worst members copy the weights of the best (*exploit*) and perturb the copied
hyperparameters (*explore*), so the population discovers hyperparameter *schedules* rather
than constants.

Here the population is one batched (vmapped) carry of a ``Resumable`` trial, sharded over the
devices, and the whole run is one ``jax.jit``-compiled ``lax.scan`` over rounds. Each round
advances every member ``ready_every`` steps with ``vmap(trial.advance)``, then ranks, copies and
perturbs with array operations on device; nothing returns to Python between rounds.

Hyperparameters are state: explore rewrites them inside the carry with
``jopt.scale_hparams``, which searches any pytree for jopt optimizer states, so it works on a
``fit_trial`` carry (``{"state": TrainState, "key": key}``) and on any carry that holds a jopt
optimizer state somewhere.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from jopt.hyperparams import checks as _checks
from jopt.hyperparams import hparams as _hparams
from jopt.hyperparams import scale_hparams
from jopt.search.resumable import Resumable
from jopt.sweep import engine
from jopt.sweep.result import SweepResult, check_mode

__all__ = ["PBTResult", "pbt", "plot_lineage"]


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
    Ranking, copying (``jax.tree.map(lambda x: x[parent], carry)``) and perturbing are array
    operations inside one ``jax.jit``-compiled ``lax.scan`` over rounds: ``trial.advance`` is
    traced once for the whole run.

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
    if isinstance(fraction, bool) or not (
        isinstance(fraction, (int, float)) and 0 < fraction <= 0.5
    ):
        raise ValueError(f"pbt: fraction must be in (0, 0.5], got {fraction!r}.")
    factors = np.asarray(perturb, np.float32).reshape(-1)
    if factors.size == 0 or not np.all(np.isfinite(factors) & (factors > 0)):
        raise ValueError(f"pbt: perturb must be a non-empty list of factors > 0, got {perturb!r}.")
    base = jax.random.PRNGKey(key) if isinstance(key, (int, np.integer)) else jnp.asarray(key)
    configs = _as_configs(space_or_configs, population, base)
    n = len(configs)
    names = list(configs[0])
    searched = names if hparams is None else list(hparams)
    for name in searched:
        if name not in names:
            raise ValueError(f"pbt: unknown hyperparameter {name!r} in hparams; known: {names}.")
    bounds = dict(bounds or {})
    for name, bound in bounds.items():
        if name not in names:
            raise ValueError(f"pbt: unknown hyperparameter {name!r} in bounds; known: {names}.")
        if len(bound) != 2 or not bound[0] <= bound[1]:
            raise ValueError(f"pbt: bounds[{name!r}] must be (low, high), got {bound!r}.")
    k = max(1, math.floor(fraction * n))

    # --- the initial population, sharded over the devices and padded to fill them ---------------
    member_keys = (
        jnp.broadcast_to(base, (n, *base.shape))
        if seeds_share_data
        else jax.vmap(lambda i: jax.random.fold_in(base, i))(jnp.arange(n))
    )
    search_key = jax.random.split(base)[1]
    carry = engine.init_population(trial, configs, member_keys, devices=devices)
    width = jax.tree.leaves(carry)[0].shape[0]
    sharding = engine.layout(devices).config

    in_carry = jax.eval_shape(lambda c: _hparams(c), carry)
    in_carry_q = jax.eval_shape(lambda c: _hparams(c, qualified=True), carry)
    where = {name: _resolve(name, list(in_carry), list(in_carry_q)) for name in names}
    held = [name for name in names if where[name] is None]  # kept by PBT, passed to advance
    ranges = {**_checks(carry), **_checks(carry, qualified=True)}
    rows = list(range(n)) + [n - 1] * (width - n)
    extra0 = {name: jnp.asarray([configs[r][name] for r in rows], jnp.float32) for name in held}

    def current(carry, extra):
        found = {**_hparams(carry), **_hparams(carry, qualified=True)}
        return {
            name: (extra[name] if where[name] is None else found[where[name]]).astype(jnp.float32)
            for name in names
        }

    advance = jax.vmap(lambda c, h: trial.advance(c, h, ready_every))

    def one_round(state, r):
        carry, extra, search_key = state
        carry = jax.lax.with_sharding_constraint(carry, sharding)
        hp = current(carry, extra)
        carry, metrics = advance(carry, hp)
        if metric not in metrics:
            raise ValueError(f"pbt: advance reports {sorted(metrics)}, not metric {metric!r}.")
        value = metrics[metric][:n].astype(jnp.float32)
        score = jnp.where(jnp.isnan(value), -jnp.inf, value if mode == "max" else -value)
        order = jnp.argsort(-score, stable=True)
        top, bottom = order[:k], order[n - k :]
        pick_key, factor_key = jax.random.split(jax.random.fold_in(search_key, r))
        sources = top[jax.random.randint(pick_key, (k,), 0, k)]
        identity = jnp.arange(width)
        parent = jnp.where(r < rounds - 1, identity.at[bottom].set(sources), identity)
        copied = parent != identity

        # exploit: every leaf of the carry (and PBT's own hyperparameters) from the parent
        carry = jax.tree.map(lambda x: x[parent], carry)
        extra = jax.tree.map(lambda x: x[parent], extra)
        # explore: multiply each searched hyperparameter of a copied member, clipped to bounds
        old = current(carry, extra)
        draws = jax.random.randint(factor_key, (len(searched), width), 0, factors.size)
        scale = {}
        for j, name in enumerate(searched):
            u = jnp.where(copied, jnp.asarray(factors)[draws[j]], 1.0)
            new = old[name] * u
            clipped = new
            if name in bounds:
                clipped = jnp.clip(clipped, *bounds[name])
            if where[name] in ranges:  # never explore outside the transform's own range
                clipped = ranges[where[name]].clip(clipped)
            if name in bounds or where[name] in ranges:
                ratio = jnp.where(old[name] != 0, clipped / old[name], 1.0)
                changed = copied & (clipped != new)
                u = jnp.where(changed, ratio, u)
                new = jnp.where(copied, clipped, new)
            if where[name] is None:
                extra = {**extra, name: new}
            else:
                scale[where[name]] = u
        if scale:
            carry = scale_hparams(carry, **scale)
        record = {
            "hparams": {name: hp[name][:n] for name in names},
            "metrics": {name: v[:n] for name, v in metrics.items()},
            "parent": parent[:n],
        }
        return (carry, extra, search_key), record

    def run(carry, extra, search_key):
        state = (carry, extra, search_key)
        (carry, _, _), records = jax.lax.scan(one_round, state, jnp.arange(rounds))
        return carry, records

    # The whole run is one program, cached by what it computes: a second pbt call with new
    # seeds or starting values (same shapes and settings) reuses it.
    args = (carry, extra0, search_key)
    program, _ = engine.compile_by_content(
        run, args, tag=("pbt", engine.layout(devices).device_ids)
    )
    carry, records = program(*args)
    records = jax.device_get(records)
    carry = jax.tree.map(lambda x: x[:n], carry)

    # parent[r] is whom member i started round r from: the decision after round r - 1
    parent = np.concatenate([np.arange(n)[None], np.asarray(records["parent"][:-1])], 0)
    history = {name: np.asarray(v, np.float64) for name, v in records["hparams"].items()}
    history["metric"] = np.asarray(records["metrics"][metric])
    history["parent"] = parent.astype(np.int64)

    final_configs = [{name: float(history[name][-1, i]) for name in names} for i in range(n)]
    metrics = {}
    for name, value in records["metrics"].items():
        value = np.asarray(value)  # (rounds, n)
        metrics[name] = value[-1][:, None]
        metrics[name + "_per_round"] = value.T[:, None, :]
    info = {
        "strategy": "pbt",
        "rounds": rounds,
        "ready_every": ready_every,
        "fraction": fraction,
        "truncation": k,
        "perturb": factors.tolist(),
        "initial_configs": configs,
        "searched": searched,
    }
    result = SweepResult(final_configs, metrics, seeds=[0], info=info)
    try:
        b = result.best_index(metric, mode)
    except ValueError:  # every member diverged
        b = 0
    lineage = [b]
    for r in range(rounds - 1, 0, -1):
        lineage.append(int(parent[r, lineage[-1]]))
    lineage = lineage[::-1]
    best = {
        "index": b,
        "config": final_configs[b],
        "metric": float(history["metric"][-1, b]),
        "lineage": lineage,
        "trajectory": {name: history[name][np.arange(rounds), lineage] for name in names},
    }
    return PBTResult(result, history, best, carry, metric, mode)


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
