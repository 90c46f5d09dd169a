"""``jopt.sweep.run``: a whole sweep of training runs as one compiled program per static group.

How a sweep runs (each step a few lines below, so it can be copied and edited):

1. The space is split into groups by its static values; each group is one program.
2. The trial is vmapped over seeds (inner) and over configurations (outer):
   ``metrics[c, s] = trial(configs[c], PRNGKey(seeds[s]))`` (common random numbers: every
   configuration sees the same keys, so configurations are compared on the same data order).
3. The configuration axis is sharded over a 1-D device mesh (every core of a CPU, every GPU,
   every process of a ``jax.distributed`` job), and cut into equal chunks that fit memory; the
   last chunk is padded, so the program compiles once per group.
4. Each finished chunk is written to ``checkpoint_dir`` atomically, bound to the content of
   the sweep (the traced program of every group, the space and the seeds); a rerun skips it.

The batching itself (padding, mesh, vmap, compiled-program cache) is ``jopt.sweep.engine``;
the chunk store is ``jopt.checkpoint.SweepStore``. This module only decides what to run.
"""

from __future__ import annotations

import hashlib
import math
import os
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import jax
import numpy as np

from jopt import devices as _devices
from jopt.sweep import engine
from jopt.sweep.result import SweepResult
from jopt.sweep.spaces import Space

__all__ = [
    "CPU_CONFIGS_PER_DEVICE",
    "as_seeds",
    "default_chunk_size",
    "default_memory_budget",
    "run",
]

# On CPU devices a narrow vmap is faster than a wide one: XLA's CPU batched matmuls lose cache
# locality as the batch grows (64 configs of the MNIST-1D MLP: 12.7 s in one call of 64,
# 8.9 s in calls of 8 per device; experiments/bench_sweep.py measures it by width).
CPU_CONFIGS_PER_DEVICE = 8

Trial = Callable[[dict[str, Any], jax.Array], Mapping[str, jax.Array]]


def default_memory_budget(device: jax.Device) -> int:
    """Bytes one chunk may use on ``device``, for ``chunk_size="auto"``.

    70% of an accelerator's memory (its ``bytes_limit``), or, on a CPU (which does not
    report one), 40% of the physical memory shared by all local CPU devices.

    Args:
      device: the device the chunk runs on (the first of the sweep's mesh).

    Returns:
      The budget in bytes, an int.
    """
    stats = None
    try:
        stats = device.memory_stats()
    except Exception:  # CPU devices may not report
        stats = None
    if stats and "bytes_limit" in stats:
        return int(0.7 * stats["bytes_limit"])
    total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    n_cpu = max(1, sum(d.platform == "cpu" for d in jax.local_devices()))
    return int(0.4 * total / n_cpu)


def _as_space(space: Space | Sequence[Mapping[str, Any]]) -> Space:
    if isinstance(space, Space):
        return space
    if isinstance(space, Mapping):
        raise TypeError("space must be a Space (jopt.sweep.grid/random/...) or a list of dicts.")
    return Space(list(space))


def as_seeds(seeds: int | Sequence[int]) -> list[int]:
    """``seeds`` as a list of ints: an int ``n >= 1`` means ``[0, ..., n - 1]``.

    Args:
      seeds: an int ``n >= 1``, or a non-empty list of ints (the seeds themselves).

    Returns:
      A list of Python ints.

    Raises:
      ValueError: an int below 1, or an empty list.
      TypeError: neither an int nor a list of ints (a bool, a string or a dict included).

    Examples:
      >>> from jopt.sweep.runner import as_seeds
      >>> as_seeds(3), as_seeds([7, 11])
      ([0, 1, 2], [7, 11])
    """
    if isinstance(seeds, (int, np.integer)) and not isinstance(seeds, bool):
        if seeds < 1:
            raise ValueError(f"seeds must be an int >= 1 or a list of ints, got {seeds}.")
        return list(range(int(seeds)))
    if isinstance(seeds, (str, bytes, Mapping)) or not isinstance(seeds, Sequence):
        raise TypeError(f"seeds must be an int >= 1 or a list of ints, got {seeds!r}.")
    for s in seeds:
        if isinstance(s, bool) or not isinstance(s, (int, np.integer)):
            raise TypeError(f"seeds must be an int >= 1 or a list of ints, got {seeds!r}.")
    if not seeds:
        raise ValueError("seeds is empty.")
    return [int(s) for s in seeds]


