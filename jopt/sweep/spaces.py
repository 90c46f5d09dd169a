"""Search spaces: grids, random and quasi-random samples, and static values.

A ``Space`` is an ordered list of configurations (dicts of hyperparameter values). Values are
either *dynamic* (numbers: batched with ``vmap`` inside one compiled program) or *static*
(wrapped in ``static(...)``, or any non-numeric value such as a string: they change shapes or
code, so configurations that differ in them are compiled separately, one program per group).

Examples:
  >>> import jopt
  >>> space = jopt.sweep.grid(learning_rate=jopt.sweep.log_range(1e-3, 1.0, 4),
  ...                         momentum=[0.0, 0.9])
  >>> len(space), space.configs[1]
  (8, {'learning_rate': 0.001, 'momentum': 0.9})
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import jax
import numpy as np

__all__ = [
    "Choice",
    "IntUniform",
    "LogUniform",
    "Space",
    "Uniform",
    "grid",
    "log_range",
    "quasirandom",
    "random",
    "static",
]


@dataclass(frozen=True)
class Static:
    """Marks values that change shapes or code: one compiled program per distinct value."""

    values: tuple


def static(values: Sequence[Any]) -> Static:
    """Static values for a grid axis: ``grid(batch_size=static([32, 64]))`` compiles twice.

    A static value reaches the trial as the Python value itself, not a traced number, so it
    may change shapes or code; configurations are grouped by their static values, one
    compiled program per group.

    Args:
      values: the values of the axis (at least one).

    Returns:
      A ``Static`` marker holding ``values`` as a tuple.

    Raises:
      ValueError: ``values`` is empty.

    Examples:
      >>> import jopt
      >>> len(jopt.sweep.grid(width=jopt.sweep.static([8, 16]), lr=[0.1, 0.2]).groups())
      2
    """
    values = tuple(values)
    if not values:
        raise ValueError("static() needs at least one value.")
    return Static(values)


def log_range(low: float, high: float, num: int) -> list[float]:
    """``num`` log-spaced values from ``low`` to ``high`` inclusive (both > 0).

    Args:
      low: the first value (finite, > 0).
      high: the last value (finite, > 0); it may be below ``low`` (a decreasing range).
      num: the number of values, an int >= 1 (``1`` gives ``[low]``).

    Returns:
      A list of Python floats, rounded to 12 decimals.

    Raises:
      ValueError: ``num`` is not an int >= 1, or ``low`` or ``high`` is not finite and > 0.

    Examples:
      >>> import jopt
      >>> jopt.sweep.log_range(1e-3, 1e-1, 3)
      [0.001, 0.01, 0.1]
    """
    if not (isinstance(num, int) and num >= 1):
        raise ValueError(f"log_range: num must be an int >= 1, got {num!r}.")
    if not (low > 0 and high > 0 and math.isfinite(low) and math.isfinite(high)):
        raise ValueError(f"log_range: low and high must be finite and > 0, got {low}, {high}.")
    if num == 1:
        return [float(low)]
    return [float(v) for v in np.round(np.geomspace(low, high, num), 12)]


# --- distributions for random and quasi-random search -------------------------------------------


@dataclass(frozen=True)
class Uniform:
    """Uniform on [low, high)."""

    low: float
    high: float

    def __post_init__(self):
        if not (math.isfinite(self.low) and math.isfinite(self.high) and self.low < self.high):
            raise ValueError(f"Uniform needs finite low < high, got {self.low}, {self.high}.")

    def from_unit(self, u: np.ndarray) -> np.ndarray:
        return self.low + (self.high - self.low) * u


@dataclass(frozen=True)
class LogUniform:
    """Log-uniform on [low, high), both > 0: every decade is equally likely."""

    low: float
    high: float

    def __post_init__(self):
        if not (self.low > 0 and self.high > 0):
            raise ValueError(f"LogUniform bounds must be > 0, got {self.low}, {self.high}.")
        if not self.low < self.high:
            raise ValueError(f"LogUniform needs low < high, got {self.low}, {self.high}.")

    def from_unit(self, u: np.ndarray) -> np.ndarray:
        return np.exp(np.log(self.low) + (np.log(self.high) - np.log(self.low)) * u)


@dataclass(frozen=True)
class IntUniform:
    """Integers low..high inclusive, equally likely (dynamic: passed as floats to the trial)."""

    low: int
    high: int

    def __post_init__(self):
        if not (isinstance(self.low, int) and isinstance(self.high, int) and self.low <= self.high):
            raise ValueError(f"IntUniform needs ints low <= high, got {self.low}, {self.high}.")

    def from_unit(self, u: np.ndarray) -> np.ndarray:
        return np.minimum(self.low + np.floor(u * (self.high - self.low + 1)), self.high)


@dataclass(frozen=True)
class Choice:
    """One of ``options``, equally likely.

    Numeric options are dynamic (vmapped, one program for all of them) unless
    ``static=True``; non-numeric options are always static. Use ``static=True`` for numbers
    that change shapes, such as a hidden width or a batch size.

    Examples:
      >>> import jopt
      >>> space = jopt.sweep.random(4, 0, width=jopt.sweep.Choice([32, 64], static=True),
      ...                           lr=jopt.sweep.LogUniform(1e-3, 1.0))
      >>> space.static_names, len(space.groups()) <= 2
      (('width',), True)
    """

    options: tuple
    static: bool = False

    def __init__(self, options: Sequence[Any], static: bool = False):
        object.__setattr__(self, "options", tuple(options))
        object.__setattr__(self, "static", bool(static))
        if not self.options:
            raise ValueError("Choice needs at least one option.")

    def from_unit(self, u: np.ndarray) -> list[Any]:
        index = np.minimum((u * len(self.options)).astype(int), len(self.options) - 1)
        return [self.options[i] for i in index]


Distribution = Uniform | LogUniform | IntUniform | Choice


def _is_dynamic(value: Any) -> bool:
    return isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool)


def stable_repr(value: Any) -> str:
    """``repr`` without memory addresses: functions and classes by their qualified name."""
    if callable(value) and hasattr(value, "__qualname__"):
        return f"<{getattr(value, '__module__', '?')}.{value.__qualname__}>"
    if isinstance(value, (list, tuple)):
        inner = ", ".join(stable_repr(v) for v in value)
        return f"[{inner}]" if isinstance(value, list) else f"({inner})"
    return repr(value)


def _plain(value: Any) -> Any:
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, np.floating):
        return float(value)
    return value


class Space:
    """An ordered list of configurations, with the names that are static.

    Attributes:
      configs: list of dicts, one per configuration.
      static_names: names whose values are static (compiled per distinct value).
    """

    def __init__(self, configs: Sequence[Mapping[str, Any]], static_names: Sequence[str] = ()):
        configs = [{k: _plain(v) for k, v in c.items()} for c in configs]
        if not configs:
            raise ValueError("the search space is empty.")
        names = list(configs[0])
        for config in configs:
            if list(config) != names:
                raise ValueError(
                    f"every configuration needs the same names: {names} vs {list(config)}."
                )
        inferred = {n for n in names if not all(_is_dynamic(c[n]) for c in configs)}
        self.static_names = tuple(n for n in names if n in set(static_names) | inferred)
        self.configs = configs

    @property
    def names(self) -> list[str]:
        return list(self.configs[0])

    @property
    def dynamic_names(self) -> list[str]:
        return [n for n in self.names if n not in self.static_names]

    def __len__(self) -> int:
        return len(self.configs)

    def __iter__(self):
        return iter(self.configs)

    def groups(self) -> list[tuple[dict[str, Any], list[int]]]:
        """``[(static values, indices of the configs with them), ...]`` in first-seen order."""
        groups: dict[tuple, list[int]] = {}
        statics: dict[tuple, dict[str, Any]] = {}
        for i, config in enumerate(self.configs):
            values = {n: config[n] for n in self.static_names}
            key = tuple(repr(values[n]) for n in self.static_names)
            groups.setdefault(key, []).append(i)
            statics.setdefault(key, values)
        return [(statics[k], groups[k]) for k in groups]

    def fingerprint(self) -> str:
        """A stable text identifying the configurations (used to match sweep checkpoints).

        A function-valued static (``static([jax.nn.relu, jnp.tanh])``) enters by its
        qualified name, never by its address, so the same space gives the same text in
        another process; what the function computes enters through the traced program.
        """
        rows = [sorted((k, stable_repr(v)) for k, v in c.items()) for c in self.configs]
        return repr(rows) + repr(self.static_names)

    def __repr__(self) -> str:
        return self.table()

    def table(self, max_rows: int = 20) -> str:
        """The configurations as a text table (static columns marked with *)."""
        names = self.names
        header = ["#"] + [n + ("*" if n in self.static_names else "") for n in names]
        rows = []
        shown = self.configs if len(self) <= max_rows else self.configs[: max_rows - 1]
        for i, config in enumerate(shown):
            rows.append([str(i)] + [_fmt(config[n]) for n in names])
        if len(self) > max_rows:
            rows.append(["..."] * len(header))
        widths = [max(len(r[j]) for r in [header, *rows]) for j in range(len(header))]
        lines = [" ".join(h.rjust(w) for h, w in zip(header, widths))]
        lines += [" ".join(c.rjust(w) for c, w in zip(r, widths)) for r in rows]
        groups = len(self.groups())
        lines.append(f"{len(self)} configurations, {groups} compiled group{'s' * (groups != 1)}")
        return "\n".join(lines)


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def grid(**axes: Sequence[Any] | Static) -> Space:
    """The Cartesian product of the axes; the first keyword varies slowest.

    Args:
      **axes: name -> list of values, or ``static([...])`` for values that change shapes.

    Returns:
      A ``Space`` of ``prod(len(axis))`` configurations.

    Examples:
      >>> import jopt
      >>> space = jopt.sweep.grid(learning_rate=[0.1, 1.0], momentum=[0.0, 0.9, 0.99])
      >>> len(space), space.configs[0], space.configs[3]
      (6, {'learning_rate': 0.1, 'momentum': 0.0}, {'learning_rate': 1.0, 'momentum': 0.0})
    """
    if not axes:
        raise ValueError("grid() needs at least one axis.")
    static_names = []
    values = []
    for name, axis in axes.items():
        if isinstance(axis, Static):
            static_names.append(name)
            axis = axis.values
        elif isinstance(axis, (str, bytes)) or not isinstance(axis, Sequence | np.ndarray):
            raise TypeError(f"grid: axis {name!r} must be a list of values, got {axis!r}.")
        axis = list(axis)
        if not axis:
            raise ValueError(f"grid: axis {name!r} is empty.")
        values.append(axis)
    configs = [dict(zip(axes, combo)) for combo in itertools.product(*values)]
    return Space(configs, static_names)


def _check_distributions(dists: Mapping[str, Any]) -> None:
    if not dists:
        raise ValueError("a random space needs at least one hyperparameter.")
    for name, dist in dists.items():
        if not isinstance(dist, (Uniform, LogUniform, IntUniform, Choice, Static)):
            raise TypeError(
                f"{name}: unknown distribution {dist!r}; use Uniform, LogUniform, IntUniform, "
                "Choice, or static([...]) for a fixed set crossed with the samples."
            )


def _space_from_unit(n: int, unit: np.ndarray, dists: Mapping[str, Any]) -> Space:
    columns: dict[str, list[Any]] = {}
    sampled = [k for k, d in dists.items() if not isinstance(d, Static)]
    for j, name in enumerate(sampled):
        dist = dists[name]
        values = dist.from_unit(unit[:, j])
        columns[name] = [_plain(v) for v in values]
    configs = [{name: columns[name][i] for name in sampled} for i in range(n)]
    statics = {k: d.values for k, d in dists.items() if isinstance(d, Static)}
    if statics:  # cross the samples with every static value
        crossed = []
        for combo in itertools.product(*statics.values()):
            extra = dict(zip(statics, combo))
            crossed += [{**extra, **c} for c in configs]
        configs = crossed
    static_names = [k for k, d in dists.items() if isinstance(d, Static)]
    static_names += [
        k
        for k, d in dists.items()
        if isinstance(d, Choice) and (d.static or not all(map(_is_dynamic, d.options)))
    ]
    return Space(configs, static_names)


def random(n: int, key: jax.Array | int, **dists: Distribution | Static) -> Space:
    """``n`` independent samples of the distributions.

    Args:
      n: number of configurations (>= 1).
      key: a ``jax.random.PRNGKey`` or an int seed.
      **dists: name -> ``Uniform``, ``LogUniform``, ``IntUniform``, ``Choice`` or ``static``.

    Examples:
      >>> import jax, jopt
      >>> space = jopt.sweep.random(3, jax.random.PRNGKey(0),
      ...                           learning_rate=jopt.sweep.LogUniform(1e-4, 1.0))
      >>> len(space), all(1e-4 <= c["learning_rate"] < 1.0 for c in space)
      (3, True)
    """
    if not (isinstance(n, int) and n >= 1):
        raise ValueError(f"random: n must be an int >= 1, got {n!r}.")
    _check_distributions(dists)
    key = jax.random.PRNGKey(key) if isinstance(key, int) else key
    sampled = [k for k, d in dists.items() if not isinstance(d, Static)]
    unit = np.asarray(jax.random.uniform(key, (n, max(len(sampled), 1))), np.float64)
    return _space_from_unit(n, unit, dists)


def quasirandom(
    n: int, seed: int = 0, method: str = "sobol", **dists: Distribution | Static
) -> Space:
    """``n`` scrambled quasi-random points (scipy.stats.qmc Sobol or Halton): a more even cover.

    Args:
      n: number of configurations (>= 1; a power of 2 keeps Sobol balanced).
      seed: scrambling seed.
      method: ``"sobol"`` or ``"halton"``.
      **dists: as in ``random``.

    Examples:
      >>> import jopt
      >>> space = jopt.sweep.quasirandom(8, seed=0, x=jopt.sweep.Uniform(0.0, 1.0))
      >>> sorted(int(c["x"] * 8) for c in space)  # one point in each eighth
      [0, 1, 2, 3, 4, 5, 6, 7]
    """
    from scipy.stats import qmc

    if not (isinstance(n, int) and n >= 1):
        raise ValueError(f"quasirandom: n must be an int >= 1, got {n!r}.")
    _check_distributions(dists)
    d = max(sum(not isinstance(v, Static) for v in dists.values()), 1)
    if method == "sobol":
        sampler = qmc.Sobol(d, scramble=True, seed=seed)
    elif method == "halton":
        sampler = qmc.Halton(d, scramble=True, seed=seed)
    else:
        raise ValueError(f"quasirandom: method must be 'sobol' or 'halton', got {method!r}.")
    import warnings

    with warnings.catch_warnings():  # Sobol warns when n is not a power of 2
        warnings.simplefilter("ignore", UserWarning)
        unit = sampler.random(n)
    return _space_from_unit(n, unit, dists)
