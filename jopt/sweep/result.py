"""SweepResult: the table of a sweep, as numpy arrays, with pandas, CSV and JSON + npz output."""

from __future__ import annotations

import json
import math
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["SweepResult"]


class SweepResult:
    """The outcome of ``jopt.sweep.run``.

    Attributes:
      configs: list of dicts, one per configuration, in the space's order.
      metrics: name -> ``np.ndarray`` of shape ``(n_configs, n_seeds, *metric_shape)``.
      diverged: bool array ``(n_configs, n_seeds)``: some float metric is NaN or inf.
      seeds: the seeds (seed ``s`` ran with ``jax.random.PRNGKey(s)`` for every config).
      static_names: the names that were static (one compiled program per value).
      info: wall time, devices, chunk sizes, compiled memory, ...

    Examples:
      >>> import numpy as np, jopt
      >>> r = jopt.sweep.SweepResult([{"lr": 0.1}, {"lr": 1.0}],
      ...                            {"acc": np.array([[0.5, 0.7], [0.9, np.nan]])}, seeds=[0, 1])
      >>> r.diverged.tolist(), r.best("acc")
      ([[False, False], [False, True]], {'lr': 0.1})
    """

    def __init__(
        self,
        configs: Sequence[dict[str, Any]],
        metrics: dict[str, np.ndarray],
        seeds: Sequence[int],
        static_names: Sequence[str] = (),
        info: dict[str, Any] | None = None,
        diverged: np.ndarray | None = None,
    ):
        self.configs = [dict(c) for c in configs]
        self.metrics = {k: np.asarray(v) for k, v in metrics.items()}
        self.seeds = [int(s) for s in seeds]
        self.static_names = list(static_names)
        self.info = dict(info or {})
        for name, value in self.metrics.items():
            if value.shape[:2] != (len(self.configs), len(self.seeds)):
                raise ValueError(
                    f"metric {name!r} has shape {value.shape}; expected ({len(self.configs)}, "
                    f"{len(self.seeds)}, ...)."
                )
        if diverged is None:
            diverged = np.zeros((len(self.configs), len(self.seeds)), bool)
            for value in self.metrics.values():
                if np.issubdtype(value.dtype, np.inexact):
                    axes = tuple(range(2, value.ndim))
                    diverged |= ~np.all(np.isfinite(value), axis=axes)
        self.diverged = np.asarray(diverged, bool)

    def __len__(self) -> int:
        return len(self.configs)

    def __repr__(self) -> str:
        names = ", ".join(self.metrics)
        return (
            f"SweepResult({len(self.configs)} configs x {len(self.seeds)} seeds, metrics: {names}; "
            f"{int(self.diverged.sum())} diverged runs)"
        )

    def _scalar(self, metric: str) -> np.ndarray:
        if metric not in self.metrics:
            raise ValueError(f"unknown metric {metric!r}; known: {sorted(self.metrics)}.")
        value = self.metrics[metric]
        if value.ndim != 2:
            value = value.reshape(value.shape[0], value.shape[1], -1)[..., -1]
        return value.astype(np.float64)

    def mean(self, metric: str) -> np.ndarray:
        """Seed mean per config ``(n_configs, *metric_shape)``; diverged runs count as NaN."""
        return self._masked(metric, np.nanmean)

    def _masked(self, metric: str, reduce) -> np.ndarray:
        if metric not in self.metrics:
            raise ValueError(f"unknown metric {metric!r}; known: {sorted(self.metrics)}.")
        value = self.metrics[metric].astype(np.float64)
        mask = self.diverged.reshape(self.diverged.shape + (1,) * (value.ndim - 2))
        with warnings.catch_warnings():  # all seeds diverged: NaN, silently
            warnings.simplefilter("ignore", RuntimeWarning)
            return reduce(np.where(mask, np.nan, value), axis=1)

    def std(self, metric: str) -> np.ndarray:
        """Seed standard deviation per config (ddof=0); diverged runs count as NaN."""
        return self._masked(metric, np.nanstd)

    def best_index(self, metric: str, mode: str = "max") -> int:
        """Index of the config with the best seed mean; configs with a diverged seed excluded.

        A metric with extra axes (a learning curve) is ranked by its last entry.
        """
        if mode not in ("max", "min"):
            raise ValueError(f"mode must be 'max' or 'min', got {mode!r}.")
        value = self._scalar(metric)
        score = value.mean(axis=1)
        score[self.diverged.any(axis=1) | ~np.isfinite(score)] = np.nan
        if np.all(np.isnan(score)):
            raise ValueError("every configuration diverged: there is no best one.")
        return int(np.nanargmax(score) if mode == "max" else np.nanargmin(score))

    def best(self, metric: str, mode: str = "max") -> dict[str, Any]:
        """The config with the best seed-mean ``metric`` (diverged configs excluded)."""
        return dict(self.configs[self.best_index(metric, mode)])

    def to_dataframe(self):
        """A pandas DataFrame: one row per (config, seed), hyperparameters and scalar metrics."""
        import pandas as pd

        rows = []
        for i, config in enumerate(self.configs):
            for j, seed in enumerate(self.seeds):
                row = {"config": i, **config, "seed": seed, "diverged": bool(self.diverged[i, j])}
                for name, value in self.metrics.items():
                    if value.ndim == 2:
                        row[name] = value[i, j].item()
                rows.append(row)
        return pd.DataFrame(rows)

    def to_csv(self, path: str | Path) -> None:
        """Writes ``to_dataframe()`` as CSV."""
        self.to_dataframe().to_csv(path, index=False)

    def save(self, path: str | Path) -> None:
        """Writes ``path.json`` (configs, seeds, info) and ``path.npz`` (metrics, diverged).

        Both are plain formats: ``json.load`` and ``numpy.load`` read them without jopt.
        """
        path = Path(path)
        base = path.with_suffix("") if path.suffix in (".json", ".npz") else path
        base.parent.mkdir(parents=True, exist_ok=True)
        meta = {
            "configs": self.configs,
            "seeds": self.seeds,
            "static_names": self.static_names,
            "metrics": sorted(self.metrics),
            "info": _jsonable(self.info),
        }
        base.with_suffix(".json").write_text(json.dumps(meta, indent=1))
        np.savez(base.with_suffix(".npz"), diverged=self.diverged, **self.metrics)

    @classmethod
    def load(cls, path: str | Path) -> SweepResult:
        """Reads what ``save`` wrote."""
        path = Path(path)
        base = path.with_suffix("") if path.suffix in (".json", ".npz") else path
        meta = json.loads(base.with_suffix(".json").read_text())
        with np.load(base.with_suffix(".npz")) as arrays:
            metrics = {name: arrays[name] for name in meta["metrics"]}
            diverged = arrays["diverged"]
        return cls(
            meta["configs"], metrics, meta["seeds"], meta["static_names"], meta["info"], diverged
        )


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, (np.integer, np.floating)):
        return value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    return repr(value)
