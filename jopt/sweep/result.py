"""SweepResult: the table of a sweep, as numpy arrays, with pandas, CSV and JSON + npz output."""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import math
import os
import warnings
import zipfile
import zlib
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from jopt.checkpoint import sync_directory, write_temporary
from jopt.sweep.pareto import non_dominated
from jopt.sweep.spaces import Space, stable_repr

__all__ = ["SweepResult", "check_mode"]

# User attributes of the trials ``SweepResult.to_optuna`` writes.
SWEEP_ATTR = "jopt_sweep"  # id of the sweep: a hash of its configs, seeds and metric names
CONFIG_ATTR = "jopt_config"  # the configuration's index in ``SweepResult.configs``


def check_mode(mode: Any, metric: Any) -> str:
    """``mode`` if it is ``"max"`` or ``"min"``; a ValueError naming ``metric`` otherwise.

    Every ranking in jopt takes the direction explicitly (like optuna's ``direction``): a
    default of ``"max"`` would silently pick the worst configuration by a loss.

    Args:
      mode: the direction to check: ``"max"`` (e.g. an accuracy) or ``"min"`` (a loss).
      metric: the metric it ranks, named in the error message.

    Returns:
      ``mode``.

    Raises:
      ValueError: ``mode`` is neither ``"max"`` nor ``"min"`` (``None`` included).

    Examples:
      >>> from jopt.sweep.result import check_mode
      >>> check_mode("min", "val_loss")
      'min'
      >>> check_mode(None, "val_loss")
      Traceback (most recent call last):
        ...
      ValueError: mode must be 'max' (e.g. an accuracy) or 'min' (e.g. a loss) for metric
      'val_loss', got None: there is no default direction.
    """
    if mode not in ("max", "min"):
        raise ValueError(
            f"mode must be 'max' (e.g. an accuracy) or 'min' (e.g. a loss) for metric "
            f"{metric!r}, got {mode!r}: there is no default direction."
        )
    return mode


