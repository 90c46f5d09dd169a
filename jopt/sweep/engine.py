"""The engine: the one place that runs a batch of training runs as one compiled program.

Every batched strategy in jopt (``jopt.sweep.run``, successive halving, Hyperband, PBT, TPE,
``cross_validate``) sits on these few pieces:

* ``layout(devices)``: the 1-D ``"config"`` device mesh and its two shardings (configurations
  split over the devices; keys and data replicated);
* ``pad(rows, width)``: a batch padded to a fixed width by repeating its last row, so that every
  call of a strategy has the same shapes and compiles once;
* ``fingerprint(fn, *args)``: what a function computes, as a hash of its traced program (the
  jaxpr text with the values of its constants), never of its bytecode or its address. It sees
  changed constants, closures, globals read at trace time and nested functions;
* ``cached_compile(fn, args, key=...)``: ``jax.jit(fn).lower(*args).compile()`` through ONE
  bounded cache keyed by that content (plus shapes and devices), so a strategy's next batch
  does not compile its program again, and a new function with the same content shares it;
* ``run_trials``: ``metrics[c, s] = trial(hp[c], keys[s])`` for a padded batch of
  configurations and every seed, vmapped and sharded over configurations;
* ``Population``: the carries of a ``Resumable`` trial (``init``/``advance``) for many
  configurations, advanced chunk by chunk at a fixed width.

Why seeds are vmapped *outside* configurations: JAX's batching rule of a convolution cannot
batch a kernel over a second axis once an inner vmap has folded the first into feature groups
while the input carries a device sharding (``NotImplementedError``). With seeds outside, the
inner (configuration) level shares the input batch across configurations (no feature groups)
and the outer (seed) level batches both operands, which every convolution supports.
"""

from __future__ import annotations

import hashlib
import math
import time
from collections import OrderedDict
from collections.abc import Callable, Hashable, Mapping, Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

from jopt import devices as _devices
from jopt import hyperparams

__all__ = [
    "PROGRAMS",
    "ROW",
    "Layout",
    "Population",
    "ProgramCache",
    "RangeChecks",
    "TracedTrial",
    "advance_population",
    "advance_program",
    "cached_compile",
    "call_trial",
    "compile_by_content",
    "compile_trials",
    "fingerprint",
    "flops",
    "global_array",
    "init_population",
    "layout",
    "memory",
    "pad",
    "run_trials",
    "scalars",
    "stack_configs",
    "to_host",
    "trace_trial",
]

Trial = Callable[[dict[str, Any], jax.Array], Mapping[str, jax.Array]]

# The batch axis of a group without dynamic hyperparameters (a space of static values only).
ROW = "__row__"


class Layout(NamedTuple):
    """The device mesh of a batch and its shardings."""

    mesh: jax.sharding.Mesh
    config: NamedSharding  # leading axis split over the devices
    replicated: NamedSharding

    @property
    def n_devices(self) -> int:
        return int(self.mesh.devices.size)

    @property
    def device_ids(self) -> tuple[int, ...]:
        return tuple(int(d.id) for d in self.mesh.devices.flat)

    def round_up(self, n: int) -> int:
        """``n`` rounded up to a multiple of the device count (each device gets equal rows)."""
        return self.n_devices * math.ceil(n / self.n_devices)


def layout(devices: Sequence[jax.Device] | None = None) -> Layout:
    """The ``"config"`` mesh over ``devices`` (default: every device of every process)."""
    if devices is not None:
        devices = list(devices)
        if not devices:
            raise ValueError("devices is empty: pass None (every device) or a list of devices.")
    mesh = _devices.sweep_mesh(devices)
    return Layout(mesh, NamedSharding(mesh, P("config")), NamedSharding(mesh, P()))


