r"""Storage size of a compressed model: bytes before (dense float32), bytes after, and ratio.

The accounting, per compressed leaf (by default those with ``ndim >= 2``; other leaves always
cost 4 bytes per entry):

* **dense** (no option): 4 bytes per entry.
* ``bits=b``: the real storage of ``quantize_params(params, b)`` (``.nbytes``: codes packed in
  int8/uint8 plus float32 scales per output channel).
* ``clusters=k``: :math:`\lceil\log_2 k\rceil`-bit indices plus a float32 codebook of
  :math:`k` entries (``share_nbytes``).
* ``sparse=True``: only the nonzero entries are stored, each with its value (32 bits, ``b`` or
  :math:`\lceil\log_2 k\rceil`) and a *relative index*, as in Deep Compression: the gap to the
  previous nonzero in C order, in ``index_bits`` bits; a gap that does not fit is bridged by
  stored filler zeros (one per :math:`2^{\text{index\_bits}}` positions), counted as entries.
  With ``index="bitmask"`` the index is instead one bit per position of the leaf.
  Quantization scales and codebooks are added as above.

No entropy coding (Deep Compression's Huffman stage) is counted.

``size_report`` counts concrete params with NumPy; ``nbytes`` counts the same storage with
``jax.numpy`` from traced params, bit widths, cluster counts and sparsities, so that a sweep
trial can return the model's size beside its accuracy (a Pareto search over size and accuracy).
"""

from __future__ import annotations

import math
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax import lax

from jopt.compress.masks import Mask, resolve_mask
from jopt.compress.quantize import QuantizedArray, QuantizedParams, quantize_params
from jopt.hyperparams import Check, in_unit_interval, validate_hyperparam

__all__ = ["nbytes", "size_report"]


