"""Hyperparameters as data: the state every jopt transform keeps, and how to read and edit it.

Every numeric hyperparameter of a jopt transform (learning rate, betas, weight decay, sparsity,
...) lives in the transform's state as a float array. That is what makes three things possible
that optax's closure constants cannot do:

* **read** them: ``jopt.hparams(opt_state)`` finds every jopt state inside any pytree
  (``optax.chain``, ``optax.masked``, ``optax.partition``, ``optax.MultiSteps``, flax train
  states, ...) and returns their current values;
* **edit** them between steps without recompiling: ``jopt.set_hparams(opt_state, **values)``
  returns a new state with the same shapes and dtypes, so a jitted step never retraces;
* **batch** them: a hyperparameter may be a tracer (``jax.vmap`` over a learning rate), so a whole
  training run can be vmapped over hyperparameters.

A hyperparameter may also be a schedule ``count -> value``. Its current value (the one used by
the most recent update) shows in ``jopt.hparams``. ``set_hparams`` on a scheduled
hyperparameter *pins* it to the given value from then on; ``scale_hparams`` multiplies the rest
of the schedule instead (what reduce-on-plateau and PBT's explore step want).

Names. ``jopt.hparams`` returns a flat dict keyed by hyperparameter name (``"learning_rate"``).
When two transforms in one state share a name (``chain(l1(1e-4), l2(1e-3))`` both have a
``"strength"``), every occurrence is keyed ``"<prefix>/<name>"`` instead, where the prefix is
the ``name=`` given to the transform, or else its position in the state pytree (``"0"``, ``"1"`` in
a chain, the partition label in ``optax.partition``), or else the transform's kind (``"adam"``).
``set_hparams`` accepts the bare name wherever it is unique and the qualified name always;
``jopt.hparams(state, qualified=True)`` lists every qualified name.
"""

from __future__ import annotations

import contextlib
import contextvars
import math
from collections.abc import Callable, Iterator, Mapping
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import struct

__all__ = [
    "Check",
    "EditableSchedule",
    "EditableScheduleState",
    "HyperparamState",
    "RecordedCheck",
    "ScalarOrSchedule",
    "any_real",
    "at_least",
    "check_range",
    "checks",
    "default_check",
    "hparams",
    "in_unit_interval",
    "is_concrete",
    "positive",
    "recording_checks",
    "scale_hparams",
    "set_hparams",
    "stateful_transform",
    "validate_hyperparam",
]

ScalarOrSchedule = float | int | jax.Array | Callable[[jax.Array], jax.Array]
InnerUpdate = Callable[[Any, Any, Any, dict[str, jax.Array]], tuple[Any, Any]]
InnerInit = Callable[[Any, dict[str, jax.Array]], Any]


@struct.dataclass
class HyperparamState:
    """The state of every jopt transform.

    Attributes:
      count: int32 number of updates applied so far (drives schedules).
      hparams: the current value of every numeric hyperparameter, as float arrays.
      schedule_scale: for scheduled hyperparameters, a multiplier on the schedule (1.0 unless
        ``scale_hparams`` changed it).
      pinned: for scheduled hyperparameters, whether ``set_hparams`` pinned the value (the
        schedule is then ignored).
      inner: the transform's own state (moments, masks, residuals, ...).
      kind: what the transform is, e.g. ``"adam"``: the same for every instance (static).
      name: which instance it is: the ``name=`` given at construction, or None (static).
        ``jopt.hparams`` keys a repeated hyperparameter by it (``"<name>/learning_rate"``).
      checks: ``(name, Check)`` pairs: the allowed range of each hyperparameter, which
        ``set_hparams`` and ``scale_hparams`` enforce (static).
    """

    count: jax.Array
    hparams: dict[str, jax.Array]
    schedule_scale: dict[str, jax.Array]
    pinned: dict[str, jax.Array]
    inner: Any
    kind: str = struct.field(pytree_node=False, default="transform")
    name: str | None = struct.field(pytree_node=False, default=None)
    checks: tuple[tuple[str, Check], ...] = struct.field(pytree_node=False, default=())


# --- validation of concrete values -------------------------------------------------------------


