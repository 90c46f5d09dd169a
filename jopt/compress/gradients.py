"""Gradient compression: what a worker would send instead of its dense float32 gradient.

Each transform receives the raw gradient :math:`g_t`, compresses it, and emits the compressed
gradient as it reads on arrival (decompressed), so it goes **before** the optimizer::

    optax.chain(jopt.compress.topk(0.01), jopt.momentum(0.1))

Every leaf is compressed on its own. ``mask=`` (a bool pytree, or a function of the gradient
tree returning one, e.g. ``jopt.regularizers.kernels``) picks the leaves to compress; the others
pass through unchanged and count as dense. By default every leaf is compressed.

**Error feedback** (EF; Seide et al. 2014, Karimireddy et al. 2019). A biased compressor
:math:`\\mathcal{C}` loses what it drops unless it is fed back. With EF the transform keeps a
residual :math:`e` (zeros at first) per leaf and, each step,

.. math::
  p_t = g_t + e_{t-1}, \\qquad c_t = \\mathcal{C}(p_t), \\qquad e_t = p_t - c_t,

and sends :math:`c_t`. Nothing is lost: :math:`\\sum_{s \\le t} c_s + e_t = \\sum_{s \\le t} g_s`
up to float rounding. Without EF, :math:`c_t = \\mathcal{C}(g_t)` and the state holds no residual
(``residual`` is ``None``).

**Bits.** Each state records, for the last step and summed over leaves, ``bits_sent`` (what the
encoding described in each docstring would put on the wire) and ``bits_dense`` (32 bits per
coordinate, a dense float32 gradient), both float32 scalars; before the first step
``bits_sent`` is 0. ``bits_dense / bits_sent`` is the compression factor.

The states below (``TopkState``, ...) are the transform's own state; jopt wraps each in a
``jopt.HyperparamState`` (``state.inner``), which also holds the numeric hyperparameters
(``ratio``, ``levels``) so ``jopt.hparams`` / ``jopt.set_hparams`` and ``jax.vmap`` work on them.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from jopt.compress.masks import (
    Mask,
    check_seed,
    every_leaf,
    flat_mask,
    keep_all_but_k_smallest,
    order_keys,
    seed_key,
)
from jopt.hyperparams import Check, ScalarOrSchedule, stateful_transform

__all__ = [
    "PowersgdState",
    "QsgdState",
    "SignState",
    "TopkState",
    "powersgd",
    "qsgd",
    "sign",
    "topk",
]

# Relative slack when turning ratio * n into an integer count: ratio is held as float32, so a
# product that should be an integer (0.3 * 10) may land a few ulps above it.
_COUNT_SLACK = 1e-6


class TopkState(NamedTuple):
    """State of ``topk``.

    Attributes:
      residual: error-feedback residual, a tree like the gradient (``None`` without EF).
      bits_sent: float32 scalar, bits sent at the last step.
      bits_dense: float32 scalar, bits of the dense float32 gradient.
    """

    residual: optax.Updates | None
    bits_sent: jax.Array  # shape=(), dtype=float32
    bits_dense: jax.Array  # shape=(), dtype=float32


class SignState(NamedTuple):
    """State of ``sign``; fields as in ``TopkState``."""

    residual: optax.Updates | None
    bits_sent: jax.Array  # shape=(), dtype=float32
    bits_dense: jax.Array  # shape=(), dtype=float32


class QsgdState(NamedTuple):
    """State of ``qsgd``.

    Attributes:
      key: the PRNG key (uint32, shape ``(2,)``) of the next step; split at every step.
      residual: error-feedback residual (``None`` unless ``error_feedback=True``).
      bits_sent: float32 scalar, bits sent at the last step.
      bits_dense: float32 scalar, bits of the dense float32 gradient.
    """

    key: jax.Array
    residual: optax.Updates | None
    bits_sent: jax.Array  # shape=(), dtype=float32
    bits_dense: jax.Array  # shape=(), dtype=float32


class PowersgdState(NamedTuple):
    """State of ``powersgd``.

    Attributes:
      q: the warm-started right factor :math:`Q` (``m x r``) of every compressed leaf, a tree like
        the gradient with ``None`` at leaves that are not compressed (1-D or masked).
      residual: error-feedback residual (``None`` without EF).
      bits_sent: float32 scalar, bits sent at the last step.
      bits_dense: float32 scalar, bits of the dense float32 gradient.
    """

    q: Any
    residual: optax.Updates | None
    bits_sent: jax.Array  # shape=(), dtype=float32
    bits_dense: jax.Array  # shape=(), dtype=float32


# --- shared plumbing ----------------------------------------------------------------------------


def _bits_dense(tree: Any) -> jax.Array:
    return jnp.asarray(32.0 * sum(np.size(x) for x in jax.tree.leaves(tree)), jnp.float32)


def _zero_bits() -> jax.Array:
    return jnp.zeros([], jnp.float32)


def _zeros_like(tree: Any) -> Any:
    return jax.tree.map(jnp.zeros_like, tree)


def _error_feedback(
    compress_leaf: Callable[..., tuple[jax.Array, jax.Array, Any]],
    grads: optax.Updates,
    residual: optax.Updates | None,
    mask: Mask,
    leaf_args: list[tuple] | None = None,
) -> tuple[optax.Updates, optax.Updates | None, jax.Array, list[Any]]:
    """Compresses each masked leaf of p = g + e by ``compress_leaf(p, *args) -> (c, bits, aux)``.

    Returns the sent tree c, the new residual p - c (``None`` when ``residual`` is ``None``), the
    total bits sent (unmasked leaves are sent dense, 32 bits per coordinate) and the list of
    per-leaf ``aux`` outputs (``None`` at unmasked leaves).
    """
    flat_g, treedef = jax.tree.flatten(grads)
    flat_on = flat_mask(mask, grads, default=every_leaf)
    flat_e = [None] * len(flat_g) if residual is None else treedef.flatten_up_to(residual)
    leaf_args = leaf_args or [()] * len(flat_g)
    sent, new_residual, bits, aux = [], [], [], []
    for g, e, on, args in zip(flat_g, flat_e, flat_on, leaf_args):
        if not on:
            sent.append(g)
            new_residual.append(e)
            bits.append(32.0 * g.size)
            aux.append(None)
            continue
        p = g if e is None else g + e
        c, leaf_bits, leaf_aux = compress_leaf(p, *args)
        sent.append(c)
        new_residual.append(None if e is None else p - c)
        bits.append(leaf_bits)
        aux.append(leaf_aux)
    total = sum((jnp.asarray(b, jnp.float32) for b in bits), _zero_bits())
    new_residual = None if residual is None else treedef.unflatten(new_residual)
    return treedef.unflatten(sent), new_residual, total, aux


def _index_bits(n: int) -> int:
    """ceil(log2 n): bits of an index into n entries (0 for n = 1)."""
    return (n - 1).bit_length()


def _check_bool(kind: str, name: str, value: Any) -> None:
    if not isinstance(value, bool):
        raise TypeError(f"{kind}: {name} must be True or False, got {value!r}.")


# --- top-k --------------------------------------------------------------------------------------


def _topk_count(ratio: jax.Array, n: int) -> jax.Array:
    """k = ceil(ratio * n) as a traced int32 in [1, n]."""
    k = jnp.ceil(ratio * n * (1.0 - _COUNT_SLACK)).astype(jnp.int32)
    return jnp.clip(k, 1, n)


def _topk_leaf(p: jax.Array, ratio: jax.Array) -> tuple[jax.Array, jax.Array, None]:
    n = p.size
    k = _topk_count(ratio, n)
    flat = p.reshape(-1)
    # Exactly k entries survive even with ties, and k may be traced (lax.top_k needs a Python
    # int): drop the n - k smallest |p| found by bisection on the float bits (no sort).
    # Reversed, so that among equal |p| the earliest positions are kept.
    keys = order_keys(flat[::-1], jnp.ones(n, bool))
    keep = keep_all_but_k_smallest(keys, n - k)[::-1]
    kept = jnp.where(keep, flat, jnp.zeros_like(flat)).reshape(p.shape)
    return kept, k.astype(jnp.float32) * (32 + _index_bits(n)), None


_RATIO = Check(lambda v: bool(np.all(np.isfinite(v)) and np.all((v > 0) & (v <= 1))), "in (0, 1]")


def topk(
    ratio: ScalarOrSchedule,
    error_feedback: bool = True,
    *,
    mask: Mask = None,
    name: str | None = None,
) -> optax.GradientTransformationExtraArgs:
    r"""Top-k sparsification: send the :math:`k = \lceil \rho n \rceil` largest entries per leaf.

    For each leaf with :math:`n` entries, keeps exactly :math:`k` entries of largest magnitude
    (ties broken by position, so the count is exact) and zeros the rest. With error feedback
    (the default; Stich et al. 2018, Karimireddy et al. 2019) the dropped mass is carried over:

    .. math::
      p_t &= g_t + e_{t-1} \\
      c_t &= \operatorname{top}_k(p_t), \qquad k = \lceil \rho\, n \rceil \\
      e_t &= p_t - c_t

    where :math:`\rho` = ``ratio``. Without error feedback :math:`c_t = \operatorname{top}_k(g_t)`.
    :math:`\rho n` within a relative :math:`10^{-6}` above an integer counts as that integer
    (``ratio`` is held as float32).

    **Bits** per compressed leaf: :math:`k\,(32 + \lceil \log_2 n \rceil)`, a float32 value and
    an index for each kept entry.

    Args:
      ratio: :math:`\rho \in (0, 1]`, the fraction of entries kept per leaf; a float, a JAX scalar
        (may be traced, e.g. ``jax.vmap`` over ratios) or a schedule.
      error_feedback: keep the residual and add it to the next gradient (static).
      mask: which leaves to compress (a bool pytree or ``grads -> bool pytree``, static);
        default all. The others pass through.
      name: optional label for ``jopt.hparams``.

    Returns:
      An optax ``GradientTransformationExtraArgs``; its state's ``inner`` is a ``TopkState``
      and ``ratio`` is in ``jopt.hparams``.

    Raises:
      ValueError: if a concrete ``ratio`` is not in (0, 1].

    Examples:
      >>> import jax.numpy as jnp
      >>> from jopt import compress
      >>> tx = compress.topk(0.5)
      >>> g = jnp.array([0.1, -2.0, 0.6, 1.0])
      >>> sent, state = tx.update(g, tx.init(g))
      >>> sent
      Array([ 0., -2.,  0.,  1.], dtype=float32)
      >>> state.inner.residual
      Array([0.1, 0. , 0.6, 0. ], dtype=float32)
      >>> float(state.inner.bits_sent), float(state.inner.bits_dense)  # 2 * (32 + 2) vs 4 * 32
      (68.0, 128.0)
      >>> sent, state = tx.update(g, state)  # the fed-back 0.6 + 0.6 now beats 1.0
      >>> sent
      Array([ 0. , -2. ,  1.2,  0. ], dtype=float32)
      >>> state.inner.residual
      Array([0.2, 0. , 0. , 1. ], dtype=float32)

    References:
      Stich, Cordonnier & Jaggi, `Sparsified SGD with Memory
      <https://arxiv.org/abs/1809.07599>`_, 2018.

      Karimireddy et al., `Error Feedback Fixes SignSGD and other Gradient Compression Schemes
      <https://arxiv.org/abs/1901.09847>`_, 2019.
    """
    _check_bool("topk", "error_feedback", error_feedback)

    def init(params, hp):
        del hp
        residual = _zeros_like(params) if error_feedback else None
        return TopkState(residual, _zero_bits(), _bits_dense(params))

    def update(grads, state, params, hp):
        del params
        n_leaves = len(jax.tree.leaves(grads))
        sent, residual, bits, _ = _error_feedback(
            _topk_leaf, grads, state.residual, mask, [(hp["ratio"],)] * n_leaves
        )
        return sent, state._replace(residual=residual, bits_sent=bits)

    return stateful_transform("topk", init, update, {"ratio": ratio}, {"ratio": _RATIO}, name=name)


# --- sign ---------------------------------------------------------------------------------------


def _sign_leaf(p: jax.Array) -> tuple[jax.Array, jax.Array, None]:
    return jnp.sign(p), jnp.float32(p.size), None


def _scaled_sign_leaf(p: jax.Array) -> tuple[jax.Array, jax.Array, None]:
    scale = jnp.sum(jnp.abs(p)) / p.size
    return scale * jnp.sign(p), jnp.float32(p.size + 32), None


def sign(
    error_feedback: bool = True, *, mask: Mask = None, name: str | None = None
) -> optax.GradientTransformationExtraArgs:
    r"""1-bit compression: signSGD, or with error feedback the scaled sign of EF-signSGD.

    Without error feedback this is signSGD (Bernstein et al. 2018), one bit per coordinate:

    .. math::
      c_t = \operatorname{sign}(g_t).

    With error feedback (the default) it is EF-signSGD (Karimireddy et al. 2019): the sign is
    scaled by the mean magnitude of each leaf (:math:`d` entries), which with the residual makes
    the method converge where plain signSGD may not:

    .. math::
      p_t &= g_t + e_{t-1} \\
      c_t &= \frac{\|p_t\|_1}{d}\, \operatorname{sign}(p_t) \\
      e_t &= p_t - c_t

    An exact zero decodes as 0 (``jnp.sign``); a 1-bit code cannot say "zero", an event of
    measure zero for float gradients.

    **Bits** per compressed leaf: :math:`d` (the signs) without EF; :math:`d + 32` (the signs and
    the float32 scale) with EF.

    Args:
      error_feedback: EF-signSGD (scaled sign + residual) if True, plain signSGD if False (static).
      mask: which leaves to compress (static); default all.
      name: optional label (``sign`` has no numeric hyperparameters).

    Returns:
      An optax ``GradientTransformationExtraArgs``; its state's ``inner`` is a ``SignState``.

    Examples:
      >>> import jax.numpy as jnp
      >>> from jopt import compress
      >>> g = jnp.array([0.5, -1.0, 2.5, -0.5])
      >>> tx = compress.sign(error_feedback=False)
      >>> tx.update(g, tx.init(g))[0]
      Array([ 1., -1.,  1., -1.], dtype=float32)
      >>> tx = compress.sign()  # ||g||_1 / d = 4.5 / 4 = 1.125
      >>> sent, state = tx.update(g, tx.init(g))
      >>> sent
      Array([ 1.125, -1.125,  1.125, -1.125], dtype=float32)
      >>> state.inner.residual
      Array([-0.625,  0.125,  1.375,  0.625], dtype=float32)
      >>> float(state.inner.bits_sent), float(state.inner.bits_dense)  # 4 + 32 vs 4 * 32
      (36.0, 128.0)

    References:
      Bernstein et al., `signSGD: Compressed Optimisation for Non-Convex Problems
      <https://arxiv.org/abs/1802.04434>`_, 2018.

      Karimireddy et al., `Error Feedback Fixes SignSGD and other Gradient Compression Schemes
      <https://arxiv.org/abs/1901.09847>`_, 2019.
    """
    _check_bool("sign", "error_feedback", error_feedback)
    compress_leaf = _scaled_sign_leaf if error_feedback else _sign_leaf

    def init(params, hp):
        del hp
        residual = _zeros_like(params) if error_feedback else None
        return SignState(residual, _zero_bits(), _bits_dense(params))

    def update(grads, state, params, hp):
        del params, hp
        sent, residual, bits, _ = _error_feedback(compress_leaf, grads, state.residual, mask)
        return sent, state._replace(residual=residual, bits_sent=bits)

    return stateful_transform("sign", init, update, {}, name=name)


# --- QSGD ---------------------------------------------------------------------------------------


def _level_bits(s: jax.Array) -> jax.Array:
    """ceil(log2(s + 1)) for an integer s >= 1, exactly: the number of powers of two <= s."""
    powers = 2.0 ** jnp.arange(32, dtype=jnp.float32)
    return jnp.sum(powers <= s).astype(jnp.float32)


def _qsgd_leaf(
    v: jax.Array, key: jax.Array, s: jax.Array, bucket_size: int | None = None
) -> tuple[jax.Array, jax.Array, None]:
    n = v.size
    d = n if bucket_size is None else min(bucket_size, n)
    n_buckets = -(-n // d)
    # Zero padding fills the last bucket: zeros add nothing to its norm and quantize to 0.
    buckets = jnp.pad(v.reshape(-1).astype(jnp.float32), (0, n_buckets * d - n))
    buckets = buckets.reshape(n_buckets, d)
    norm = jnp.sqrt(jnp.sum(jnp.square(buckets), axis=1, keepdims=True))
    safe = jnp.where(norm > 0, norm, 1.0)
    r = jnp.minimum(s * jnp.abs(buckets) / safe, s)  # in [0, s], also after rounding
    low = jnp.floor(r)
    # Round up with probability r - l, so E[xi] = r / s: unbiased. (Drawn in the leaf's own
    # shape without buckets, so bucket_size=None keeps the original random stream.)
    shape = v.shape if bucket_size is None else buckets.shape
    up = jax.random.uniform(key, shape).reshape(buckets.shape) < (r - low)
    xi = (low + up) / s
    quantized = jnp.where(norm > 0, norm * jnp.sign(buckets) * xi, 0.0)
    quantized = quantized.reshape(-1)[:n].reshape(v.shape).astype(v.dtype)
    return quantized, 32.0 * n_buckets + n * (1.0 + _level_bits(s)), None


_LEVELS = Check(
    lambda v: bool(np.all(np.isfinite(v)) and np.all(v >= 1) and np.all(v == np.round(v))),
    "an integer >= 1",
)


def qsgd(
    levels: ScalarOrSchedule,
    seed: int = 0,
    *,
    bucket_size: int | None = None,
    error_feedback: bool = False,
    mask: Mask = None,
    name: str | None = None,
) -> optax.GradientTransformationExtraArgs:
    r"""QSGD: unbiased stochastic quantization of each leaf onto :math:`s` levels of its norm.

    For a leaf :math:`v` with :math:`n` entries and :math:`s` = ``levels`` (Alistarh et al. 2017):

    .. math::
      Q_s(v)_i &= \|v\|_2 \cdot \operatorname{sign}(v_i) \cdot \xi_i(v, s) \\
      \xi_i(v, s) &= \begin{cases}
        (l + 1)/s & \text{with probability } s|v_i|/\|v\|_2 - l \\
        l / s & \text{otherwise}
      \end{cases}, \qquad l = \lfloor s |v_i| / \|v\|_2 \rfloor

    so :math:`\mathbb{E}[Q_s(v)] = v` and
    :math:`\mathbb{E}\|Q_s(v) - v\|_2^2 \le \min(n/s^2, \sqrt{n}/s)\,\|v\|_2^2` (the paper's
    Lemma 3.1). Being unbiased, it needs no error feedback; ``error_feedback=True`` adds it
    anyway (then :math:`Q_s` is applied to :math:`g_t + e_{t-1}`). The PRNG key lives in the
    state, seeded by ``seed`` and split at every step; leaves get independent keys.

    **Buckets.** With ``bucket_size`` :math:`d`, each leaf is flattened and cut into
    :math:`\lceil n/d \rceil` consecutive buckets (the last one zero-padded), and each bucket
    :math:`v_b` is quantized with its own norm :math:`\|v_b\|_2`, as in the paper's experiments.
    The variance then scales with :math:`d` instead of :math:`n`:

    .. math::
      \mathbb{E}\|Q_s(v) - v\|_2^2 = \sum_b \frac{\|v_b\|_2^2}{s^2} \sum_{i \in b} p_i (1 - p_i)
      \le \min(d/s^2, \sqrt{d}/s)\,\|v\|_2^2, \qquad p_i = s|v_i|/\|v_b\|_2 - l_i.

    **Bits** per compressed leaf: :math:`32 \lceil n/d \rceil + n\,(1 + \lceil \log_2(s + 1)
    \rceil)` (:math:`d = n` without buckets), a float32 norm per bucket plus a sign and a level
    in :math:`\{0, \dots, s\}` per entry, in fixed-width code (the paper's Elias coding of
    sparse levels would send fewer).

    Args:
      levels: :math:`s`, an integer >= 1: a float, a JAX scalar (may be traced; a traced value
        is used as given, so keep it integral) or a schedule.
      seed: the integer seed of the PRNG key kept in the state, or that key itself (uint32,
        shape ``(2,)``; may be traced, so ``jax.vmap`` over keys gives simulated workers
        independent rounding: ``jax.vmap(lambda k: qsgd(s, seed=k).init(params))(keys)``).
      bucket_size: :math:`d`, a Python int >= 1, the entries that share one norm (static);
        default None, one bucket per leaf.
      error_feedback: keep a residual as the biased compressors do (static); default False.
      mask: which leaves to compress (static); default all.
      name: optional label for ``jopt.hparams``.

    Returns:
      An optax ``GradientTransformationExtraArgs``; its state's ``inner`` is a ``QsgdState`` and
      ``levels`` is in ``jopt.hparams``.

    Raises:
      ValueError: if a concrete ``levels`` is not an integer >= 1, or ``bucket_size`` is not a
        Python int >= 1 or None.

    Examples:
      >>> import jax.numpy as jnp
      >>> from jopt import compress
      >>> tx = compress.qsgd(levels=2)
      >>> g = jnp.array([3.0, -4.0, 0.0, 0.0])  # ||g|| = 5: entries land on {0, 2.5, 5}
      >>> sent, state = tx.update(g, tx.init(g))
      >>> bool(jnp.all(jnp.isin(jnp.abs(sent), jnp.array([0.0, 2.5, 5.0]))))
      True
      >>> float(state.inner.bits_sent), float(state.inner.bits_dense)  # 32 + 4 * (1 + 2)
      (44.0, 128.0)

    References:
      Alistarh et al., `QSGD: Communication-Efficient SGD via Gradient Quantization and Encoding
      <https://arxiv.org/abs/1610.02132>`_, 2017.
    """
    _check_bool("qsgd", "error_feedback", error_feedback)
    check_seed("qsgd", seed)
    if bucket_size is not None and (
        isinstance(bucket_size, bool)
        or not isinstance(bucket_size, (int, np.integer))
        or bucket_size < 1
    ):
        raise ValueError(
            f"qsgd: bucket_size must be a Python int >= 1 or None, got {bucket_size!r}."
        )
    bucket_size = None if bucket_size is None else int(bucket_size)

    def init(params, hp):
        del hp
        residual = _zeros_like(params) if error_feedback else None
        key = seed_key(seed)
        return QsgdState(key, residual, _zero_bits(), _bits_dense(params))

    def update(grads, state, params, hp):
        del params
        key, step_key = jax.random.split(state.key)
        n_leaves = len(jax.tree.leaves(grads))
        leaf_keys = jax.random.split(step_key, max(n_leaves, 1))
        leaf_args = [(leaf_keys[i], hp["levels"], bucket_size) for i in range(n_leaves)]
        sent, residual, bits, _ = _error_feedback(
            _qsgd_leaf, grads, state.residual, mask, leaf_args
        )
        return sent, QsgdState(key, residual, bits, state.bits_dense)

    return stateful_transform(
        "qsgd", init, update, {"levels": levels}, {"levels": _LEVELS}, name=name
    )


# --- PowerSGD -----------------------------------------------------------------------------------


def _matrix_shape(shape: tuple[int, ...]) -> tuple[int, int]:
    """A leaf of shape (..., m) as an n x m matrix: the leading axes times the last axis."""
    return math.prod(shape[:-1]), shape[-1]


def _powersgd_leaf(p: jax.Array, q: jax.Array) -> tuple[jax.Array, jax.Array, jax.Array]:
    """Returns the rank-r approximation P Q^T, its bits and the new Q (the aux output)."""
    n, m = _matrix_shape(p.shape)
    matrix = p.reshape(n, m).astype(jnp.float32)
    left, _ = jnp.linalg.qr(matrix @ q)  # P = orthonormalize(M Q), n x r
    right = matrix.T @ left  # Q = M^T P, m x r
    approx = (left @ right.T).reshape(p.shape).astype(p.dtype)
    return approx, jnp.float32(32 * q.shape[1] * (n + m)), right


def powersgd(
    rank: int,
    error_feedback: bool = True,
    seed: int = 0,
    *,
    mask: Mask = None,
    name: str | None = None,
) -> optax.GradientTransformationExtraArgs:
    r"""PowerSGD: a rank-:math:`r` approximation of each matrix by one warm-started power step.

    Each leaf with ``ndim >= 2`` is read as an :math:`n \times m` matrix :math:`M` (the leading
    axes flattened, times the last axis) and approximated with one step of subspace iteration
    from the previous step's :math:`Q` (Vogels et al. 2019):

    .. math::
      M_t &= g_t + e_{t-1} \\
      P_t &= \operatorname{orthonormalize}(M_t Q_{t-1}) \qquad (n \times r,\ \text{QR}) \\
      Q_t &= M_t^\top P_t \qquad (m \times r) \\
      c_t &= P_t Q_t^\top \\
      e_t &= M_t - c_t

    :math:`Q_0` is drawn from a standard normal (``seed``). Because :math:`Q` is warm-started,
    repeated steps on a slowly changing gradient converge to its best rank-:math:`r`
    approximation; a gradient of rank :math:`\le r` is reproduced exactly. Without error
    feedback :math:`M_t = g_t` and there is no residual. 1-D leaves (biases, norm scales) and
    masked leaves pass through uncompressed: the paper sends them dense too.

    **Bits** per compressed matrix: :math:`32\, r\, (n + m)`, the float32 factors :math:`P` and
    :math:`Q`; a passed-through leaf counts as dense (32 bits per entry).

    Args:
      rank: :math:`r`, a Python int >= 1; capped at :math:`\min(n, m)` per leaf. It sets the
        shapes of :math:`P` and :math:`Q` (and of ``Q`` in the state), so it is static: it
        cannot be a traced value or a schedule, and it is not in ``jopt.hparams``.
      error_feedback: keep the residual :math:`e` (static); default True, as in the paper.
      seed: the integer seed of the initial :math:`Q`, or a PRNG key (uint32, shape ``(2,)``).
      mask: which leaves to compress (static; leaves with ``ndim < 2`` never are); default all.
      name: optional label (``powersgd`` has no numeric hyperparameters).

    Returns:
      An optax ``GradientTransformationExtraArgs``; its state's ``inner`` is a
      ``PowersgdState``.

    Raises:
      ValueError: if ``rank`` is not an int >= 1.

    Examples:
      >>> import jax.numpy as jnp
      >>> from jopt import compress
      >>> g = {"w": jnp.outer(jnp.array([1.0, 2.0, 3.0]), jnp.array([1.0, -1.0])),
      ...      "b": jnp.array([0.5, 0.5])}
      >>> tx = compress.powersgd(rank=1)
      >>> sent, state = tx.update(g, tx.init(g))  # g["w"] has rank 1: sent exactly
      >>> sent["w"].round(4)
      Array([[ 1., -1.],
             [ 2., -2.],
             [ 3., -3.]], dtype=float32)
      >>> sent["b"]  # biases pass through
      Array([0.5, 0.5], dtype=float32)
      >>> float(state.inner.bits_sent), float(state.inner.bits_dense)  # 32 * 1 * (3 + 2) + 2 * 32
      (224.0, 256.0)

    References:
      Vogels, Karimireddy & Jaggi, `PowerSGD: Practical Low-Rank Gradient Compression for
      Distributed Optimization <https://arxiv.org/abs/1905.13232>`_, 2019.
    """
    if isinstance(rank, bool) or not isinstance(rank, (int, np.integer)) or rank < 1:
        raise ValueError(
            "powersgd: rank must be a Python int >= 1 (it sets the shapes of the factors P and Q, "
            f"so it cannot be traced), got {rank!r}."
        )
    rank = int(rank)
    _check_bool("powersgd", "error_feedback", error_feedback)
    check_seed("powersgd", seed)

    def init(params, hp):
        del hp
        leaves, treedef = jax.tree.flatten(params)
        flat_on = flat_mask(mask, params, default=every_leaf)
        keys = jax.random.split(seed_key(seed), max(len(leaves), 1))
        qs = []
        for i, (leaf, on) in enumerate(zip(leaves, flat_on)):
            if on and jnp.ndim(leaf) >= 2:
                n, m = _matrix_shape(jnp.shape(leaf))
                qs.append(jax.random.normal(keys[i], (m, min(rank, n, m)), jnp.float32))
            else:
                qs.append(None)
        residual = _zeros_like(params) if error_feedback else None
        return PowersgdState(treedef.unflatten(qs), residual, _zero_bits(), _bits_dense(params))

    def update(grads, state, params, hp):
        del params, hp
        treedef = jax.tree.structure(grads)
        flat_q = treedef.flatten_up_to(state.q)
        # Compress exactly the leaves that got a Q at init.
        on = treedef.unflatten([q is not None for q in flat_q])
        sent, residual, bits, new_q = _error_feedback(
            _powersgd_leaf, grads, state.residual, on, [(q,) for q in flat_q]
        )
        return sent, PowersgdState(treedef.unflatten(new_q), residual, bits, state.bits_dense)

    return stateful_transform("powersgd", init, update, {}, name=name)