def _group_label(static: Mapping[str, Any]) -> str:
    from jopt.sweep.spaces import stable_repr

    return ", ".join(f"{k}={stable_repr(v)}" for k, v in static.items()) or "all"


def run(
    trial: Trial,
    space: Space | Sequence[Mapping[str, Any]],
    seeds: int | Sequence[int] = 1,
    chunk_size: int | str | None = None,
    checkpoint_dir: str | Path | None = None,
    *,
    devices: Sequence[jax.Device] | None = None,
    memory_budget: int | None = None,
    progress: bool = True,
    trial_id: str | None = None,
    overwrite: bool = False,
) -> SweepResult:
    """Runs ``trial`` for every configuration of ``space`` and every seed, vmapped and sharded.

    Args:
      trial: ``trial(hparams, key) -> dict of arrays``, a pure JAX function written for ONE
        configuration and ONE key (like an equinox layer: vmap happens outside). Dynamic
        hyperparameters arrive as float32 scalars (tracers), static ones as their Python values.
        It is traced once per static group and call.
      space: a ``Space`` (``grid``, ``random``, ``quasirandom``) or a list of config dicts.
      seeds: number of seeds (seeds 0..n-1) or a list of ints; seed ``s`` uses
        ``jax.random.PRNGKey(s)`` for every configuration (common random numbers).
      chunk_size: configurations per compiled call (rounded up to a multiple of the device
        count; the last chunk is padded, never recompiled). None: on accelerators the whole
        group at once; on CPU devices at most ``CPU_CONFIGS_PER_DEVICE`` (8) per device,
        which is faster there than one wide batch, in equal chunks that pad as little as
        possible.
        ``"auto"``: the largest chunk whose compiled memory fits ``memory_budget`` (one extra
        small compilation per group measures it).
      checkpoint_dir: where finished chunks are written (atomically, with a checksum).
        Rerunning the same call skips them and gives bit for bit the result of an
        uninterrupted run (the chunks are the same, so are their widths). The directory is
        bound to the content of the sweep: the traced program of every static group (so a
        changed constant, closure, global or nested function counts), the space and the
        seeds; a different sweep is refused with an error that says what changed. A corrupt
        or foreign chunk is never used: it is recomputed, with a warning naming the file.
      devices: devices of the ``"config"`` mesh; default every device of every process.
      memory_budget: bytes per device for ``chunk_size="auto"``; default
        ``default_memory_budget``.
      progress: show a tqdm bar over configurations.
      trial_id: an explicit identity of the trial for ``checkpoint_dir``, used instead of its
        traced programs (e.g. a trial whose program changes in ways that do not matter).
      overwrite: discard whatever another sweep left in ``checkpoint_dir`` and start over.

    Compiled programs are cached by what the trial computes (``jopt.sweep.engine``): calling
    ``run`` again with the same trial and shapes (a search strategy's next batch, a rerun)
    traces the trial once per group but does not compile it again.

    Returns:
      A ``SweepResult``: ``metrics[name]`` has shape ``(n_configs, n_seeds, *metric_shape)``;
      ``diverged[c, s]`` flags a NaN/inf metric, which never disturbs other configurations.

    Raises:
      ValueError: a bad ``seeds``, ``chunk_size`` or ``devices``; a ``checkpoint_dir`` that
        holds another sweep (without ``overwrite=True``); static groups whose trials return
        different metric names (found before any training run).
      KeyError: the trial reads a hyperparameter the space does not have.

    Examples:
      >>> import jax, jax.numpy as jnp, jopt
      >>> def trial(hp, key):  # minimize (x - 3)^2 with gradient descent
      ...     x = jax.random.normal(key)
      ...     for _ in range(20):
      ...         x = x - hp["learning_rate"] * 2 * (x - 3.0)
      ...     return {"loss": (x - 3.0) ** 2}
      >>> space = jopt.sweep.grid(learning_rate=[0.01, 0.1, 0.5, 1.1])
      >>> result = jopt.sweep.run(trial, space, seeds=2, progress=False)
      >>> result.metrics["loss"].shape, result.best("loss", mode="min")
      ((4, 2), {'learning_rate': 0.5})
    """
    start = time.perf_counter()
    space = _as_space(space)
    seeds = as_seeds(seeds)
    if not callable(trial):
        raise TypeError(f"trial must be a function (hparams, key) -> dict, got {trial!r}.")
    if chunk_size is not None and chunk_size != "auto":
        if (
            isinstance(chunk_size, bool)
            or not isinstance(chunk_size, (int, np.integer))
            or chunk_size < 1
        ):
            raise ValueError(f"chunk_size must be an int >= 1, 'auto' or None, got {chunk_size!r}.")
    _devices.warn_if_cores_idle()
    where = engine.layout(devices)
    keys = np.stack([np.asarray(jax.random.PRNGKey(s)) for s in seeds])
    names = space.dynamic_names
    groups = space.groups()

    # Trace every group once before any compute: the programs key the compiled-program cache
    # and the checkpoint, and a trial that fails for one group fails before the others ran.
    traced = [engine.trace_trial(trial, static, names) for static, _ in groups]
    metric_names = [sorted(t.metrics) for t in traced]
    if any(m != metric_names[0] for m in metric_names):
        detail = "; ".join(
            f"{_group_label(static)}: {m}" for (static, _), m in zip(groups, metric_names)
        )
        raise ValueError(f"every static group's trial must return the same metrics, got {detail}.")

    # Every configuration's values against the ranges of the transforms that use them (a
    # traced learning rate could not be checked where the trial builds its optimizer).
    for (_, indices), group_trial in zip(groups, traced):
        group_trial.verify(
            {n: np.asarray([space.configs[i][n] for i in indices], np.float32) for n in names},
            lambda row, indices=indices: (
                f"configuration {indices[row]} {space.configs[indices[row]]}"
            ),
        )

    store = None
    if checkpoint_dir is not None:
        from jopt.checkpoint import SweepStore

        describe = {
            "n_configs": len(space),
            "names": space.names,
            "static_names": list(space.static_names),
            "space": hashlib.sha256(space.fingerprint().encode()).hexdigest()[:16],
            "seeds": seeds,
        }
        if trial_id is not None:
            describe["trial_id"] = trial_id
        else:
            describe["trial"] = getattr(trial, "__qualname__", type(trial).__name__)
            describe["programs"] = {
                _group_label(static): t.program[:16] for (static, _), t in zip(groups, traced)
            }
        content = repr((space.fingerprint(), seeds, trial_id or [t.program for t in traced]))
        fingerprint = hashlib.sha256(content.encode()).hexdigest()
        store = SweepStore(checkpoint_dir, fingerprint, describe, overwrite=overwrite)
    done = store.finished() if store is not None else {}

    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=len(space), desc="sweep", unit="config", initial=len(done))

    per_config: dict[int, dict[str, np.ndarray]] = dict(done)
    info: dict[str, Any] = {"devices": [str(d) for d in where.mesh.devices.flat], "groups": []}
    chunk_number = 0
    for (static, indices), group_trial in zip(groups, traced):
        group_info: dict[str, Any] = {"static": static, "n_configs": len(indices)}
        info["groups"].append(group_info)
        values = {n: np.asarray([space.configs[i][n] for i in indices], np.float32) for n in names}
        if not values:  # static values only: the configuration axis is a row number
            values = {engine.ROW: np.arange(len(indices), dtype=np.float32)}
        position = {index: row for row, index in enumerate(indices)}

        def hp_for(chunk_indices, values=values, position=position):
            rows = [position[i] for i in chunk_indices]
            return {n: v[rows] for n, v in values.items()}

        # The chunks of a group depend on the group alone, never on what a rerun has left to
        # do: a resumed chunk runs at the same width as the first time, so bit for bit alike.
        size = _chunk_size(
            chunk_size,
            len(indices),
            where,
            group_trial,
            hp_for,
            indices,
            keys,
            memory_budget,
            group_info,
        )
        group_info["chunk_size"] = size
        for first in range(0, len(indices), size):
            chunk = indices[first : first + size]
            chunk_number += 1
            if all(i in done for i in chunk):
                continue
            call_info: dict[str, Any] = {}
            out = engine.run_trials(
                group_trial, hp_for(engine.pad(chunk, size)), keys, where, info=call_info
            )
            if "cached_program" not in group_info:
                group_info.update(call_info)
            out = {k: v[: len(chunk)] for k, v in out.items()}
            for row, index in enumerate(chunk):
                per_config[index] = {k: v[row] for k, v in out.items()}
            if store is not None:
                store.save(chunk_number - 1, np.asarray(chunk), out)
            if bar is not None:
                bar.update(len(chunk) - sum(i in done for i in chunk))
    if bar is not None:
        bar.close()

    metrics = {n: np.stack([per_config[i][n] for i in range(len(space))]) for n in metric_names[0]}
    info["wall_time_s"] = time.perf_counter() - start
    info["resumed_configs"] = len(done)
    return SweepResult(space.configs, metrics, seeds, space.static_names, info)