class Check:
    """A range check on a hyperparameter, applied wherever its value is concrete.

    Args:
      ok: ``ok(np.ndarray) -> bool``, whether every value is allowed.
      allowed: the range in words (``"finite and >= 0.0"``); two checks with the same words
        are the same check.
      low, high: the bounds, where the range is an interval (``clip`` keeps values inside it).
      low_open, high_open: whether the bound itself is excluded.
    """

    __slots__ = ("allowed", "high", "high_open", "low", "low_open", "ok")

    def __init__(
        self,
        ok: Callable[[np.ndarray], bool],
        allowed: str,
        low: float | None = None,
        high: float | None = None,
        low_open: bool = False,
        high_open: bool = False,
    ):
        self.ok, self.allowed = ok, allowed
        self.low, self.high, self.low_open, self.high_open = low, high, low_open, high_open

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Check) and other.allowed == self.allowed

    def __hash__(self) -> int:
        return hash(self.allowed)

    def __repr__(self) -> str:
        return f"Check({self.allowed!r})"

    def clip(self, value: jax.Array) -> jax.Array:
        """``value`` moved to the nearest allowed value (open bounds: the next float inside)."""
        value = jnp.asarray(value)
        if self.low is not None:
            low = jnp.asarray(self.low, value.dtype)
            if self.low_open:
                low = jnp.nextafter(low, jnp.asarray(jnp.inf, value.dtype))
            value = jnp.maximum(value, low)
        if self.high is not None:
            high = jnp.asarray(self.high, value.dtype)
            if self.high_open:
                high = jnp.nextafter(high, jnp.asarray(-jnp.inf, value.dtype))
            value = jnp.minimum(value, high)
        return value


def at_least(lo: float) -> Check:
    """The range check ``value >= lo``, for finite values.

    Args:
      lo: the smallest allowed value (allowed itself); ``clip`` moves values up to it.

    Returns:
      A :class:`Check` whose ``allowed`` reads ``"finite and >= <lo>"``.

    Examples:
      >>> import numpy as np
      >>> from jopt.hyperparams import at_least
      >>> check = at_least(0.0)
      >>> check.allowed, check.ok(np.asarray(0.0)), check.ok(np.asarray(-1e-3))
      ('finite and >= 0.0', True, False)
    """
    return Check(
        lambda v: bool(np.all(np.isfinite(v)) and np.all(v >= lo)), f"finite and >= {lo}", low=lo
    )


def positive() -> Check:
    """The range check ``value > 0``, for finite values.

    Returns:
      A :class:`Check` whose ``allowed`` reads ``"finite and > 0"``; ``clip`` moves a value
      up to the smallest positive float of its dtype.

    Examples:
      >>> import numpy as np
      >>> from jopt.hyperparams import positive
      >>> check = positive()
      >>> check.ok(np.asarray(1e-8)), check.ok(np.asarray(0.0)), check.ok(np.asarray(np.inf))
      (True, False, False)
    """
    return Check(
        lambda v: bool(np.all(np.isfinite(v)) and np.all(v > 0)),
        "finite and > 0",
        low=0.0,
        low_open=True,
    )


def in_unit_interval(closed: bool = False) -> Check:
    """The range check ``0 <= value < 1``, or ``0 <= value <= 1`` where ``closed``.

    For decay rates such as ``b1``, ``b2`` and momentum, and for a sparsity (all open at 1),
    and for fractions that may reach 1, such as a drop fraction (``closed=True``).

    Args:
      closed: whether ``1`` itself is allowed.

    Returns:
      A :class:`Check` whose ``allowed`` reads ``"in [0, 1)"``, or ``"in [0, 1]"`` where
      ``closed``.

    Examples:
      >>> import numpy as np
      >>> from jopt.hyperparams import in_unit_interval
      >>> one = np.asarray(1.0)
      >>> in_unit_interval().ok(one), in_unit_interval(closed=True).ok(one)
      (False, True)
    """
    if closed:
        return Check(lambda v: bool(np.all((v >= 0) & (v <= 1))), "in [0, 1]", low=0.0, high=1.0)
    return Check(
        lambda v: bool(np.all((v >= 0) & (v < 1))), "in [0, 1)", low=0.0, high=1.0, high_open=True
    )


