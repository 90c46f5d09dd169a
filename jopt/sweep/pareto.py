"""Pareto fronts of several objectives: non-dominated points, their ranks, the hypervolume.

A point ``a`` *dominates* ``b`` when it is at least as good in every objective and better in
one. The front is the set of points no other point dominates; peeling fronts off one after
another gives each point its non-dominated *rank* (0 = the front), the order NSGA-II sorts
by (Deb et al. 2002). The *hypervolume* of a front is the measure of the region it dominates
up to a reference point, the usual single number to compare two fronts (Zitzler & Thiele 1998).

Every function takes ``values`` of shape ``(n, m)`` (n points, m objectives) and ``modes``,
one ``"min"`` or ``"max"`` per objective. A row with a NaN or an infinity (a diverged run) is
never on a front: it dominates nothing, and its rank is ``n`` (after every finite point).

Example:
  >>> import numpy as np
  >>> from jopt.sweep.pareto import non_dominated, nondominated_ranks, hypervolume
  >>> accuracy_bytes = np.array([[0.9, 100.0], [0.8, 50.0], [0.7, 80.0], [np.nan, 1.0]])
  >>> non_dominated(accuracy_bytes, ["max", "min"]).tolist()
  [True, True, False, False]
  >>> nondominated_ranks(accuracy_bytes, ["max", "min"]).tolist()
  [0, 0, 1, 4]
  >>> float(hypervolume(accuracy_bytes, ["max", "min"], reference=[0.0, 200.0]))
  130.0

References:
  Deb, Pratap, Agarwal & Meyarivan, "A fast and elitist multiobjective genetic algorithm:
  NSGA-II", IEEE TEC 2002. Zitzler & Thiele, "Multiobjective optimization using evolutionary
  algorithms: a comparative case study", PPSN 1998.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

MODES = ("min", "max")


def as_minimized(values: np.ndarray | Sequence, modes: Sequence[str]) -> np.ndarray:
    """``values`` as a float ``(n, m)`` array in which smaller is better in every column.

    Args:
      values: ``(n, m)`` objective values (a 1-D array is one objective).
      modes: ``"min"`` or ``"max"`` per column.

    Returns:
      A copy with each ``"max"`` column negated; rows holding a NaN or an infinity are all NaN.

    Raises:
      ValueError: ``modes`` has the wrong length or a value other than ``"min"``/``"max"``.
    """
    points = np.asarray(values, dtype=np.float64)
    if points.ndim == 1:
        points = points[:, None]
    if points.ndim != 2:
        raise ValueError(f"values must have shape (n, m), got shape {points.shape}.")
    modes = [modes] if isinstance(modes, str) else list(modes)
    if len(modes) != points.shape[1]:
        raise ValueError(
            f"modes must give one 'min'/'max' per objective ({points.shape[1]}), got {modes!r}."
        )
    for mode in modes:
        if mode not in MODES:
            raise ValueError(f"each mode must be 'min' or 'max', got {mode!r}.")
    signs = np.array([1.0 if mode == "min" else -1.0 for mode in modes])
    points = points * signs
    points[~np.isfinite(points).all(axis=1)] = np.nan
    return points


def _dominated_by_any(points: np.ndarray, candidates: np.ndarray) -> np.ndarray:
    """For each of ``points``, whether some row of ``candidates`` dominates it (minimizing)."""
    no_worse = (candidates[None, :, :] <= points[:, None, :]).all(axis=2)
    better = (candidates[None, :, :] < points[:, None, :]).any(axis=2)
    return (no_worse & better).any(axis=1)


def non_dominated(values: np.ndarray | Sequence, modes: Sequence[str]) -> np.ndarray:
    """Which points are on the Pareto front.

    Args:
      values: ``(n, m)`` objective values.
      modes: ``"min"`` or ``"max"`` per objective.

    Returns:
      A boolean array of shape ``(n,)``: True for points no finite point dominates (a point
      with a NaN or an infinity is False).
    """
    points = as_minimized(values, modes)
    finite = ~np.isnan(points).any(axis=1)
    front = np.zeros(len(points), dtype=bool)
    front[finite] = ~_dominated_by_any(points[finite], points[finite])
    return front


def nondominated_ranks(values: np.ndarray | Sequence, modes: Sequence[str]) -> np.ndarray:
    """Each point's non-dominated rank: 0 on the front, 1 on the front of the rest, ...

    Args:
      values: ``(n, m)`` objective values.
      modes: ``"min"`` or ``"max"`` per objective.

    Returns:
      An int array of shape ``(n,)``; points with a NaN or an infinity get rank ``n``.
    """
    points = as_minimized(values, modes)
    ranks = np.full(len(points), len(points), dtype=np.int64)
    left = np.flatnonzero(~np.isnan(points).any(axis=1))
    rank = 0
    while left.size:
        on_front = ~_dominated_by_any(points[left], points[left])
        ranks[left[on_front]] = rank
        left = left[~on_front]
        rank += 1
    return ranks


def _hypervolume_minimized(points: np.ndarray, reference: np.ndarray) -> float:
    """Hypervolume of finite minimized ``points`` strictly below ``reference``, by slicing."""
    if len(points) == 0:
        return 0.0
    if points.shape[1] == 1:
        return float(reference[0] - points[:, 0].min())
    # Slice along the last objective: between two consecutive values, the dominated region's
    # cross-section is the (m-1)-dimensional hypervolume of the points at or below the slice.
    order = np.argsort(points[:, -1], kind="stable")
    points = points[order]
    levels = np.append(points[:, -1], reference[-1])
    volume = 0.0
    for i in range(len(points)):
        height = levels[i + 1] - levels[i]
        if height > 0:
            volume += height * _hypervolume_minimized(points[: i + 1, :-1], reference[:-1])
    return volume


def hypervolume(
    values: np.ndarray | Sequence, modes: Sequence[str], reference: Sequence[float]
) -> float:
    """The measure of the objective region the points dominate, bounded by ``reference``.

    .. math::
      HV(P) = \\lambda\\Big(\\bigcup_{p \\in P} [p_1, r_1] \\times \\dots \\times [p_m, r_m]\\Big)

    (for minimized objectives; ``"max"`` ones are negated, reference included). Points not
    strictly better than the reference in every objective, and non-finite ones, add nothing.
    Exact, by slicing: fine for the few hundred points of a sweep.

    Args:
      values: ``(n, m)`` objective values.
      modes: ``"min"`` or ``"max"`` per objective.
      reference: one value per objective, worse than every point that should count (e.g.
        accuracy 0 and the dense model's bytes).

    Returns:
      The hypervolume, in the product of the objectives' units.
    """
    points = as_minimized(values, modes)
    ref = as_minimized(np.asarray(reference, dtype=np.float64)[None, :], modes)[0]
    if np.isnan(ref).any():
        raise ValueError(f"reference must be finite, got {list(reference)!r}.")
    points = points[~np.isnan(points).any(axis=1)]
    points = points[(points < ref).all(axis=1)]
    if len(points):
        points = points[~_dominated_by_any(points, points)]
    return _hypervolume_minimized(points, ref)