def pad(rows: Sequence[Any], width: int) -> list[Any]:
    """``rows`` padded to ``width`` by repeating the last one.

    Args:
      rows: a non-empty sequence of at most ``width`` rows (any objects).
      width: the length of the result.

    Returns:
      A list of ``width`` rows: ``rows``, then copies of its last row.

    Raises:
      ValueError: ``rows`` is empty or longer than ``width``.

    Examples:
      >>> from jopt.sweep.engine import pad
      >>> pad([3, 5], 4)
      [3, 5, 5, 5]
    """
    rows = list(rows)
    if not rows or len(rows) > width:
        raise ValueError(f"cannot pad {len(rows)} rows to width {width}.")
    return rows + [rows[-1]] * (width - len(rows))


def stack_configs(configs: Sequence[Mapping[str, Any]], names: Sequence[str]) -> dict:
    """name -> float32 array of each config's value: the dynamic hyperparameters of a batch."""
    return {n: np.asarray([c[n] for c in configs], np.float32) for n in names}


def global_array(values: np.ndarray, sharding: NamedSharding) -> jax.Array:
    """A host array placed with ``sharding`` (across processes too: each takes its slice)."""
    if jax.process_count() == 1:
        return jax.device_put(values, sharding)
    return jax.make_array_from_callback(values.shape, sharding, lambda index: values[index])


def to_host(tree: Any) -> Any:
    """The full values of a (possibly multi-process) sharded pytree, as numpy arrays."""
    if jax.process_count() == 1:
        return jax.device_get(tree)
    from jax.experimental import multihost_utils

    return multihost_utils.process_allgather(tree, tiled=True)


# --- what a function computes ------------------------------------------------------------------


def fingerprint(fn: Callable, *args: Any) -> str:
    """A hash of what ``fn(*args)`` computes: its jaxpr text and the values of its constants.

    Two functions with the same fingerprint run the same program on the same constants, so
    their results are interchangeable: the key of compiled programs and of sweep checkpoints.
    ``args`` may be arrays or ``jax.ShapeDtypeStruct``s (only shapes and dtypes matter).
    Memory addresses never enter (JAX prints callbacks as ``0xXXXX``), so the same code gives
    the same fingerprint in another process.

    Args:
      fn: a function of ``args`` that JAX can trace.
      *args: its arguments: arrays, ``jax.ShapeDtypeStruct``s, or pytrees of them.

    Returns:
      A hex digest (str) of the traced program and its constants.

    Examples:
      >>> import jax.numpy as jnp
      >>> from jopt.sweep.engine import fingerprint
      >>> scale = 2.0
      >>> f = lambda x: scale * x
      >>> a = fingerprint(f, jnp.float32(1))
      >>> scale = 3.0  # a changed global is a changed program
      >>> a == fingerprint(f, jnp.float32(1)), a == fingerprint(lambda y: 2.0 * y, jnp.float32(1))
      (False, True)
    """
    return _traced(fn, *args)[0]


def _traced(fn: Callable, *args: Any) -> tuple[str, Any, Any]:
    # A fresh wrapper: JAX caches traces by function object, which would hide a global that
    # changed since the last trace of the same function.
    closed, shapes = jax.make_jaxpr(lambda *a: fn(*a), return_shape=True)(*args)
    return _digest(closed), shapes, closed


def _digest(closed: Any) -> str:
    digest = hashlib.sha256(str(closed.jaxpr).encode())
    for const in closed.consts:
        value = np.asarray(const)
        digest.update(f"{value.dtype}{value.shape}".encode())
        digest.update(np.ascontiguousarray(value).tobytes())
    return digest.hexdigest()