def _relative_entries(flat: np.ndarray, index_bits: int) -> int:
    """Stored entries (nonzeros + filler zeros) with gaps of at most 2**index_bits."""
    positions = np.flatnonzero(flat)
    if positions.size == 0:
        return 0
    gaps = np.diff(np.concatenate([[-1], positions]))  # distance to the previous stored entry
    span = 2**index_bits
    return int(positions.size + np.sum((gaps - 1) // span))


def _from_quantized(
    quantized: QuantizedParams, bits: int | None, clusters: int | None
) -> tuple[Any, int, bool, Any]:
    """The float params, bit width, per-channel flag and mask that ``quantized`` was made with."""
    is_code = lambda x: isinstance(x, QuantizedArray)
    codes = [leaf for leaf in jax.tree.leaves(quantized.tree, is_leaf=is_code) if is_code(leaf)]
    widths = sorted({leaf.bits for leaf in codes})
    if len(widths) != 1:
        raise ValueError(
            f"size_report: the QuantizedParams hold leaves of {widths or 'no'} bit widths; "
            "pass one quantized with a single bit width."
        )
    if clusters is not None or (bits is not None and bits != widths[0]):
        raise ValueError(
            f"size_report: params are QuantizedParams of {widths[0]} bits; pass no bits= or "
            f"clusters= (got bits={bits!r}, clusters={clusters!r})."
        )
    per_channel = any(leaf.scale.ndim > 0 for leaf in codes)
    mask = jax.tree.map(is_code, quantized.tree, is_leaf=is_code)
    return quantized.dequantize(), widths[0], per_channel, mask


def size_report(
    params: optax.Params,
    *,
    bits: int | None = None,
    clusters: int | None = None,
    sparse: bool = False,
    index: str = "relative",
    index_bits: int = 5,
    per_channel: bool = True,
    mask: Mask = None,
) -> dict[str, Any]:
    r"""Bytes of ``params`` stored dense in float32 vs compressed, and their ratio.

    Args:
      params: a concrete pytree of arrays (after pruning, quantization or sharing), or the
        ``QuantizedParams`` of ``quantize_params`` (counted at their own bit width: the
        bytes they really store).
      bits: count the compressed leaves as ``quantize_params(..., bits)`` (an int in [2, 8]).
      clusters: count them as shared weights with a ``clusters``-entry codebook (int >= 2).
        The values are taken as given: pass params that already have <= ``clusters`` values.
      sparse: store only the nonzeros of the compressed leaves (plus their index).
      index: ``"relative"`` (Deep Compression's gaps, ``index_bits`` each) or ``"bitmask"``.
      index_bits: bits per relative index (Han et al. used 8 for conv and 5 for fc layers).
      per_channel: per-channel scales for ``bits`` (as ``quantize_params``).
      mask: which leaves are compressed; default those with ``ndim >= 2``.

    Returns:
      A dict: ``"bytes_before"`` (int, float32 dense), ``"bytes_after"`` (int), ``"ratio"``
      (before / after), ``"nonzero_fraction"`` (over the compressed leaves), ``"method"`` (str).

    Raises:
      ValueError: both ``bits`` and ``clusters``, bad ``bits``/``clusters``/``index``.

    Examples:
      >>> import jax, jax.numpy as jnp
      >>> from jopt.compress import size_report
      >>> w = jax.random.normal(jax.random.PRNGKey(0), (100, 100))
      >>> params = {"kernel": jnp.where(jnp.abs(w) > 1.0, w, 0.0), "bias": jnp.zeros(100)}
      >>> report = size_report(params, bits=8, sparse=True)
      >>> report["bytes_before"], report["bytes_after"], round(report["ratio"], 2)
      (40400, 6061, 6.67)
      >>> round(size_report(params)["ratio"], 2), round(size_report(params, bits=4)["ratio"], 2)
      (1.0, 6.97)
      >>> from jopt.compress import quantize_params
      >>> stored = quantize_params(params, 8)
      >>> size_report(stored)["bytes_after"] == stored.nbytes
      True
    """
    if isinstance(params, QuantizedParams):
        params, bits, per_channel, mask = _from_quantized(params, bits, clusters)
    if bits is not None and clusters is not None:
        raise ValueError("size_report: pass bits or clusters, not both.")
    if index not in ("relative", "bitmask"):
        raise ValueError(f"size_report: index must be 'relative' or 'bitmask', got {index!r}.")
    if not isinstance(index_bits, int) or index_bits < 1:
        raise ValueError(f"size_report: index_bits must be an int >= 1, got {index_bits!r}.")
    if clusters is not None and (
        isinstance(clusters, bool) or not isinstance(clusters, int) or clusters < 2
    ):
        raise ValueError(f"size_report: clusters must be an int >= 2, got {clusters!r}.")

    leaves = [np.asarray(leaf) for leaf in jax.tree.leaves(params)]
    targets = jax.tree.leaves(resolve_mask(mask, params))
    before = sum(4 * leaf.size for leaf in leaves)
    after = sum(4 * leaf.size for leaf, on in zip(leaves, targets) if not on)
    compressed = [leaf for leaf, on in zip(leaves, targets) if on]

    if bits is not None:
        everything = [True] * len(compressed)
        quantized = quantize_params(compressed, bits, per_channel, mask=everything).tree
        per_leaf = jax.tree.leaves(quantized, is_leaf=lambda x: isinstance(x, QuantizedArray))
        value_bits, extra = bits, [int(q.scale.nbytes) for q in per_leaf]
        dense_bytes = [int(q.nbytes) for q in per_leaf]
        method = f"{bits}-bit quantization"
    elif clusters is not None:
        value_bits = math.ceil(math.log2(clusters))
        extra = [4 * clusters] * len(compressed)
        dense_bytes = [math.ceil(leaf.size * value_bits / 8) + 4 * clusters for leaf in compressed]
        method = f"{clusters}-cluster weight sharing"
    else:
        value_bits, extra = 32, [0] * len(compressed)
        dense_bytes = [4 * leaf.size for leaf in compressed]
        method = "float32"

    nonzero = sum(int(np.count_nonzero(leaf)) for leaf in compressed)
    total = sum(leaf.size for leaf in compressed)
    if sparse:
        method = f"sparse ({index} index) + {method}"
        for leaf, overhead in zip(compressed, extra):
            if index == "relative":
                entries = _relative_entries(leaf.ravel(), index_bits)
                payload_bits = entries * (value_bits + index_bits)
            else:
                payload_bits = int(np.count_nonzero(leaf)) * value_bits + leaf.size
            after += math.ceil(payload_bits / 8) + overhead
    else:
        after += sum(dense_bytes)
    return {
        "bytes_before": int(before),
        "bytes_after": int(after),
        "ratio": before / after if after else math.inf,
        "nonzero_fraction": nonzero / total if total else 1.0,
        "method": method,
    }


# --- the same count on device -------------------------------------------------------------------


def _relative_entries_jnp(flat: jax.Array, index_bits: int) -> jax.Array:
    """``_relative_entries`` traceably: each nonzero's gap to the previous one, by a cummax."""
    nonzero = flat != 0
    positions = jnp.arange(flat.size, dtype=jnp.int32)
    last = lax.cummax(jnp.where(nonzero, positions, -1))  # last nonzero at or before i
    previous = jnp.concatenate([jnp.array([-1], jnp.int32), last[:-1]])
    fillers = jnp.where(nonzero, (positions - previous - 1) // 2**index_bits, 0)
    return jnp.sum(nonzero, dtype=jnp.int32) + jnp.sum(fillers, dtype=jnp.int32)


def _ceil_bytes(entries: jax.Array, bits_each: jax.Array, extra_bits: int = 0) -> jax.Array:
    """ceil((entries * bits_each + extra_bits) / 8) in int32, without forming the product of a
    large count (8 * (e // 8) * v is a whole number of bytes)."""
    whole, rest = entries // 8, entries % 8
    return whole * bits_each + (rest * bits_each + extra_bits + 7) // 8


def _bit_length(k: jax.Array) -> jax.Array:
    """ceil(log2 k) for an int32 k >= 1 (the bits of an index into k entries)."""
    return 32 - lax.clz(k - 1)


_BITS = Check(lambda v: bool(np.all((v >= 2) & (v <= 8) & (v == np.floor(v)))), "an int in [2, 8]")
_CLUSTERS = Check(lambda v: bool(np.all((v >= 2) & (v == np.floor(v)))), "an int >= 2")


def nbytes(
    params: optax.Params,
    *,
    sparsity: jax.Array | float | None = None,
    bits: jax.Array | int | None = None,
    clusters: jax.Array | int | None = None,
    sparse: bool = False,
    index: str = "relative",
    index_bits: int = 5,
    per_channel: bool = True,
    mask: Mask = None,
) -> jax.Array:
    r"""The bytes of ``size_report(...)["bytes_after"]``, computed with ``jax.numpy`` (traceable).

    ``params``, ``sparsity``, ``bits`` and ``clusters`` may be tracers (under ``jit`` and
    ``vmap``), so a sweep trial can return its model's size next to its accuracy. Per
    compressed leaf of :math:`n` entries, :math:`z` of them nonzero, with :math:`v` bits per
    value (32; ``bits`` :math:`b`; or :math:`\lceil\log_2 k\rceil` for ``clusters`` :math:`k`),
    :math:`o` bytes of scales or codebook (:math:`4c` for :math:`c` output channels, or
    :math:`4k`) and :math:`i` = ``index_bits``:

    .. math::
      \text{bytes} = \begin{cases}
        4n & \text{dense, float32} \\
        \lceil n / p_b \rceil + o, \quad p_b = 1\ (b > 4),\ 2\ (b = 3, 4),\ 4\ (b = 2)
          & \text{dense, bits} \\
        \lceil n v / 8 \rceil + o & \text{dense, clusters} \\
        \lceil e\,(v + i) / 8 \rceil + o & \text{sparse, relative index} \\
        \lceil (z v + n) / 8 \rceil + o & \text{sparse, bitmask index}
      \end{cases}

    where :math:`p_b` is the number of codes ``quantize_params`` packs per byte and :math:`e`
    is :math:`z` plus the filler zeros that bridge gaps longer than :math:`2^i`. Other leaves
    cost :math:`4n`.

    Where the zeros come from. Without ``sparsity`` they are the params' own exact zeros (the
    params after ``prune``), and the count equals ``size_report``'s exactly. With
    ``sparsity`` :math:`s` (sparse storage implied) each compressed leaf is counted with
    :math:`z = n - \operatorname{round}(s n)` nonzeros, the count of
    ``prune(s, scope="layer")``, whatever the params hold; the positions are then unknown, so
    the relative index is counted without filler zeros: exact for ``index="bitmask"`` and when
    no gap exceeds :math:`2^i`, a lower bound otherwise.

    Args:
      params: a pytree of float arrays (may be traced).
      sparsity: :math:`s` in [0, 1] (may be traced), or None to count the params' zeros.
      bits: the bit width of ``quantize_params``, an int in [2, 8] (may be traced).
      clusters: the codebook size of weight sharing, an int >= 2 (may be traced).
      sparse: store only the nonzeros of the compressed leaves (implied by ``sparsity``).
      index: ``"relative"`` (Deep Compression's gaps, ``index_bits`` each) or ``"bitmask"``.
      index_bits: bits per relative index (a Python int >= 1).
      per_channel: per-channel scales for ``bits`` (as ``quantize_params``).
      mask: which leaves are compressed (static); default those with ``ndim >= 2``.

    Returns:
      A float32 scalar: the bytes, a whole number (exact up to :math:`2^{24}` bytes, and
      within float32 rounding above).

    Raises:
      ValueError: both ``bits`` and ``clusters``; a concrete ``bits``, ``clusters`` or
        ``sparsity`` out of range; a bad ``index`` or ``index_bits``.
      TypeError: ``QuantizedParams`` (count those with ``size_report`` or ``.nbytes``).

    Examples:
      >>> import jax, jax.numpy as jnp
      >>> from jopt.compress import nbytes, size_report
      >>> w = jax.random.normal(jax.random.PRNGKey(0), (100, 100))
      >>> params = {"kernel": jnp.where(jnp.abs(w) > 1.0, w, 0.0), "bias": jnp.zeros(100)}
      >>> stored = size_report(params, bits=8, sparse=True)["bytes_after"]
      >>> int(jax.jit(lambda p: nbytes(p, bits=8, sparse=True))(params)), stored
      (6061, 6061)
      >>> sizes = jax.vmap(lambda b: nbytes(params, bits=b))(jnp.array([2, 4, 8]))
      >>> sizes.astype(int).tolist()
      [3300, 5800, 10800]
    """
    if isinstance(params, QuantizedParams):
        raise TypeError("nbytes: count QuantizedParams with size_report or their .nbytes.")
    if bits is not None and clusters is not None:
        raise ValueError("nbytes: pass bits or clusters, not both.")
    if index not in ("relative", "bitmask"):
        raise ValueError(f"nbytes: index must be 'relative' or 'bitmask', got {index!r}.")
    if isinstance(index_bits, bool) or not isinstance(index_bits, int) or index_bits < 1:
        raise ValueError(f"nbytes: index_bits must be an int >= 1, got {index_bits!r}.")
    for name, value, check in (
        ("bits", bits, _BITS),
        ("clusters", clusters, _CLUSTERS),
        ("sparsity", sparsity, in_unit_interval(closed=True)),
    ):
        if value is not None:
            if callable(value) and not isinstance(value, jax.Array):
                raise ValueError(f"nbytes: {name} must be a number, got a callable.")
            validate_hyperparam("nbytes", name, value, check)
    sparse = sparse or sparsity is not None

    leaves = jax.tree.leaves(params)
    targets = jax.tree.leaves(resolve_mask(mask, params))
    total = jnp.zeros([], jnp.float32)
    for leaf, on in zip(leaves, targets):
        n = int(np.prod(jnp.shape(leaf)))
        if not on:
            total += 4.0 * n
            continue
        stored = _leaf_bytes(
            leaf, n, sparsity, bits, clusters, sparse, index, index_bits, per_channel
        )
        total += stored.astype(jnp.float32)
    return total


def _leaf_bytes(
    leaf: jax.Array,
    n: int,
    sparsity: Any,
    bits: Any,
    clusters: Any,
    sparse: bool,
    index: str,
    index_bits: int,
    per_channel: bool,
) -> jax.Array:
    """The int32 bytes of one compressed leaf (see ``nbytes``)."""
    if bits is not None:
        b = jnp.round(jnp.asarray(bits)).astype(jnp.int32)
        channels = jnp.shape(leaf)[-1] if per_channel and jnp.ndim(leaf) >= 2 else 1
        value_bits, overhead = b, jnp.int32(4 * channels)
        per_byte = jnp.where(b > 4, 1, jnp.where(b <= 2, 4, 2))  # int8, or packed 4- or 2-bit
        dense = (n + per_byte - 1) // per_byte + overhead
    elif clusters is not None:
        k = jnp.round(jnp.asarray(clusters)).astype(jnp.int32)
        value_bits, overhead = _bit_length(k), 4 * k
        dense = _ceil_bytes(jnp.int32(n), value_bits) + overhead
    else:
        value_bits, overhead = jnp.int32(32), jnp.int32(0)
        dense = jnp.int32(4 * n)
    if not sparse:
        return dense
    flat = jnp.ravel(leaf)
    if sparsity is not None:
        nonzero = n - jnp.round(jnp.asarray(sparsity, jnp.float32) * n).astype(jnp.int32)
    else:
        nonzero = jnp.sum(flat != 0, dtype=jnp.int32)
    if index == "bitmask":
        return _ceil_bytes(nonzero, value_bits, extra_bits=n) + overhead  # z * v + n bits
    entries = nonzero if sparsity is not None else _relative_entries_jnp(flat, index_bits)
    return _ceil_bytes(entries, value_bits + index_bits) + overhead