def any_real() -> Check:
    """The range check that allows every finite value (no NaN, no infinity).

    Returns:
      A :class:`Check` whose ``allowed`` reads ``"finite"``, with no bounds.

    Examples:
      >>> import numpy as np
      >>> from jopt.hyperparams import any_real
      >>> any_real().ok(np.asarray([-3.0, 0.0, 2.5])), any_real().ok(np.asarray(np.nan))
      (True, False)
    """
    return Check(lambda v: bool(np.all(np.isfinite(v))), "finite")


# --- checks of traced values, evaluated later on the concrete values ----------------------------


class RecordedCheck(NamedTuple):
    """A range check met while tracing, on a value that was not concrete yet."""

    kind: str  # the transform, e.g. "momentum"
    name: str  # the hyperparameter
    check: Check
    value: Any  # the traced value (None once taken out of the trace)


_RECORDING: contextvars.ContextVar[list[RecordedCheck] | None] = contextvars.ContextVar(
    "jopt_recorded_checks", default=None
)


@contextlib.contextmanager
def recording_checks() -> Iterator[list[RecordedCheck]]:
    """Collects the range checks of traced hyperparameters met inside the ``with`` block.

    A sweep traces its trial with hyperparameters as tracers, so a transform built inside it
    cannot check them; it records them here instead, and the sweep evaluates every check on
    every configuration's concrete values before any training run (``jopt.sweep.engine``).

    Examples:
      >>> import jax, jopt
      >>> from jopt.hyperparams import recording_checks
      >>> met = []
      >>> def build(lr):
      ...     with recording_checks() as found:
      ...         jopt.momentum(lr, beta=0.9)  # a traced lr: recorded, not checked
      ...     met.extend((c.kind, c.name, c.check.allowed) for c in found)
      ...     return lr
      >>> _ = jax.make_jaxpr(build)(0.1)
      >>> met
      [('momentum', 'learning_rate', 'finite and >= 0.0')]
    """
    found: list[RecordedCheck] = []
    token = _RECORDING.set(found)
    try:
        yield found
    finally:
        _RECORDING.reset(token)


def check_range(kind: str, name: str, value: Any, check: Check | None) -> None:
    """Raises ValueError if a concrete ``value`` (any shape) is outside ``check``'s range.

    A traced value cannot be checked now: it is recorded for :func:`recording_checks`
    instead (where one is active), or else let through.

    Args:
      kind: the transform's name, for the message (``"sgd"``).
      name: the hyperparameter's name (``"learning_rate"``).
      value: a number or an array (checked elementwise), or a tracer.
      check: the allowed range; ``None`` checks nothing.

    Raises:
      ValueError: ``value`` is concrete and some element is out of range; the message names
        ``kind``, ``name``, the offending values and the range.

    Examples:
      >>> from jopt.hyperparams import at_least, check_range
      >>> check_range("sgd", "learning_rate", 0.1, at_least(0.0))  # in range: nothing
      >>> check_range("sgd", "learning_rate", -0.1, at_least(0.0))
      Traceback (most recent call last):
        ...
      ValueError: sgd: learning_rate must be finite and >= 0.0, got -0.1.
    """
    if check is None:
        return
    if not is_concrete(value):
        recorder = _RECORDING.get()
        if recorder is not None and isinstance(value, jax.core.Tracer):
            recorder.append(RecordedCheck(kind, name, check, value))
        return
    array = np.asarray(value)
    if not check.ok(array):
        bad = array if array.ndim == 0 else array[~_elementwise_ok(check, array)]
        shown = bad.item() if np.ndim(bad) == 0 else bad.tolist()
        raise ValueError(f"{kind}: {name} must be {check.allowed}, got {shown!r}.")


def _elementwise_ok(check: Check, array: np.ndarray) -> np.ndarray:
    return np.asarray([check.ok(v) for v in array.reshape(-1)]).reshape(array.shape)


def is_concrete(value: Any) -> bool:
    """Whether ``value`` is a number that can be read now (not a tracer, not a schedule)."""
    if isinstance(value, jax.core.Tracer):
        return False
    return isinstance(value, (int, float, np.ndarray, np.generic, jax.Array))


def _check_value(kind: str, name: str, value: Any, check: Check | None) -> None:
    if not is_concrete(value):
        check_range(kind, name, value, check)  # records it, when a sweep is tracing
        return
    array = np.asarray(value)
    if array.ndim != 0:
        raise ValueError(
            f"{kind}: {name} must be a scalar, got shape {array.shape}. To try several values "
            "at once, jax.vmap over a function that builds the transform."
        )
    check_range(kind, name, array, check)