def check_metrics(
    metric: str | Sequence[str], mode: str | Sequence[str] | None
) -> tuple[list[str], list[str]]:
    """``metric`` and ``mode`` as two lists of equal length, checked.

    Args:
      metric: a metric name, or a non-empty list of distinct names (several objectives).
      mode: ``"max"`` or ``"min"`` for one name; a list of them, one per name, for a list.

    Returns:
      ``(metrics, modes)``, both lists.

    Raises:
      TypeError: ``metric`` is neither a name nor a list of names.
      ValueError: an empty or repeated ``metric`` list, a ``mode`` that is not a list of the
        same length, or a mode other than ``"max"``/``"min"`` (named with its metric).
    """
    if isinstance(metric, str):
        return [metric], [check_mode(mode, metric)]
    if not isinstance(metric, Sequence) or not all(isinstance(m, str) for m in metric):
        raise TypeError(f"metric must be a metric name or a list of names, got {metric!r}.")
    if not metric:
        raise ValueError("metric must name at least one metric, got [].")
    if len(set(metric)) != len(metric):
        raise ValueError(f"metric must not name a metric twice, got {list(metric)!r}.")
    if isinstance(mode, str) or not isinstance(mode, Sequence) or len(mode) != len(metric):
        raise ValueError(
            f"mode must be a list of one 'max'/'min' per metric of metric={list(metric)!r} "
            f"({len(metric)}), got mode={mode!r}."
        )
    return list(metric), [check_mode(m, name) for name, m in zip(metric, mode)]


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
      >>> r.diverged.tolist(), r.best("acc", mode="max")
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

    def final(self, metric: str) -> np.ndarray:
        """``metric`` as one float per run ``(n_configs, n_seeds)``: a curve's last entry."""
        if metric not in self.metrics:
            raise ValueError(f"unknown metric {metric!r}; known: {sorted(self.metrics)}.")
        value = self.metrics[metric]
        if value.ndim != 2:
            value = value.reshape(value.shape[0], value.shape[1], -1)[..., -1]
        return value.astype(np.float64)

    def score(self, metric: str) -> np.ndarray:
        """Seed mean per config of the scalar ``metric``; NaN where a seed diverged."""
        score = self.final(metric).mean(axis=1)
        score[self.diverged.any(axis=1) | ~np.isfinite(score)] = np.nan
        return score

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

    def best_index(self, metric: str, mode: str | None = None) -> int:
        """Index of the config with the best seed mean; configs with a diverged seed excluded.

        A metric with extra axes (a learning curve) is ranked by its last entry.

        Args:
          metric: a metric name.
          mode: ``"max"`` (an accuracy) or ``"min"`` (a loss). Required: like optuna's
            ``direction``, there is no default, so a loss is never ranked as a score.

        Raises:
          ValueError: no or an unknown ``mode``, an unknown metric, or every config diverged.
        """
        check_mode(mode, metric)
        score = self.score(metric)
        if np.all(np.isnan(score)):
            raise ValueError("every configuration diverged: there is no best one.")
        return int(np.nanargmax(score) if mode == "max" else np.nanargmin(score))

    def best(self, metric: str, mode: str | None = None) -> dict[str, Any]:
        """The config with the best seed-mean ``metric`` (diverged configs excluded).

        ``mode`` (``"max"`` or ``"min"``) is required, as for ``best_index``.
        """
        return dict(self.configs[self.best_index(metric, mode)])

    def _check_objectives(
        self, metrics: list[str], modes: list[Any], metrics_arg: str, modes_arg: str
    ) -> None:
        """ValueErrors for unknown metrics or modes that are not one "max"/"min" per metric."""
        unknown = [name for name in metrics if name not in self.metrics]
        if unknown:
            raise ValueError(
                f"{metrics_arg}: unknown metric(s) {unknown}; known: {sorted(self.metrics)}."
            )
        if not metrics or len(modes) != len(metrics):
            raise ValueError(
                f"{modes_arg} must give one 'max' or 'min' per metric of {metrics_arg}="
                f"{metrics}, got {modes_arg}={modes!r}."
            )
        for name, mode in zip(metrics, modes):
            check_mode(mode, name)

    def _intermediate_values(
        self, metric: str, steps: Sequence[int] | None
    ) -> list[dict[int, float]]:
        """Per config, step -> mean of the curve ``metric`` over the seeds finite there."""
        if metric not in self.metrics:
            raise ValueError(
                f"intermediate: unknown metric {metric!r}; known: {sorted(self.metrics)}."
            )
        curve = self.metrics[metric].astype(np.float64)
        if curve.ndim != 3:
            raise ValueError(
                f"intermediate={metric!r} must be a curve of shape (n_configs, n_seeds, T), "
                f"got shape {curve.shape}."
            )
        steps = range(curve.shape[2]) if steps is None else steps
        if len(steps) != curve.shape[2]:
            raise ValueError(
                f"intermediate_steps must give one step per entry of {metric!r} "
                f"({curve.shape[2]}), got {len(steps)}: {steps!r}."
            )
        with warnings.catch_warnings():  # a step where no seed is finite: NaN, left out
            warnings.simplefilter("ignore", RuntimeWarning)
            means = np.nanmean(np.where(np.isfinite(curve), curve, np.nan), axis=1)
        return [{int(s): float(v) for s, v in zip(steps, row) if np.isfinite(v)} for row in means]

    def pareto(self, metrics: Sequence[str], modes: Sequence[str]) -> np.ndarray:
        """Indices of the configurations on the Pareto front of several seed-mean metrics.

        A configuration is on the front when no other one is at least as good in every metric
        and better in one (``jopt.sweep.pareto.non_dominated``). Each metric enters by its seed
        mean (a curve by its last entry); a configuration with a diverged seed, or a non-finite
        mean, is never on the front, as in ``best``.

        Args:
          metrics: metric names, one per objective (e.g. ``["accuracy", "bytes"]``).
          modes: ``"max"`` or ``"min"`` per metric, in the same order (no default, as for
            ``best``).

        Returns:
          The indices into ``configs`` of the non-dominated configurations, sorted (an int
          ``np.ndarray``; empty when every configuration diverged).

        Raises:
          ValueError: an unknown metric (the known ones are listed), or ``modes`` not one
            ``"max"``/``"min"`` per metric.

        Examples:
          >>> import numpy as np, jopt
          >>> r = jopt.sweep.SweepResult(
          ...     [{"width": 8}, {"width": 16}, {"width": 32}, {"width": 64}],
          ...     {"acc": np.array([[0.80], [0.90], [0.85], [np.nan]]),
          ...      "bytes": np.array([[100.0], [200.0], [400.0], [800.0]])}, seeds=[0])
          >>> r.pareto(["acc", "bytes"], ["max", "min"]).tolist()
          [0, 1]
        """
        metrics = [metrics] if isinstance(metrics, str) else list(metrics)
        modes = [modes] if modes is None or isinstance(modes, str) else list(modes)
        self._check_objectives(metrics, modes, "metrics", "modes")
        values = np.stack([self.score(name) for name in metrics], axis=1)
        return np.flatnonzero(non_dominated(values, modes))

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

    def to_optuna(
        self,
        storage: Any,
        study_name: str,
        metric: str | Sequence[str],
        mode: str | Sequence[str],
        *,
        intermediate: str | None = None,
        intermediate_steps: Sequence[int] | None = None,
        overwrite: bool = False,
    ):
        """Writes the sweep into an optuna study, one finished trial per configuration.

        Opens the sweep in optuna's tools (``optuna-dashboard``, ``optuna.visualization``, a
        sampler warm-started on it). Each configuration becomes a trial whose params are the
        configuration and whose value is the seed mean of ``metric`` (a curve by its last
        entry); several metrics give a multi-objective study. A configuration with a diverged
        seed, or a non-finite mean, is a ``FAIL`` trial without values, as ``best`` and
        ``pareto`` exclude it. Trials are added in the order of ``configs``, through
        ``optuna.trial.create_trial`` and ``study.add_trials``.

        The params' distributions are inferred from the values the sweep holds, since the
        space's distributions are not stored: ints give an ``IntDistribution`` and other
        numbers a ``FloatDistribution``, over the observed range, on a log scale when every
        value is positive and the median of the distinct values lies nearer (in log) to the
        geometric than to the arithmetic midpoint of the extremes (a ``log_range`` grid or
        ``LogUniform`` samples); anything else (bools, strings, functions by their qualified
        name) gives a ``CategoricalDistribution`` of the values seen.

        Each trial's user attributes hold ``seeds``, the seeds that diverged
        (``diverged_seeds``), the per-seed values ``<name>_per_seed`` of the objectives and of
        every scalar metric, the configuration's index (``jopt_config``) and an id of the sweep
        (``jopt_sweep``: a hash of its configurations, seeds and metric names).

        An existing study of that name is appended to only when its directions (and metric
        names, when it has some) are the ones asked and it holds no trial of this sweep;
        ``overwrite=True`` deletes it first (``optuna.delete_study``), with all its trials.

        Args:
          storage: an optuna storage or its URL (``"sqlite:///sweep.db"``, PostgreSQL, a
            ``JournalStorage``, ...); ``None`` keeps the study in memory.
          study_name: the study's name.
          metric: a metric name, or several for a multi-objective study.
          mode: ``"max"`` or ``"min"`` per metric (no default, as for ``best``).
          intermediate: optionally a metric of shape ``(n_configs, n_seeds, T)`` (a learning
            curve) written as each trial's intermediate values: at each step, the mean over
            the seeds whose value there is finite (steps where none is are left out).
          intermediate_steps: the step of each of the ``T`` entries (default ``0..T-1``),
            e.g. the evaluation steps of the training runs.
          overwrite: delete an existing study of that name first.

        Returns:
          The ``optuna.Study``.

        Raises:
          ValueError: an unknown metric, ``mode`` not one ``"max"``/``"min"`` per metric, an
            ``intermediate`` metric without a curve axis or ``intermediate_steps`` of the
            wrong length, or an existing study with other directions or metric names, or
            already holding this sweep (without ``overwrite``).

        Examples:
          >>> import numpy as np, jopt
          >>> r = jopt.sweep.SweepResult([{"lr": 0.01}, {"lr": 0.1}, {"lr": 1.0}],
          ...     {"loss": np.array([[0.5, 0.7], [0.2, 0.4], [np.nan, 1.0]])}, seeds=[0, 1])
          >>> study = r.to_optuna(None, "lr", metric="loss", mode="min")  # in memory
          >>> [(t.state.name, t.params["lr"], t.value) for t in study.trials]
          [('COMPLETE', 0.01, 0.6), ('COMPLETE', 0.1, 0.3), ('FAIL', 1.0, None)]
          >>> study.best_params == r.best("loss", mode="min")
          True
        """
        optuna = _optuna()
        metrics = [metric] if isinstance(metric, str) else list(metric)
        modes = [mode] if mode is None or isinstance(mode, str) else list(mode)
        self._check_objectives(metrics, modes, "metric", "mode")
        curves = [{} for _ in self.configs]
        if intermediate is not None:
            curves = self._intermediate_values(intermediate, intermediate_steps)
        scores = np.stack([self.score(name) for name in metrics], axis=1)
        finished = np.all(np.isfinite(scores), axis=1)
        scalars = [name for name, value in self.metrics.items() if value.ndim == 2]
        per_seed = {name: self.final(name) for name in dict.fromkeys(metrics + scalars)}
        fingerprint = Space(self.configs, self.static_names).fingerprint()
        sweep_id = hashlib.sha256(
            repr((fingerprint, self.seeds, sorted(self.metrics))).encode()
        ).hexdigest()[:16]
        directions = ["maximize" if m == "max" else "minimize" for m in modes]
        study = _open_study(optuna, storage, study_name, directions, metrics, sweep_id, overwrite)
        recorded = {}
        for trial in study.get_trials(deepcopy=False):
            recorded.update(trial.distributions)
        names = list(dict.fromkeys(name for config in self.configs for name in config))
        distributions = {
            name: _optuna_distribution(
                optuna, name, [c[name] for c in self.configs if name in c], recorded.get(name)
            )
            for name in names
        }
        trials = []
        for i, config in enumerate(self.configs):
            user_attrs = {
                SWEEP_ATTR: sweep_id,
                CONFIG_ATTR: i,
                "seeds": self.seeds,
                "diverged_seeds": [s for s, d in zip(self.seeds, self.diverged[i]) if d],
            }
            for name, values in per_seed.items():
                user_attrs[f"{name}_per_seed"] = values[i].tolist()
            trials.append(
                optuna.trial.create_trial(
                    state=optuna.trial.TrialState.COMPLETE
                    if finished[i]
                    else optuna.trial.TrialState.FAIL,
                    values=scores[i].tolist() if finished[i] else None,
                    params={
                        name: _optuna_param(config[name], distributions[name]) for name in config
                    },
                    distributions={name: distributions[name] for name in config},
                    user_attrs=user_attrs,
                    intermediate_values=curves[i] or None,
                )
            )
        study.add_trials(trials)
        return study

    def to_csv(self, path: str | Path) -> None:
        """Writes ``to_dataframe()`` as CSV."""
        self.to_dataframe().to_csv(path, index=False)

    def save(self, path: str | Path) -> None:
        """Writes the result to ``path.json`` and ``path.npz``, each replaced atomically.

        ``path.json`` holds the configs, seeds, static names, metric names, ``info`` and the
        sha256 of ``path.npz``; ``path.npz`` holds each metric and ``diverged``. Both are plain
        formats: ``json.load`` and ``numpy.load`` read them without jopt.

        The suffixes are appended to ``path`` as given, so ``"runs/sweep_lr0.1"`` writes
        ``runs/sweep_lr0.1.json`` and ``runs/sweep_lr0.1.npz``; only a trailing ``.json`` or
        ``.npz`` is dropped first (``save("r.json")`` writes ``r.json`` and ``r.npz``). Each
        file is written in full to a temporary file next to it and then renamed over the old
        one, so an interrupted save leaves the previous files in place; a save interrupted
        between the two renames leaves a pair that ``load`` rejects by its checksum.

        Args:
          path: the common name of the two files, with or without ``.json`` or ``.npz``.
            Missing parent directories are created.

        Raises:
          ValueError: if ``path`` has no file name, or a metric is called ``diverged`` (that
            name holds the divergence mask in the ``.npz``).

        Examples:
          >>> import os, tempfile
          >>> import numpy as np, jopt
          >>> acc = np.array([[0.5, 0.7], [0.9, np.nan]])
          >>> r = jopt.sweep.SweepResult([{"lr": 0.1}, {"lr": 1.0}], {"acc": acc}, seeds=[0, 1])
          >>> with tempfile.TemporaryDirectory() as d:
          ...     r.save(os.path.join(d, "sweep_lr0.1"))
          ...     files = sorted(os.listdir(d))
          ...     loaded = jopt.sweep.SweepResult.load(os.path.join(d, "sweep_lr0.1"))
          >>> files
          ['sweep_lr0.1.json', 'sweep_lr0.1.npz']
          >>> loaded.configs, loaded.metrics["acc"].tolist(), loaded.diverged.tolist()
          ([{'lr': 0.1}, {'lr': 1.0}], [[0.5, 0.7], [0.9, nan]], [[False, False], [False, True]])
        """
        if "diverged" in self.metrics:
            raise ValueError(
                "a metric may not be called 'diverged': the .npz stores the divergence mask "
                "under that name."
            )
        json_path, npz_path = _file_pair(path)
        json_path.parent.mkdir(parents=True, exist_ok=True)
        meta = {
            "configs": self.configs,
            "seeds": self.seeds,
            "static_names": self.static_names,
            "metrics": sorted(self.metrics),
            "info": _jsonable(self.info),
        }
        temporaries: list[str] = []
        try:
            # Both files are complete on disk before either replaces its old version, which
            # narrows an inconsistent pair to a kill between the two renames; the .npz is
            # renamed first so that the .json, renamed last, vouches for it by its checksum.
            npz_tmp = write_temporary(
                npz_path, lambda f: np.savez(f, diverged=self.diverged, **self.metrics)
            )
            temporaries.append(npz_tmp)
            meta["npz_sha256"] = _sha256(npz_tmp)
            text = json.dumps(meta, indent=1).encode()
            json_tmp = write_temporary(json_path, lambda f: f.write(text))
            temporaries.append(json_tmp)
            os.replace(npz_tmp, npz_path)
            temporaries.remove(npz_tmp)
            os.replace(json_tmp, json_path)
            temporaries.remove(json_tmp)
        finally:
            for tmp in temporaries:
                with contextlib.suppress(OSError):
                    os.remove(tmp)
        sync_directory(json_path.parent)

    @classmethod
    def load(cls, path: str | Path) -> SweepResult:
        """Reads a result written by ``save``, checking that the two files belong together.

        Args:
          path: the name given to ``save``; a trailing ``.json`` or ``.npz`` is dropped, so
            ``load("r")``, ``load("r.json")`` and ``load("r.npz")`` all read ``r.json`` and
            ``r.npz``.

        Returns:
          A ``SweepResult`` equal to the saved one (``info`` as JSON stores it: tuples become
          lists, non-finite floats strings).

        Raises:
          FileNotFoundError: if ``path.json`` or ``path.npz`` does not exist.
          ValueError: naming the file at fault, if the JSON does not parse or lacks a key, the
            ``.npz`` is not a readable archive, its sha256 differs from the one recorded in the
            JSON (a truncated file, or one of another save), a metric named in the JSON is
            missing or does not have the leading shape ``(n_configs, n_seeds)``, or
            ``diverged`` is missing or not a bool array of that shape. Files written before
            the checksum was recorded load without the checksum check.

        Examples:
          >>> import os, tempfile
          >>> import numpy as np, jopt
          >>> r = jopt.sweep.SweepResult([{"lr": 0.1}], {"loss": np.ones((1, 2, 3))}, seeds=[0, 1])
          >>> with tempfile.TemporaryDirectory() as d:
          ...     r.save(os.path.join(d, "run.json"))
          ...     loaded = jopt.sweep.SweepResult.load(os.path.join(d, "run.npz"))
          >>> loaded
          SweepResult(1 configs x 2 seeds, metrics: loss; 0 diverged runs)
        """
        json_path, npz_path = _file_pair(path)
        for required in (json_path, npz_path):
            if not required.is_file():
                raise FileNotFoundError(
                    errno.ENOENT, "no saved sweep result file (SweepResult.load)", str(required)
                )
        meta = _read_meta(json_path)
        n_configs, n_seeds = len(meta["configs"]), len(meta["seeds"])
        expected = meta.get("npz_sha256")
        if expected is not None and _sha256(npz_path) != expected:
            raise ValueError(
                f"{npz_path}: its sha256 differs from the one recorded in {json_path}; the .npz "
                "is damaged or comes from another save (a save interrupted between writing the "
                ".npz and the .json leaves such a pair)."
            )
        try:
            with np.load(npz_path, allow_pickle=False) as arrays:
                stored = set(arrays.files)
                metrics = {name: arrays[name] for name in meta["metrics"] if name in stored}
                diverged = arrays["diverged"] if "diverged" in stored else None
        except (zipfile.BadZipFile, zlib.error, ValueError, OSError, EOFError) as e:
            raise ValueError(f"{npz_path}: not a readable .npz archive ({e}).") from e
        for name in meta["metrics"]:
            if name not in metrics:
                raise ValueError(f"{npz_path}: metric {name!r}, listed in {json_path}, is missing.")
            shape = metrics[name].shape
            if shape[:2] != (n_configs, n_seeds):
                raise ValueError(
                    f"{npz_path}: metric {name!r} has shape {shape}; {json_path} lists "
                    f"{n_configs} configs and {n_seeds} seeds, so ({n_configs}, {n_seeds}, ...) "
                    "was expected."
                )
        if diverged is None:
            raise ValueError(f"{npz_path}: the 'diverged' array is missing.")
        if diverged.dtype != np.bool_ or diverged.shape != (n_configs, n_seeds):
            raise ValueError(
                f"{npz_path}: 'diverged' is {diverged.dtype} of shape {diverged.shape}; expected "
                f"bool of shape ({n_configs}, {n_seeds})."
            )
        return cls(
            meta["configs"], metrics, meta["seeds"], meta["static_names"], meta["info"], diverged
        )


