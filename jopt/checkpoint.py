"""Save and restore train states (any pytree of arrays) with orbax.

A thin layer over ``orbax.checkpoint.StandardCheckpointer``: one checkpoint is one
directory, written atomically (orbax writes to a temporary directory and renames it), and
restored into the structure of a ``like`` pytree, e.g. a freshly initialized
:class:`jopt.train.TrainState`. With ``step=`` the checkpoints of a run live side by side
as ``path/<step>``; :func:`latest_step` finds the newest, which is how
:func:`jopt.train.fit` resumes.

orbax is an optional dependency, imported on first use: ``pip install 'jopt[checkpoint]'``.
"""

from __future__ import annotations

import os
import shutil
from typing import Any

import jax


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


def all_steps(path: str | os.PathLike) -> list[int]:
    """The steps saved under ``path`` with ``save(path, ..., step=...)``, ascending.

    Only finished checkpoints count: orbax writes into a temporary directory and renames it
    to ``path/<step>`` when done, so a save interrupted by a crash is ignored.

    Args:
      path: the directory given to :func:`save`.

    Returns:
      A sorted list of ints; empty if ``path`` does not exist.

    Examples:
      >>> import tempfile
      >>> from jopt import checkpoint
      >>> checkpoint.all_steps(tempfile.mkdtemp())
      []
    """
    path = os.path.abspath(os.fspath(path))
    if not os.path.isdir(path):
        return []
    return sorted(
        int(name)
        for name in os.listdir(path)
        if name.isdigit() and os.path.isdir(os.path.join(path, name))
    )


def latest_step(path: str | os.PathLike) -> int | None:
    """The newest step saved under ``path``, or ``None`` if there is none.

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
    argument of :func:`restore`. An existing checkpoint at the same place is overwritten.

    Args:
      path: the checkpoint directory (made absolute); with ``step``, the parent directory.
      state: the pytree to save.
      step: if given, save to ``path/<step>`` so that a run keeps several checkpoints.
      keep: with ``step``, delete all but the ``keep`` newest steps after saving.

    Returns:
      The directory written.

    Examples:
      >>> import tempfile, jax.numpy as jnp
      >>> from jopt import checkpoint
      >>> path = checkpoint.save(tempfile.mkdtemp(), {"w": jnp.arange(3.0)}, step=5)
      >>> checkpoint.restore(path, like={"w": jnp.zeros(3)})["w"].tolist()
      [0.0, 1.0, 2.0]
    """
    ocp = _orbax()
    directory = _directory(path, step)
    os.makedirs(os.path.dirname(directory), exist_ok=True)
    with ocp.StandardCheckpointer() as checkpointer:
        checkpointer.save(directory, state, force=True)
        checkpointer.wait_until_finished()
    if step is not None and keep is not None:
        if keep < 1:
            raise ValueError(f"keep must be >= 1, got {keep}")
        for old in all_steps(path)[:-keep]:
            shutil.rmtree(_directory(path, old), ignore_errors=True)
    return directory


def restore(path: str | os.PathLike, like: Any = None, *, step: int | None = None) -> Any:
    """Restores a checkpoint written by :func:`save`.

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
      FileNotFoundError: nothing is saved there.

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
    """
    ocp = _orbax()
    directory = _directory(path, step)
    if not os.path.isdir(directory):
        raise FileNotFoundError(f"no checkpoint at {directory!r}")
    with ocp.StandardCheckpointer() as checkpointer:
        if like is None:
            return checkpointer.restore(directory)
        target = jax.tree.map(ocp.utils.to_shape_dtype_struct, like)
        return checkpointer.restore(directory, target)