def validate_hyperparam(kind: str, name: str, value: Any, check: Check | None) -> None:
    """Checks a hyperparameter where its value is concrete (a schedule at count 0).

    The one place jopt's transforms validate a numeric hyperparameter: a bool, ``None`` or a
    string is a TypeError; a concrete number or a schedule's first value outside ``check``'s
    range is a ValueError naming ``kind``, ``name``, the value and the range. A tracer is
    recorded for the sweep's range checks instead (see :func:`check_range`).

    Args:
      kind: the transform's name, for the message (``"sgd"``).
      name: the hyperparameter's name (``"learning_rate"``).
      value: a float, a JAX scalar or a schedule ``count -> value``.
      check: its allowed range (``None``: any finite number).

    Raises:
      TypeError: ``value`` is neither a number nor a schedule.
      ValueError: ``value`` is concrete and out of range.
    """
    if isinstance(value, bool) or value is None or isinstance(value, (str, bytes)):
        raise TypeError(
            f"{kind}: {name} must be a float, a JAX scalar or a schedule (count -> value), "
            f"got {type(value).__name__} {value!r}."
        )
    if callable(value) and not isinstance(value, jax.Array):
        try:
            first = value(jnp.zeros([], jnp.int32))
        except Exception:  # a schedule that only works under jit is still a schedule
            return
        _check_value(kind, f"{name} (schedule at count 0)", first, check)
        return
    if not isinstance(value, (int, float, np.ndarray, np.generic, jax.Array)):
        raise TypeError(
            f"{kind}: {name} must be a float, a JAX scalar or a schedule (count -> value), "
            f"got {type(value).__name__}."
        )
    if isinstance(value, float) and math.isnan(value):
        raise ValueError(f"{kind}: {name} must be {check.allowed if check else 'finite'}, got nan.")
    _check_value(kind, name, value, check)


def _float(value: Any) -> jax.Array:
    return jnp.asarray(value, dtype=jnp.result_type(float))


# --- the transform builder ----------------------------------------------------------------------


def stateful_transform(
    kind: str,
    init: InnerInit,
    update: InnerUpdate,
    hyperparams: Mapping[str, ScalarOrSchedule],
    checks: Mapping[str, Check] | None = None,
    *,
    name: str | None = None,
    cast_updates: bool = True,
    pass_extra_args: bool = False,
) -> optax.GradientTransformationExtraArgs:
    """Builds an optax transform whose numeric hyperparameters live in its state.

    This is the one adapter behind every jopt transform (and behind ``jopt.rules.from_rule``).

    Args:
      kind: a short name of the transform, e.g. ``"adam"``, used in error messages and as the
        label of last resort in ``jopt.hparams``.
      init: ``init(params, hparams) -> inner_state``.
      update: ``update(updates, inner_state, params, hparams) -> (updates, inner_state)``, a pure
        function; ``hparams`` is a dict of float arrays (tracers under jit/vmap).
      hyperparams: name -> float, JAX scalar or schedule ``count -> value``.
      checks: name -> allowed range, checked whenever a value is concrete.
      name: optional label that addresses this transform's hyperparameters as
        ``"<name>/<hparam>"`` when names collide inside a chain.
      cast_updates: cast each returned update to the dtype of the incoming update (keeps
        bfloat16 params in bfloat16 although hyperparameters are float32).
      pass_extra_args: pass extra keyword arguments of ``update`` (e.g. ``value=``) on to
        ``update``; otherwise they are accepted and ignored.

    Returns:
      An ``optax.GradientTransformationExtraArgs``, so it composes in ``optax.chain`` with
      transforms that take extra arguments such as ``value=``.
    """
    checks = dict(checks or {})
    hyperparams = dict(hyperparams)
    for key, value in hyperparams.items():
        validate_hyperparam(kind, key, value, checks.get(key))
    if name is not None and not isinstance(name, str):
        raise TypeError(f"{kind}: name must be a string or None, got {type(name).__name__}.")
    scheduled = {
        k: v for k, v in hyperparams.items() if callable(v) and not isinstance(v, jax.Array)
    }

    def current(count, state_hparams, schedule_scale, pinned):
        values = dict(state_hparams)
        for key, schedule in scheduled.items():
            scheduled_value = schedule_scale[key] * _float(schedule(count))
            values[key] = jnp.where(pinned[key], state_hparams[key], scheduled_value)
        return values

    def init_fn(params):
        count = jnp.zeros([], jnp.int32)
        values = {}
        for key, value in hyperparams.items():
            values[key] = _float(value(count) if key in scheduled else value)
        schedule_scale = {key: _float(1.0) for key in scheduled}
        pinned = {key: jnp.zeros([], bool) for key in scheduled}
        return HyperparamState(
            count=count,
            hparams=values,
            schedule_scale=schedule_scale,
            pinned=pinned,
            inner=init(params, values),
            kind=kind,
            name=name,
            checks=tuple(sorted(checks.items())),
        )

    def update_fn(updates, state, params=None, **extra_args):
        values = current(state.count, state.hparams, state.schedule_scale, state.pinned)
        if pass_extra_args:
            new_updates, inner = update(updates, state.inner, params, values, **extra_args)
        else:
            new_updates, inner = update(updates, state.inner, params, values)
        if cast_updates:
            new_updates = jax.tree.map(
                lambda new, old: new if new is None else new.astype(old.dtype),
                new_updates,
                updates,
                is_leaf=lambda x: x is None,
            )
        new_state = state.replace(
            count=optax.safe_increment(state.count), hparams=values, inner=inner
        )
        return new_updates, new_state

    return optax.GradientTransformationExtraArgs(init_fn, update_fn)


