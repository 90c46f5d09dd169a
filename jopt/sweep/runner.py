"""``jopt.sweep.run``: a whole sweep of training runs as one compiled program per static group.

How a sweep runs (each step a few lines below, so it can be copied and edited):

1. The space is split into groups by its static values; each group is one program.
2. The trial is vmapped over seeds (inner) and over configurations (outer):
   ``metrics[c, s] = trial(configs[c], PRNGKey(seeds[s]))`` (common random numbers: every
   configuration sees the same keys, so configurations are compared on the same data order).
3. The configuration axis is sharded over a 1-D device mesh (every core of a CPU, every GPU,
   every process of a ``jax.distributed`` job), and cut into equal chunks that fit memory; the
   last chunk is padded, so the program compiles once per group.
4. Each finished chunk is written to ``checkpoint_dir`` atomically; a rerun skips it.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

from jopt import devices as _devices
from jopt.sweep.result import SweepResult
from jopt.sweep.spaces import Space

__all__ = ["CPU_CONFIGS_PER_DEVICE", "default_memory_budget", "run"]

# On CPU devices a narrow vmap is faster than a wide one: XLA's CPU batched matmuls lose cache
# locality as the batch grows (64 configs of the MNIST-1D MLP: 12.7 s in one call of 64,
# 8.9 s in calls of 8 per device; experiments/bench_sweep.py measures it by width).
CPU_CONFIGS_PER_DEVICE = 8

Trial = Callable[[dict[str, Any], jax.Array], Mapping[str, jax.Array]]


def default_memory_budget(device: jax.Device) -> int:
    """Bytes one chunk may use on ``device``: 70% of an accelerator's memory, or, on a CPU,
    40% of the physical memory shared by all CPU devices."""
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


def _trial_id(trial: Callable) -> str:
    code = getattr(trial, "__code__", None)
    digest = hashlib.sha256(code.co_code if code is not None else b"").hexdigest()[:16]
    name = getattr(trial, "__qualname__", type(trial).__name__)
    return f"{getattr(trial, '__module__', '?')}.{name}:{digest}"


def _as_space(space: Space | Sequence[Mapping[str, Any]]) -> Space:
    if isinstance(space, Space):
        return space
    if isinstance(space, Mapping):
        raise TypeError("space must be a Space (jopt.sweep.grid/random/...) or a list of dicts.")
    return Space(list(space))


def _seeds(seeds: int | Sequence[int]) -> list[int]:
    if isinstance(seeds, (int, np.integer)) and not isinstance(seeds, bool):
        if seeds < 1:
            raise ValueError(f"seeds must be >= 1, got {seeds}.")
        return list(range(int(seeds)))
    seeds = [int(s) for s in seeds]
    if not seeds:
        raise ValueError("seeds is empty.")
    return seeds


def _batched_trial(trial: Trial, static: dict[str, Any]):
    """(hp[C], keys[S]) -> metrics[C, S, ...]: vmap over seeds inside vmap over configs."""

    def one(dynamic, key):
        out = trial({**dynamic, **static}, key)
        if not isinstance(out, Mapping):
            raise TypeError(
                f"the trial must return a dict of arrays (metric name -> value), got "
                f"{type(out).__name__}."
            )
        return {k: jnp.asarray(v) for k, v in out.items()}

    over_seeds = jax.vmap(one, in_axes=(None, 0))
    return jax.vmap(over_seeds, in_axes=(0, None))


class _Checkpoint:
    """One directory per sweep: a manifest and one .npz per finished chunk (atomic writes)."""

    def __init__(self, directory: str | Path, fingerprint: str, describe: dict[str, Any]):
        self.dir = Path(directory)
        self.fingerprint = hashlib.sha256(fingerprint.encode()).hexdigest()
        self.dir.mkdir(parents=True, exist_ok=True)
        manifest = self.dir / "manifest.json"
        if manifest.exists():
            saved = json.loads(manifest.read_text())
            if saved.get("fingerprint") != self.fingerprint:
                raise ValueError(
                    f"checkpoint_dir {str(self.dir)!r} holds a sweep of a different space, seeds "
                    f"or trial ({saved.get('describe')}); use another directory or delete it."
                )
        elif jax.process_index() == 0:
            self._atomic_write(
                manifest,
                json.dumps({"fingerprint": self.fingerprint, "describe": describe}).encode(),
            )

    def _atomic_write(self, path: Path, data: bytes) -> None:
        handle, tmp = tempfile.mkstemp(dir=self.dir, prefix=".tmp-")
        with os.fdopen(handle, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)

    def finished(self) -> dict[int, dict[str, np.ndarray]]:
        """config index -> its metrics (n_seeds, ...) from every chunk file on disk."""
        done: dict[int, dict[str, np.ndarray]] = {}
        for path in sorted(self.dir.glob("chunk-*.npz")):
            with np.load(path) as data:
                indices = data["__indices__"]
                names = [k for k in data.files if k != "__indices__"]
                for row, index in enumerate(indices):
                    done[int(index)] = {name: data[name][row] for name in names}
        return done

    def save(self, indices: np.ndarray, metrics: dict[str, np.ndarray]) -> None:
        if jax.process_index() != 0:
            return
        import io

        buffer = io.BytesIO()
        np.savez(buffer, __indices__=indices, **metrics)
        name = f"chunk-{int(indices[0]):07d}-{int(indices[-1]):07d}.npz"
        self._atomic_write(self.dir / name, buffer.getvalue())


def _global_array(values: np.ndarray, sharding: NamedSharding) -> jax.Array:
    if jax.process_count() == 1:
        return jax.device_put(values, sharding)
    return jax.make_array_from_callback(values.shape, sharding, lambda index: values[index])


def _to_host(tree: Any) -> Any:
    if jax.process_count() == 1:
        return jax.device_get(tree)
    from jax.experimental import multihost_utils

    return multihost_utils.process_allgather(tree, tiled=True)


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
) -> SweepResult:
    """Runs ``trial`` for every configuration of ``space`` and every seed, vmapped and sharded.

    Args:
      trial: ``trial(hparams, key) -> dict of arrays``, a pure JAX function written for ONE
        configuration and ONE key (like an equinox layer: vmap happens outside). Dynamic
        hyperparameters arrive as float32 scalars (tracers), static ones as their Python values.
        It is traced once per static group.
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
      checkpoint_dir: where finished chunks are written (atomically). Rerunning the same call
        skips them, giving the same result as an uninterrupted run; a directory written by a
        different space, seeds or trial is refused.
      devices: devices of the ``"config"`` mesh; default every device of every process.
      memory_budget: bytes per device for ``chunk_size="auto"``; default
        ``default_memory_budget``.
      progress: show a tqdm bar over configurations.
      trial_id: identifies the trial in checkpoints (default: its qualified name and a hash of
        its bytecode; pass your own when the trial is a closure over different settings).

    Compiled programs are cached by trial (the function object), static values, chunk shape,
    seeds and devices, so calling ``run`` again (a search strategy's next batch) neither
    traces nor compiles again; like ``jax.jit``, a trial must not depend on Python state that
    changes between calls.

    Returns:
      A ``SweepResult``: ``metrics[name]`` has shape ``(n_configs, n_seeds, *metric_shape)``;
      ``diverged[c, s]`` flags a NaN/inf metric, which never disturbs other configurations.

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
    seeds = _seeds(seeds)
    if not callable(trial):
        raise TypeError(f"trial must be a function (hparams, key) -> dict, got {trial!r}.")
    if chunk_size is not None and chunk_size != "auto":
        if not isinstance(chunk_size, (int, np.integer)) or chunk_size < 1:
            raise ValueError(f"chunk_size must be an int >= 1, 'auto' or None, got {chunk_size!r}.")
    _devices.warn_if_cores_idle()
    mesh = _devices.sweep_mesh(devices)
    n_dev = mesh.devices.size
    config_sharding = NamedSharding(mesh, P("config"))
    replicated = NamedSharding(mesh, P())
    keys = np.stack([np.asarray(jax.random.PRNGKey(s)) for s in seeds])
    keys = _global_array(keys, replicated)

    checkpoint = None
    if checkpoint_dir is not None:
        tid = trial_id or _trial_id(trial)
        fingerprint = space.fingerprint() + repr(seeds) + tid
        describe = {"n_configs": len(space), "seeds": seeds, "trial": tid}
        checkpoint = _Checkpoint(checkpoint_dir, fingerprint, describe)
    done = checkpoint.finished() if checkpoint else {}

    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=len(space), desc="sweep", unit="config", initial=len(done))

    per_config: dict[int, dict[str, np.ndarray]] = dict(done)
    info: dict[str, Any] = {"devices": [str(d) for d in mesh.devices.flat], "groups": []}
    for static, indices in space.groups():
        todo = [i for i in indices if i not in per_config]
        group_info: dict[str, Any] = {"static": static, "n_configs": len(indices)}
        info["groups"].append(group_info)
        if not todo:
            continue
        names = space.dynamic_names
        values = {n: np.asarray([space.configs[i][n] for i in indices], np.float32) for n in names}
        batched = jax.jit(
            _batched_trial(trial, static),
            in_shardings=(config_sharding, replicated),
            out_shardings=config_sharding,
        )
        position = {index: row for row, index in enumerate(indices)}

        def hp_for(chunk_indices, values=values, position=position, names=names):
            rows = [position[i] for i in chunk_indices]
            return {n: values[n][rows] for n in names}

        auto_key = ("auto", *_program_key(trial, static, names, len(todo), len(seeds), mesh))
        auto_key += (memory_budget,)
        size = _PROGRAMS.get(auto_key) if chunk_size == "auto" else None
        size = size or _chunk_size(
            chunk_size,
            len(todo),
            n_dev,
            batched,
            hp_for,
            todo,
            keys,
            memory_budget,
            config_sharding,
            replicated,
            group_info,
        )
        group_info["chunk_size"] = size
        if chunk_size == "auto":
            _PROGRAMS.put(auto_key, size)
        compile_start = time.perf_counter()
        lowered = None
        for first in range(0, len(todo), size):
            chunk = todo[first : first + size]
            padded = chunk + [chunk[-1]] * (size - len(chunk))
            hp = {n: _global_array(v, config_sharding) for n, v in hp_for(padded).items()}
            if lowered is None:
                cache_key = _program_key(trial, static, names, size, len(seeds), mesh)
                lowered = _PROGRAMS.get(cache_key)
                group_info["cached_program"] = lowered is not None
                if lowered is None:
                    lowered = batched.lower(hp, keys).compile()
                    _PROGRAMS.put(cache_key, lowered)
                group_info["compile_s"] = time.perf_counter() - compile_start
                group_info["memory"] = _memory(lowered)
                group_info["flops_per_call"] = _flops(lowered)
            out = _to_host(lowered(hp, keys))
            out = {k: np.asarray(v)[: len(chunk)] for k, v in out.items()}
            for row, index in enumerate(chunk):
                per_config[index] = {k: v[row] for k, v in out.items()}
            if checkpoint:
                checkpoint.save(np.asarray(chunk), out)
            if bar is not None:
                bar.update(len(chunk))
    if bar is not None:
        bar.close()

    names = list(per_config[0])
    metrics = {n: np.stack([per_config[i][n] for i in range(len(space))]) for n in names}
    info["wall_time_s"] = time.perf_counter() - start
    info["resumed_configs"] = len(done)
    return SweepResult(space.configs, metrics, seeds, space.static_names, info)


