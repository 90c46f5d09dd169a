"""Compression as optax transforms: pruning, quantization, weight sharing, gradient compression.

Weight compression (``prune``, ``quantize``, ``share_weights``) goes in ``optax.chain`` **after**
the optimizer: each receives the optimizer's update :math:`u` and the params :math:`\\theta` and
emits :math:`u'` such that :math:`\\theta + u'` is the compressed weight. By default they act on
leaves with ``ndim >= 2`` (kernels), never on biases or normalization scales.

Gradient compression (``topk``, ``sign``, ``qsgd``, ``powersgd``) goes **before** the optimizer.
"""

from jopt.compress import masks
from jopt.compress.gradients import (
    PowersgdState,
    QsgdState,
    SignState,
    TopkState,
    powersgd,
    qsgd,
    sign,
    topk,
)
from jopt.compress.prune import (
    PruneState,
    gradual,
    prune,
    sparsity,
    with_gradients,
)
from jopt.compress.quantize import (
    BinaryConnectState,
    QuantizedArray,
    QuantizedParams,
    QuantizeState,
    binary_connect,
    fake_quantize,
    quantize,
    quantize_params,
)
from jopt.compress.report import nbytes, size_report
from jopt.compress.share import ShareState, kmeans, share_nbytes, share_weights

__all__ = [
    "BinaryConnectState",
    "PowersgdState",
    "PruneState",
    "QsgdState",
    "QuantizeState",
    "QuantizedArray",
    "QuantizedParams",
    "ShareState",
    "SignState",
    "TopkState",
    "binary_connect",
    "fake_quantize",
    "gradual",
    "kmeans",
    "masks",
    "nbytes",
    "powersgd",
    "prune",
    "qsgd",
    "quantize",
    "quantize_params",
    "share_nbytes",
    "share_weights",
    "sign",
    "size_report",
    "sparsity",
    "topk",
    "with_gradients",
]