# --- finding states in a pytree -----------------------------------------------------------------


_INJECTED = (optax.InjectHyperparamsState, optax.InjectStatefulHyperparamsState)

# Name-based ranges for hyperparameters of plain optax transforms, whose state carries no
# checks of its own: optax names its rates and decays the same way across its optimizers.
_RATE_NAMES = ("learning_rate",)
_DECAY_NAMES = ("b1", "b2", "b3", "beta", "beta1", "beta2", "momentum", "decay", "rho")
_NONNEGATIVE_NAMES = ("eps", "eps_root", "weight_decay", "initial_accumulator_value")


def default_check(name: str) -> Check:
    """The range jopt assumes for an optax hyperparameter, from its keyword name alone.

    Learning rates must be finite and >= 0, decays and momenta (``b1``, ``b2``, ``beta``,
    ``momentum``, ``decay``, ...) in [0, 1), ``eps`` and ``weight_decay`` finite and >= 0; any
    other name only finite.

    Args:
      name: a keyword argument of an optax optimizer factory.

    Returns:
      A ``Check``.

    Examples:
      >>> from jopt.hyperparams import default_check
      >>> default_check("b2").allowed, default_check("learning_rate").allowed
      ('in [0, 1)', 'finite and >= 0.0')
    """
    if name in _RATE_NAMES or name.endswith("learning_rate"):
        return at_least(0.0)
    if name in _DECAY_NAMES or name.endswith(("_b1", "_b2", "_beta", "_momentum")):
        return in_unit_interval()
    if name in _NONNEGATIVE_NAMES or name.endswith(("_eps", "_weight_decay")):
        return at_least(0.0)
    return any_real()


def _is_injected(node: Any) -> bool:
    return isinstance(node, _INJECTED)


def _is_state(node: Any) -> bool:
    return isinstance(node, (HyperparamState, *_INJECTED))


def _values(state: Any) -> dict[str, Any]:
    """The hyperparameters a state holds (jopt's ``hparams`` or optax's ``hyperparams``)."""
    return state.hyperparams if _is_injected(state) else state.hparams


def _kind(state: Any) -> str:
    return "inject_hyperparams" if _is_injected(state) else state.kind


def _ranges(state: Any) -> dict[str, Check]:
    if _is_injected(state):
        return {key: default_check(key) for key in state.hyperparams}
    return dict(state.checks)


def _map_states(fn: Callable, tree: Any, prefix: tuple = ()) -> Any:
    """Applies fn(path, state) to every jopt or optax-injected state in tree, innermost first."""

    def visit(path, node):
        if not _is_state(node):
            return node
        full = prefix + tuple(path)
        if _is_injected(node):
            inner_path = (*full, jax.tree_util.GetAttrKey("inner_state"))
            node = node._replace(inner_state=_map_states(fn, node.inner_state, inner_path))
        else:
            inner_path = (*full, jax.tree_util.GetAttrKey("inner"))
            node = node.replace(inner=_map_states(fn, node.inner, inner_path))
        return fn(full, node)

    return jax.tree_util.tree_map_with_path(visit, tree, is_leaf=_is_state)


