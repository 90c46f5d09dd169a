"""Save and restore train states (any pytree of arrays) with orbax.

A thin layer over ``orbax.checkpoint.StandardCheckpointer``: one checkpoint is one
directory, written atomically (orbax writes to a temporary directory and renames it), and
restored into the structure of a ``like`` pytree, e.g. a freshly initialized
:class:`jopt.train.TrainState`. With ``step=`` the checkpoints of a run live side by side
as ``path/<step>``; :func:`latest_step` finds the newest, which is how
:func:`jopt.train.fit` resumes.

orbax is an optional dependency, imported on first use: ``pip install 'jopt[checkpoint]'``.

:class:`SweepStore` keeps the finished chunks of a sweep (``jopt.sweep.run``'s
``checkpoint_dir``) as plain ``.npz`` files with a manifest, written atomically and checked
on reading; it needs only numpy.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import re
import shutil
import stat
import tempfile
import warnings
import zipfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, BinaryIO

import jax
import numpy as np

try:
    import fcntl
except ImportError:  # pragma: no cover - not POSIX (Windows): no advisory file locks
    fcntl = None


def _orbax():
    try:
        import orbax.checkpoint as ocp
    except ImportError as e:  # pragma: no cover - depends on the environment
        raise ImportError(
            "jopt.checkpoint needs orbax-checkpoint: pip install 'jopt[checkpoint]'"
        ) from e
    return ocp


def _directory(path: str | os.PathLike, step: int | None) -> str:
    path = os.path.abspath(os.fspath(path))  # orbax wants absolute paths
    return path if step is None else os.path.join(path, str(int(step)))


# Re-saving a checkpoint writes the new one to ``<name>.jopt-new`` beside the old one, then
# swaps them with renames: ``<name>`` -> ``<name>.jopt-old``, ``<name>.jopt-new`` ->
# ``<name>``, and deletes ``<name>.jopt-old``. A crash at any moment leaves ``<name>`` or
# ``<name>.jopt-old`` whole, and readers take the second when the first is missing.
_NEW_SUFFIX = ".jopt-new"
_TRASH_SUFFIX = ".jopt-old"
_STEP_NAME = re.compile(r"(0|[1-9][0-9]*)(" + re.escape(_TRASH_SUFFIX) + r")?")
# What orbax writes last into a checkpoint (on every file system); older versions record
# the commit time in the step metadata instead.
_COMMIT_FILE = "commit_success.txt"
_STEP_METADATA_FILE = "_CHECKPOINT_METADATA"
_MAX_MISMATCH_LINES = 12


def _trash_name(name: str) -> str:
    """The name the old checkpoint ``name`` has while a re-save swaps in the new one."""
    return name + _TRASH_SUFFIX


def _is_finished(directory: str) -> bool:
    """Whether ``directory`` holds a checkpoint that orbax finished writing."""
    if not os.path.isdir(directory):
        return False
    if os.path.isfile(os.path.join(directory, _COMMIT_FILE)):
        return True
    try:
        with open(os.path.join(directory, _STEP_METADATA_FILE), "rb") as f:
            metadata = json.load(f)
    except (OSError, ValueError):
        return False
    return isinstance(metadata, dict) and bool(metadata.get("commit_timestamp_nsecs"))


def _finished_directory(directory: str) -> str | None:
    """``directory`` if finished, else its old copy left by an interrupted re-save, else None."""
    for candidate in (directory, _trash_name(directory)):
        if _is_finished(candidate):
            return candidate
    return None


# The file operations of the swap, separate so that tests can interrupt each of them.
def _rename(source: str, target: str) -> None:
    os.rename(source, target)


def _remove(path: str) -> None:
    if os.path.isdir(path) and not os.path.islink(path):
        shutil.rmtree(path)
    else:
        os.unlink(path)


def sync_directory(directory: str | os.PathLike) -> None:
    """Makes the renames inside ``directory`` durable, with an ``fsync`` of the directory.

    Best effort: some platforms cannot open a directory, and there the rename is all there
    is; an ``OSError`` is never raised.

    Args:
      directory: the folder whose entries changed.
    """
    try:
        handle = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        with contextlib.suppress(OSError):
            os.fsync(handle)
    finally:
        os.close(handle)


def write_temporary(target: str | os.PathLike, write: Callable[[BinaryIO], Any]) -> str:
    """Writes a durable temporary file beside ``target``, for an atomic ``os.replace`` onto it.

    The file is named ``.tmp-<pid>-<target name>-...`` in ``target``'s folder (one file
    system, so the rename is atomic; the pid lets a later process remove what a killed one
    left), synced to disk, and given the permissions a plain ``open`` would give ``target``
    (or ``target``'s own when it exists).

    Args:
      target: the path the caller will replace with this file.
      write: called with the open binary file.

    Returns:
      The temporary file's path; the caller renames or removes it.
    """
    target = Path(target)
    handle, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".tmp-{os.getpid()}-{target.name}-")
    try:
        with os.fdopen(handle, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        # mkstemp creates the file readable by its owner only; the result should get the
        # permissions a plain open() would have given it.
        os.chmod(tmp, _file_mode(target))
    except BaseException:
        with contextlib.suppress(OSError):
            os.remove(tmp)
        raise
    return tmp


def atomic_write(target: str | os.PathLike, data: bytes | Callable[[BinaryIO], Any]) -> None:
    """Replaces ``target`` with new content atomically.

    Readers see the old file or the new one, never a part, and a crash leaves the old one:
    the content goes to a durable temporary file beside ``target`` (:func:`write_temporary`),
    which ``os.replace`` then moves onto it.

    Args:
      target: the file to write (its folder must exist).
      data: the bytes, or a function that writes them to the open binary file.

    Example:
      >>> import pathlib, tempfile
      >>> path = pathlib.Path(tempfile.mkdtemp()) / "run.json"
      >>> atomic_write(path, b'{"loss": 0.1}')
      >>> path.read_text()
      '{"loss": 0.1}'
    """
    write = data if callable(data) else (lambda f: f.write(data))
    tmp = write_temporary(target, write)
    try:
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(OSError):
            os.remove(tmp)
        raise
    sync_directory(Path(target).parent)


def _file_mode(target: Path) -> int:
    try:
        return stat.S_IMODE(target.stat().st_mode)  # overwriting keeps the file's mode
    except OSError:
        pass
    umask = None
    with contextlib.suppress(OSError, ValueError):
        # Linux reports the umask here; reading it does not change it, unlike os.umask, which
        # would briefly give other threads a umask of 0.
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                umask = int(line.split()[1], 8)
    if umask is None:
        umask = os.umask(0o022)
        os.umask(umask)
    return 0o666 & ~umask


def _sync_processes(name: str) -> None:
    if jax.process_count() > 1:
        from jax.experimental import multihost_utils

        multihost_utils.sync_global_devices(name)


def _swap_in(directory: str, fresh: str) -> None:
    """Replaces the checkpoint ``directory`` by the finished one at ``fresh``."""
    trash = _trash_name(directory)
    if os.path.lexists(directory):
        if _is_finished(directory):
            if os.path.lexists(trash):
                _remove(trash)  # left by an earlier interrupted swap; ``directory`` is whole
            _rename(directory, trash)
        else:
            _remove(directory)  # not a checkpoint; a finished old copy may be the trash
    _rename(fresh, directory)
    sync_directory(os.path.dirname(directory))
    if os.path.lexists(trash):
        _remove(trash)


def all_steps(path: str | os.PathLike) -> list[int]:
    """The steps saved under ``path`` with ``save(path, ..., step=...)``, ascending.

    Only finished checkpoints count: a directory ``path/<step>`` without orbax's marker of
    a finished checkpoint (an interrupted write, an empty or partly copied directory) is
    ignored. A step whose re-save was interrupted in the middle of swapping the new
    checkpoint in counts too: its old checkpoint is read (see :func:`save`).

    Args:
      path: the directory given to :func:`save`.

    Returns:
      A sorted list of ints; empty if ``path`` does not exist.

    Examples:
      >>> import os, tempfile, jax.numpy as jnp
      >>> from jopt import checkpoint
      >>> path = tempfile.mkdtemp()
      >>> checkpoint.all_steps(path)
      []
      >>> _ = checkpoint.save(path, {"w": jnp.ones(2)}, step=3)
      >>> os.mkdir(os.path.join(path, "7"))  # not a checkpoint
      >>> checkpoint.all_steps(path)
      [3]
    """
    path = os.path.abspath(os.fspath(path))
    if not os.path.isdir(path):
        return []
    steps = set()
    for name in os.listdir(path):
        match = _STEP_NAME.fullmatch(name)
        if match and int(match.group(1)) not in steps:
            if _finished_directory(os.path.join(path, match.group(1))) is not None:
                steps.add(int(match.group(1)))
    return sorted(steps)


def latest_step(path: str | os.PathLike) -> int | None:
    """The newest step saved under ``path``, or ``None`` if there is none.

    Args:
      path: the directory given to :func:`save`.

    Returns:
      The largest of :func:`all_steps`, or ``None``.

    Examples:
      >>> import tempfile, jax.numpy as jnp
      >>> from jopt import checkpoint
      >>> path = tempfile.mkdtemp()
      >>> for step in (10, 20):
      ...     _ = checkpoint.save(path, {"w": jnp.ones(2)}, step=step)
      >>> checkpoint.latest_step(path), checkpoint.all_steps(path)
      (20, [10, 20])
    """
    steps = all_steps(path)
    return steps[-1] if steps else None


def save(
    path: str | os.PathLike, state: Any, *, step: int | None = None, keep: int | None = None
) -> str:
    """Saves a pytree of arrays (e.g. a ``TrainState``) with orbax; blocks until written.

    Static fields (``apply_fn``, ``tx``) are not saved; they come back from the ``like``
    argument of :func:`restore`.

    An existing checkpoint at the same place is replaced without ever leaving none: the new
    one is written beside it (to ``<dir>.jopt-new``, atomically by orbax), then swapped in
    with renames (old -> ``<dir>.jopt-old``, new -> ``<dir>``) and the old one deleted. A
    crash at any moment leaves the old or the new checkpoint whole; :func:`all_steps` and
    :func:`restore` find it, and the next save cleans up what the crash left.

    Args:
      path: the checkpoint directory (made absolute); with ``step``, the parent directory.
      state: the pytree to save.
      step: if given, save to ``path/<step>`` so that a run keeps several checkpoints.
      keep: with ``step``, delete all but the ``keep`` newest steps after saving.

    Returns:
      The directory written.

    Raises:
      ValueError: ``keep`` is less than 1.

    Examples:
      >>> import tempfile, jax.numpy as jnp
      >>> from jopt import checkpoint
      >>> path = checkpoint.save(tempfile.mkdtemp(), {"w": jnp.arange(3.0)}, step=5)
      >>> checkpoint.restore(path, like={"w": jnp.zeros(3)})["w"].tolist()
      [0.0, 1.0, 2.0]
      >>> path = checkpoint.save(path, {"w": jnp.ones(3)})  # replaces it
      >>> checkpoint.restore(path, like={"w": jnp.zeros(3)})["w"].tolist()
      [1.0, 1.0, 1.0]
    """
    if keep is not None and keep < 1:
        raise ValueError(f"keep must be >= 1, got {keep}")
    ocp = _orbax()
    directory = _directory(path, step)
    parent, name = os.path.split(directory)
    fresh = directory + _NEW_SUFFIX
    writer = jax.process_index() == 0
    os.makedirs(parent, exist_ok=True)
    if writer:
        # What an interrupted save left: the new checkpoint (also orbax's temporary of it).
        for leftover in os.listdir(parent):
            if leftover.startswith(name + _NEW_SUFFIX):
                _remove(os.path.join(parent, leftover))
    _sync_processes(f"jopt_checkpoint_save_start:{directory}")
    with ocp.StandardCheckpointer() as checkpointer:
        checkpointer.save(fresh, state, force=True)
        checkpointer.wait_until_finished()
    if writer:
        _swap_in(directory, fresh)
    _sync_processes(f"jopt_checkpoint_save_end:{directory}")
    if step is not None and keep is not None and writer:
        for old in all_steps(path)[:-keep]:
            for stale in (_directory(path, old), _trash_name(_directory(path, old))):
                shutil.rmtree(stale, ignore_errors=True)
    return directory


def _key_name(key: Any) -> str:
    for attribute in ("key", "name", "idx"):  # DictKey, GetAttrKey, SequenceKey
        if hasattr(key, attribute):
            return str(getattr(key, attribute))
    return str(key)


def leaves_by_path(tree: Any) -> dict[str, Any]:
    """A pytree's leaves by their paths, ``{"params/dense/kernel": leaf, ...}``.

    Dicts, dataclasses and lists alike: this is how checkpoints name and compare leaves.

    Args:
      tree: any pytree.

    Returns:
      A dict ``"key/key/..." -> leaf``, in the order of ``jax.tree.leaves``.

    Examples:
      >>> import jax.numpy as jnp
      >>> from jopt.checkpoint import leaves_by_path
      >>> list(leaves_by_path({"params": {"dense": {"bias": jnp.zeros(2)}}, "step": 0}))
      ['params/dense/bias', 'step']
    """
    leaves, _ = jax.tree_util.tree_flatten_with_path(tree)
    return {"/".join(_key_name(k) for k in path): leaf for path, leaf in leaves}


def _spec(shape: Any, dtype: Any) -> str:
    dims = ", ".join(str(int(d)) for d in shape)
    return f"{_dtype_name(dtype)}[{dims}]"


def _dtype_name(dtype: Any) -> str:
    try:
        return str(np.dtype(dtype))
    except TypeError:  # e.g. an extended dtype (typed PRNG keys)
        return str(dtype)


def _dtype_kind(dtype: Any) -> str | None:
    try:
        return np.dtype(dtype).kind
    except TypeError:
        return None


def _stored_leaves(checkpointer: Any, directory: str) -> dict[str, Any]:
    """The stored leaves by path, each with ``shape`` and ``dtype`` (read from metadata)."""
    try:
        metadata = checkpointer.metadata(directory)
        tree = getattr(metadata, "item_metadata", metadata)  # a StepMetadata, or the tree
        tree = getattr(tree, "tree", tree)
        leaves = leaves_by_path(tree)
        if all(hasattr(v, "shape") and hasattr(v, "dtype") for v in leaves.values()):
            return leaves
    except Exception:  # any orbax version or layout: read the arrays instead
        pass
    return leaves_by_path(checkpointer.restore(directory))


def _mismatches(stored: dict[str, Any], like: dict[str, Any]) -> list[str]:
    """Readable lines saying where the stored leaves and those of ``like`` differ."""
    lines = []
    for path in sorted(set(stored) & set(like)):
        have, want = stored[path], like[path]
        want_shape = tuple(np.shape(want)) if not hasattr(want, "shape") else tuple(want.shape)
        have_shape = tuple(have.shape)
        # A Python scalar in like has no dtype of its own: only its shape is checked. One
        # that was saved (stored as int64 or float64) matches a like of the same kind.
        want_dtype = getattr(want, "dtype", None)
        same_dtype = want_dtype is None or _dtype_name(have.dtype) == _dtype_name(want_dtype)
        if not same_dtype and type(have).__name__ == "ScalarMetadata":
            same_dtype = _dtype_kind(have.dtype) == _dtype_kind(want_dtype)
        if have_shape != want_shape or not same_dtype:
            expected = want_dtype if want_dtype is not None else have.dtype
            lines.append(
                f"{path}: stored {_spec(have_shape, have.dtype)}, like has "
                f"{_spec(want_shape, expected)}"
            )
    for label, names in (
        ("only in the checkpoint", sorted(set(stored) - set(like))),
        ("only in like", sorted(set(like) - set(stored))),
    ):
        if names:
            shown = ", ".join(names[:8]) + (
                f", ... ({len(names)} in all)" if len(names) > 8 else ""
            )
            lines.append(f"{label}: {shown}")
    if len(lines) > _MAX_MISMATCH_LINES:
        more = len(lines) - _MAX_MISMATCH_LINES + 1
        lines = [*lines[: _MAX_MISMATCH_LINES - 1], f"... and {more} more"]
    return lines


def restore(path: str | os.PathLike, like: Any = None, *, step: int | None = None) -> Any:
    """Restores a checkpoint written by :func:`save`.

    Nothing is cast: the stored tree must have the structure of ``like``, and each stored
    array the shape and dtype of its leaf in ``like``.

    Args:
      path: the checkpoint directory; with ``step``, the parent directory.
      like: a pytree with the structure, shapes and dtypes to restore into (e.g. a freshly
        initialized ``TrainState``; its values are ignored, its static fields kept). If
        ``None``, the raw tree of arrays is returned (dicts and lists).
      step: read ``path/<step>``; ``None`` reads ``path`` itself. Use
        :func:`latest_step` for the newest.

    Returns:
      A pytree like ``like`` holding the saved values, bit for bit.

    Raises:
      FileNotFoundError: nothing is saved there, or nothing finished (e.g. an empty
        directory, or a write that was interrupted).
      ValueError: the stored tree does not match ``like``; the message lists each leaf by
        its path (e.g. ``params/dense/kernel``) with the stored and the expected dtype and
        shape, and the leaves found on only one side.

    Examples:
      >>> import tempfile, jax, jax.numpy as jnp, optax, flax.linen as nn
      >>> from jopt import checkpoint
      >>> from jopt.train import create_train_state
      >>> make = lambda seed: create_train_state(
      ...     nn.Dense(2), optax.adam(1e-3), jnp.ones((1, 3)), jax.random.PRNGKey(seed))
      >>> path = checkpoint.save(tempfile.mkdtemp(), make(0), step=100)
      >>> restored = checkpoint.restore(path, like=make(1))
      >>> bool((restored.params["kernel"] == make(0).params["kernel"]).all())
      True
      >>> checkpoint.restore(path, like={"w": jnp.zeros(2, jnp.int32)})
      ... # doctest: +ELLIPSIS
      Traceback (most recent call last):
      ValueError: checkpoint '...' does not match like:
        only in the checkpoint: opt_state/0/count, ...
        only in like: w
      Pass like=None to read the tree as stored, or a like with its structure, shapes and dtypes.
    """
    ocp = _orbax()
    directory = _directory(path, step)
    found = _finished_directory(directory)
    if found is None:
        if os.path.lexists(directory):
            raise FileNotFoundError(
                f"no finished checkpoint at {directory!r} (it holds no complete orbax "
                "checkpoint: an interrupted write, or not a checkpoint)"
            )
        raise FileNotFoundError(f"no checkpoint at {directory!r}")
    with ocp.StandardCheckpointer() as checkpointer:
        if like is None:
            return checkpointer.restore(found)
        problems = _mismatches(_stored_leaves(checkpointer, found), leaves_by_path(like))
        if problems:
            raise ValueError(
                f"checkpoint {found!r} does not match like:\n"
                + "".join(f"  {line}\n" for line in problems)
                + "Pass like=None to read the tree as stored, or a like with its structure, "
                "shapes and dtypes."
            )
        target = jax.tree.map(ocp.utils.to_shape_dtype_struct, like)
        return checkpointer.restore(found, target)


# --- The finished chunks of a sweep ---------------------------------------------------------

_MANIFEST = "manifest.json"
_LOCK = ".lock"
_FORMAT = 1
_RESERVED = ("__indices__", "__fingerprint__", "__checksum__")
_CHUNK_NAME = re.compile(r"chunk-([0-9a-fA-F]{16})-(\d{6,})\.npz")
_TEMP_NAME = re.compile(r"\.tmp-(\d+)-")
# What reading a truncated, garbled or half-written .npz raises (np.load and zipfile).
_UNREADABLE = (zipfile.BadZipFile, ValueError, OSError, EOFError, KeyError)
_MAX_DIFF_LINES = 12


def _checksum(indices: np.ndarray, metrics: dict[str, np.ndarray]) -> str:
    """sha256 over the indices and each metric's name, dtype, shape and bytes, by name."""
    digest = hashlib.sha256()
    for name, value in [("__indices__", indices), *sorted(metrics.items())]:
        value = np.asarray(value)
        digest.update(f"{name}\0{value.dtype.str}\0{value.shape}\0".encode())
        digest.update(value.tobytes())  # C order whatever the memory layout
    return digest.hexdigest()


def _pid_alive(pid: int) -> bool:
    """Whether a process ``pid`` runs on this machine; ``True`` when in doubt."""
    if pid <= 0:
        return True  # signal 0 to pid 0 addresses a process group: not a writer's pid
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (OSError, OverflowError):  # e.g. PermissionError: it runs, as another user
        return True
    return True


def _short(value: Any, limit: int = 60) -> str:
    text = value if isinstance(value, str) else repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


_ABSENT = object()


def _describe_changes(old: Any, new: dict[str, Any]) -> list[str]:
    """Readable lines saying how the stored sweep's ``describe`` differs from ``new``."""
    if not isinstance(old, dict):
        return [f"the stored sweep has no description (describe = {_short(old)})"]
    lines = []
    for key in sorted(set(old) | set(new)):
        before, after = old.get(key, _ABSENT), new.get(key, _ABSENT)
        if before == after:
            continue
        if key == "programs" and isinstance(before, dict) and isinstance(after, dict):
            for group in sorted(set(before) | set(after)):
                if group not in before:
                    lines.append(f"trial program of group {_short(group)} is new")
                elif group not in after:
                    lines.append(f"trial program of group {_short(group)} is gone")
                elif before[group] != after[group]:
                    lines.append(f"trial program of group {_short(group)} changed")
        else:
            show = lambda v: "(absent)" if v is _ABSENT else _short(v)
            lines.append(f"{key} {show(before)} -> {show(after)}")
    return lines


class SweepStore:
    """The finished chunks of one sweep on disk: a manifest and one ``.npz`` per chunk.

    ``directory/manifest.json`` records which sweep the directory belongs to (its
    ``fingerprint`` and the ``describe`` dict it was computed from); each finished chunk is
    ``directory/chunk-<first 16 hex digits of the fingerprint>-<chunk:06d>.npz`` holding the
    config indices (``__indices__``), one array per metric, the full fingerprint
    (``__fingerprint__``) and a sha256 checksum (``__checksum__``) of the indices and metrics.

    Every file is written to a temporary ``.tmp-<pid>-...`` file, synced and renamed, so a
    killed run leaves either the whole chunk or none of it; temporaries of dead processes are
    removed by the next constructor. Chunks check themselves when read: one of another sweep
    is ignored, an unreadable or altered one is skipped with a warning, so its configurations
    are simply computed again.

    With several JAX processes, only process 0 writes (the manifest, chunks, deletions); the
    others only read.

    Args:
      directory: where the sweep's files live; created (with parents) if missing.
      fingerprint: a hex string (at least 16 digits) identifying the sweep's content.
      describe: a JSON-able dict of what the fingerprint is made of (number of configs,
        seeds, hashes of the space and of the trial programs, ...); it is stored in the
        manifest to explain a mismatch.
      overwrite: discard the manifest and every chunk in ``directory`` (of this sweep or
        another) and start over.

    Raises:
      ValueError: ``directory`` holds a different sweep (another fingerprint) and
        ``overwrite`` is false; the message lists which ``describe`` entries differ. Also if
        ``fingerprint`` is not a hex string of at least 16 digits.
      TypeError: ``describe`` is not JSON-able.

    Examples:
      >>> import tempfile, numpy as np
      >>> from jopt.checkpoint import SweepStore
      >>> directory = tempfile.mkdtemp()
      >>> store = SweepStore(directory, "0123abcd" * 8, {"n_configs": 3, "seeds": [0, 1]})
      >>> store.save(0, np.array([0, 1]), {"loss": np.array([[0.5, 0.25], [1.0, 2.0]])})
      >>> done = SweepStore(directory, "0123abcd" * 8, {"n_configs": 3, "seeds": [0, 1]}).finished()
      >>> sorted(done), done[1]["loss"].tolist()
      ([0, 1], [1.0, 2.0])
      >>> SweepStore(directory, "4567ef00" * 8, {"n_configs": 3, "seeds": [0]})
      ... # doctest: +ELLIPSIS
      Traceback (most recent call last):
      ValueError: ... holds the chunks of a different sweep:
        seeds [0, 1] -> [0]
      To start over, use a new checkpoint_dir, or pass overwrite=True to discard the stored chunks.
      >>> SweepStore(directory, "4567ef00" * 8, {"n_configs": 3, "seeds": [0]},
      ...            overwrite=True).finished()
      {}
    """

    def __init__(
        self,
        directory: str | os.PathLike,
        fingerprint: str,
        describe: dict[str, Any],
        *,
        overwrite: bool = False,
    ) -> None:
        if not isinstance(fingerprint, str) or not re.fullmatch(r"[0-9a-fA-F]{16,}", fingerprint):
            raise ValueError(
                f"fingerprint must be a string of at least 16 hex digits, got {fingerprint!r}."
            )
        self.directory = Path(directory)
        self.fingerprint = fingerprint
        # As the manifest will hold it (tuples become lists), so that comparisons are fair.
        self.describe: dict[str, Any] = json.loads(json.dumps(describe))
        self.directory.mkdir(parents=True, exist_ok=True)
        writer = jax.process_index() == 0
        # The lock makes "read the manifest, then claim the directory" one step: of two
        # processes starting different sweeps here at once, the second sees the first's
        # manifest. Readers need no lock: the manifest is replaced atomically.
        with self._exclusive(writer):
            if writer:
                self._remove_dead_temps()
            stored = self._read_manifest(writer)
            if stored is not None and stored["fingerprint"] != fingerprint and not overwrite:
                raise ValueError(self._mismatch(stored))
            if writer and (overwrite or stored is None):
                if overwrite:
                    self._discard()
                manifest = {"fingerprint": fingerprint, "describe": self.describe}
                manifest["format"] = _FORMAT
                self._atomic_write(_MANIFEST, json.dumps(manifest, indent=1).encode())

    def finished(self) -> dict[int, dict[str, np.ndarray]]:
        """The metrics of every configuration in a valid chunk of this sweep.

        Chunks of other sweeps (another fingerprint in the file name or inside) are ignored
        silently. A chunk that cannot be read or fails its checksum is skipped with a warning
        (and deleted by process 0), so its configurations are computed again; this never
        raises because of a bad chunk.

        Returns:
          A dict: config index -> {metric name -> array of shape ``(n_seeds, ...)``}.

        Examples:
          >>> import tempfile, numpy as np
          >>> from jopt.checkpoint import SweepStore
          >>> store = SweepStore(tempfile.mkdtemp(), "ab" * 32, {})
          >>> store.finished()
          {}
          >>> store.save(3, np.array([7]), {"acc": np.array([[0.9, 0.8, 0.7]])})
          >>> store.finished()[7]["acc"].tolist()
          [0.9, 0.8, 0.7]
        """
        writer = jax.process_index() == 0
        chunks = []
        for path in self.directory.glob("chunk-*.npz"):
            match = _CHUNK_NAME.fullmatch(path.name)
            if match and match.group(1) == self.fingerprint[:16]:
                chunks.append((int(match.group(2)), path))
        done: dict[int, dict[str, np.ndarray]] = {}
        for _, path in sorted(chunks):
            if not zipfile.is_zipfile(path):  # also when truncated: the index is at the end
                self._skip(path, "is not a complete .npz archive", writer)
                continue
            try:
                data = np.load(path, allow_pickle=False)
                if not isinstance(data, np.lib.npyio.NpzFile):
                    raise ValueError("not an .npz archive")
                with data:
                    if str(data["__fingerprint__"]) != self.fingerprint:
                        continue  # another sweep's chunk whose name prefix collides
                    indices = data["__indices__"]
                    checksum = str(data["__checksum__"])
                    metrics = {name: data[name] for name in data.files if name not in _RESERVED}
            except _UNREADABLE as e:
                self._skip(path, f"cannot be read ({type(e).__name__}: {_short(str(e))})", writer)
                continue
            if checksum != _checksum(indices, metrics):
                self._skip(path, "does not match its checksum", writer)
                continue
            if indices.ndim != 1 or any(
                value.ndim < 1 or len(value) != len(indices) for value in metrics.values()
            ):
                self._skip(path, "holds arrays of inconsistent shapes", writer)
                continue
            for row, index in enumerate(indices.tolist()):
                done[int(index)] = {name: value[row] for name, value in metrics.items()}
        return done

    def save(self, chunk: int, indices: np.ndarray, metrics: dict[str, np.ndarray]) -> None:
        """Writes one finished chunk atomically (on process 0; other processes do nothing).

        A chunk saved again (e.g. after a bad copy was skipped) replaces the old file.

        Args:
          chunk: the chunk's number (>= 0), which names the file.
          indices: the config indices of the chunk, a 1-d integer array.
          metrics: metric name -> array of shape ``(len(indices), n_seeds, ...)``.

        Raises:
          ValueError: ``chunk`` is negative, ``indices`` is not a 1-d integer array, a metric
            is named like a reserved entry (``__indices__``, ``__fingerprint__``,
            ``__checksum__``), holds Python objects or does not have ``len(indices)`` rows.

        Examples:
          >>> import os, tempfile, numpy as np
          >>> from jopt.checkpoint import SweepStore
          >>> store = SweepStore(tempfile.mkdtemp(), "0f" * 32, {"seeds": [0]})
          >>> store.save(0, np.array([0, 1]), {"loss": np.zeros((2, 1))})
          >>> sorted(os.listdir(store.directory))
          ['.lock', 'chunk-0f0f0f0f0f0f0f0f-000000.npz', 'manifest.json']
        """
        if isinstance(chunk, bool) or not isinstance(chunk, (int, np.integer)) or chunk < 0:
            raise ValueError(f"chunk must be an int >= 0, got {chunk!r}.")
        indices = np.asarray(indices)
        if indices.ndim != 1 or not np.issubdtype(indices.dtype, np.integer):
            raise ValueError(
                f"indices must be a 1-d integer array, got {indices.dtype} of shape "
                f"{indices.shape}."
            )
        values = {}
        for name, value in metrics.items():
            value = np.asarray(value)
            if not isinstance(name, str) or name in _RESERVED:
                raise ValueError(f"{name!r} cannot name a metric (reserved: {_RESERVED}).")
            if value.dtype.hasobject:
                raise ValueError(f"metric {name!r} holds Python objects ({value.dtype}).")
            if value.ndim < 1 or len(value) != len(indices):
                raise ValueError(
                    f"metric {name!r} has shape {value.shape}; expected {len(indices)} rows "
                    f"(one per index)."
                )
            values[name] = value
        if jax.process_index() != 0:
            return
        arrays = {"__indices__": indices, **values}
        arrays["__fingerprint__"] = np.array(self.fingerprint)
        arrays["__checksum__"] = np.array(_checksum(indices, values))
        # The archive np.savez writes, built by hand so that a metric may be called "file"
        # or "allow_pickle" (np.savez's own keyword arguments).
        buffer = io.BytesIO()
        with zipfile.ZipFile(buffer, "w", zipfile.ZIP_STORED, allowZip64=True) as archive:
            for name, value in arrays.items():
                with archive.open(name + ".npy", "w", force_zip64=True) as member:
                    np.lib.format.write_array(member, value, allow_pickle=False)
        name = f"chunk-{self.fingerprint[:16]}-{int(chunk):06d}.npz"
        self._atomic_write(name, buffer.getvalue())

    # --- helpers --------------------------------------------------------------------------

    @contextlib.contextmanager
    def _exclusive(self, take: bool) -> Iterator[None]:
        if not take or fcntl is None:
            yield
            return
        handle = os.open(self.directory / _LOCK, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(handle, fcntl.LOCK_EX)
            yield
        finally:
            os.close(handle)  # closing the descriptor releases the lock

    def _read_manifest(self, writer: bool) -> dict[str, Any] | None:
        """The stored manifest; ``None`` if there is none or it is corrupt (with a warning)."""
        path = self.directory / _MANIFEST
        try:
            raw = path.read_bytes()
        except FileNotFoundError:
            return None
        try:
            stored = json.loads(raw)
        except ValueError:  # invalid JSON or invalid UTF-8
            stored = None
        if isinstance(stored, dict) and isinstance(stored.get("fingerprint"), str):
            return stored
        # Chunks carry their own fingerprint and checksum, so nothing wrong gets used.
        action = "ignoring it and rewriting" if writer else "ignoring it"
        warnings.warn(f"sweep manifest {path} is corrupt; {action}.", stacklevel=3)
        return None

    def _mismatch(self, stored: dict[str, Any]) -> str:
        changes = _describe_changes(stored.get("describe"), self.describe) or [
            f"fingerprint {stored['fingerprint'][:16]}... -> {self.fingerprint[:16]}... "
            "(the described parts are the same)"
        ]
        if len(changes) > _MAX_DIFF_LINES:
            more = len(changes) - _MAX_DIFF_LINES + 1
            changes = [*changes[: _MAX_DIFF_LINES - 1], f"... and {more} more"]
        return (
            f"{str(self.directory)!r} holds the chunks of a different sweep:\n"
            + "".join(f"  {line}\n" for line in changes)
            + "To start over, use a new checkpoint_dir, or pass overwrite=True to discard the "
            "stored chunks."
        )

    def _discard(self) -> None:
        """Deletes the manifest and every chunk file; nothing else in the directory."""
        for path in [self.directory / _MANIFEST, *self.directory.glob("chunk-*.npz")]:
            if not path.is_dir():
                path.unlink(missing_ok=True)

    def _remove_dead_temps(self) -> None:
        """Deletes the temporary files of writes whose process died (was killed mid-write)."""
        for path in self.directory.iterdir():
            match = _TEMP_NAME.match(path.name)
            if match and not _pid_alive(int(match.group(1))):
                with contextlib.suppress(OSError):  # another cleaner was first, or not a file
                    path.unlink()

    def _skip(self, path: Path, reason: str, writer: bool) -> None:
        action = "deleting it; its configurations" if writer else "its configurations"
        warnings.warn(f"sweep chunk {path} {reason}; {action} will be recomputed.", stacklevel=3)
        if writer:
            with contextlib.suppress(OSError):
                path.unlink()

    def _atomic_write(self, name: str, data: bytes) -> None:
        atomic_write(self.directory / name, data)
