"""Checkpoints of a run: saving, resuming, and the fingerprint that refuses another run's."""

from __future__ import annotations

import functools
import hashlib
import json
import math
import os
import types
import warnings
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax

from jopt import checkpoint
from jopt.data import BATCH_MODES, Dataset
from jopt.train.adapters import without_addresses
from jopt.train.compiled import Loop
from jopt.train.step import TrainState, is_classification

Array = jax.Array


def _history_like(num: int, classification: bool, has_test: bool) -> dict[str, np.ndarray]:
    """Zeros shaped like a history of ``num`` evaluations (the restore target)."""
    names = ["loss", "train_loss"] + (["val_loss"] if has_test else [])
    if classification:
        names += ["train_accuracy"] + (["val_accuracy"] if has_test else [])
    history = {name: np.zeros(num, np.float32) for name in names}
    history["step"] = np.zeros(num, np.int32)
    return history


def _config_array(batch_size: int, eval_every: int, batch_mode: str) -> np.ndarray:
    return np.array([batch_size, eval_every, BATCH_MODES.index(batch_mode)], np.int32)


def concat_history(a: dict[str, Array] | None, b: dict[str, Array]) -> dict[str, Array]:
    """History ``a`` followed by ``b`` (``b`` alone when ``a`` is ``None``)."""
    if a is None:
        return b
    return jax.tree.map(lambda x, y: jnp.concatenate([x, y]), a, b)


def resume_run(
    checkpoint_dir: str,
    model: Any,
    tx: Any,
    state: TrainState,
    data: Any,
    steps: int,
    loop: Loop,
    key: Array,
) -> tuple[int, TrainState, dict[str, Array] | None]:
    """Where a checkpointed run starts: its latest checkpoint at or before ``steps``, if any.

    Before anything is restored, the run's fingerprint (optimizer, model, data, batch
    settings) is compared with the one stored beside the checkpoints, and a different run
    is refused; then the fingerprint is written (before the run's first checkpoint, so
    that every checkpoint has one).

    Args:
      checkpoint_dir: the run's directory (absolute).
      model: the model in pure form.
      tx: the optimizer.
      state: the run's state at step 0 (the restore target).
      data: the dataset.
      steps: the run's total length.
      loop: the compiled loop's settings.
      key: the run's key.

    Returns:
      ``(position, state, history)``: ``(0, state, None)`` for a new run, else the
      checkpoint's step, state and history.

    Raises:
      ValueError: the directory holds another run's checkpoints (the message says what
        differs), or only checkpoints after ``steps``.
    """
    config = {
        "batch_size": loop.batch_size,
        "eval_every": loop.eval_every,
        "batch_mode": loop.batch_mode,
    }
    # As stored in JSON (tuples become lists), so that comparisons are fair.
    fingerprint = json.loads(json.dumps(_fingerprint(model, tx, state, data, config)))
    found = _resume(
        checkpoint_dir,
        state,
        data,
        steps,
        loop.batch_size,
        loop.eval_every,
        loop.batch_mode,
        key,
        fingerprint,
    )
    if _read_fingerprint(checkpoint_dir) != fingerprint:
        _write_fingerprint(checkpoint_dir, fingerprint)
    return found


def save_run(
    checkpoint_dir: str,
    position: int,
    state: TrainState,
    history: dict[str, Array],
    key: Array,
    loop: Loop,
) -> None:
    """Saves a run at step ``position``: its state, history, key and batch settings.

    Written with :func:`jopt.checkpoint.save` to ``checkpoint_dir/<position>``; the two
    latest checkpoints are kept. :func:`resume_run` restores it.

    Args:
      checkpoint_dir: the run's checkpoint directory (``fit``'s ``checkpoint_dir``).
      position: the number of steps of the run done (the checkpoint's step).
      state: the :class:`TrainState` at that step.
      history: the evaluations so far (``fit``'s history).
      key: the run's PRNG key, saved as its raw key data.
      loop: the loop's settings; ``batch_size``, ``eval_every`` and ``batch_mode`` are
        saved, so that a resume with other ones is refused.
    """
    tree = {
        "state": state,
        "history": history,
        "key": jax.random.key_data(key),
        "config": _config_array(loop.batch_size, loop.eval_every, loop.batch_mode),
    }
    checkpoint.save(checkpoint_dir, tree, step=position, keep=2)


