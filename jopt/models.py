"""Small flax.linen classifiers: linear, MLP, CNN (1-D and 2-D), GRU, LSTM, Transformer.

With their default arguments, on MNIST-1D input of shape ``(batch, 40)``, the models are
the ones of the MNIST-1D paper (Greydanus 2020, ``notebooks/models.py``, PyTorch), with
the same parameter counts:

=============  ==========  ==============================================================
Model          Parameters  Architecture
=============  ==========  ==============================================================
`Linear`       410         40 -> 10
`MLP`          15,210      40 -> 100 -> 100 (residual) -> 10, ReLU
`CNN`          5,210       3 x Conv1d(k 5/3/3, stride 2, pad 1, 25 channels), ReLU -> 10
`GRU`          5,134       bidirectional GRU (hidden 6) over 40 steps, all outputs -> 10
`LSTM`         5,194       bidirectional LSTM (hidden 6) over 40 steps, all outputs -> 10
`Transformer`  18,826      2 pre-LN blocks, d_model 32, 4 heads, MLP 64, mean-pool -> 10
=============  ==========  ==============================================================

Every model maps ``x`` to logits of shape ``(batch, num_classes)`` with
``model.apply(variables, x, train=False)``. ``train=True`` turns on dropout (rng name
``"dropout"``) and batch statistics (collection ``"batch_stats"``, pass
``mutable=["batch_stats"]``). The models are pure, so ``jax.jit`` and ``jax.vmap`` (for
example over a leading axis of parameters, an ensemble) apply as usual.

Linear, MLP, CNN and GRU default to PyTorch's initialisation (``init_scheme="pytorch"``): every
weight and bias drawn from U(-1/sqrt(fan_in), 1/sqrt(fan_in)), as ``torch.nn.Linear``,
``torch.nn.Conv1d`` and ``torch.nn.GRU`` do. With it, training lands closer to the
accuracies published for MNIST-1D than with flax's defaults (``init_scheme="flax"``: LeCun normal
kernels, zero biases).

`Functional` wraps any other pure model (plain ``jax.numpy``, equinox, ...) as a pair of
functions ``init`` and ``apply``; ``jopt.train.fit`` takes it, a flax.linen module, an
``nnx.Module`` or a function ``rngs -> nnx.Module`` alike.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

Array = jax.Array
Initializer = Callable[..., Array]

_INITS = ("pytorch", "flax")


def count_params(params: Any) -> int:
    """Counts the scalars in a pytree of parameters.

    Args:
      params: a pytree of arrays, typically ``variables["params"]``. Pass only the
        ``"params"`` collection to leave batch-norm statistics out of the count.

    Returns:
      The total number of elements over all leaves, as a Python int.

    Examples:
      >>> import jax, jax.numpy as jnp
      >>> from jopt import models
      >>> variables = models.MLP().init(jax.random.key(0), jnp.zeros((1, 40)))
      >>> models.count_params(variables["params"])
      15210
    """
    return int(sum(math.prod(jnp.shape(leaf)) for leaf in jax.tree.leaves(params)))


def torch_uniform_init(fan_in: int) -> Initializer:
    """PyTorch's default initialiser for linear, convolutional and recurrent layers.

    Draws every entry from U(-b, b) with b = 1/sqrt(fan_in). ``torch.nn.Linear`` and
    ``torch.nn.Conv1d`` use this bound for both weights and biases (``kaiming_uniform_``
    with ``a=sqrt(5)`` reduces to it), with fan_in = in_features, or in_channels *
    kernel_size for a convolution (a flax conv kernel has shape ``(*kernel, in, out)``,
    so fan_in is the product of all but its last axis). ``torch.nn.GRU`` and
    ``torch.nn.LSTM`` use fan_in = hidden_size for all their parameters.

    Args:
      fan_in: the number of inputs to one output unit; a positive int.

    Returns:
      An initializer ``init(key, shape, dtype=jnp.float32) -> Array`` usable as a flax
      ``kernel_init`` or ``bias_init``.

    Examples:
      >>> import jax
      >>> from jopt.models import torch_uniform_init
      >>> w = torch_uniform_init(4)(jax.random.key(0), (4, 3))
      >>> bool((abs(w) <= 0.5).all())
      True
    """
    if isinstance(fan_in, bool) or not isinstance(fan_in, int) or fan_in <= 0:
        raise ValueError(f"fan_in must be a positive int, got {fan_in!r}")
    bound = 1.0 / math.sqrt(fan_in)

    def init(key: Array, shape: Sequence[int], dtype: Any = jnp.float32) -> Array:
        return jax.random.uniform(key, shape, dtype, minval=-bound, maxval=bound)

    return init


def _init_kwargs(init_scheme: str, fan_in: int) -> dict[str, Initializer]:
    """Kernel and bias initialisers for a Dense or Conv layer with the given fan-in."""
    if init_scheme == "pytorch":
        return {"kernel_init": torch_uniform_init(fan_in), "bias_init": torch_uniform_init(fan_in)}
    if init_scheme == "flax":
        return {}
    raise ValueError(f"init_scheme must be one of {_INITS}, got {init_scheme!r}")


def _as_sequence(x: jax.typing.ArrayLike) -> Array:
    """(batch, T) -> (batch, T, 1); (batch, T, F) is returned unchanged."""
    x = jnp.asarray(x)
    if x.ndim == 2:
        return x[..., None]
    if x.ndim != 3:
        raise ValueError(f"expected input of shape (batch, T) or (batch, T, F), got {x.shape}")
    return x


class Linear(nn.Module):
    """Logistic regression: one Dense layer on the flattened input.

    Input ``(batch, ...)`` is flattened to ``(batch, D)``; output is ``(batch,
    num_classes)`` logits. On MNIST-1D (D = 40) the default model has 40 * 10 + 10 =
    **410** parameters, the paper's ``LinearBase``.

    Attributes:
      num_classes: number of output logits.
      init_scheme: ``"pytorch"`` (default; U(+-1/sqrt(D)) weights and biases, like
        ``torch.nn.Linear``) or ``"flax"`` (LeCun normal kernel, zero bias).

    Examples:
      >>> import jax, jax.numpy as jnp
      >>> from jopt import models
      >>> model = models.Linear()
      >>> variables = model.init(jax.random.key(0), jnp.zeros((1, 40)))
      >>> model.apply(variables, jnp.ones((8, 40))).shape
      (8, 10)
    """

    num_classes: int = 10
    init_scheme: str = "pytorch"

    @nn.compact
    def __call__(self, x: jax.typing.ArrayLike, *, train: bool = False) -> Array:
        del train  # No dropout or batch norm.
        x = jnp.reshape(x, (jnp.shape(x)[0], -1))  # flatten
        return nn.Dense(self.num_classes, **_init_kwargs(self.init_scheme, x.shape[-1]))(x)


class MLP(nn.Module):
    """Multi-layer perceptron with optional residual connections.

    Each hidden layer computes ``h = dropout(act(bn(W x + b)))`` and then ``x = x + h``
    when ``residual`` and the input and output widths agree, else ``x = h``; a final
    Dense layer gives the logits. With the defaults on MNIST-1D this is the paper's
    ``MLPBase``::

        h = relu(W1 x);  h = h + relu(W2 h);  logits = W3 h

    with 40*100+100 + 100*100+100 + 100*10+10 = **15,210** parameters.

    Input ``(batch, ...)`` is flattened to ``(batch, D)``; output is ``(batch,
    num_classes)``.

    Attributes:
      hidden: widths of the hidden layers; any depth.
      num_classes: number of output logits.
      residual: add each hidden layer's input to its output where the widths match.
      activation: the nonlinearity after each hidden layer.
      batch_norm: apply ``nn.BatchNorm`` between each hidden Dense and its activation;
        running statistics live in the ``"batch_stats"`` collection and are used when
        ``train=False``.
      dropout: dropout rate after each hidden activation (rng name ``"dropout"``),
        active only when ``train=True``.
      init_scheme: ``"pytorch"`` (default) or ``"flax"``, see `torch_uniform_init`.

    Examples:
      >>> import jax, jax.numpy as jnp
      >>> from jopt import models
      >>> model = models.MLP()
      >>> variables = model.init(jax.random.key(0), jnp.zeros((1, 40)))
      >>> models.count_params(variables["params"])
      15210
      >>> model.apply(variables, jnp.ones((8, 40))).shape
      (8, 10)
    """

    hidden: Sequence[int] = (100, 100)
    num_classes: int = 10
    residual: bool = True
    activation: Callable[[Array], Array] = nn.relu
    batch_norm: bool = False
    dropout: float = 0.0
    init_scheme: str = "pytorch"

    @nn.compact
    def __call__(self, x: jax.typing.ArrayLike, *, train: bool = False) -> Array:
        x = jnp.reshape(x, (jnp.shape(x)[0], -1))  # flatten
        for width in self.hidden:
            h = nn.Dense(width, **_init_kwargs(self.init_scheme, x.shape[-1]))(x)
            if self.batch_norm:
                h = nn.BatchNorm(use_running_average=not train)(h)
            h = self.activation(h)
            if self.dropout > 0:
                h = nn.Dropout(self.dropout, deterministic=not train)(h)
            x = x + h if self.residual and x.shape[-1] == width else h
        return nn.Dense(self.num_classes, **_init_kwargs(self.init_scheme, x.shape[-1]))(x)


class CNN(nn.Module):
    """Convolutional classifier, 1-D for sequences or 2-D for small images.

    A stack of ``Conv -> [BatchNorm] -> ReLU -> [Dropout]`` layers with explicit
    symmetric zero padding (as PyTorch's ``padding=p``), then flatten and one Dense
    layer. With the defaults on MNIST-1D it is the paper's ``ConvBase``: Conv1d(1, 25,
    k=5, s=2, p=1) -> Conv1d(25, 25, k=3, s=2, p=1) -> Conv1d(25, 25, k=3, s=2, p=1),
    lengths 40 -> 19 -> 10 -> 5, flatten 5 * 25 = 125 -> 10: **5,210** parameters.

    Inputs:

    * ``ndim=1`` (default): ``(batch, T)`` (one channel is added) or ``(batch, T, C)``.
    * ``ndim=2``: ``(batch, H, W)`` (one channel is added), ``(batch, H, W, C)``, or
      flat ``(batch, H * W)`` together with ``image_shape=(H, W)``, e.g. the 8x8
      scikit-learn digits as ``(batch, 64)`` with ``image_shape=(8, 8)``.

    Kernel sizes and strides are ints (the same along every spatial axis in 2-D).
    Output is ``(batch, num_classes)``. Features are flattened position-major (flax's
    channels-last layout), whereas PyTorch flattens channel-major; this changes the
    order of the final Dense layer's rows, not the model family or its size.

    Attributes:
      features: output channels of each conv layer.
      kernel_sizes: kernel size of each conv layer (same length as ``features``).
      strides: one stride for all layers, or one per layer.
      padding: zero padding on both sides of every spatial axis.
      ndim: number of spatial axes, 1 or 2.
      image_shape: ``(H, W)`` used to reshape flat ``(batch, H * W)`` input when
        ``ndim=2``.
      num_classes: number of output logits.
      batch_norm: ``nn.BatchNorm`` after each conv (stats in ``"batch_stats"``).
      dropout: dropout rate after each conv activation, active when ``train=True``.
      init_scheme: ``"pytorch"`` (default; U(+-1/sqrt(C_in * prod(kernel)))) or ``"flax"``.

    Examples:
      >>> import jax, jax.numpy as jnp
      >>> from jopt import models
      >>> model = models.CNN()
      >>> variables = model.init(jax.random.key(0), jnp.zeros((1, 40)))
      >>> models.count_params(variables["params"])
      5210
      >>> digits = models.CNN(ndim=2, image_shape=(8, 8))
      >>> variables = digits.init(jax.random.key(0), jnp.zeros((1, 64)))
      >>> digits.apply(variables, jnp.ones((8, 64))).shape
      (8, 10)
    """

    features: Sequence[int] = (25, 25, 25)
    kernel_sizes: Sequence[int] = (5, 3, 3)
    strides: int | Sequence[int] = 2
    padding: int = 1
    ndim: int = 1
    image_shape: tuple[int, int] | None = None
    num_classes: int = 10
    batch_norm: bool = False
    dropout: float = 0.0
    init_scheme: str = "pytorch"

    def _prepare(self, x: jax.typing.ArrayLike) -> Array:
        """Reshapes the input to (batch, *spatial, channels)."""
        x = jnp.asarray(x)
        if self.ndim == 1:
            if x.ndim == 2:
                return x[..., None]
            if x.ndim == 3:
                return x
            raise ValueError(
                f"CNN(ndim=1) expects (batch, T) or (batch, T, C), got {x.shape}; "
                "use ndim=2 for images"
            )
        if self.ndim == 2:
            if x.ndim == 2:
                if self.image_shape is None:
                    raise ValueError(
                        f"CNN(ndim=2) got flat input {x.shape}; pass image_shape=(H, W)"
                    )
                return x.reshape((x.shape[0], *self.image_shape, 1))
            if x.ndim == 3:
                return x[..., None]
            if x.ndim == 4:
                return x
            raise ValueError(f"CNN(ndim=2) expects (batch, H, W[, C]), got {x.shape}")
        raise ValueError(f"ndim must be 1 or 2, got {self.ndim!r}")

    @nn.compact
    def __call__(self, x: jax.typing.ArrayLike, *, train: bool = False) -> Array:
        if len(self.kernel_sizes) != len(self.features):
            raise ValueError(
                f"kernel_sizes {tuple(self.kernel_sizes)} and features "
                f"{tuple(self.features)} must have the same length"
            )
        strides = self.strides
        if isinstance(strides, int):
            strides = (strides,) * len(self.features)
        x = self._prepare(x)
        for width, k, s in zip(self.features, self.kernel_sizes, strides, strict=True):
            fan_in = x.shape[-1] * k**self.ndim
            x = nn.Conv(
                width,
                kernel_size=(k,) * self.ndim,
                strides=(s,) * self.ndim,
                padding=((self.padding, self.padding),) * self.ndim,
                **_init_kwargs(self.init_scheme, fan_in),
            )(x)
            if self.batch_norm:
                x = nn.BatchNorm(use_running_average=not train)(x)
            x = nn.relu(x)
            if self.dropout > 0:
                x = nn.Dropout(self.dropout, deterministic=not train)(x)
        x = x.reshape((x.shape[0], -1))  # flatten
        return nn.Dense(self.num_classes, **_init_kwargs(self.init_scheme, x.shape[-1]))(x)


class TorchGRUCell(nn.RNNCellBase):
    r"""GRU cell with PyTorch's parameterisation (a bias on both sides of every gate).

    .. math::

        \begin{array}{ll}
        r = \sigma(W_{ir} x + b_{ir} + W_{hr} h + b_{hr}) \\
        z = \sigma(W_{iz} x + b_{iz} + W_{hz} h + b_{hz}) \\
        n = \tanh(W_{in} x + b_{in} + r \odot (W_{hn} h + b_{hn})) \\
        h' = (1 - z) \odot n + z \odot h
        \end{array}

    ``flax.linen.GRUCell`` computes the same function but drops the redundant
    ``b_hr, b_hz`` (and keeps ``b_hn`` only), so it has ``2 * features`` fewer
    parameters; this cell matches ``torch.nn.GRU``'s count, 3 * (F * I + F * F + 2F)
    for input size I and F features.

    Parameters: ``ih/kernel`` (I, 3F), ``ih/bias`` (3F), ``hh/kernel`` (F, 3F),
    ``hh/bias`` (3F), gates in PyTorch's order (r, z, n); so ``ih/kernel`` is
    ``weight_ih_l0.T`` of a ``torch.nn.GRU`` and ``hh/kernel`` is ``weight_hh_l0.T``.

    Attributes:
      features: hidden size F.
      init_scheme: ``"pytorch"`` (default; U(+-1/sqrt(F)) for every parameter, as
        ``torch.nn.GRU``) or ``"flax"`` (as ``nn.GRUCell``: LeCun normal input kernel,
        orthogonal recurrent kernel, zero biases).

    Examples:
      >>> import jax, jax.numpy as jnp
      >>> from jopt import models
      >>> cell = models.TorchGRUCell(features=6)
      >>> x = jnp.ones((2, 1))
      >>> h = cell.initialize_carry(jax.random.key(0), x.shape)
      >>> variables = cell.init(jax.random.key(1), h, x)
      >>> models.count_params(variables["params"])
      162
      >>> h, y = cell.apply(variables, h, x)
      >>> y.shape
      (2, 6)
    """

    features: int
    init_scheme: str = "pytorch"

    @nn.compact
    def __call__(self, carry: Array, inputs: Array) -> tuple[Array, Array]:
        h = carry
        if self.init_scheme == "pytorch":
            ih_init = hh_init = _init_kwargs("pytorch", self.features)
        elif self.init_scheme == "flax":
            ih_init = {}
            hh_init = {"kernel_init": nn.initializers.orthogonal()}
        else:
            raise ValueError(f"init_scheme must be one of {_INITS}, got {self.init_scheme!r}")
        gi = nn.Dense(3 * self.features, name="ih", **ih_init)(inputs)  # (..., 3F)
        gh = nn.Dense(3 * self.features, name="hh", **hh_init)(h)  # (..., 3F)
        i_r, i_z, i_n = jnp.split(gi, 3, axis=-1)
        h_r, h_z, h_n = jnp.split(gh, 3, axis=-1)
        r = nn.sigmoid(i_r + h_r)
        z = nn.sigmoid(i_z + h_z)
        n = jnp.tanh(i_n + r * h_n)
        new_h = (1.0 - z) * n + z * h
        return new_h, new_h

    @nn.nowrap
    def initialize_carry(self, rng: Array, input_shape: tuple[int, ...]) -> Array:
        """Zeros of shape ``(*batch_dims, features)`` for input of ``input_shape``."""
        del rng
        return jnp.zeros((*input_shape[:-1], self.features))

    @property
    def num_feature_axes(self) -> int:
        return 1


def _recurrent_head(
    make_cell: Callable[[str], nn.RNNCellBase],
    x: Array,
    bidirectional: bool,
    num_classes: int,
    dense_kwargs: Callable[[int], dict[str, Initializer]],
) -> Array:
    """Runs a (bi)directional RNN over (batch, T, F), flattens all outputs, Dense."""
    y = nn.RNN(make_cell("forward"))(x)  # (batch, T, H)
    if bidirectional:
        # The backward RNN reads the reversed sequence; keep_order flips its outputs
        # back, so step t holds [forward_t, backward_t] as in torch.nn.GRU.
        y_bwd = nn.RNN(make_cell("backward"), reverse=True, keep_order=True)(x)
        y = jnp.concatenate([y, y_bwd], axis=-1)  # (batch, T, 2H)
    y = y.reshape((y.shape[0], -1))  # flatten
    return nn.Dense(num_classes, name="head", **dense_kwargs(y.shape[-1]))(y)


class GRU(nn.Module):
    """(Bi)directional GRU classifier over all time steps.

    Runs a `TorchGRUCell` over the sequence (and a second one over the reversed
    sequence when ``bidirectional``), concatenates the outputs of every step and
    direction, flattens them to ``(batch, T * H * directions)`` and applies one Dense
    layer. Input ``(batch, T)`` (one feature per step) or ``(batch, T, F)``; output
    ``(batch, num_classes)``.

    With the defaults on MNIST-1D (T = 40) it is the paper's ``GRUBase`` (PyTorch
    ``nn.GRU(1, 6, bidirectional=True)``): 2 * 162 recurrent + 480 * 10 + 10 head =
    **5,134** parameters.

    Attributes:
      hidden: hidden size of each direction.
      bidirectional: add a backward direction.
      num_classes: number of output logits.
      init_scheme: ``"pytorch"`` (default; U(+-1/sqrt(hidden)) in the cells as ``torch.nn.GRU``
        and U(+-1/sqrt(fan_in)) in the head) or ``"flax"``.

    Examples:
      >>> import jax, jax.numpy as jnp
      >>> from jopt import models
      >>> model = models.GRU()
      >>> variables = model.init(jax.random.key(0), jnp.zeros((1, 40)))
      >>> models.count_params(variables["params"])
      5134
    """

    hidden: int = 6
    bidirectional: bool = True
    num_classes: int = 10
    init_scheme: str = "pytorch"

    @nn.compact
    def __call__(self, x: jax.typing.ArrayLike, *, train: bool = False) -> Array:
        del train  # No dropout or batch norm.
        return _recurrent_head(
            lambda name: TorchGRUCell(self.hidden, init_scheme=self.init_scheme, name=name),
            _as_sequence(x),
            self.bidirectional,
            self.num_classes,
            lambda fan_in: _init_kwargs(self.init_scheme, fan_in),
        )


class LSTM(nn.Module):
    """(Bi)directional LSTM classifier over all time steps.

    The same shape as `GRU` with flax's ``nn.OptimizedLSTMCell``: outputs of every step
    and direction are flattened to ``(batch, T * H * directions)`` and fed to one Dense
    layer. Input ``(batch, T)`` or ``(batch, T, F)``; output ``(batch, num_classes)``.

    flax's LSTM cell has a bias on the hidden side only: 4 * (H * F + H * H + H)
    parameters per direction. With the defaults on MNIST-1D (T = 40, F = 1, H = 6):
    2 * 192 + 480 * 10 + 10 = **5,194** parameters (a PyTorch ``nn.LSTM`` would have
    2 * 4 * 6 more input-side biases).

    Attributes:
      hidden: hidden size of each direction.
      bidirectional: add a backward direction.
      num_classes: number of output logits.
      init_scheme: ``"flax"`` (default; LeCun normal input kernels, orthogonal recurrent
        kernels, zero biases) or ``"pytorch"`` (U(+-1/sqrt(hidden)) in the cells,
        U(+-1/sqrt(fan_in)) in the head).

    Examples:
      >>> import jax, jax.numpy as jnp
      >>> from jopt import models
      >>> model = models.LSTM()
      >>> variables = model.init(jax.random.key(0), jnp.zeros((1, 40)))
      >>> models.count_params(variables["params"])
      5194
    """

    hidden: int = 6
    bidirectional: bool = True
    num_classes: int = 10
    init_scheme: str = "flax"

    @nn.compact
    def __call__(self, x: jax.typing.ArrayLike, *, train: bool = False) -> Array:
        del train  # No dropout or batch norm.
        if self.init_scheme == "pytorch":
            u = torch_uniform_init(self.hidden)
            cell_kwargs = {"kernel_init": u, "recurrent_kernel_init": u, "bias_init": u}
        elif self.init_scheme == "flax":
            cell_kwargs = {}
        else:
            raise ValueError(f"init_scheme must be one of {_INITS}, got {self.init_scheme!r}")
        return _recurrent_head(
            lambda name: nn.OptimizedLSTMCell(self.hidden, name=name, **cell_kwargs),
            _as_sequence(x),
            self.bidirectional,
            self.num_classes,
            lambda fan_in: _init_kwargs(self.init_scheme, fan_in),
        )


class TransformerBlock(nn.Module):
    """Pre-LN Transformer encoder block.

    ``x = x + Dropout(MHA(LN(x)))``, then ``x = x + Dropout(MLP(LN(x)))`` with
    ``MLP = Dense(mlp_dim) -> GELU -> Dropout -> Dense(d_model)``. Input and output
    ``(batch, T, d_model)``.

    Attributes:
      num_heads: attention heads (must divide d_model).
      mlp_dim: hidden width of the MLP.
      dropout: dropout rate on attention weights, the residual branches and the MLP
        hidden layer, active when ``train=True``.

    With d_model 32 and the defaults a block has 2 * 64 (LayerNorms) + 4 * 1,056
    (attention) + 2,112 + 2,080 (MLP) = **8,544** parameters.

    Examples:
      >>> import jax, jax.numpy as jnp
      >>> from jopt import models
      >>> block = models.TransformerBlock()
      >>> variables = block.init(jax.random.key(0), jnp.zeros((1, 40, 32)))
      >>> models.count_params(variables["params"])
      8544
    """

    num_heads: int = 4
    mlp_dim: int = 64
    dropout: float = 0.0

    @nn.compact
    def __call__(self, x: Array, *, train: bool = False) -> Array:
        d_model = x.shape[-1]
        y = nn.LayerNorm()(x)
        y = nn.MultiHeadDotProductAttention(
            num_heads=self.num_heads, dropout_rate=self.dropout, deterministic=not train
        )(y, y)
        x = x + nn.Dropout(self.dropout, deterministic=not train)(y)
        y = nn.LayerNorm()(x)
        y = nn.gelu(nn.Dense(self.mlp_dim)(y))
        y = nn.Dropout(self.dropout, deterministic=not train)(y)
        y = nn.Dense(d_model)(y)
        return x + nn.Dropout(self.dropout, deterministic=not train)(y)


class Transformer(nn.Module):
    """Small pre-LN Transformer encoder classifier for sequences.

    ``Dense(d_model)`` token projection + learned positional embedding -> dropout ->
    ``num_layers`` x `TransformerBlock` -> LayerNorm -> mean over time -> ``Dense
    (num_classes)``. Input ``(batch, T)`` (one feature per step) or ``(batch, T, F)``;
    output ``(batch, num_classes)``. The positional embedding has shape
    ``(T, d_model)``, so apply the model to sequences of the length it was initialised
    with. flax default initialisation; positional embedding N(0, 0.02^2).

    With the defaults on MNIST-1D (T = 40, F = 1): **18,826** parameters.

    Attributes:
      num_layers: number of encoder blocks.
      d_model: embedding width.
      num_heads: attention heads (must divide d_model).
      mlp_dim: hidden width of each block's MLP.
      num_classes: number of output logits.
      dropout: dropout rate (embeddings, attention, residual branches, MLP), active when
        ``train=True`` with a ``"dropout"`` rng.

    Examples:
      >>> import jax, jax.numpy as jnp
      >>> from jopt import models
      >>> model = models.Transformer()
      >>> variables = model.init(jax.random.key(0), jnp.zeros((1, 40)))
      >>> model.apply(variables, jnp.ones((8, 40))).shape
      (8, 10)
    """

    num_layers: int = 2
    d_model: int = 32
    num_heads: int = 4
    mlp_dim: int = 64
    num_classes: int = 10
    dropout: float = 0.0

    @nn.compact
    def __call__(self, x: jax.typing.ArrayLike, *, train: bool = False) -> Array:
        x = _as_sequence(x)
        h = nn.Dense(self.d_model, name="embed")(x)  # (batch, T, d_model)
        pos = self.param("pos_embedding", nn.initializers.normal(0.02), (x.shape[1], self.d_model))
        h = nn.Dropout(self.dropout, deterministic=not train)(h + pos)
        for _ in range(self.num_layers):
            h = TransformerBlock(self.num_heads, self.mlp_dim, self.dropout)(h, train=train)
        h = nn.LayerNorm()(h).mean(axis=1)  # (batch, d_model)
        return nn.Dense(self.num_classes, name="head")(h)


@dataclasses.dataclass(frozen=True)
class Functional:
    """Any pure model as two functions, for ``jopt.train.fit`` and ``jopt.search.fit_trial``.

    ``init(key, x) -> params`` makes the parameters (any pytree of arrays) from a PRNG key
    and a sample input batch; ``apply(params, x, *, train=False, key=None) -> outputs`` maps
    a batch to logits (or regression outputs). ``fit`` calls ``apply`` with ``train=True``
    and a fresh ``key`` per step (for dropout) while training, and with ``train=False`` and
    ``key=None`` to evaluate. The model has no state besides its parameters (no batch-norm
    statistics). Both functions must be pure: they are traced under ``jit`` and ``vmap``.

    An equinox model (its arrays are the parameters, the rest is static)::

        params, static = eqx.partition(model, eqx.is_array)
        model = jopt.models.Functional(
            init=lambda key, x: params,
            apply=lambda p, x, *, train=False, key=None: jax.vmap(eqx.combine(p, static))(x),
        )

    Attributes:
      init: ``init(key, x) -> params``.
      apply: ``apply(params, x, *, train=False, key=None) -> outputs``.

    Raises:
      TypeError: ``init`` or ``apply`` is not callable.

    Examples:
      >>> import jax, jax.numpy as jnp, optax
      >>> import jopt
      >>> def init(key, x):
      ...     return {"w": 0.01 * jax.random.normal(key, (x.shape[-1], 10)), "b": jnp.zeros(10)}
      >>> def apply(params, x, *, train=False, key=None):
      ...     return x @ params["w"] + params["b"]
      >>> model = jopt.models.Functional(init, apply)
      >>> state, history = jopt.train.fit(
      ...     model, optax.adam(1e-2), jopt.data.digits(), steps=200, batch_size=64,
      ...     key=jax.random.PRNGKey(0), progress=False)
      >>> bool(history["val_accuracy"][-1] > 0.9)
      True
    """

    init: Callable[[Array, Array], Any]
    apply: Callable[..., Array]

    def __post_init__(self) -> None:
        for name in ("init", "apply"):
            if not callable(getattr(self, name)):
                raise TypeError(f"Functional.{name} must be callable, got {getattr(self, name)!r}")