_META_TYPES = {"configs": list, "seeds": list, "static_names": list, "metrics": list, "info": dict}


def _optuna():
    try:
        import optuna
    except ImportError as error:  # pragma: no cover - optuna is in the [search] extra
        raise ImportError(
            "SweepResult.to_optuna needs optuna: pip install 'jopt[search]'."
        ) from error
    return optuna


def _open_study(optuna, storage, study_name, directions, metrics, sweep_id, overwrite):
    """A new study, or the existing one if it has these objectives and not this sweep."""
    if overwrite and storage is not None:
        with contextlib.suppress(KeyError):  # no such study: nothing to delete
            optuna.delete_study(study_name=study_name, storage=storage)
    with warnings.catch_warnings():  # metric names are an experimental optuna feature
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        try:
            study = optuna.create_study(
                storage=storage, study_name=study_name, directions=directions
            )
        except optuna.exceptions.DuplicatedStudyError:
            study = optuna.load_study(study_name=study_name, storage=storage)
        else:
            study.set_metric_names(metrics)
            return study
        existing = [d.name.lower() for d in study.directions]
        if existing != directions:
            raise ValueError(
                f"study {study_name!r} exists with directions {existing}, but metric={metrics} "
                f"asks for {directions}; use another study_name, or overwrite=True to replace it."
            )
        if study.metric_names is not None and list(study.metric_names) != metrics:
            raise ValueError(
                f"study {study_name!r} exists with metric names {study.metric_names}, but "
                f"metric={metrics}; use another study_name, or overwrite=True to replace it."
            )
    held = [
        t.number
        for t in study.get_trials(deepcopy=False)
        if t.user_attrs.get(SWEEP_ATTR) == sweep_id
    ]
    if held:
        raise ValueError(
            f"study {study_name!r} already holds this sweep (trials {held[0]}..{held[-1]} have "
            f"{SWEEP_ATTR}={sweep_id!r}); use another study_name, or overwrite=True to replace it."
        )
    return study