class RangeChecks(NamedTuple):
    """The range checks of hyperparameters that were traced, as a program of the inputs.

    ``jopt.momentum(hp["learning_rate"])`` inside a trial cannot check a traced learning rate;
    it records the check (``jopt.hyperparams.recording_checks``), and this evaluates every
    recorded value on the concrete inputs of a batch before anything runs.
    """

    checks: tuple[hyperparams.RecordedCheck, ...]
    jaxpr: Any  # (*flat inputs) -> the recorded values; None without checks

    def verify(self, args: Sequence[Any], batched: Sequence[bool], describe: Callable) -> None:
        """Raises ValueError naming the first row whose value is outside its range.

        Args:
          args: the traced function's flat inputs, a leading row axis where ``batched``.
          batched: for each input, whether it has the row axis.
          describe: ``describe(row) -> str`` names a row in the message.
        """
        if not self.checks:
            return
        from jax.extend.core import jaxpr_as_fun

        in_axes = [0 if b else None for b in batched]
        values = jax.vmap(jaxpr_as_fun(self.jaxpr), in_axes=in_axes)(*args)
        for recorded, value in zip(self.checks, values):
            value = np.asarray(value)
            ok = np.asarray([recorded.check.ok(v) for v in value.reshape(len(value), -1)])
            if not ok.all():
                row = int(np.flatnonzero(~ok)[0])
                raise ValueError(
                    f"{describe(row)}: {recorded.kind}: {recorded.name} must be "
                    f"{recorded.check.allowed}, got {value[row]!s}. Nothing was run."
                )


def _traced_with_checks(fn: Callable, *args: Any) -> tuple[str, Any, Any, RangeChecks]:
    """``_traced``, and the range checks of traced hyperparameters met inside ``fn``."""
    from jax._src.interpreters import partial_eval as pe
    from jax.extend.core import ClosedJaxpr

    found: list[hyperparams.RecordedCheck] = []

    def recording(*a):
        with hyperparams.recording_checks() as recorded:
            out = fn(*a)
        outer = _trace_of(a)
        # only values of this trace can leave it (one built in a nested scan or jit cannot)
        kept = [r for r in recorded if outer is not None and _trace_of(r.value) is outer]
        found.extend(r._replace(value=None) for r in kept)
        return out, [r.value for r in kept]

    closed, (shapes, _) = jax.make_jaxpr(recording, return_shape=True)(*args)
    n_out = len(jax.tree.leaves(shapes))
    n_checks = len(closed.jaxpr.outvars) - n_out
    used = [True] * n_out + [False] * n_checks
    outputs, _ = pe.dce_jaxpr(closed.jaxpr, used, instantiate=True)
    main = ClosedJaxpr(outputs, closed.consts)
    checks = RangeChecks((), None)
    if n_checks:
        only_checks = _without_effects(closed.jaxpr, [not u for u in used])
        if only_checks is not None:
            checks = RangeChecks(tuple(found), ClosedJaxpr(only_checks, closed.consts))
    return _digest(main), shapes, main, checks


def _without_effects(jaxpr: Any, used_outputs: list[bool]) -> Any:
    """The jaxpr of the used outputs alone, without side effects (a progress bar, a print):
    evaluating a range check must never run the training or its callbacks. None when the
    used outputs need a side effect's result."""
    from jax._src.interpreters import partial_eval as pe

    needed, _ = pe.dce_jaxpr(jaxpr, used_outputs, instantiate=True)
    pure = [eqn for eqn in needed.eqns if not eqn.effects]
    defined = {id(v) for v in [*needed.constvars, *needed.invars]}
    for eqn in pure:
        if any(not hasattr(v, "val") and id(v) not in defined for v in eqn.invars):
            return None
        defined.update(id(v) for v in eqn.outvars)
    if any(not hasattr(v, "val") and id(v) not in defined for v in needed.outvars):
        return None
    return needed.replace(eqns=pure, effects=frozenset())


def _trace_of(tree: Any) -> Any:
    for leaf in jax.tree.leaves(tree):
        if isinstance(leaf, jax.core.Tracer):
            return getattr(leaf, "_trace", None)
    return None