def _collect_states(tree: Any) -> list[tuple[tuple, Any]]:
    found: list[tuple[tuple, Any]] = []

    def record(path, state):
        found.append((path, state))
        return state

    _map_states(record, tree)
    return found


def _compact_path(path: tuple) -> str:
    parts = []
    for key in path:
        if isinstance(key, jax.tree_util.SequenceKey):
            parts.append(str(key.idx))
        elif isinstance(key, jax.tree_util.DictKey):
            parts.append(str(key.key))
        elif isinstance(key, jax.tree_util.FlattenedIndexKey):
            parts.append(str(key.key))
    return "/".join(parts)


def _prefix(path: tuple, state: Any) -> str:
    if not _is_injected(state) and state.name is not None:
        return state.name
    return _compact_path(path) or _kind(state)


def _names(tree: Any) -> dict[tuple, dict[str, str]]:
    """path -> {hparam name -> public key}, bare where unique and qualified where not."""
    states = _collect_states(tree)
    counts: dict[str, int] = {}
    for _, state in states:
        for key in _values(state):
            counts[key] = counts.get(key, 0) + 1
    names: dict[tuple, dict[str, str]] = {}
    seen: dict[str, tuple] = {}
    for path, state in states:
        label = _prefix(path, state)
        mapping = {}
        for key in _values(state):
            qualified = f"{label}/{key}"
            if qualified in seen:
                raise ValueError(
                    f"two transforms are both addressed as {qualified!r}; give them distinct "
                    "name= arguments to tell their hyperparameters apart."
                )
            seen[qualified] = path
            mapping[key] = key if counts[key] == 1 else qualified
        names[path] = mapping
    return names


def hparams(state: Any, *, qualified: bool = False) -> dict[str, jax.Array]:
    """The current hyperparameters of every jopt transform inside ``state``.

    Args:
      state: an optimizer state, or any pytree holding one (a chain's tuple, a flax TrainState,
        an ``optax.MultiSteps`` state, ...).
      qualified: key every value ``"<prefix>/<name>"`` even where the bare name is unique.

    Returns:
      A dict of arrays (scalars, or batched arrays for a vmapped population of states).

    Examples:
      >>> import jax.numpy as jnp, jopt, optax
      >>> tx = optax.chain(jopt.regularizers.clip_by_global_norm(1.0), jopt.adam(1e-3))
      >>> state = tx.init({"w": jnp.zeros(3)})
      >>> sorted(jopt.hparams(state))
      ['b1', 'b2', 'eps', 'eps_root', 'learning_rate', 'max_norm']
      >>> round(float(jopt.hparams(state)["learning_rate"]), 6)
      0.001
    """
    out: dict[str, jax.Array] = {}
    names = _names(state)
    for path, found in _collect_states(state):
        label = _prefix(path, found)
        for key, value in _values(found).items():
            out[f"{label}/{key}" if qualified else names[path][key]] = value
    return out


def checks(state: Any, *, qualified: bool = False) -> dict[str, Check]:
    """The allowed range of every hyperparameter inside ``state``, keyed as ``hparams`` keys it.

    Args:
      state: an optimizer state, or any pytree holding one, as for :func:`hparams`.
      qualified: key every check ``"<prefix>/<name>"`` even where the bare name is unique.

    Returns:
      A dict ``name -> Check`` with an entry for every hyperparameter that has a range (a
      subset of the keys of ``hparams(state, qualified=qualified)``).

    Examples:
      >>> import jax.numpy as jnp, jopt
      >>> from jopt.hyperparams import checks
      >>> checks(jopt.momentum(0.1, beta=0.9).init(jnp.zeros(2)))["beta"].allowed
      'in [0, 1)'
    """
    out: dict[str, Check] = {}
    names = _names(state)
    for path, found in _collect_states(state):
        label = _prefix(path, found)
        ranges = _ranges(found)
        for key in _values(found):
            if key in ranges:
                out[f"{label}/{key}" if qualified else names[path][key]] = ranges[key]
    return out


