r"""Weight sharing (Deep Compression): per-layer k-means, then fine-tuning of the centroids.

``share_weights`` goes in ``optax.chain`` **after** the optimizer. At ``init`` the weights of each
compressed leaf are clustered by 1-D k-means (``kmeans``) with centroids initialized linearly
over ``[min, max]`` of the leaf, the initialization Han et al. found best. From then on each
weight is :math:`c_{a_i}`: the assignments :math:`a` are fixed, and the centroids are trained.
"""

from __future__ import annotations

import math
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax import lax

from jopt.compress.masks import Mask, needs_params, resolve_mask
from jopt.hyperparams import stateful_transform

__all__ = ["ShareState", "kmeans", "share_nbytes", "share_weights"]


def kmeans(
    x: jax.Array, clusters: int, iterations: int = 20, *, exclude_zeros: bool = False
) -> tuple[jax.Array, jax.Array]:
    r"""1-D k-means (Lloyd's algorithm) with linear initialization, in JAX.

    .. math::
      c^{(0)}_j = \min x + \frac{j}{k-1}(\max x - \min x), \qquad
      a_i = \arg\min_j |x_i - c_j|, \qquad
      c_j \leftarrow \operatorname{mean}\{x_i : a_i = j\}

    for a fixed number of iterations (``lax.fori_loop``, so it jits); an empty cluster keeps its
    centroid. Memory is :math:`O(n k)` (the distance matrix). With ``exclude_zeros`` the entries
    equal to 0 (pruned weights) take no part: min, max and means run over the nonzeros only, and
    the zeros get the assignment -1 (Deep Compression shares only the weights left by pruning).

    Args:
      x: an array of any shape (flattened).
      clusters: :math:`k` >= 2, a Python int (static: it is the shape of the centroids).
      iterations: Lloyd iterations, a Python int >= 0.
      exclude_zeros: leave the zero entries out (assignment -1); static.

    Returns:
      ``(centroids, assignments)``: float32 ``(clusters,)`` and int32 of ``x.shape``.

    Examples:
      >>> import jax.numpy as jnp
      >>> from jopt.compress import kmeans
      >>> centroids, assignments = kmeans(jnp.array([0.0, 0.1, 2.4, 2.8, 5.0]), clusters=3)
      >>> centroids, assignments
      (Array([0.05, 2.6 , 5.  ], dtype=float32), Array([0, 0, 1, 1, 2], dtype=int32))
      >>> kmeans(jnp.array([0.0, 0.1, 0.0, 2.4, 2.8]), clusters=2, exclude_zeros=True)
      (Array([0.1, 2.6], dtype=float32), Array([-1,  0, -1,  1,  1], dtype=int32))
    """
    _check_clusters("kmeans", clusters)
    flat = jnp.ravel(jnp.asarray(x, jnp.float32))
    used = flat != 0 if exclude_zeros else jnp.ones(flat.shape, bool)

    def assign(centroids):
        a = jnp.argmin(jnp.abs(flat[:, None] - centroids[None, :]), axis=1).astype(jnp.int32)
        return jnp.where(used, a, -1)

    def lloyd(_, centroids):
        a = jnp.maximum(assign(centroids), 0)  # excluded entries add 0 to cluster 0
        sums = jax.ops.segment_sum(jnp.where(used, flat, 0.0), a, num_segments=clusters)
        counts = jax.ops.segment_sum(used.astype(jnp.float32), a, num_segments=clusters)
        return jnp.where(counts > 0, sums / jnp.maximum(counts, 1.0), centroids)

    low = jnp.min(jnp.where(used, flat, jnp.inf))
    high = jnp.max(jnp.where(used, flat, -jnp.inf))
    low, high = jnp.where(jnp.any(used), low, 0.0), jnp.where(jnp.any(used), high, 0.0)
    initial = jnp.linspace(low, high, clusters, dtype=jnp.float32)
    centroids = lax.fori_loop(0, int(iterations), lloyd, initial)
    return centroids, assign(centroids).reshape(jnp.shape(x))


def _check_clusters(kind: str, clusters: Any) -> None:
    if isinstance(clusters, bool) or not isinstance(clusters, (int, np.integer)) or clusters < 2:
        raise ValueError(
            f"{kind}: clusters must be a Python int >= 2 (it is a shape, so it is static), "
            f"got {clusters!r}."
        )