class TracedTrial(NamedTuple):
    """A trial traced once for one configuration of a static group and one key.

    Calling it evaluates the traced program, so the batched program is built from exactly
    what was fingerprinted, and the user's Python function runs once per group.
    """

    program: str  # its fingerprint
    metrics: dict[str, jax.ShapeDtypeStruct]  # what it returns, per configuration and seed
    jaxpr: Any  # the closed jaxpr of (sorted dynamic hyperparameters..., key) -> metrics
    names: tuple[str, ...]  # the dynamic hyperparameters, in the jaxpr's argument order
    checks: RangeChecks  # the ranges of the hyperparameters it traced

    def __call__(self, hparams: Mapping[str, jax.Array], key: jax.Array) -> dict[str, jax.Array]:
        from jax.extend.core import jaxpr_as_fun

        flat = jaxpr_as_fun(self.jaxpr)(*[hparams[n] for n in self.names], key)
        return jax.tree.unflatten(jax.tree.structure(self.metrics), flat)

    def verify(self, hp: Mapping[str, np.ndarray], describe: Callable[[int], str]) -> None:
        """Checks every row of ``hp`` (name -> values) against the recorded ranges."""
        if not self.checks.checks or not self.names:
            return
        args = [np.asarray(hp[n], np.float32) for n in self.names]
        key = np.zeros((2,), np.uint32)
        self.checks.verify([*args, key], [True] * len(args) + [False], describe)


def trace_trial(trial: Trial, static: Mapping[str, Any], names: Sequence[str]) -> TracedTrial:
    """Traces ``trial`` once for a static group of configurations.

    Args:
      trial: ``trial(hparams, key) -> dict of metrics``.
      static: the group's static hyperparameters, passed to ``trial`` as Python values.
      names: the dynamic hyperparameters, traced as float32 scalars.

    Returns:
      A :class:`TracedTrial`: its program, fingerprint, metric shapes and the range checks
      of the hyperparameters it traced.
    """
    key = jax.ShapeDtypeStruct((2,), jnp.uint32)
    program, shapes, closed, checks = _traced_with_checks(
        lambda h, k: call_trial(trial, {**h, **static}, k), scalars(names), key
    )
    return TracedTrial(program, dict(shapes), closed, tuple(sorted(names)), checks)


def scalars(names: Sequence[str]) -> dict[str, jax.ShapeDtypeStruct]:
    """float32 scalar placeholders for the hyperparameters ``names`` (one configuration)."""
    return {n: jax.ShapeDtypeStruct((), jnp.float32) for n in names}


def call_trial(trial: Trial, hparams: dict[str, Any], key: jax.Array) -> dict[str, jax.Array]:
    """``trial(hparams, key)`` with clear errors for a misspelt name or a non-dict result."""
    try:
        out = trial(hparams, key)
    except KeyError as error:
        name = error.args[0] if error.args else None
        if isinstance(name, str) and name not in hparams:
            raise KeyError(
                f"the trial reads hyperparameter {name!r}, which the space does not have; it "
                f"has {sorted(hparams)}."
            ) from error
        raise
    if not isinstance(out, Mapping):
        raise TypeError(
            f"the trial must return a dict of arrays (metric name -> value), got "
            f"{type(out).__name__}."
        )
    return {k: jnp.asarray(v) for k, v in out.items()}


# --- compiled programs, cached by content --------------------------------------------------------


class ProgramCache:
    """Compiled programs by content key, least recently used dropped past ``size`` entries.

    Keys are built from fingerprints, shapes and device ids, never from ``id()`` of a
    function: a collected function's id can be reused by a new one, which must never be
    handed the old program.
    """

    def __init__(self, size: int = 32):
        self.size = size
        self.programs: OrderedDict[Hashable, Any] = OrderedDict()

    def get(self, key: Hashable) -> Any:
        program = self.programs.get(key)
        if program is not None:
            self.programs.move_to_end(key)
        return program

    def put(self, key: Hashable, program: Any) -> None:
        self.programs[key] = program
        self.programs.move_to_end(key)
        while len(self.programs) > self.size:
            self.programs.popitem(last=False)

    def __len__(self) -> int:
        return len(self.programs)

    def clear(self) -> None:
        self.programs.clear()


PROGRAMS = ProgramCache()


def _avals(tree: Any) -> tuple:
    leaves, structure = jax.tree.flatten(tree)
    return (str(structure), tuple((tuple(np.shape(x)), str(jnp.result_type(x))) for x in leaves))