def _edit(state: Any, values: Mapping[str, Any], how: str) -> Any:
    states = _collect_states(state)
    names = _names(state)
    known: dict[str, list[tuple[tuple, str]]] = {}
    bare: dict[str, list[str]] = {}
    for path, found in states:
        label = _prefix(path, found)
        for key in _values(found):
            known.setdefault(f"{label}/{key}", []).append((path, key))
            bare.setdefault(key, []).append(f"{label}/{key}")
            if names[path][key] == key:
                known.setdefault(key, []).append((path, key))
    targets: dict[tuple, dict[str, Any]] = {}
    for public, value in values.items():
        if public not in known:
            if public in bare:
                raise ValueError(
                    f"hyperparameter {public!r} is ambiguous: several transforms have it; "
                    f"use one of {sorted(bare[public])}."
                )
            listed = ", ".join(sorted(_public_keys(names)))
            raise ValueError(f"unknown hyperparameter {public!r}; known: {listed or '(none)'}.")
        for path, key in known[public]:
            targets.setdefault(path, {})[key] = value

    def apply(path, found):
        edits = targets.get(path)
        if not edits:
            return found
        if _is_injected(found):
            return _edit_injected(found, edits, how, names[path])
        new_values = dict(found.hparams)
        new_scale = dict(found.schedule_scale)
        new_pinned = dict(found.pinned)
        ranges = dict(found.checks)
        for key, value in edits.items():
            old = found.hparams[key]
            if how == "set":
                new_values[key] = _like(old, value, key)
                if key in new_pinned:
                    new_pinned[key] = jnp.ones_like(found.pinned[key])
            else:
                factor = _like(old, value, key)
                new_values[key] = old * factor
                if key in new_scale:
                    new_scale[key] = found.schedule_scale[key] * factor
            check_range(found.kind, names[path][key], new_values[key], ranges.get(key))
        return found.replace(hparams=new_values, schedule_scale=new_scale, pinned=new_pinned)

    return _map_states(apply, state)


def _edit_injected(found: Any, edits: Mapping[str, Any], how: str, public: dict) -> Any:
    """``_edit`` for an optax ``inject_hyperparams`` state: writes ``hyperparams[name]``."""
    new_values = dict(found.hyperparams)
    schedules = dict(getattr(found, "hyperparams_states", {}))
    for key, value in edits.items():
        old = jnp.asarray(found.hyperparams[key])
        factor = _like(old, value, key)
        new_values[key] = factor if how == "set" else old * factor
        check_range(_kind(found), public[key], new_values[key], default_check(key))
        if key in schedules:
            # optax recomputes a scheduled value from its schedule state at every step, so the
            # edit must go into that state; only ``from_optax``'s schedules have room for it.
            if not isinstance(schedules[key], EditableScheduleState):
                raise ValueError(
                    f"{public[key]} follows a schedule of optax.inject_hyperparams, which "
                    "recomputes it every step; build the optimizer with jopt.from_optax to "
                    "set or scale a scheduled hyperparameter."
                )
            sched = schedules[key]
            if how == "set":
                schedules[key] = sched._replace(
                    pinned=jnp.ones_like(sched.pinned),
                    value=jnp.asarray(new_values[key], sched.value.dtype),
                )
            else:
                scale = sched.scale * jnp.asarray(factor, sched.scale.dtype)
                schedules[key] = sched._replace(scale=scale)
    if schedules:
        return found._replace(hyperparams=new_values, hyperparams_states=schedules)
    return found._replace(hyperparams=new_values)


class EditableScheduleState(NamedTuple):
    """State of a ``from_optax`` schedule: ``set_hparams`` pins it, ``scale_hparams`` scales it.

    Attributes:
      count: int32 number of updates so far (the schedule's argument).
      scale: multiplier on the schedule (1.0 unless ``scale_hparams`` changed it).
      pinned: whether ``set_hparams`` pinned the value.
      value: the pinned value (used only where ``pinned``).
    """

    count: jax.Array
    scale: jax.Array
    pinned: jax.Array
    value: jax.Array


