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
"""

from __future__ import annotations

import math
from typing import Any

import jax
import numpy as np
import optax

from jopt.compress.prune import Mask, _target_mask
from jopt.compress.quantize import QuantizedArray, QuantizedParams, quantize_params

__all__ = ["size_report"]


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
    targets = jax.tree.leaves(_target_mask(mask, params))
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
