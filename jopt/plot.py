"""Standard pictures of a sweep: heatmaps, learning curves with seed bands, scatters, Pareto fronts.

Each function draws on a matplotlib ``Axes`` (a new figure when ``ax`` is None) and returns the
axes, so figures compose like any matplotlib code. matplotlib is an extra:
``pip install jopt[plot]``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from jopt.sweep.result import SweepResult, check_mode

__all__ = ["curves", "heatmap", "parallel", "pareto", "pyplot", "scatter"]


def pyplot() -> Any:
    """``matplotlib.pyplot``, or an ImportError that says how to install it."""
    try:
        import matplotlib.pyplot as plt
    except ImportError as error:  # pragma: no cover - depends on the environment
        raise ImportError("jopt.plot needs matplotlib: pip install 'jopt[plot]'.") from error
    return plt


def _is_log(values: Sequence[float]) -> bool:
    """Whether sorted distinct values are (roughly) geometrically spaced."""
    values = np.asarray(sorted(set(values)), float)
    if len(values) < 3 or np.any(values <= 0):
        return False
    log_ratios = np.log(values[1:] / values[:-1])
    return bool(np.ptp(log_ratios) < 0.1 * log_ratios.mean())


def _fmt(value: Any) -> str:
    return f"{value:.3g}" if isinstance(value, float) else str(value)


def heatmap(
    result: SweepResult,
    x: str,
    y: str,
    metric: str,
    *,
    mode: str | None = None,
    where: dict[str, Any] | None = None,
    ax=None,
    cmap: str = "viridis",
    annotate: bool = True,
    title: str | None = None,
):
    """Seed-mean ``metric`` over a grid of two hyperparameters.

    Cells are laid out by the distinct values of ``x`` and ``y`` (log-spaced values are evenly
    spaced, as on a log axis), the best cell is outlined, cells with a diverged seed are
    hatched, and a colour bar is added.

    Args:
      result: a ``SweepResult`` of a grid.
      x, y: hyperparameter names for the columns and rows.
      metric: a scalar metric (a curve is read at its last entry).
      mode: ``"max"`` or ``"min"``: which cell is best.
      where: fix the other hyperparameters, e.g. ``{"nesterov": True}``.
      ax: matplotlib axes to draw on.
      cmap: colour map.
      annotate: write the values in the cells.
      title: axes title (default: the metric).

    Returns:
      The matplotlib axes.
    """
    plt = pyplot()
    check_mode(mode, metric)
    for name in (x, y):
        if name not in result.configs[0]:
            raise ValueError(f"unknown hyperparameter {name!r}; known: {list(result.configs[0])}.")
    keep = [
        i
        for i, c in enumerate(result.configs)
        if all(c.get(k) == v for k, v in (where or {}).items())
    ]
    xs = sorted({result.configs[i][x] for i in keep})
    ys = sorted({result.configs[i][y] for i in keep})
    value = result.final(metric)
    mean = np.where(result.diverged, np.nan, value).mean(axis=1)
    grid = np.full((len(ys), len(xs)), np.nan)
    diverged = np.zeros_like(grid, bool)
    for i in keep:
        row, col = ys.index(result.configs[i][y]), xs.index(result.configs[i][x])
        grid[row, col] = mean[i]
        diverged[row, col] = result.diverged[i].any()
    if ax is None:
        _, ax = plt.subplots(figsize=(1.0 + 0.7 * len(xs), 1.0 + 0.5 * len(ys)))
    image = ax.imshow(np.ma.masked_invalid(grid), origin="lower", aspect="auto", cmap=cmap)
    ax.figure.colorbar(image, ax=ax, label=metric)
    ax.set_xticks(range(len(xs)), [_fmt(v) for v in xs], rotation=45, ha="right")
    ax.set_yticks(range(len(ys)), [_fmt(v) for v in ys])
    ax.set_xlabel(x + (" (log)" if _is_log(xs) else ""))
    ax.set_ylabel(y + (" (log)" if _is_log(ys) else ""))
    for row, col in zip(*np.nonzero(diverged)):
        ax.add_patch(
            plt.Rectangle((col - 0.5, row - 0.5), 1, 1, fill=False, hatch="///", color="0.4", lw=0)
        )
    if np.any(np.isfinite(grid)):
        flat = np.nanargmax(grid) if mode == "max" else np.nanargmin(grid)
        row, col = np.unravel_index(flat, grid.shape)
        ax.add_patch(plt.Rectangle((col - 0.5, row - 0.5), 1, 1, fill=False, color="red", lw=2))
    if annotate and grid.size <= 400:
        low, high = image.norm.vmin, image.norm.vmax
        for row in range(len(ys)):
            for col in range(len(xs)):
                if np.isfinite(grid[row, col]):
                    bright = (grid[row, col] - low) / max(high - low, 1e-12) > 0.6
                    ax.text(
                        col,
                        row,
                        f"{grid[row, col]:.2f}",
                        ha="center",
                        va="center",
                        fontsize=7,
                        color="k" if bright else "w",
                    )
    ax.set_title(title or metric)
    return ax


def curves(
    result: SweepResult,
    metric: str,
    *,
    configs: Sequence[int] | None = None,
    label: str | None = None,
    x: np.ndarray | None = None,
    ax=None,
):
    """Learning curves (a metric with a time axis) with the seed mean and a min-max band.

    Args:
      result: a ``SweepResult`` whose ``metric`` has shape ``(configs, seeds, T)``.
      metric: the curve's name.
      configs: which configurations to draw (default all, up to 10).
      label: a hyperparameter name to label each curve by (default: the whole config).
      x: the time axis (default ``0..T-1``), e.g. the eval steps.
      ax: matplotlib axes to draw on.

    Returns:
      The matplotlib axes.
    """
    plt = pyplot()
    value = result.metrics[metric]
    if value.ndim != 3:
        raise ValueError(
            f"metric {metric!r} must have shape (configs, seeds, T), got {value.shape}."
        )
    configs = list(range(min(len(result.configs), 10))) if configs is None else list(configs)
    x = np.arange(value.shape[2]) if x is None else np.asarray(x)
    if ax is None:
        _, ax = plt.subplots(figsize=(6, 4))
    for i in configs:
        runs = np.where(result.diverged[i][:, None], np.nan, value[i].astype(float))
        name = (
            _fmt(result.configs[i][label])
            if label
            else ", ".join(f"{k}={_fmt(v)}" for k, v in result.configs[i].items())
        )
        line = ax.plot(x, np.nanmean(runs, axis=0), label=name)[0]
        if runs.shape[0] > 1:
            ax.fill_between(
                x, np.nanmin(runs, 0), np.nanmax(runs, 0), color=line.get_color(), alpha=0.2, lw=0
            )
    ax.set_ylabel(metric)
    ax.legend(fontsize=7, title=label)
    return ax


def scatter(
    result: SweepResult,
    x: str,
    y: str | None,
    metric: str,
    *,
    logx: bool | None = None,
    logy: bool | None = None,
    ax=None,
    cmap: str = "viridis",
):
    """Each configuration as a point (random and quasi-random spaces), coloured by ``metric``.

    With ``y=None`` it plots ``metric`` against ``x`` instead. Diverged configurations are
    drawn as grey crosses.

    Args:
      result: a ``SweepResult``.
      x: the hyperparameter on the horizontal axis.
      y: the hyperparameter on the vertical axis, or ``None`` to plot the seed-mean
        ``metric`` there (diverged configurations left out).
      metric: a scalar metric (a curve is read at its last entry); the points' colour.
      logx, logy: a log axis; ``None`` (default) chooses one where the values are positive
        and span more than two decades.
      ax: matplotlib axes to draw on.
      cmap: colour map.

    Returns:
      The matplotlib axes.

    Examples:
      >>> import numpy as np, jopt
      >>> result = jopt.sweep.SweepResult(
      ...     [{"lr": 1e-3, "wd": 0.0}, {"lr": 1e-1, "wd": 1e-4}, {"lr": 1.0, "wd": 1e-3}],
      ...     {"acc": np.array([[0.6], [0.9], [np.nan]])}, seeds=[0])
      >>> ax = jopt.plot.scatter(result, "lr", "wd", "acc")
      >>> ax.get_xscale(), ax.get_xlabel(), ax.get_ylabel()
      ('log', 'lr', 'wd')
      >>> jopt.plot.pyplot().close(ax.figure)
    """
    plt = pyplot()
    if ax is None:
        _, ax = plt.subplots(figsize=(5, 4))
    value = result.final(metric)
    mean = np.where(result.diverged, np.nan, value).mean(axis=1)
    bad = result.diverged.any(axis=1)
    xs = np.asarray([c[x] for c in result.configs], float)
    ys = mean if y is None else np.asarray([c[y] for c in result.configs], float)
    if y is None:
        ax.plot(xs[~bad], ys[~bad], "o", ms=4)
        ax.set_ylabel(metric)
    else:
        points = ax.scatter(xs[~bad], ys[~bad], c=mean[~bad], cmap=cmap, s=18)
        ax.figure.colorbar(points, ax=ax, label=metric)
        ax.scatter(xs[bad], ys[bad], marker="x", color="0.5", s=18, label="diverged")
        ax.set_ylabel(y)
        if logy or (logy is None and np.all(ys > 0) and ys.max() / ys.min() > 100):
            ax.set_yscale("log")
    if logx or (logx is None and np.all(xs > 0) and xs.max() / xs.min() > 100):
        ax.set_xscale("log")
    ax.set_xlabel(x)
    return ax


def pareto(
    result: SweepResult,
    x: str,
    y: str,
    *,
    modes: Sequence[str],
    ax=None,
    logx: bool | None = None,
    label: str | None = None,
    color: str = "C3",
):
    """Two seed-mean metrics against each other, with the Pareto front of the configurations.

    Every configuration is a grey point; the front (``result.pareto([x, y], modes)``) is
    drawn on top and joined by the staircase that bounds the region it dominates. Diverged
    configurations (a diverged seed or a non-finite mean) are left out and counted in the
    legend.

    Args:
      result: a ``SweepResult``.
      x, y: metric names for the two axes (curves are read at their last entry).
      modes: ``"max"`` or ``"min"`` for ``x`` and for ``y``.
      ax: matplotlib axes to draw on.
      logx: log scale on x, e.g. for bytes or FLOPs (default: when every value is positive
        and they span more than two decades).
      label: a hyperparameter name to write beside each point of the front.
      color: the front's colour.

    Returns:
      The matplotlib axes.
    """
    plt = pyplot()
    modes = [modes] if isinstance(modes, str) else list(modes)
    front = result.pareto([x, y], modes)
    if label is not None and label not in result.configs[0]:
        raise ValueError(
            f"label: unknown hyperparameter {label!r}; known: {list(result.configs[0])}."
        )
    xs, ys = result.score(x), result.score(y)
    shown = np.isfinite(xs) & np.isfinite(ys)
    if ax is None:
        _, ax = plt.subplots(figsize=(5, 4))
    hidden = int((~shown).sum())
    ax.scatter(
        xs[shown],
        ys[shown],
        color="0.6",
        s=16,
        label="configurations" + (f" ({hidden} diverged, not shown)" if hidden else ""),
    )
    order = front[np.argsort(xs[front], kind="stable")]
    # Consecutive points of the front meet at the corner worse in both metrics: after the
    # next x when x is minimized, before it when x is maximized.
    ax.step(xs[order], ys[order], where="post" if modes[0] == "min" else "pre", color=color, lw=1.2)
    ax.scatter(xs[order], ys[order], color=color, s=28, zorder=3, label="Pareto front")
    if label is not None:
        for i in order:
            ax.annotate(
                _fmt(result.configs[i][label]),
                (xs[i], ys[i]),
                textcoords="offset points",
                xytext=(4, 4),
                fontsize=7,
            )
    finite = xs[shown]
    if logx or (
        logx is None and finite.size and finite.min() > 0 and finite.max() / finite.min() > 100
    ):
        ax.set_xscale("log")
    better = {"max": "higher is better", "min": "lower is better"}
    ax.set_xlabel(f"{x} ({better[modes[0]]})")
    ax.set_ylabel(f"{y} ({better[modes[1]]})")
    ax.legend(fontsize=8)
    return ax


def parallel(
    result: SweepResult,
    metric: str,
    names: Sequence[str] | None = None,
    *,
    mode: str | None = None,
    ax=None,
    cmap: str = "viridis",
):
    """Parallel coordinates: one line per configuration across its hyperparameters.

    Each axis is a hyperparameter rescaled to [0, 1] (log scale when its values span more than
    two decades and are positive); lines are coloured by the seed-mean ``metric`` and the best
    configuration is drawn on top in red. Diverged configurations are grey and dashed. Useful
    for random and quasi-random spaces, where a heatmap has no grid.

    Args:
      result: a ``SweepResult``.
      metric: a scalar metric (a curve is read at its last entry): the lines' colour.
      names: the hyperparameters to draw as axes, in order (default: every non-static one).
      mode: ``"max"`` or ``"min"``: which configuration is best (drawn in red, and which
        lines are drawn on top). Required unless every configuration diverged.
      ax: matplotlib axes to draw on.
      cmap: colour map.

    Returns:
      The matplotlib axes.

    Raises:
      ValueError: there is no hyperparameter to draw, or ``mode`` is neither ``"max"`` nor
        ``"min"`` while some configuration did not diverge.

    Examples:
      >>> import numpy as np, jopt
      >>> result = jopt.sweep.SweepResult(
      ...     [{"lr": 1e-3, "b1": 0.8}, {"lr": 1e-1, "b1": 0.9}, {"lr": 1.0, "b1": 0.99}],
      ...     {"loss": np.array([[0.6], [0.2], [0.4]])}, seeds=[0])
      >>> ax = jopt.plot.parallel(result, "loss", mode="min")
      >>> [label.get_text().splitlines()[0] for label in ax.get_xticklabels()]
      ['log10 lr', 'b1']
      >>> jopt.plot.pyplot().close(ax.figure)
    """
    plt = pyplot()
    names = list(names or [n for n in result.configs[0] if n not in result.static_names])
    if not names:
        raise ValueError("parallel needs at least one numeric hyperparameter.")
    columns = []
    labels = []
    for name in names:
        values = np.asarray([c[name] for c in result.configs], float)
        if np.all(values > 0) and values.max() / values.min() > 100:
            values, label = np.log10(values), f"log10 {name}"
        else:
            label = name
        low, high = values.min(), values.max()
        columns.append((values - low) / (high - low) if high > low else np.full_like(values, 0.5))
        labels.append(f"{label}\n[{low:.3g}, {high:.3g}]")
    lines = np.stack(columns, axis=1)
    value = result.final(metric)
    mean = np.where(result.diverged, np.nan, value).mean(axis=1)
    bad = result.diverged.any(axis=1) | ~np.isfinite(mean)
    if ax is None:
        _, ax = plt.subplots(figsize=(1.8 * len(names) + 1.5, 4))
    x = np.arange(len(names))
    finite = mean[~bad]
    low, high = (finite.min(), finite.max()) if finite.size else (0.0, 1.0)
    colours = plt.get_cmap(cmap)
    for i in np.argsort(np.where(bad, -np.inf, mean if mode == "max" else -mean)):
        if bad[i]:
            ax.plot(x, lines[i], color="0.7", ls="--", lw=0.8)
        else:
            ax.plot(x, lines[i], color=colours((mean[i] - low) / max(high - low, 1e-12)), lw=1)
    if finite.size:
        ax.plot(x, lines[result.best_index(metric, mode)], color="red", lw=2.5, label="best")
        ax.legend(fontsize=8)
    mappable = plt.cm.ScalarMappable(cmap=cmap, norm=plt.Normalize(low, high))
    ax.figure.colorbar(mappable, ax=ax, label=metric)
    ax.set_xticks(x, labels, fontsize=8)
    ax.set_yticks([])
    for xi in x:
        ax.axvline(xi, color="0.3", lw=0.8)
    return ax