def cached_compile(
    fn: Callable,
    args: Sequence[Any],
    *,
    key: Hashable,
    in_shardings: Any = None,
    out_shardings: Any = None,
) -> tuple[Any, bool]:
    """``jax.jit(fn, ...).lower(*args).compile()``, cached under ``key`` and the args' shapes.

    ``key`` must identify what ``fn`` computes by content (a ``fingerprint`` and the settings
    that shape the program), never by the function object.

    Args:
      fn: the function to compile.
      args: its arguments (arrays or ``jax.ShapeDtypeStruct``s); their shapes and dtypes
        are part of the cache key.
      key: a hashable that identifies what ``fn`` computes.
      in_shardings: passed to ``jax.jit`` (``None``: not given); part of the cache key.
      out_shardings: passed to ``jax.jit`` (``None``: not given); part of the cache key.

    Returns:
      ``(compiled, cached)``: the compiled program and whether it came from the cache.

    Examples:
      >>> import jax.numpy as jnp
      >>> from jopt.sweep.engine import cached_compile
      >>> x = jnp.zeros(3)
      >>> add_one, first = cached_compile(lambda x: x + 1, [x], key="docs: add one")
      >>> _, second = cached_compile(lambda x: x + 1, [x], key="docs: add one")
      >>> first, second, add_one(x).tolist()
      (False, True, [1.0, 1.0, 1.0])
    """
    full_key = (key, _avals(args), repr(in_shardings), repr(out_shardings))
    program = PROGRAMS.get(full_key)
    if program is not None:
        return program, True
    kwargs = {}
    if in_shardings is not None:
        kwargs["in_shardings"] = in_shardings
    if out_shardings is not None:
        kwargs["out_shardings"] = out_shardings
    program = jax.jit(fn, **kwargs).lower(*args).compile()
    PROGRAMS.put(full_key, program)
    return program, False


def compile_by_content(
    fn: Callable,
    args: Sequence[Any],
    *,
    tag: Hashable,
    in_shardings: Any = None,
    out_shardings: Any = None,
) -> tuple[Any, bool]:
    """Traces ``fn(*args)`` once and compiles that trace, cached by its fingerprint.

    The Python function runs once per call (so a changed global or closure is seen); the
    compiled program is shared by every function with the same content and shapes.

    Args:
      fn: the function to compile.
      args: its arguments (arrays or ``jax.ShapeDtypeStruct``s).
      tag: a hashable kept beside the fingerprint in the cache key (e.g. the kind of
        program and the device ids).
      in_shardings: passed to ``jax.jit`` (``None``: not given).
      out_shardings: passed to ``jax.jit`` (``None``: not given).

    Returns:
      ``(compiled, cached)`` as for ``cached_compile``.

    Examples:
      >>> import jax.numpy as jnp
      >>> from jopt.sweep.engine import compile_by_content
      >>> x = jnp.zeros(3)
      >>> _, first = compile_by_content(lambda x: 2 * x, [x], tag="docs")
      >>> double, second = compile_by_content(lambda y: 2 * y, [x], tag="docs")  # same content
      >>> first, second, double(x + 1).tolist()
      (False, True, [2.0, 2.0, 2.0])
    """
    from jax.extend.core import jaxpr_as_fun

    program, shapes, closed = _traced(fn, *args)
    out_tree = jax.tree.structure(shapes)

    def replay(*a):
        return jax.tree.unflatten(out_tree, jaxpr_as_fun(closed)(*jax.tree.leaves(a)))

    return cached_compile(
        replay,
        args,
        key=(tag, program),
        in_shardings=in_shardings,
        out_shardings=out_shardings,
    )


# --- a batch of independent runs ---------------------------------------------------------------