def _short(x: jax.Array) -> jax.Array:
    """Rounds to a 16-bit mantissa, so that c_new - c_old and theta + (c - theta) are exact.

    Round half to even on the low 8 of float32's 23 stored mantissa bits, done on the bit
    pattern (the same values as ``frexp``/``round``/``ldexp`` for normal floats, in 4 integer
    ops instead of ~50 small ones).
    """
    pattern = lax.bitcast_convert_type(jnp.asarray(x, jnp.float32), jnp.int32)
    halfway_up = 0x7F + ((pattern >> 8) & 1)  # ties go to the even neighbour
    return lax.bitcast_convert_type((pattern + halfway_up) & ~0xFF, jnp.float32)


class ShareState(NamedTuple):
    """Inner state of ``share_weights`` (scalar placeholders for leaves that are not shared).

    Attributes:
      centroids: per leaf, the float32 codebook ``(clusters,)``.
      assignments: per leaf, int32 cluster indices of the leaf's shape (fixed after ``init``).
    """

    centroids: Any
    assignments: Any


def share_weights(
    clusters: int,
    mask: Mask = None,
    iterations: int = 20,
    *,
    exclude_zeros: bool = False,
    name: str | None = None,
) -> optax.GradientTransformationExtraArgs:
    r"""Weight sharing by k-means with centroid fine-tuning (Han et al., Deep Compression).

    Place it after the optimizer. ``init`` clusters each compressed leaf (``kmeans``:
    centroids :math:`c`, assignments :math:`a`). Each update sums the incoming update :math:`u`
    of the weights of each cluster and adds it to the centroid:

    .. math::
      c_j \leftarrow c_j + \sum_{i:\, a_i = j} u_i, \qquad
      u'_i = c_{a_i} - \theta_i \quad\text{so}\quad \theta + u' = c_a

    :math:`u` is the optimizer's output: after ``jopt.sgd(lr)`` it is :math:`-lr\, g`, so this is
    exactly the paper's :math:`c_j \leftarrow c_j - lr \sum_{a_i = j} g_i` (the gradient of the
    loss with respect to a shared centroid is the sum of its weights' gradients); after a
    stateful optimizer (Adam), its per-weight steps are summed instead. The assignments are fixed
    after ``init``, as in the paper (re-clustering would move weights between codebook entries).
    The params are on the codebook from the first update (``init`` cannot change the params).

    ``exclude_zeros=True`` is Deep Compression's order, prune then share: weights that are
    exactly 0 at ``init`` (pruned) are left out of the k-means and of the centroid sums and stay
    exactly 0 (:math:`u'_i = -\theta_i = 0`), so a sparse model stays sparse with no ``prune``
    in the chain.

    .. warning::
      :math:`\theta + u'` is computed in float32 by ``optax.apply_updates``. The centroids are
      kept rounded to a 16-bit mantissa (a relative change below :math:`2^{-16}`), so that from
      params on the codebook :math:`\theta + u' = c_a` exactly, however far a centroid moves
      (unless it changes by more than 128x in one step). The first update starts from unshared
      weights; a weight of the opposite sign to its centroid may then land one ulp off it,
      until the second update.

    ``clusters`` is a Python int: it is the shape of the codebook, so it cannot be a tracer or
    a schedule, and this transform has no numeric hyperparameters in its state.

    Args:
      clusters: :math:`k` >= 2 codebook entries per leaf (static).
      mask: which leaves to share (a bool pytree or ``params -> bool pytree``, static);
        default the leaves with ``ndim >= 2``.
      iterations: k-means iterations at ``init`` (static).
      exclude_zeros: keep the weights that are 0 at ``init`` at 0, outside the codebook (static).
      name: optional label for ``jopt.hparams``.

    Returns:
      An optax ``GradientTransformationExtraArgs`` with a ``ShareState`` in ``state.inner``.

    Raises:
      ValueError: ``clusters`` not an int >= 2.

    Examples:
      >>> import jax, jax.numpy as jnp, numpy as np, optax, jopt
      >>> from jopt.compress import share_weights
      >>> params = {"kernel": jax.random.normal(jax.random.PRNGKey(0), (40, 10)),
      ...           "bias": jnp.zeros(10)}
      >>> tx = optax.chain(jopt.sgd(1e-3), share_weights(clusters=4))
      >>> state = tx.init(params)
      >>> grads = jax.tree.map(jnp.ones_like, params)
      >>> for _ in range(3):
      ...     updates, state = tx.update(grads, state, params)
      ...     params = optax.apply_updates(params, updates)
      >>> np.unique(params["kernel"]).size
      4

    References:
      Han, Mao & Dally, `Deep Compression: Compressing Deep Neural Networks with Pruning,
      Trained Quantization and Huffman Coding <https://arxiv.org/abs/1510.00149>`_, 2016.
    """
    _check_clusters("share_weights", clusters)
    if isinstance(iterations, bool) or not isinstance(iterations, int) or iterations < 0:
        raise ValueError(f"share_weights: iterations must be an int >= 0, got {iterations!r}.")

    def init(params, hp):
        del hp
        targets = resolve_mask(mask, params)

        def cluster(p):
            centroids, assignments = kmeans(p, clusters, iterations, exclude_zeros=exclude_zeros)
            return _short(centroids), assignments

        pairs = jax.tree.map(
            lambda p, on: (
                cluster(p) if on else (jnp.zeros((), jnp.float32), jnp.zeros((), jnp.int32))
            ),
            params,
            targets,
        )
        is_pair = lambda x: isinstance(x, tuple)
        return ShareState(
            centroids=jax.tree.map(lambda pair: pair[0], pairs, is_leaf=is_pair),
            assignments=jax.tree.map(lambda pair: pair[1], pairs, is_leaf=is_pair),
        )

    def update(updates, state, params, hp):
        del hp
        needs_params("share_weights", params)
        targets = resolve_mask(mask, params)

        def one(u, p, c, a, on):
            if not on:
                return u, c
            if not exclude_zeros:
                summed = jax.ops.segment_sum(
                    jnp.ravel(u).astype(jnp.float32), jnp.ravel(a), num_segments=clusters
                )
                c = _short(c + summed)
                return c[a].astype(p.dtype) - p, c
            shared = a >= 0  # pruned weights (a = -1) add nothing and stay 0
            summed = jax.ops.segment_sum(
                jnp.ravel(jnp.where(shared, u, 0)).astype(jnp.float32),
                jnp.ravel(jnp.maximum(a, 0)),
                num_segments=clusters,
            )
            c = _short(c + summed)
            return jnp.where(shared, c[jnp.maximum(a, 0)], 0).astype(p.dtype) - p, c

        pairs = jax.tree.map(one, updates, params, state.centroids, state.assignments, targets)
        is_pair = lambda x: isinstance(x, tuple)
        new_updates = jax.tree.map(lambda pair: pair[0], pairs, is_leaf=is_pair)
        centroids = jax.tree.map(lambda pair: pair[1], pairs, is_leaf=is_pair)
        return new_updates, ShareState(centroids=centroids, assignments=state.assignments)

    return stateful_transform("share_weights", init, update, {}, {}, name=name)


