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

__all__ = ["SweepResult", "check_mode"]


def check_mode(mode: Any, metric: Any) -> str:
    """``mode`` if it is ``"max"`` or ``"min"``; a ValueError naming ``metric`` otherwise.

    Every ranking in jopt takes the direction explicitly (like optuna's ``direction``): a
    default of ``"max"`` would silently pick the worst configuration by a loss.
    """
    if mode not in ("max", "min"):
        raise ValueError(
            f"mode must be 'max' (e.g. an accuracy) or 'min' (e.g. a loss) for metric "
            f"{metric!r}, got {mode!r}: there is no default direction."
        )
    return mode


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
        value = self._scalar(metric)
        score = value.mean(axis=1)
        score[self.diverged.any(axis=1) | ~np.isfinite(score)] = np.nan
        if np.all(np.isnan(score)):
            raise ValueError("every configuration diverged: there is no best one.")
        return int(np.nanargmax(score) if mode == "max" else np.nanargmin(score))

    def best(self, metric: str, mode: str | None = None) -> dict[str, Any]:
        """The config with the best seed-mean ``metric`` (diverged configs excluded).

        ``mode`` (``"max"`` or ``"min"``) is required, as for ``best_index``.
        """
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