class EditableSchedule:
    """An optax stateful schedule that ``set_hparams`` can pin and ``scale_hparams`` can scale.

    It wraps a schedule ``count -> value``; unedited, its values are the wrapped schedule's,
    bit for bit (a product with 1.0 is exact). ``jopt.from_optax`` wraps every schedule given
    as a hyperparameter in one, so that :func:`set_hparams` and :func:`scale_hparams` can
    edit it inside ``optax.inject_hyperparams``'s state.

    Args:
      schedule: ``schedule(count) -> value``.
    """

    def __init__(self, schedule: Callable[[jax.Array], Any]):
        self.schedule = schedule

    def init(self) -> EditableScheduleState:
        zero = jnp.zeros([], jnp.int32)
        first = _float(self.schedule(zero))
        return EditableScheduleState(zero, jnp.ones([], first.dtype), jnp.zeros([], bool), first)

    def update(self, state: EditableScheduleState, **extra_args: Any) -> EditableScheduleState:
        del extra_args
        return state._replace(count=optax.safe_increment(state.count))

    def __call__(self, state: EditableScheduleState, **extra_args: Any) -> jax.Array:
        del extra_args
        value = self.schedule(state.count)
        scaled = state.scale * value
        return jnp.where(state.pinned, state.value.astype(scaled.dtype), scaled)


def _public_keys(names: dict[tuple, dict[str, str]]) -> set[str]:
    return {public for mapping in names.values() for public in mapping.values()}


def _like(old: jax.Array, value: Any, key: str) -> jax.Array:
    if isinstance(value, bool) or not isinstance(
        value, (int, float, np.ndarray, np.generic, jax.Array)
    ):
        raise TypeError(f"{key} must be set to a number or an array, got {type(value).__name__}.")
    value = jnp.asarray(value, dtype=old.dtype)
    try:
        return jnp.broadcast_to(value, old.shape)
    except ValueError:
        raise ValueError(
            f"{key}: a value of shape {value.shape} does not fit the state's shape {old.shape}."
        ) from None


def set_hparams(state: Any, **values: Any) -> Any:
    """Returns ``state`` with hyperparameters replaced; shapes and dtypes are kept (no retrace).

    A scheduled hyperparameter is pinned to the given value from then on (its schedule is no
    longer consulted). Values may be batched arrays matching a batched (vmapped) state.

    Args:
      state: an optimizer state, or any pytree holding one, as for :func:`hparams`.
      **values: the new values, keyed by name as :func:`hparams` keys them (the bare name
        where it is unique, ``"<prefix>/<name>"`` always).

    Returns:
      A state of the same structure, shapes and dtypes as ``state``, with the new values.

    Raises:
      TypeError: a value is not a number or an array.
      ValueError: for a name that no transform in ``state`` has (the message lists the known
        names), a value whose shape does not fit, or a concrete value outside the
        transform's range (``jopt.set_hparams(state, learning_rate=-1.0)``). A traced value
        (under ``jit``/``vmap``) cannot be checked here; a sweep checks it on its concrete
        values before it runs.

    Examples:
      >>> import jax.numpy as jnp, jopt
      >>> state = jopt.sgd(0.1).init(jnp.zeros(2))
      >>> state = jopt.set_hparams(state, learning_rate=0.01)
      >>> round(float(jopt.hparams(state)["learning_rate"]), 6)
      0.01
    """
    return _edit(state, values, "set")


def scale_hparams(state: Any, **factors: Any) -> Any:
    """Returns ``state`` with hyperparameters multiplied by ``factors``.

    Unlike ``set_hparams``, a scheduled hyperparameter keeps following its schedule, scaled by
    the factor from now on (so ``scale_hparams(state, learning_rate=0.1)`` lowers a cosine
    schedule by 10x without flattening it). The scaled values must stay inside the
    transform's range, as for ``set_hparams``.

    Args:
      state: an optimizer state, or any pytree holding one, as for :func:`hparams`.
      **factors: the multipliers, keyed by name as in :func:`set_hparams`.

    Returns:
      A state of the same structure, shapes and dtypes as ``state``, with the values scaled.

    Raises:
      TypeError: a factor is not a number or an array.
      ValueError: as for :func:`set_hparams`: an unknown or ambiguous name, a factor whose
        shape does not fit, or a concrete scaled value outside the transform's range.

    Examples:
      >>> import jax.numpy as jnp, jopt
      >>> state = jopt.adam(1e-2).init(jnp.zeros(2))
      >>> state = jopt.scale_hparams(state, learning_rate=0.5)
      >>> round(float(jopt.hparams(state)["learning_rate"]), 6)
      0.005
    """
    return _edit(state, factors, "scale")