def _optuna_param(value: Any, distribution: Any) -> Any:
    """A config value as a param of ``distribution`` (an int of a float one as a float)."""
    value = _optuna_value(value)
    if isinstance(distribution, _optuna().distributions.FloatDistribution):
        return float(value)
    return value


def _optuna_value(value: Any) -> Any:
    """A config value as optuna stores it: a Python number, bool, str or None."""
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, np.floating):
        return float(value)
    if value is None or isinstance(value, (int, float, str)):
        return value
    return stable_repr(value)


def _optuna_distribution(optuna, name: str, values: Sequence[Any], recorded: Any = None):
    """The optuna distribution of a hyperparameter, inferred from the values it took.

    In an existing study it must agree with the distribution ``recorded`` there for ``name``:
    optuna keeps one kind, one log setting and one list of choices per parameter name.
    """
    distributions = optuna.distributions
    values = [_optuna_value(v) for v in values]
    numbers = all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values)
    if numbers and all(math.isfinite(v) for v in values):
        low, high = min(values), max(values)
        ints = all(isinstance(v, int) for v in values)
        if ints and (recorded is None or isinstance(recorded, distributions.IntDistribution)):
            log = recorded.log if recorded else low >= 1 and _log_spaced(values)
            if not log or low >= 1:
                return distributions.IntDistribution(low, high, log=log)
        elif recorded is None or isinstance(recorded, distributions.FloatDistribution):
            log = recorded.log if recorded else _log_spaced(values)
            if not log or low > 0:
                return distributions.FloatDistribution(float(low), float(high), log=log)
    elif recorded is None:
        choices = list({(type(v), repr(v)): v for v in values}.values())
        return distributions.CategoricalDistribution(choices)
    if isinstance(recorded, distributions.CategoricalDistribution) and all(
        v in recorded.choices for v in values
    ):
        return recorded
    raise ValueError(
        f"hyperparameter {name!r} takes values {sorted(set(map(repr, values)))} that the "
        f"study's distribution for it, {recorded}, cannot hold (optuna keeps one kind, log "
        "scale and list of choices per name); use another study_name, or overwrite=True."
    )


