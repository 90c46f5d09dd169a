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


def crowding_distance(values: np.ndarray | Sequence) -> np.ndarray:
    r"""NSGA-II's crowding distance of each point among ``values`` (one front, usually).

    For each objective, sort the points by it; the first and the last get an infinite
    distance, every other point the gap between its two neighbours divided by the
    objective's range; a point's crowding distance is the sum over objectives:

    .. math::
      d_i = \sum_{k=1}^{m} \frac{f_k^{(i+1)} - f_k^{(i-1)}}{f_k^{max} - f_k^{min}}

    where :math:`f_k^{(i\pm1)}` are the neighbours of point :math:`i` in the order of
    objective :math:`k`. A large distance means a lonely point: NSGA-II keeps those first to
    spread the front. The distance does not depend on whether an objective is minimized or
    maximized, up to ties: equal values keep the rows' order, so of the equal lowest values
    the first row is the extreme, of the equal highest the last.

    Args:
      values: ``(n, m)`` objective values (a 1-D array is one objective).

    Returns:
      A float array of shape ``(n,)``: ``inf`` for each objective's extremes, ``nan`` for a
      row with a NaN or an infinity (it is left out of the others' neighbours).

    .. warning::
      An objective on which every finite point has the same value adds nothing, to every
      point, extremes included (Deb et al. divide by its range, zero).

    Examples:
      >>> import numpy as np
      >>> from jopt.sweep.pareto import crowding_distance
      >>> crowding_distance(np.array([[0.0, 4.0], [1.0, 2.0], [3.0, 1.0], [4.0, 0.0]]))
      array([ inf, 1.5 , 1.25,  inf])

    References:
      Deb, Pratap, Agarwal, Meyarivan, `A fast and elitist multiobjective genetic algorithm:
      NSGA-II <https://doi.org/10.1109/4235.996017>`_, IEEE TEC 2002.
    """
    points = np.asarray(values, dtype=np.float64)
    if points.ndim == 1:
        points = points[:, None]
    if points.ndim != 2:
        raise ValueError(f"values must have shape (n, m), got shape {points.shape}.")
    finite = np.isfinite(points).all(axis=1)
    distance = np.full(len(points), np.nan)
    rows = np.flatnonzero(finite)
    distance[rows] = 0.0
    if not rows.size:
        return distance
    for column in points[rows].T:
        order = np.argsort(column, kind="stable")
        low, high = column[order[0]], column[order[-1]]
        if not high > low:  # one value: the objective tells the points apart not at all
            continue
        gaps = np.full(len(order), np.inf)
        gaps[1:-1] = (column[order[2:]] - column[order[:-2]]) / (high - low)
        distance[rows[order]] += gaps
    return distance


def ranks_and_crowding(values, modes: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
    """Each row's non-dominated rank, and its crowding distance within that rank.

    Args:
      values: ``(n, m)`` objective values.
      modes: ``"min"`` or ``"max"`` per objective.

    Returns:
      ``(ranks, crowding)``, two arrays of shape ``(n,)``: the rank of
      :func:`nondominated_ranks` (0 for the front), and :func:`crowding_distance` among the
      rows of the same rank. A row with a NaN or an infinity has rank ``n`` and distance NaN.
    """
    ranks = nondominated_ranks(values, modes)
    points = as_minimized(values, modes)
    crowding = np.full(len(ranks), np.nan)
    for rank in np.unique(ranks):
        members = np.flatnonzero(ranks == rank)
        crowding[members] = crowding_distance(points[members])
    return ranks, crowding


def nsga2_order(values: np.ndarray | Sequence, modes: Sequence[str]) -> np.ndarray:
    """Indices of ``values``' rows in NSGA-II's order: by rank, then by crowding distance.

    The rank is ``jopt.sweep.pareto.nondominated_ranks`` (0 for the front); within a rank,
    points with a larger ``crowding_distance`` (computed among that rank) come first. Keeping
    the first ``k`` is NSGA-II's selection: every whole front that fits, then the least
    crowded points of the first front that does not. Ties, which NSGA-II leaves open (a
    front's extremes all have an infinite distance), go by the first objective, then the
    next, then the rows' order: the objectives' order is their priority, as in
    ``sorted_front``. Rows with a NaN or an infinity come last, in their order.

    Args:
      values: ``(n, m)`` objective values.
      modes: ``"min"`` or ``"max"`` per objective.

    Returns:
      An int array of shape ``(n,)``, a permutation of ``range(n)``, best first.

    Examples:
      >>> from jopt.sweep.pareto import nsga2_order
      >>> nsga2_order([[0.8, 100.0], [0.9, 400.0], [0.85, 300.0], [0.7, 500.0], [0.86, 200.0]],
      ...             ["max", "min"]).tolist()
      [1, 0, 4, 2, 3]

    References:
      Deb, Pratap, Agarwal, Meyarivan, `A fast and elitist multiobjective genetic algorithm:
      NSGA-II <https://doi.org/10.1109/4235.996017>`_, IEEE TEC 2002.
    """
    ranks, crowding = ranks_and_crowding(values, modes)
    points = as_minimized(values, modes)
    diverged = np.isnan(points).any(axis=1)
    points[diverged], crowding[diverged] = 0.0, 0.0  # the diverged rows: by position
    return np.lexsort((np.arange(len(ranks)), *points.T[::-1], -crowding, ranks))


def sorted_front(values: np.ndarray | Sequence, modes: Sequence[str]) -> np.ndarray:
    """Indices of the non-dominated rows of ``values``, best in the first objective first.

    Ties in the first objective go by the second, and so on, then by the rows' order: the
    objectives' order is their priority, so ``sorted_front(...)[0]`` is the configuration a
    search reports as its single ``best``.

    Args:
      values: ``(n, m)`` objective values.
      modes: ``"min"`` or ``"max"`` per objective.

    Returns:
      An int array of the front's row indices (empty if every row has a NaN or an infinity).

    Examples:
      >>> from jopt.sweep.pareto import sorted_front
      >>> sorted_front([[0.8, 100.0], [0.9, 400.0], [0.7, 500.0]], ["max", "min"]).tolist()
      [1, 0]
    """
    rows = np.flatnonzero(non_dominated(values, modes))
    points = as_minimized(values, modes)[rows]
    return rows[np.lexsort(points.T[::-1])]