class _ProgramCache:
    """Compiled sweep programs, so that calling ``run`` again with the same trial and shapes
    (a search strategy's next batch, a rerun) does not trace or compile again."""

    def __init__(self, size: int = 32):
        self.size = size
        self.programs: dict[Any, Any] = {}

    def get(self, key: Any) -> Any:
        try:
            program = self.programs.pop(key, None)
        except TypeError:  # an unhashable trial: no caching
            return None
        if program is not None:
            self.programs[key] = program  # most recently used last
        return program

    def put(self, key: Any, program: Any) -> None:
        try:
            self.programs[key] = program
        except TypeError:
            return
        while len(self.programs) > self.size:
            self.programs.pop(next(iter(self.programs)))


_PROGRAMS = _ProgramCache()


def _program_key(trial, static, names, size, n_seeds, mesh) -> tuple:
    statics = tuple(sorted((k, repr(v)) for k, v in static.items()))
    device_ids = tuple(d.id for d in mesh.devices.flat)
    return (trial, statics, tuple(names), size, n_seeds, device_ids)


def _chunk_size(
    chunk_size,
    n_todo,
    n_dev,
    batched,
    hp_for,
    todo,
    keys,
    budget,
    config_sharding,
    replicated,
    group_info,
) -> int:
    """Configurations per call, a multiple of the device count."""
    round_up = lambda n: n_dev * math.ceil(n / n_dev)
    if chunk_size is None:
        if config_sharding.mesh.devices.flat[0].platform == "cpu":
            # at most CPU_CONFIGS_PER_DEVICE per device, in equal chunks so that little is
            # padded (26 configs on 2 devices: 2 chunks of 14, not 16 + 16)
            calls = math.ceil(n_todo / (CPU_CONFIGS_PER_DEVICE * n_dev))
            return round_up(math.ceil(n_todo / calls))
        return round_up(n_todo)
    if chunk_size != "auto":
        return round_up(min(int(chunk_size), n_todo))
    probe = round_up(min(2 * n_dev, n_todo))
    sample = (todo * probe)[:probe]
    hp = {n: _global_array(v, config_sharding) for n, v in hp_for(sample).items()}
    memory = _memory(batched.lower(hp, keys).compile())
    per_device_bytes = memory["total_bytes"] if memory else 0
    per_config = max(per_device_bytes / (probe // n_dev), 1.0)  # fixed costs included: safe
    budget = (
        budget
        if budget is not None
        else default_memory_budget(config_sharding.mesh.devices.flat[0])
    )
    fits = max(1, int(budget // per_config)) * n_dev
    group_info["auto"] = {"budget_bytes": budget, "bytes_per_config": per_config, "probe": probe}
    return round_up(min(fits, n_todo))


def _memory(compiled) -> dict[str, int] | None:
    try:
        stats = compiled.memory_analysis()
    except Exception:
        return None
    if stats is None:
        return None
    out = {
        "argument_bytes": int(stats.argument_size_in_bytes),
        "output_bytes": int(stats.output_size_in_bytes),
        "temp_bytes": int(stats.temp_size_in_bytes),
        "alias_bytes": int(stats.alias_size_in_bytes),
    }
    out["total_bytes"] = (
        out["argument_bytes"] + out["output_bytes"] + out["temp_bytes"] - out["alias_bytes"]
    )
    return out


def _flops(compiled) -> float | None:
    try:
        cost = compiled.cost_analysis()
    except Exception:
        return None
    if isinstance(cost, list):
        cost = cost[0] if cost else None
    return float(cost["flops"]) if cost and "flops" in cost else None