def _batched(traced: TracedTrial, seeds_outside: bool = True) -> Callable:
    """(hp[C], keys[S]) -> metrics[C, S, ...]."""

    def one(dynamic, key):
        return traced({k: v for k, v in dynamic.items() if k != ROW}, key)

    over_configs = jax.vmap(one, in_axes=(0, None))
    if seeds_outside:
        over_seeds = jax.vmap(over_configs, in_axes=(None, 0))
        return lambda hp, keys: jax.tree.map(lambda x: jnp.swapaxes(x, 0, 1), over_seeds(hp, keys))
    # Fallback for a trial whose convolutions JAX cannot batch over both axes at once (an
    # input batched by configuration but not by seed, with a kernel batched by both): seeds
    # one after another, so only the configuration axis is vmapped.
    return lambda hp, keys: jax.tree.map(
        lambda x: jnp.swapaxes(x, 0, 1), jax.lax.map(lambda k: over_configs(hp, k), keys)
    )


def _device_args(hp: Mapping[str, np.ndarray], keys: np.ndarray, where: Layout) -> tuple:
    hp = {n: np.asarray(v, np.float32) for n, v in hp.items()}
    if not hp:
        raise ValueError(f"hp is empty: pass {{{ROW!r}: np.zeros(width)}} for a static group.")
    return (
        {n: global_array(v, where.config) for n, v in sorted(hp.items())},
        global_array(np.asarray(keys), where.replicated),
    )


def compile_trials(
    traced: TracedTrial, hp: Mapping[str, np.ndarray], keys: np.ndarray, where: Layout
) -> tuple[Any, bool, tuple]:
    """The compiled program of ``run_trials`` (from the cache when it is there).

    Seeds are vmapped outside configurations; where JAX cannot batch the trial that way
    (``NotImplementedError``, see the module docstring), seeds run one after another.

    Args:
      traced: ``trace_trial(trial, static, names)``, as for :func:`run_trials`.
      hp: name -> ``(width,)`` values of the dynamic hyperparameters, as for
        :func:`run_trials`.
      keys: ``(n_seeds, 2)`` PRNG keys.
      where: the ``layout`` to shard over.

    Returns:
      ``(compiled, cached, args)``: the program, whether it came from the cache, and the
      device arguments to call it with.
    """
    args = _device_args(hp, keys, where)
    for seeds_outside in (True, False):
        try:
            compiled, cached = cached_compile(
                _batched(traced, seeds_outside),
                args,
                key=("trials", traced.program, seeds_outside, where.device_ids),
                in_shardings=(where.config, where.replicated),
                out_shardings=where.config,
            )
            return compiled, cached, args
        except NotImplementedError:
            if not seeds_outside:
                raise
    raise AssertionError("unreachable")


def run_trials(
    traced: TracedTrial,
    hp: Mapping[str, np.ndarray],
    keys: np.ndarray,
    where: Layout,
    *,
    info: dict[str, Any] | None = None,
) -> dict[str, np.ndarray]:
    """``metrics[c, s] = trial({**hp[c], **static}, keys[s])`` as one compiled, sharded call.

    Args:
      traced: ``trace_trial(trial, static, names)``: the trial of one static group (its
        static values baked in), traced once.
      hp: name -> ``(width,)`` values of the dynamic hyperparameters; ``width`` must be a
        multiple of the device count (``pad`` the batch first). With no dynamic names, pass
        ``{ROW: ...}`` (any ``width`` numbers): it is dropped before the trial sees it.
      keys: ``(n_seeds, 2)`` PRNG keys, the same for every configuration.
      where: the ``layout`` to shard over.
      info: when given, filled with ``cached_program``, ``compile_s``, ``memory`` and
        ``flops_per_call`` of the compiled program.

    Returns:
      name -> ``np.ndarray`` of shape ``(width, n_seeds, *metric_shape)``.
    """
    start = time.perf_counter()
    compiled, cached, args = compile_trials(traced, hp, keys, where)
    if info is not None:
        info["cached_program"] = cached
        info["compile_s"] = time.perf_counter() - start
        info["memory"] = memory(compiled)
        info["flops_per_call"] = flops(compiled)
    out = to_host(compiled(*args))
    return {k: np.asarray(v) for k, v in out.items()}


