r"""Shared helpers of the compression transforms: which leaves they touch, exact k-smallest.

Small public functions, used by ``prune``, ``quantize``, ``share_weights``,
``size_report``, the gradient compressors and ``jopt.regularizers``:

* **Leaf masks.** A transform's ``mask=`` argument is ``None`` (the transform's default: the
  kernels for weight compression, every leaf for regularizers and gradient compression), a
  bool pytree, or a function ``params -> bool pytree``. :func:`resolve_mask` turns it into a
  static bool pytree, :func:`flat_mask` into a list of Python bools, one per leaf.
* **Exact selection.** :func:`keep_all_but_k_smallest` drops exactly :math:`k` entries, where
  :math:`k` may be a tracer, with no shape depending on :math:`k`. Scores become int32 keys
  (:func:`order_keys`) whose order is the order of :math:`|s|` (non-negative float32 values
  order like their int32 bit patterns), and :func:`kth_smallest` finds the :math:`k`-th
  smallest key by a 31-step bisection over its value bits; ties at the threshold are broken
  by position. (A bisection rather than ``jnp.sort``: XLA's CPU sort of 15k floats takes
  ~3 ms, the bisection ~0.2 ms, for the same threshold.)
* **Seeds.** :func:`check_seed` and :func:`seed_key` turn a randomized transform's ``seed=``
  (an integer or a raw PRNG key, possibly traced) into its PRNG key.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax import lax

__all__ = [
    "Mask",
    "check_seed",
    "every_leaf",
    "flat_mask",
    "keep_all_but_k_smallest",
    "keep_all_but_k_smallest_per_leaf",
    "kernels",
    "kth_smallest",
    "needs_params",
    "order_keys",
    "resolve_mask",
    "seed_key",
]

Mask = Any | Callable[[optax.Params], Any] | None


# --- which leaves a transform touches -----------------------------------------------------------


def kernels(params: optax.Params) -> Any:
    """A mask that is True on leaves with ``ndim >= 2`` (kernels), False on biases and scales.

    Args:
      params: a pytree of arrays.

    Returns:
      A pytree of Python bools with the structure of ``params``.

    Examples:
      >>> import jax.numpy as jnp
      >>> from jopt.compress.masks import kernels
      >>> kernels({"kernel": jnp.ones((3, 2)), "bias": jnp.ones(2)})
      {'bias': False, 'kernel': True}
    """
    return jax.tree.map(lambda p: jnp.ndim(p) >= 2, params)


def every_leaf(params: optax.Params) -> Any:
    """A mask that is True on every leaf.

    Args:
      params: a pytree of arrays.

    Returns:
      A pytree of ``True`` with the structure of ``params``.
    """
    return jax.tree.map(lambda _: True, params)


def resolve_mask(
    mask: Mask, params: optax.Params, *, default: Callable[[Any], Any] = kernels
) -> Any:
    """The static bool pytree of the leaves a transform touches.

    Args:
      mask: ``None`` (use ``default``), a bool pytree, or ``params -> bool pytree``.
      params: the pytree the mask applies to.
      default: the mask used when ``mask`` is None (:func:`kernels` or :func:`every_leaf`).

    Returns:
      A pytree of Python bools.

    Examples:
      >>> import jax.numpy as jnp
      >>> from jopt.compress.masks import every_leaf, resolve_mask
      >>> params = {"kernel": jnp.ones((3, 2)), "bias": jnp.ones(2)}
      >>> resolve_mask(None, params), resolve_mask(None, params, default=every_leaf)
      ({'bias': False, 'kernel': True}, {'bias': True, 'kernel': True})
    """
    if mask is None:
        return default(params)
    resolved = mask(params) if callable(mask) else mask
    return jax.tree.map(bool, resolved)


def flat_mask(
    mask: Mask, tree: Any, *, default: Callable[[Any], Any] = kernels, kind: str | None = None
) -> list[bool]:
    """:func:`resolve_mask` as a flat list of Python bools, one per leaf of ``tree``.

    Args:
      mask: ``None`` (use ``default``), a bool pytree, or ``tree -> bool pytree``.
      tree: the pytree the mask applies to.
      default: the mask used when ``mask`` is None.
      kind: the transform's name, for the error message (optional).

    Returns:
      A list of bools in the order of ``jax.tree.leaves(tree)``.

    Raises:
      ValueError: the mask does not have the structure of ``tree``.
    """
    treedef = jax.tree.structure(tree)
    resolved = default(tree) if mask is None else (mask(tree) if callable(mask) else mask)
    try:
        flat = treedef.flatten_up_to(resolved)
    except (ValueError, TypeError) as error:
        prefix = f"{kind}: " if kind else ""
        raise ValueError(f"{prefix}mask must have the structure of the tree: {error}") from None
    return [bool(on) for on in flat]


def needs_params(kind: str, params: Any) -> None:
    """Raises a ValueError naming ``kind`` when a transform that reads the params got none.

    Args:
      kind: the transform's name, for the message.
      params: the ``params`` argument of ``update``.

    Raises:
      ValueError: ``params`` is None.
    """
    if params is None:
        raise ValueError(f"{kind} needs the params: call tx.update(updates, state, params).")


# --- exact selection of the k smallest ----------------------------------------------------------


def order_keys(scores: jax.Array, candidates: jax.Array) -> jax.Array:
    r"""int32 keys ordered like :math:`|s|` (>= 1); non-candidates get key 0, below all others.

    Args:
      scores: float scores of any shape (their magnitude is used).
      candidates: bool array of the same shape (or broadcastable); False ranks lowest.

    Returns:
      An int32 array of the shape of ``scores``.

    Examples:
      >>> import jax.numpy as jnp
      >>> from jopt.compress.masks import order_keys
      >>> keys = order_keys(jnp.array([0.5, -2.0, 1.0]), jnp.array([True, True, False]))
      >>> keys[2], bool(keys[0] < keys[1])
      (Array(0, dtype=int32), True)
    """
    bits = lax.bitcast_convert_type(jnp.abs(scores).astype(jnp.float32), jnp.int32)
    return jnp.where(candidates, bits + 1, 0)


def kth_smallest(keys: jax.Array, k: jax.Array) -> jax.Array:
    """The ``k``-th smallest (1-based) of non-negative int32 ``keys``, by bisection; 0 if k == 0.

    Args:
      keys: non-negative int32 keys (e.g. from :func:`order_keys`), any shape.
      k: int32 scalar (may be traced), 0 <= k <= keys.size.

    Returns:
      An int32 scalar.

    Examples:
      >>> import jax.numpy as jnp
      >>> from jopt.compress.masks import kth_smallest
      >>> int(kth_smallest(jnp.array([7, 3, 9, 3]), 3))
      7
    """

    def body(i, prefix):
        candidate = prefix | jnp.left_shift(jnp.int32(1), 30 - i)
        below = jnp.sum(keys < candidate, dtype=jnp.int32)
        return jnp.where(below < k, candidate, prefix)

    return lax.fori_loop(0, 31, body, jnp.int32(0))


def keep_all_but_k_smallest(keys: jax.Array, k: jax.Array) -> jax.Array:
    """A flat bool mask that drops exactly the ``k`` smallest keys, ties broken by position.

    Among equal keys at the threshold the earliest positions are dropped first.

    Args:
      keys: a flat array of non-negative int32 keys.
      k: int32 scalar (may be traced), the number to drop, 0 <= k <= keys.size.

    Returns:
      A bool array like ``keys``: True where the key is kept.

    Examples:
      >>> import jax.numpy as jnp
      >>> from jopt.compress.masks import keep_all_but_k_smallest
      >>> keep_all_but_k_smallest(jnp.array([5, 1, 5, 2, 5]), 3)
      Array([False, False,  True, False,  True], dtype=bool)
    """
    threshold = kth_smallest(keys, k)
    below = keys < threshold
    tied = keys == threshold
    wanted = k - jnp.sum(below, dtype=jnp.int32)  # how many of the ties at the threshold to drop
    drop = below | (tied & (jnp.cumsum(tied, dtype=jnp.int32) <= wanted))
    return ~drop


def keep_all_but_k_smallest_per_leaf(keys: list[jax.Array], ks: jax.Array) -> list[jax.Array]:
    """:func:`keep_all_but_k_smallest` for several flat arrays at once, ``ks[i]`` from ``keys[i]``.

    The arrays are padded into one ``(len(keys), max size)`` table, so one bisection and one
    cumsum serve all of them rather than one per leaf (XLA's CPU kernel launches dominate at
    these sizes).

    Args:
      keys: a list of flat non-negative int32 key arrays.
      ks: int32 vector of ``len(keys)`` counts (may be traced).

    Returns:
      A list of bool arrays like ``keys``: True where kept.

    Examples:
      >>> import jax.numpy as jnp
      >>> from jopt.compress.masks import keep_all_but_k_smallest_per_leaf
      >>> keep = keep_all_but_k_smallest_per_leaf([jnp.array([3, 1, 2]), jnp.array([4, 9])],
      ...                                         jnp.array([2, 1]))
      >>> [k.tolist() for k in keep]
      [[True, False, False], [False, True]]
    """
    sizes = [k.size for k in keys]
    pad = jnp.iinfo(jnp.int32).max  # above every key: never counted, never dropped
    table = jnp.stack([jnp.pad(k, (0, max(sizes) - k.size), constant_values=pad) for k in keys])

    def body(i, prefixes):
        candidates = prefixes | jnp.left_shift(jnp.int32(1), 30 - i)
        below = jnp.sum(table < candidates[:, None], axis=1, dtype=jnp.int32)
        return jnp.where(below < ks, candidates, prefixes)

    thresholds = lax.fori_loop(0, 31, body, jnp.zeros((len(keys),), jnp.int32))[:, None]
    below, tied = table < thresholds, table == thresholds
    wanted = ks - jnp.sum(below, axis=1, dtype=jnp.int32)
    keep = ~(below | (tied & (jnp.cumsum(tied, axis=1, dtype=jnp.int32) <= wanted[:, None])))
    return [keep[row, :size] for row, size in enumerate(sizes)]


# --- the PRNG key of a randomized transform -----------------------------------------------------


def check_seed(kind: str, seed: Any) -> None:
    """Raises a TypeError naming ``kind`` unless ``seed`` is an integer or a raw PRNG key.

    Args:
      kind: the transform's name, for the message.
      seed: a Python/NumPy integer, or a uint32 key of shape ``(2,)`` (possibly traced, e.g.
        one key per vmapped worker).

    Raises:
      TypeError: anything else (a bool, a float, a key of another shape).
    """
    integral = isinstance(seed, (int, np.integer)) or (
        isinstance(seed, (jax.Array, np.ndarray)) and jnp.issubdtype(seed.dtype, jnp.integer)
    )
    if isinstance(seed, bool) or not integral:
        raise TypeError(f"{kind}: seed must be an integer or a PRNG key, got {seed!r}.")
    if np.ndim(seed) not in (0, 1) or (np.ndim(seed) == 1 and np.shape(seed) != (2,)):
        raise TypeError(
            f"{kind}: seed must be an integer or a PRNG key of shape (2,), got shape "
            f"{np.shape(seed)}."
        )


def seed_key(seed: Any) -> jax.Array:
    """The PRNG key of ``seed``: ``PRNGKey(seed)`` for an integer, the key itself for a key.

    Args:
      seed: an integer or a raw uint32 key of shape ``(2,)`` (checked by :func:`check_seed`).

    Returns:
      A uint32 key of shape ``(2,)``.

    Examples:
      >>> import jax
      >>> from jopt.compress.masks import seed_key
      >>> bool((seed_key(3) == jax.random.PRNGKey(3)).all())
      True
    """
    if np.ndim(seed) == 1:  # a raw uint32 key, possibly traced (one key per vmapped worker)
        return jnp.asarray(seed, jnp.uint32)
    return jax.random.PRNGKey(seed)