def default_chunk_size(n_configs: int, where: engine.Layout) -> int:
    """Configurations per call when none is given, a multiple of the device count.

    A whole group on accelerators; on CPU devices at most ``CPU_CONFIGS_PER_DEVICE`` per
    device, in equal chunks that pad little (26 configs on 2 devices: 2 chunks of 14, not
    16 + 16).

    Args:
      n_configs: the number of configurations in the group.
      where: the ``engine.layout`` the group runs on.

    Returns:
      The chunk size (configurations per compiled call).

    Examples:
      >>> import jax
      >>> from jopt.sweep.engine import layout
      >>> from jopt.sweep.runner import default_chunk_size
      >>> default_chunk_size(26, layout(jax.devices("cpu")[:1]))  # 4 calls of 7
      7
    """
    if where.mesh.devices.flat[0].platform == "cpu":
        calls = math.ceil(n_configs / (CPU_CONFIGS_PER_DEVICE * where.n_devices))
        return where.round_up(math.ceil(n_configs / calls))
    return where.round_up(n_configs)


def _chunk_size(
    chunk_size, n_configs, where, traced, hp_for, indices, keys, budget, group_info
) -> int:
    """Configurations per call, a multiple of the device count."""
    if chunk_size is None:
        return default_chunk_size(n_configs, where)
    if chunk_size != "auto":
        return where.round_up(min(int(chunk_size), n_configs))
    probe = where.round_up(min(2 * where.n_devices, n_configs))
    sample = (list(indices) * probe)[:probe]
    compiled, _, _ = engine.compile_trials(traced, hp_for(sample), keys, where)
    memory = engine.memory(compiled)
    per_device_bytes = memory["total_bytes"] if memory else 0
    per_config = max(per_device_bytes / (probe // where.n_devices), 1.0)  # fixed costs: safe
    if budget is None:
        budget = default_memory_budget(where.mesh.devices.flat[0])
    fits = max(1, int(budget // per_config)) * where.n_devices
    group_info["auto"] = {"budget_bytes": budget, "bytes_per_config": per_config, "probe": probe}
    return where.round_up(min(fits, n_configs))
