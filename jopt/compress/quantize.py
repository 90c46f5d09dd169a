r"""Quantization: quantization-aware training (``quantize``) and real integer storage.

``quantize`` goes in ``optax.chain`` **after** the optimizer. It keeps a float *latent* copy of
the weights in its state; the params the model sees are the latent weights rounded to a
symmetric uniform grid, and the optimizer's update (computed at the quantized params) is added
to the latent: the straight-through estimator of BinaryConnect / QAT.

The grid for :math:`b` bits has :math:`2^b - 1` levels:

.. math::
  q_{\max} = 2^{b-1} - 1, \qquad \Delta = \frac{\max |w|}{q_{\max}}, \qquad
  Q(w) = \Delta \cdot \operatorname{clip}\left(\operatorname{round}(w / \Delta),
  -q_{\max}, q_{\max}\right)

with the max over each output channel (the last axis of a flax kernel) when ``per_channel``,
else over the whole leaf. ``quantize_params`` stores the integers for real (int8, or packed
several to a byte for 2-4 bits) with float32 scales. ``binary_connect`` is the fixed
:math:`\pm H` binarization of BinaryConnect (deterministic or stochastic) with a clipped latent.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import struct

from jopt.compress.masks import Mask, needs_params, resolve_mask
from jopt.hyperparams import Check, ScalarOrSchedule, stateful_transform

__all__ = [
    "BinaryConnectState",
    "QuantizeState",
    "QuantizedArray",
    "QuantizedParams",
    "binary_connect",
    "fake_quantize",
    "quantize",
    "quantize_params",
]

_BITS = Check(
    lambda v: bool(np.all(v == np.round(v)) and np.all((v >= 1) & (v <= 16))),
    "an integer in [1, 16]",
)


def _reduce_axes(ndim: int, per_channel: bool) -> tuple[int, ...]:
    """Axes a scale is shared over: all but the last (output channel) for per-channel kernels."""
    return tuple(range(ndim - 1)) if per_channel and ndim >= 2 else tuple(range(ndim))


def fake_quantize(w: jax.Array, bits: jax.Array | float, per_channel: bool = True) -> jax.Array:
    r"""Rounds ``w`` to the symmetric ``bits``-bit grid :math:`Q(w)` (float in, float out).

    ``bits`` may be a tracer (it only enters through :math:`q_{\max} = 2^{b-1} - 1`). ``bits=1``
    is BinaryConnect-like: :math:`Q(w) = \operatorname{sign}(w)\, \operatorname{mean}|w|` with
    sign(0) = +1, two values per channel.

    Args:
      w: an array; for ``per_channel`` and ``w.ndim >= 2`` the last axis is the channel axis.
      bits: :math:`b`, an integer value in [1, 16] (float or int; rounded).
      per_channel: one scale per output channel (else one per array).

    Returns:
      An array like ``w`` with at most :math:`2^b - 1` distinct values per channel (2 for b=1).

    Examples:
      >>> import jax.numpy as jnp
      >>> from jopt.compress import fake_quantize
      >>> fake_quantize(jnp.array([0.1, -0.4, 0.25, 0.7]), bits=3)
      Array([ 0.        , -0.46666718,  0.23333359,  0.70000076], dtype=float32)
    """
    axes = _reduce_axes(jnp.ndim(w), per_channel)
    b = jnp.round(jnp.asarray(bits, jnp.float32))
    magnitude = jnp.abs(w)

    def uniform(w):
        qmax = jnp.exp2(b - 1.0) - 1.0
        scale = _grid_scale(jnp.max(magnitude, axis=axes, keepdims=True), qmax, b)
        codes = jnp.clip(jnp.round(w * (1.0 / scale).astype(w.dtype)), -qmax, qmax)
        return codes * scale.astype(w.dtype)

    def binary(w):
        alpha = _grid_scale(jnp.mean(magnitude, axis=axes, keepdims=True), 1.0, b)
        return jnp.where(w >= 0, 1.0, -1.0).astype(w.dtype) * alpha.astype(w.dtype)

    # a cond, not a where: only one branch runs (under vmap over bits it becomes a select)
    return jax.lax.cond(b <= 1, binary, uniform, w)


def _grid_scale(amax: jax.Array, qmax: jax.Array | float, bits: jax.Array | float) -> jax.Array:
    r"""``amax / qmax`` rounded up to a float32 with a :math:`(22 - b)`-bit mantissa (1 if 0).

    Why: with :math:`|i| < 2^{b-1}`, every grid value :math:`i \Delta` and every difference of two
    grid values (also across a scale change by less than 4x) then fits in float32's 24 bits, so
    ``theta + (Q - theta)`` is exactly ``Q`` in ``optax.apply_updates``. The scale grows by at
    most :math:`2^{b-21}` relative (1e-4 at 8 bits), so :math:`|w| \le q_{\max} \Delta` holds.

    How: a :math:`(22-b)`-bit significand keeps the top :math:`21 - b` of float32's 23 stored
    mantissa bits, so the low :math:`d = b + 2` bits of the (positive) float's bit pattern are
    rounded up as an integer, :math:`(i + 2^d - 1) \,\&\, \lnot(2^d - 1)`; a carry into the
    exponent is the correct round-up. This equals ``ldexp(ceil(ldexp(frac, 22 - b)), ...)`` of
    ``frexp`` bit for bit, but is 3 integer ops instead of the ~50 small ops of ``jnp.frexp`` /
    ``jnp.ldexp``, which made the QAT update cost more than an Adam step.
    """
    raw = jnp.asarray(amax, jnp.float32) / jnp.maximum(jnp.asarray(qmax, jnp.float32), 1.0)
    dropped = (jnp.clip(jnp.asarray(bits, jnp.float32), 1, 16) + 2).astype(jnp.int32)
    low = (jnp.int32(1) << dropped) - 1
    pattern = jax.lax.bitcast_convert_type(raw, jnp.int32)
    rounded = jax.lax.bitcast_convert_type((pattern + low) & ~low, jnp.float32)
    return jnp.where(raw > 0, rounded, 1.0)


class QuantizeState(NamedTuple):
    """Inner state of ``quantize``: the float latent weights (a scalar 0 for untouched leaves)."""

    latent: Any


def quantize(
    bits: ScalarOrSchedule,
    per_channel: bool = True,
    mask: Mask = None,
    *,
    name: str | None = None,
) -> optax.GradientTransformationExtraArgs:
    r"""Quantization-aware training: params on a :math:`2^b - 1`-level grid, float latent in state.

    Place it after the optimizer. With :math:`\ell` the latent weights (initialized to the
    params), :math:`u` the optimizer's update computed at the quantized params :math:`\theta`:

    .. math::
      \ell_t = \ell_{t-1} + u_t, \qquad u'_t = Q_b(\ell_t) - \theta_{t-1}
      \quad\text{so}\quad \theta_t = Q_b(\ell_t)

    i.e. the straight-through estimator: the gradient at the rounded weights updates the float
    weights. :math:`Q_b` is ``fake_quantize``: a symmetric uniform grid with
    :math:`q_{\max} = 2^{b-1}-1` and scale :math:`\max|\ell| / q_{\max}` per output channel (last
    axis) when ``per_channel``. ``bits=1`` gives :math:`\operatorname{sign}(\ell)\,
    \operatorname{mean}|\ell|` (BinaryConnect with a per-channel scale, as XNOR-Net): two values
    per channel rather than :math:`2^1 - 1 = 1`. The params are on the grid after the first
    update (``init`` cannot change the params).

    .. warning::
      :math:`\theta + u'` is computed by ``optax.apply_updates`` in float32. To make it land
      exactly on the grid, the scale :math:`\Delta` is rounded *up* to a float with a
      :math:`(22-b)`-bit mantissa (a relative change below :math:`2^{b-21}`, 1e-4 at 8 bits):
      then grid values and their differences are exact in float32, so from params on a grid
      :math:`\theta + u' = Q_b(\ell_t)` exactly, for any jump. The first update starts from
      unquantized params and is exact unless the update moves a weight by more than its own
      magnitude (then it is within an ulp, and exact again from the next update).

    Args:
      bits: :math:`b`, an integer value in [1, 16]: a float, JAX scalar (a tracer under
        ``vmap``, e.g. a sweep over 2, 4, 8 bits) or schedule.
      per_channel: one scale per output channel (static); else one per leaf.
      mask: which leaves to quantize (a bool pytree or ``params -> bool pytree``, static);
        default the leaves with ``ndim >= 2``. Others get the optimizer's update unchanged.
      name: optional label for ``jopt.hparams``.

    Returns:
      An optax ``GradientTransformationExtraArgs`` holding ``bits`` in its state and the latent
      weights in ``state.inner`` (a ``QuantizeState``).

    Examples:
      >>> import jax, jax.numpy as jnp, numpy as np, optax, jopt
      >>> from jopt.compress import quantize
      >>> params = {"kernel": jax.random.normal(jax.random.PRNGKey(0), (8, 3)), "bias": jnp.ones(3)}
      >>> tx = optax.chain(jopt.adam(5e-2), quantize(bits=2))
      >>> state = tx.init(params)
      >>> loss = lambda p: jnp.sum((p["kernel"] - 0.3) ** 2) + jnp.sum(p["bias"] ** 2)
      >>> print(f"{float(loss(params)):.3f}")
      36.028
      >>> for _ in range(20):
      ...     updates, state = tx.update(jax.grad(loss)(params), state, params)
      ...     params = optax.apply_updates(params, updates)
      >>> [len(np.unique(params["kernel"][:, c])) for c in range(3)]  # <= 2**2 - 1 levels
      [2, 3, 3]
      >>> print(f"{float(loss(params)):.3f}")
      13.293

    References:
      Courbariaux et al., `BinaryConnect <https://arxiv.org/abs/1511.00363>`_, 2015.
      Jacob et al., `Quantization and Training of Neural Networks for Efficient
      Integer-Arithmetic-Only Inference <https://arxiv.org/abs/1712.05877>`_, 2018.
    """

    def init(params, hp):
        del hp
        targets = resolve_mask(mask, params)
        latent = jax.tree.map(
            lambda p, on: jnp.asarray(p) if on else jnp.zeros((), jnp.asarray(p).dtype),
            params,
            targets,
        )
        return QuantizeState(latent=latent)

    def update(updates, state, params, hp):
        needs_params("quantize", params)
        targets = resolve_mask(mask, params)

        def one(u, latent, p, on):
            if not on:
                return u, latent
            latent = latent + u
            return fake_quantize(latent, hp["bits"], per_channel) - p, latent

        pairs = jax.tree.map(one, updates, state.latent, params, targets)
        is_pair = lambda x: isinstance(x, tuple)
        new_updates = jax.tree.map(lambda pair: pair[0], pairs, is_leaf=is_pair)
        latent = jax.tree.map(lambda pair: pair[1], pairs, is_leaf=is_pair)
        return new_updates, QuantizeState(latent=latent)

    return stateful_transform("quantize", init, update, {"bits": bits}, {"bits": _BITS}, name=name)


class BinaryConnectState(NamedTuple):
    """Inner state of ``binary_connect``.

    Attributes:
      latent: per leaf, the float latent weights clipped to :math:`[-H, H]` (a scalar 0 for
        untouched leaves).
      scale: per leaf, :math:`H` as a float32 scalar (0 for untouched leaves).
      key: the PRNG key of the stochastic binarization (split at every update).
    """

    latent: Any
    scale: Any
    key: jax.Array


def _glorot_bound(shape: tuple[int, ...]) -> float:
    fan_in, fan_out = int(np.prod(shape[:-1])), int(shape[-1])
    return float(np.sqrt(6.0 / (fan_in + fan_out)))


def binary_connect(
    scale: float | None = None,
    stochastic: bool = False,
    mask: Mask = None,
    *,
    key: jax.Array | int = 0,
    name: str | None = None,
) -> optax.GradientTransformationExtraArgs:
    r"""BinaryConnect: the params are :math:`\pm H`, a clipped float latent accumulates the updates.

    Place it after the optimizer. With :math:`\ell` the latent weights (initialized to the
    params clipped to :math:`[-H, H]`) and :math:`u` the optimizer's update computed at the
    binary params :math:`\theta`:

    .. math::
      \ell_t &= \operatorname{clip}(\ell_{t-1} + u_t, -H, H) \\
      \theta_t &= \begin{cases}
        H \operatorname{sign}(\ell_t) & \text{deterministic (sign(0) = +1)} \\
        +H \text{ with probability } p = \sigma(\ell_t / H), \text{ else } -H
          & \text{stochastic} \end{cases} \\
      \sigma(x) &= \operatorname{clip}\left(\tfrac{x + 1}{2}, 0, 1\right)
      \quad\text{(hard sigmoid)}, \qquad u'_t = \theta_t - \theta_{t-1}

    The gradient at the binary weights updates the float weights (straight-through). The
    stochastic form is unbiased in the latent: :math:`E[\theta] = H(2p - 1) = \ell` for
    :math:`|\ell| \le H`. :math:`H` is ``scale``, or per leaf the Glorot bound
    :math:`\sqrt{6 / (\text{fan\_in} + \text{fan\_out})}` when ``scale`` is None, as in the
    authors' code (fan_in: the product of all but the last axis). Unlike ``quantize(bits=1)``
    (:math:`\operatorname{sign}(\ell) \operatorname{mean}|\ell|` per channel, XNOR-Net-like),
    the two values are fixed: a layer after it needs batch normalization or a learned scale.

    ``scale`` and ``stochastic`` are static: this transform has no numeric hyperparameters in
    its state. The params are binary after the first update (``init`` cannot change them), up
    to the float32 rounding of :math:`\theta + u'` in ``optax.apply_updates``: within an ulp of
    :math:`\pm H` (a flip adds :math:`\mp 2H` to a value that may already be an ulp off). The
    sign, which is all a 1-bit store keeps, is exact.

    Args:
      scale: :math:`H` > 0 for every binarized leaf, or None for the per-leaf Glorot bound.
      stochastic: binarize stochastically (hard-sigmoid probabilities) rather than by sign.
      mask: which leaves to binarize (a bool pytree or ``params -> bool pytree``, static);
        default the leaves with ``ndim >= 2``. Others get the optimizer's update unchanged.
      key: a PRNG key or an int seed for the stochastic form (may be a traced key, e.g. one
        per run under ``vmap``).
      name: optional label for ``jopt.hparams``.

    Returns:
      An optax ``GradientTransformationExtraArgs`` with a ``BinaryConnectState`` in
      ``state.inner``.

    Raises:
      ValueError: ``scale`` not None and not > 0.

    Examples:
      >>> import jax, jax.numpy as jnp, numpy as np, optax, jopt
      >>> from jopt.compress import binary_connect
      >>> params = {"kernel": jnp.array([[0.3, -0.2], [0.05, 0.9]]), "bias": jnp.zeros(2)}
      >>> tx = optax.chain(jopt.sgd(0.1), binary_connect(scale=0.5))
      >>> state = tx.init(params)
      >>> grads = {"kernel": jnp.array([[1.0, -1.0], [1.0, 0.0]]), "bias": jnp.ones(2)}
      >>> updates, state = tx.update(grads, state, params)
      >>> params = optax.apply_updates(params, updates)
      >>> params["kernel"], params["bias"]
      (Array([[ 0.5, -0.5],
             [-0.5,  0.5]], dtype=float32), Array([-0.1, -0.1], dtype=float32))
      >>> np.asarray(state[1].inner.latent["kernel"]).round(4)  # clip(w - 0.1 g, -0.5, 0.5)
      array([[ 0.2 , -0.1 ],
             [-0.05,  0.5 ]], dtype=float32)

    References:
      Courbariaux, Bengio & David, `BinaryConnect: Training Deep Neural Networks with binary
      weights during propagations <https://arxiv.org/abs/1511.00363>`_, 2015.
    """
    if scale is not None and not (isinstance(scale, (int, float)) and scale > 0):
        raise ValueError(f"binary_connect: scale must be None or a float > 0, got {scale!r}.")
    if not isinstance(stochastic, bool):
        raise ValueError(f"binary_connect: stochastic must be a bool, got {stochastic!r}.")

    def init(params, hp):
        del hp
        targets = resolve_mask(mask, params)

        def bound(p, on):
            if not on:
                return jnp.zeros((), jnp.float32)
            return jnp.float32(scale if scale is not None else _glorot_bound(jnp.shape(p)))

        scales = jax.tree.map(bound, params, targets)
        latent = jax.tree.map(
            lambda p, h, on: (
                jnp.clip(p, -h, h).astype(jnp.asarray(p).dtype)
                if on
                else jnp.zeros((), jnp.asarray(p).dtype)
            ),
            params,
            scales,
            targets,
        )
        start = jax.random.PRNGKey(key) if isinstance(key, int) else key
        return BinaryConnectState(latent=latent, scale=scales, key=start)

    def update(updates, state, params, hp):
        del hp
        needs_params("binary_connect", params)
        targets = resolve_mask(mask, params)
        next_key, step_key = jax.random.split(state.key)
        leaves, treedef = jax.tree.flatten(updates)
        leaf_keys = jax.tree.unflatten(treedef, list(jax.random.split(step_key, len(leaves))))

        def one(u, latent, p, h, leaf_key, on):
            if not on:
                return u, latent
            latent = jnp.clip(latent + u, -h, h)
            if stochastic:
                up = jax.random.uniform(leaf_key, latent.shape) < (latent / h + 1.0) / 2.0
            else:
                up = latent >= 0
            return jnp.where(up, h, -h).astype(p.dtype) - p, latent

        pairs = jax.tree.map(one, updates, state.latent, params, state.scale, leaf_keys, targets)
        is_pair = lambda x: isinstance(x, tuple)
        new_updates = jax.tree.map(lambda pair: pair[0], pairs, is_leaf=is_pair)
        latent = jax.tree.map(lambda pair: pair[1], pairs, is_leaf=is_pair)
        return new_updates, BinaryConnectState(latent=latent, scale=state.scale, key=next_key)

    return stateful_transform("binary_connect", init, update, {}, {}, name=name)


# --- real integer storage -------------------------------------------------------------------------


@struct.dataclass
class QuantizedArray:
    r"""One quantized leaf: integer codes (int8, or uint8 with several codes per byte) + scales.

    Attributes:
      data: int8 codes in :math:`[-q_{\max}, q_{\max}]` (5-8 bits), or uint8 bytes each holding
        ``8 // width`` codes offset by :math:`q_{\max}` (2-4 bits: 4 two-bit codes for 2 bits,
        two nibbles for 3 and 4 bits), flattened in C order and zero-padded.
      scale: float32 scales, shape ``(1, ..., 1, channels)`` per channel, else ``()``.
      shape: the original shape (static).
      bits: the bit width (static).
    """

    data: jax.Array
    scale: jax.Array
    shape: tuple[int, ...] = struct.field(pytree_node=False)
    bits: int = struct.field(pytree_node=False)

    @property
    def nbytes(self) -> int:
        return int(self.data.nbytes + self.scale.nbytes)

    def codes(self) -> jax.Array:
        """The signed integer codes, unpacked, as int8 of ``shape``."""
        qmax = 2 ** (self.bits - 1) - 1
        size = int(np.prod(self.shape))
        if self.data.dtype == jnp.int8:
            return self.data.reshape(self.shape)
        width = _field_width(self.bits)
        shifts = jnp.arange(8 // width, dtype=jnp.uint8) * width
        fields = (self.data[:, None] >> shifts[None, :]) & ((1 << width) - 1)
        values = fields.reshape(-1)[:size].astype(jnp.int8) - qmax
        return values.reshape(self.shape)

    def dequantize(self) -> jax.Array:
        return self.codes().astype(jnp.float32) * self.scale


def _field_width(bits: int) -> int:
    return 2 if bits <= 2 else 4


@struct.dataclass
class QuantizedParams:
    """Params with the kernels stored as ``QuantizedArray``s and the other leaves as float32.

    Attributes:
      tree: the params pytree with quantized leaves replaced by ``QuantizedArray``.
    """

    tree: Any

    def _leaves(self):
        return jax.tree.leaves(self.tree, is_leaf=lambda x: isinstance(x, QuantizedArray))

    @property
    def nbytes(self) -> int:
        """Bytes actually stored: codes + scales + the unquantized leaves."""
        return int(sum(leaf.nbytes for leaf in self._leaves()))

    def dequantize(self) -> optax.Params:
        """The float32 params (quantized leaves on their grid, the others as stored)."""
        return jax.tree.map(
            lambda x: x.dequantize() if isinstance(x, QuantizedArray) else x,
            self.tree,
            is_leaf=lambda x: isinstance(x, QuantizedArray),
        )


def _quantize_leaf(w: jax.Array, bits: int, per_channel: bool) -> QuantizedArray:
    w = jnp.asarray(w, jnp.float32)
    qmax = 2 ** (bits - 1) - 1
    amax = jnp.max(jnp.abs(w), axis=_reduce_axes(w.ndim, per_channel), keepdims=True)
    scale = _grid_scale(amax, qmax, bits)  # the grid of fake_quantize: dequantize == QAT values
    codes = jnp.clip(jnp.round(w / scale), -qmax, qmax).astype(jnp.int8)
    if not per_channel or w.ndim < 2:
        scale = scale.reshape(())
    if bits > 4:
        return QuantizedArray(data=codes, scale=scale, shape=w.shape, bits=bits)
    width = _field_width(bits)
    per_byte = 8 // width
    flat = (codes.reshape(-1).astype(jnp.int32) + qmax).astype(jnp.uint8)
    flat = jnp.pad(flat, (0, (-flat.size) % per_byte)).reshape(-1, per_byte)
    shifts = jnp.arange(per_byte, dtype=jnp.uint8) * width
    packed = jnp.bitwise_or.reduce(flat << shifts[None, :], axis=1).astype(jnp.uint8)
    return QuantizedArray(data=packed, scale=scale, shape=w.shape, bits=bits)


def quantize_params(
    params: optax.Params, bits: int = 8, per_channel: bool = True, mask: Mask = None
) -> QuantizedParams:
    r"""Post-training quantization to real integer storage (for deployment and size reports).

    Each quantized leaf (by default those with ``ndim >= 2``) is stored as integer codes
    :math:`c = \operatorname{clip}(\operatorname{round}(w/\Delta), -q_{\max}, q_{\max})` with
    :math:`q_{\max} = 2^{b-1}-1` and float32 scales :math:`\Delta = \max|w| / q_{\max}` (per output
    channel when ``per_channel``; rounded up as in ``quantize``, so the grids agree): int8 for
    5-8 bits, packed into uint8 for 2-4 bits (four 2-bit or two 4-bit codes per byte). The error
    is at most :math:`\Delta / 2` per element. Other leaves are kept as float32.

    Args:
      params: a pytree of float arrays (concrete).
      bits: a Python int in [2, 8] (static: it decides the storage dtype).
      per_channel: one scale per output channel (last axis); else one per leaf.
      mask: which leaves to quantize (static); default the leaves with ``ndim >= 2``.

    Returns:
      A ``QuantizedParams``; ``.dequantize()`` gives float params, ``.nbytes`` the stored size.

    Raises:
      ValueError: ``bits`` not an int in [2, 8].

    Examples:
      >>> import jax, jax.numpy as jnp
      >>> from jopt.compress import quantize_params
      >>> params = {"kernel": jax.random.normal(jax.random.PRNGKey(0), (100, 100)),
      ...           "bias": jnp.zeros(100)}
      >>> q8, q4 = quantize_params(params, bits=8), quantize_params(params, bits=4)
      >>> print(40_400, q8.nbytes, q4.nbytes)  # float32 bytes, then int8 and 4-bit
      40400 10800 5800
      >>> error = jnp.abs(q8.dequantize()["kernel"] - params["kernel"]).max()
      >>> bool(error <= q8.tree["kernel"].scale.max() / 2)
      True
    """
    if isinstance(bits, bool) or not isinstance(bits, (int, np.integer)) or not 2 <= bits <= 8:
        raise ValueError(f"quantize_params: bits must be a Python int in [2, 8], got {bits!r}.")
    targets = resolve_mask(mask, params)
    tree = jax.tree.map(
        lambda w, on: (
            _quantize_leaf(w, int(bits), per_channel) if on else jnp.asarray(w, jnp.float32)
        ),
        params,
        targets,
    )
    return QuantizedParams(tree=tree)