def _resume(
    checkpoint_dir, state, data, steps, batch_size, eval_every, batch_mode, key, fingerprint
):
    """Restores the latest checkpoint at or before ``steps``; ``(0, state, None)`` if none.

    Raises ``ValueError`` if the checkpoints are of another run: another ``fingerprint``
    (optimizer, model, data, batch settings) or key.
    """
    saved = checkpoint.all_steps(checkpoint_dir)
    usable = [s for s in saved if s <= steps]
    if saved and not usable:
        raise ValueError(
            f"checkpoint_dir {checkpoint_dir!r} holds checkpoints at steps {saved}, all after "
            f"steps={steps}; use a larger steps or another directory"
        )
    if not usable:
        return 0, state, None
    _check_fingerprint(checkpoint_dir, _read_fingerprint(checkpoint_dir), fingerprint)
    step = usable[-1]
    classification = is_classification(data.y_train)
    like = {
        "state": state,
        "history": _history_like(step // eval_every, classification, data.n_test > 0),
        "key": jax.random.key_data(key),
        "config": _config_array(batch_size, eval_every, batch_mode),
    }
    restored = checkpoint.restore(checkpoint_dir, like=like, step=step)
    if not np.array_equal(restored["key"], like["key"]):
        raise ValueError(
            f"checkpoint_dir {checkpoint_dir!r} was written by a run with another key; "
            "use the same key to resume or another directory"
        )
    if not np.array_equal(restored["config"], like["config"]):
        saved_config = dict(
            zip(("batch_size", "eval_every", "batch_mode"), restored["config"].tolist())
        )
        saved_config["batch_mode"] = BATCH_MODES[saved_config["batch_mode"]]
        raise ValueError(
            f"checkpoint_dir {checkpoint_dir!r} was written with {saved_config}; resume with "
            "the same batch_size, eval_every and batch_mode or use another directory"
        )
    history = {k: jnp.asarray(v) for k, v in restored["history"].items()}
    return step, restored["state"], history


# ------------------------------------------------------------------------------------------
# Fingerprints of checkpointed runs
# ------------------------------------------------------------------------------------------

# Beside the step directories of fit's checkpoint_dir: what the run is made of, so that a
# resume with another optimizer, model or dataset is refused rather than silently mixed.
_FINGERPRINT_FILE = "fit_fingerprint.json"
_FINGERPRINT_FORMAT = 1
# Arrays up to this size are hashed whole; larger ones by _HASH_SAMPLES evenly spaced
# pieces of _HASH_PIECE_BYTES, the first and the last included.
_HASH_FULL_BYTES = 16 << 20
_HASH_PIECE_BYTES = 1 << 20
_HASH_SAMPLES = 16


def _array_digest(x: Any) -> str:
    """sha256 of an array's dtype, shape and bytes (of samples of them, if it is large).

    Examples:
      >>> import numpy as np
      >>> from jopt.train.resume import _array_digest
      >>> _array_digest(np.zeros(3)) == _array_digest(np.zeros(3, np.float32))
      False
    """
    shape, dtype = tuple(x.shape), np.dtype(x.dtype)
    digest = hashlib.sha256(f"{dtype.str}\0{shape}\0".encode())
    size = math.prod(shape)
    if size * dtype.itemsize <= _HASH_FULL_BYTES:
        digest.update(np.asarray(x).tobytes())  # C order whatever the memory layout
        return digest.hexdigest()
    # Slice first, then copy: a large device array is never copied to the host whole.
    flat = x.reshape(-1)
    piece = max(1, _HASH_PIECE_BYTES // dtype.itemsize)
    for start in np.linspace(0, size - piece, _HASH_SAMPLES).astype(np.int64).tolist():
        digest.update(np.asarray(flat[start : start + piece]).tobytes())
    return digest.hexdigest()


def _static_digest(obj: Any) -> str:
    """sha256 of the functions a transformation is built of and the values they close over.

    This is what defines a transformation beyond its state: optax keeps e.g. a float
    learning rate in a closure. Objects of other kinds count by their type only (their repr
    may hold a memory address), so equal transformations give equal digests in any process.
    """
    digest = hashlib.sha256()
    seen: set[int] = set()

    def add(text: str) -> None:
        digest.update(text.encode() + b"\0")

    def visit(x: Any, depth: int) -> None:
        if depth > 16:
            return add("...")
        if x is None or isinstance(x, (bool, int, float, complex, str, bytes)):
            return add(f"{type(x).__name__}:{x!r}")
        if isinstance(x, (np.ndarray, np.generic)) and x.dtype.hasobject:
            return add("object array")  # its bytes are pointers
        if isinstance(x, (np.ndarray, np.generic)) or (
            isinstance(x, jax.Array) and not isinstance(x, jax.core.Tracer)
        ):
            return add(_array_digest(np.asarray(x) if isinstance(x, np.generic) else x))
        if id(x) in seen:
            return add("<seen>")
        seen.add(id(x))
        if isinstance(x, (tuple, list)):
            add(f"{type(x).__qualname__}[{len(x)}]")
            for item in x:
                visit(item, depth + 1)
        elif isinstance(x, dict):
            add(f"dict[{len(x)}]")
            for k in sorted(x, key=repr):
                visit(k, depth + 1)
                visit(x[k], depth + 1)
        elif isinstance(x, functools.partial):
            add("partial")
            for part in (x.func, x.args, x.keywords):
                visit(part, depth + 1)
        elif isinstance(x, types.MethodType):  # e.g. optax.MultiSteps keeps its k in self
            add(f"method of {type(x.__self__).__qualname__}")
            visit(x.__func__, depth + 1)
            visit(getattr(x.__self__, "__dict__", None), depth + 1)
        elif isinstance(x, types.FunctionType):
            add(f"function {x.__module__}.{x.__qualname__}")
            visit(x.__defaults__, depth + 1)
            visit(x.__kwdefaults__, depth + 1)
            for cell in x.__closure__ or ():
                try:
                    visit(cell.cell_contents, depth + 1)
                except ValueError:  # a cell not filled yet
                    add("<empty>")
        else:  # anything else by its type only: its repr may hold an address
            add(f"object {type(x).__module__}.{type(x).__qualname__}")

    visit(obj, 0)
    return digest.hexdigest()


def _tree_digest(tree: Any) -> str:
    """sha256 of a pytree's structure and of its leaves' dtypes, shapes and values."""
    structure = without_addresses(str(jax.tree.structure(tree)))
    digest = hashlib.sha256(structure.encode())
    for leaf in jax.tree.leaves(tree):
        digest.update(_array_digest(np.asarray(leaf)).encode())
    return digest.hexdigest()


def _named_hparams(opt_state: Any) -> dict[str, Any]:
    """The hyperparameters held in an optimizer state: jopt's, and optax's injected ones."""
    from jopt.hyperparams import hparams

    found = dict(hparams(opt_state))
    injected = lambda s: isinstance(s, optax.InjectHyperparamsState)
    for s in jax.tree.leaves(opt_state, is_leaf=injected):
        if injected(s):
            for name, value in s.hyperparams.items():
                found.setdefault(name, value)
    out = {}
    for name, value in sorted(found.items()):
        value = np.asarray(value)
        out[name] = value.tolist() if value.size <= 16 else _array_digest(value)
    return out


def _fingerprint(
    model: Any,
    tx: optax.GradientTransformation,
    state: TrainState,
    data: Dataset,
    config: dict[str, Any],
) -> dict[str, Any]:
    """What a checkpointed run is made of, JSON-able; ``state`` is its initial state."""
    leaves = checkpoint.leaves_by_path({"params": state.params, "batch_stats": state.batch_stats})
    arrays = {}
    for name in ("x_train", "y_train", "x_test", "y_test"):
        x = getattr(data, name)
        arrays[name] = {
            "shape": list(x.shape),
            "dtype": str(np.dtype(x.dtype)),
            "sha256": _array_digest(x),
        }
    return {
        "format": _FINGERPRINT_FORMAT,
        "run": config,
        "optimizer": {
            "hparams": _named_hparams(state.opt_state),
            "state": _tree_digest(state.opt_state),
            "rule": _static_digest(tx),
        },
        "model": {
            "repr": model.name,
            "variables": {k: [list(v.shape), str(v.dtype)] for k, v in leaves.items()},
        },
        "data": {"arrays": arrays, "num_classes": data.num_classes},
    }


def _short_value(value: Any, limit: int = 80) -> str:
    if isinstance(value, float):
        text = f"{value:.6g}"
    elif isinstance(value, list) and all(isinstance(v, float) for v in value):
        text = "[" + ", ".join(f"{v:.6g}" for v in value) + "]"
    else:
        text = value if isinstance(value, str) else repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _fingerprint_changes(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    """Readable lines saying how the run of ``new`` differs from the stored ``old``."""
    absent = "(absent)"
    lines = []
    try:
        before, after = old["optimizer"], new["optimizer"]
        names = sorted(set(before["hparams"]) | set(after["hparams"]))
        for name in names:
            a, b = before["hparams"].get(name, absent), after["hparams"].get(name, absent)
            if a != b:
                lines.append(
                    f"optimizer hyperparameter {name}: {_short_value(a)} -> {_short_value(b)}"
                )
        if not lines and before["state"] != after["state"]:
            lines.append("optimizer: another state (its structure or initial values differ)")
        if not lines and before["rule"] != after["rule"]:
            lines.append(
                "optimizer: another update rule, or a hyperparameter outside its state (e.g. "
                "a float learning rate of a plain optax optimizer) changed"
            )
        before, after = old["model"], new["model"]
        if before["repr"] != after["repr"]:
            lines.append(f"model: {_short_value(before['repr'])} -> {_short_value(after['repr'])}")
        if before["variables"] != after["variables"]:
            changed = []
            for name in sorted(set(before["variables"]) | set(after["variables"])):
                a = before["variables"].get(name)
                b = after["variables"].get(name)
                if a != b:
                    show = lambda v: absent if v is None else f"{tuple(v[0])} {v[1]}"
                    changed.append(f"{name} {show(a)} -> {show(b)}")
            more = f", ... ({len(changed)} in all)" if len(changed) > 4 else ""
            lines.append("model parameters: " + ", ".join(changed[:4]) + more)
        before, after = old["data"], new["data"]
        values = []
        for name, b in after["arrays"].items():
            a = before["arrays"].get(name, {})
            if (a.get("shape"), a.get("dtype")) != (b["shape"], b["dtype"]):
                lines.append(
                    f"data: {name} {tuple(a.get('shape', ()))} {a.get('dtype')} -> "
                    f"{tuple(b['shape'])} {b['dtype']}"
                )
            elif a.get("sha256") != b["sha256"]:
                values.append(name)
        if values:
            lines.append(f"data: the values of {', '.join(values)} changed")
        if before["num_classes"] != after["num_classes"]:
            lines.append(f"data: num_classes {before['num_classes']} -> {after['num_classes']}")
    except (KeyError, TypeError, AttributeError):
        lines.append("the stored fingerprint cannot be read (another version of jopt?)")
    return lines


def _read_fingerprint(checkpoint_dir: str) -> dict[str, Any] | None:
    """The stored fingerprint; ``None`` if there is none or it cannot be read."""
    try:
        with open(os.path.join(checkpoint_dir, _FINGERPRINT_FILE), "rb") as f:
            stored = json.load(f)
    except (OSError, ValueError):
        return None
    return stored if isinstance(stored, dict) else None


def _write_fingerprint(checkpoint_dir: str, fingerprint: dict[str, Any]) -> None:
    """Writes the fingerprint atomically (a synced temporary file, renamed), on process 0."""
    if jax.process_index() != 0:
        return
    os.makedirs(checkpoint_dir, exist_ok=True)
    text = json.dumps(fingerprint, indent=1, sort_keys=True).encode()
    checkpoint.atomic_write(os.path.join(checkpoint_dir, _FINGERPRINT_FILE), text)


def _check_fingerprint(
    checkpoint_dir: str, stored: dict[str, Any] | None, fingerprint: dict[str, Any]
) -> None:
    """Refuses to resume the checkpoints of another run (another optimizer, model, data)."""
    if stored is None:
        warnings.warn(
            f"checkpoint_dir {checkpoint_dir!r} holds checkpoints without a readable "
            f"{_FINGERPRINT_FILE}; resuming without checking that the optimizer, model and "
            "data are those of the run that wrote them",
            stacklevel=4,
        )
        return
    if stored.get("run") != fingerprint["run"] and isinstance(stored.get("run"), dict):
        raise ValueError(
            f"checkpoint_dir {checkpoint_dir!r} was written with {stored['run']}; resume with "
            "the same batch_size, eval_every and batch_mode or use another directory"
        )
    changes = _fingerprint_changes(stored, fingerprint)
    if changes:
        raise ValueError(
            f"checkpoint_dir {checkpoint_dir!r} holds checkpoints of a different run:\n"
            + "".join(f"  {line}\n" for line in changes)
            + f"To start over, use a new checkpoint_dir or delete {checkpoint_dir!r}; to resume, "
            "call fit with the optimizer, model and data of that run."
        )