def memory(compiled: Any) -> dict[str, int] | None:
    """Bytes per device of a compiled program (arguments, outputs, temporaries), if known."""
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


def flops(compiled: Any) -> float | None:
    """XLA's estimate of the floating-point operations of one call, if known."""
    try:
        cost = compiled.cost_analysis()
    except Exception:
        return None
    if isinstance(cost, list):
        cost = cost[0] if cost else None
    return float(cost["flops"]) if cost and "flops" in cost else None


# --- populations of resumable runs -------------------------------------------------------------


def init_population(
    trial: Any,
    configs: Sequence[Mapping[str, Any]],
    keys: jax.Array,
    *,
    width: int | None = None,
    devices: Sequence[jax.Device] | None = None,
) -> Any:
    """``vmap(trial.init)`` over configurations (row ``i`` uses ``keys[i]``), padded to ``width``.

    Args:
      trial: a ``Resumable`` (``init(hparams, key) -> carry``).
      configs: one dict of numbers per row.
      keys: ``(len(configs), 2)`` PRNG keys.
      width: rows of the result, rounded up to the device count (default ``len(configs)``
        rounded up); the padding repeats the last row.
      devices: devices to shard the rows over (default all).

    Returns:
      The batched carry, sharded over the devices, a leading axis of ``width`` rows.
    """
    configs = [dict(c) for c in configs]
    names = list(configs[0])
    where = layout(devices)
    width = where.round_up(width or len(configs))
    rows = pad(range(len(configs)), width)
    hp = stack_configs([configs[r] for r in rows], names)
    keys = np.asarray(keys)
    # the ranges of the hyperparameters init writes into the state, checked before any run
    _, _, _, checks = _traced_with_checks(
        trial.init, scalars(names), jax.ShapeDtypeStruct(keys.shape[1:], keys.dtype)
    )
    sorted_names = sorted(names)
    checks.verify(
        [hp[n][: len(configs)] for n in sorted_names] + [keys[0]],
        [True] * len(names) + [False],
        lambda row: f"configuration {row} {configs[row]}",
    )
    args = (
        {n: global_array(v, where.config) for n, v in hp.items()},
        global_array(keys[np.asarray(rows)], where.config),
    )
    init, _ = compile_by_content(
        jax.vmap(trial.init),
        args,
        tag=("init", where.device_ids),
        in_shardings=where.config,
        out_shardings=where.config,
    )
    return init(*args)


def advance_program(trial: Any, carry: Any, names: Sequence[str], steps: int, where: Layout) -> Any:
    """The compiled ``vmap(trial.advance)`` for a batched ``carry`` and ``steps`` steps."""
    if isinstance(steps, bool) or not (isinstance(steps, (int, np.integer)) and steps >= 1):
        raise ValueError(f"steps must be an int >= 1, got {steps!r}.")
    steps = int(steps)
    hp = {n: jax.ShapeDtypeStruct(jax.tree.leaves(carry)[0].shape[:1], jnp.float32) for n in names}
    compiled, _ = compile_by_content(
        jax.vmap(lambda c, h: trial.advance(c, h, steps)),
        (carry, hp),
        tag=("advance", steps, where.device_ids),
        in_shardings=where.config,
        out_shardings=where.config,
    )
    return compiled