def _log_spaced(values: Sequence[float]) -> bool:
    """Positive values whose median sits nearer, in log, the geometric than the arithmetic mid."""
    distinct = np.unique(np.asarray(values, dtype=np.float64))
    if len(distinct) < 3 or distinct[0] <= 0:
        return False
    low, high, median = distinct[0], distinct[-1], np.median(distinct)
    geometric, arithmetic = np.sqrt(low * high), (low + high) / 2
    return bool(abs(np.log(median / geometric)) < abs(np.log(median / arithmetic)))


def _file_pair(path: str | Path) -> tuple[Path, Path]:
    """``(base.json, base.npz)``: suffixes are appended, so dots in the name are kept."""
    path = Path(path)
    name = path.name
    for suffix in (".json", ".npz"):
        if name.endswith(suffix) and len(name) > len(suffix):
            name = name[: -len(suffix)]
            break
    if not name or name in (".", ".."):
        raise ValueError(f"{str(path)!r} has no file name to save the sweep result under.")
    return path.with_name(name + ".json"), path.with_name(name + ".npz")


def _read_meta(json_path: Path) -> dict[str, Any]:
    try:
        meta = json.loads(json_path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ValueError(f"{json_path}: not valid JSON ({e}).") from e
    if not isinstance(meta, dict):
        raise ValueError(f"{json_path}: expected a JSON object, got {type(meta).__name__}.")
    missing = [key for key in _META_TYPES if key not in meta]
    if missing:
        raise ValueError(f"{json_path}: missing key(s) {missing}; not written by SweepResult.save.")
    for key, kind in _META_TYPES.items():
        if not isinstance(meta[key], kind):
            raise ValueError(
                f"{json_path}: {key!r} should be a JSON {'array' if kind is list else 'object'}, "
                f"got {type(meta[key]).__name__}."
            )
    if not all(isinstance(c, dict) for c in meta["configs"]):
        raise ValueError(f"{json_path}: every entry of 'configs' should be a JSON object.")
    if not all(isinstance(s, int) and not isinstance(s, bool) for s in meta["seeds"]):
        raise ValueError(f"{json_path}: 'seeds' should hold integers, got {meta['seeds']}.")
    if not all(isinstance(m, str) for m in meta["metrics"]):
        raise ValueError(f"{json_path}: 'metrics' should hold names, got {meta['metrics']}.")
    return meta


def _sha256(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


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