def share_nbytes(params: optax.Params, clusters: int, mask: Mask = None) -> int:
    r"""Bytes to store ``params`` with shared weights: indices + codebook per leaf.

    Each shared leaf of :math:`n` weights costs :math:`\lceil n \lceil\log_2 k\rceil / 8\rceil`
    bytes of packed indices plus a float32 codebook of :math:`4k` bytes; other leaves cost
    float32 (4 bytes per entry).

    Args:
      params: the parameters (only their shapes are read).
      clusters: :math:`k` >= 2 codebook entries per shared leaf, as in :func:`share_weights`.
      mask: which leaves are shared (a bool pytree or ``params -> bool pytree``); default
        the leaves with ``ndim >= 2``, as in :func:`share_weights`.

    Returns:
      The total size in bytes, a Python int.

    Raises:
      ValueError: ``clusters`` not an int >= 2.

    Examples:
      >>> import jax.numpy as jnp
      >>> from jopt.compress import share_nbytes
      >>> share_nbytes({"kernel": jnp.zeros((100, 100)), "bias": jnp.zeros(100)}, clusters=16)
      5464
    """
    _check_clusters("share_nbytes", clusters)
    index_bits = math.ceil(math.log2(clusters))
    targets = jax.tree.leaves(resolve_mask(mask, params))
    total = 0
    for leaf, on in zip(jax.tree.leaves(params), targets):
        n = int(np.prod(jnp.shape(leaf)))
        total += math.ceil(n * index_bits / 8) + 4 * clusters if on else 4 * n
    return total