def advance_population(
    trial: Any,
    carry: Any,
    configs: Sequence[Mapping[str, Any]],
    steps: int,
    *,
    devices: Sequence[jax.Device] | None = None,
    program: Any = None,
) -> tuple[Any, dict[str, np.ndarray]]:
    """``vmap(trial.advance)`` over a batched carry for ``steps`` steps, sharded over devices.

    ``configs`` gives each row's hyperparameters (``len(configs)`` equals the carry's rows,
    a multiple of the device count). The compiled program depends on what ``advance``
    computes, the carry's shapes and ``steps``, so a strategy that keeps its width fixed
    compiles each distinct ``steps`` once.

    Args:
      trial: a ``Resumable`` (``advance(carry, hparams, steps) -> (carry, metrics)``).
      carry: the batched carry, as :func:`init_population` returns it.
      configs: one dict of numbers per row of ``carry``.
      steps: training steps to advance every row by (an int >= 1).
      devices: devices to shard the rows over (default all).
      program: ``advance_program(...)`` for these shapes and ``steps``, when the caller holds
        it (then ``trial.advance`` is not traced again).

    Returns:
      ``(carry, metrics)`` with metrics as numpy arrays of shape ``(rows,)``.
    """
    names = list(configs[0])
    where = layout(devices)
    carry = jax.device_put(carry, where.config)  # compiled for this sharding of its inputs
    if program is None:
        program = advance_program(trial, carry, names, steps, where)
    hp = stack_configs(configs, names)
    hp = {n: global_array(v, where.config) for n, v in hp.items()}
    carry, metrics = program(carry, hp)
    return carry, {k: np.asarray(v) for k, v in to_host(metrics).items()}


class Population:
    """The carries of a ``Resumable`` trial for many configurations, one vmapped call a chunk.

    Row ``i`` starts from ``trial.init(configs[i], keys[i])``. ``advance(rows, steps)`` moves
    the given rows on by ``steps`` training steps, ``width`` rows per compiled call (padded by
    repeating a row), so every call with the same ``steps`` reuses one program, traced and
    compiled once per population (or taken from the engine's cache).

    Attributes:
      carry: the batched carry, a leading axis of ``len(configs)`` rows.
      width: rows per compiled call (a multiple of the device count).
      padded_steps: training steps computed so far, padding rows included.
    """

    def __init__(
        self,
        trial: Any,
        configs: Sequence[Mapping[str, Any]],
        keys: jax.Array,
        *,
        width: int | None = None,
        devices: Sequence[jax.Device] | None = None,
    ):
        self.trial, self.devices = trial, devices
        self.configs = [dict(c) for c in configs]
        if not self.configs:
            raise ValueError("a population needs at least one configuration.")
        self.names = list(self.configs[0])
        self.where = layout(devices)
        self.width = self.where.round_up(width or len(self.configs))
        self._programs: dict[int, Any] = {}
        self.padded_steps = 0
        keys = np.asarray(keys)
        chunks = []
        for first in range(0, len(self.configs), self.width):
            rows = list(range(first, min(first + self.width, len(self.configs))))
            carry = init_population(
                trial,
                [self.configs[r] for r in rows],
                keys[np.asarray(rows)],
                width=self.width,
                devices=devices,
            )
            chunks.append(jax.tree.map(lambda x: x[: len(rows)], carry))
        self.carry = jax.tree.map(lambda *xs: jnp.concatenate(xs), *chunks)

    def advance(self, rows: Sequence[int], steps: int, repeats: int = 1) -> dict[str, np.ndarray]:
        """Advances ``rows`` by ``repeats`` calls of ``steps`` steps; returns their metrics."""
        rows = list(rows)
        metrics: list[dict[str, np.ndarray]] = []
        for first in range(0, len(rows), self.width):
            chunk = rows[first : first + self.width]
            padded = np.asarray(pad(chunk, self.width))
            carry = jax.device_put(jax.tree.map(lambda x: x[padded], self.carry), self.where.config)
            configs = [self.configs[r] for r in padded]
            out: dict[str, np.ndarray] = {}
            for _ in range(repeats):
                if steps not in self._programs:
                    self._programs[steps] = advance_program(
                        self.trial, carry, self.names, steps, self.where
                    )
                carry, out = advance_population(
                    self.trial,
                    carry,
                    configs,
                    steps,
                    devices=self.devices,
                    program=self._programs[steps],
                )
                self.padded_steps += steps * self.width
            real = jax.tree.map(lambda x: x[: len(chunk)], carry)
            index = jnp.asarray(chunk)
            self.carry = jax.tree.map(lambda x, v: x.at[index].set(v), self.carry, real)
            metrics.append({k: v[: len(chunk)] for k, v in out.items()})
        return {k: np.concatenate([m[k] for m in metrics]) for k in metrics[0]}
