"""Tests for jopt.models: parameter counts, shapes, numerics against numpy references.

Compiling ``model.init`` is the slow part on CPU (about a second each), so shapes and
counts use ``jax.eval_shape``, most numerical checks apply the model to random
parameters of the right structure, and only the tests about initialisation run it.
"""

import math

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from numpy.testing import assert_allclose

from jopt import models

KEY = jax.random.key(0)
MNIST1D = jnp.zeros((2, 40))  # MNIST-1D shaped input: (batch, 40)

# The MNIST-1D paper's PyTorch models have 410, 15210, 5210 and 5134 parameters.
PARAM_COUNTS = [
    (models.Linear(), 410),
    (models.MLP(), 15_210),
    (models.CNN(), 5_210),
    (models.GRU(), 5_134),
    (models.LSTM(), 5_194),
    (models.Transformer(), 18_826),
]


def _numel(params) -> int:
    return sum(x.size for x in jax.tree.leaves(params))


def _random_variables(model: nn.Module, x: jax.Array, seed: int = 0) -> dict:
    """Variables shaped like ``model.init``'s: params ~ N(0, 0.5^2), BN stats at init."""
    shapes = jax.eval_shape(model.init, KEY, x)
    rng = np.random.default_rng(seed)
    variables = {
        "params": jax.tree.map(
            lambda s: (0.5 * rng.standard_normal(s.shape)).astype(np.float32), shapes["params"]
        )
    }
    if "batch_stats" in shapes:  # flax's initial running statistics: mean 0, var 1
        variables["batch_stats"] = {
            name: {"mean": np.zeros(s["mean"].shape, np.float32), "var": np.ones(s["var"].shape)}
            for name, s in shapes["batch_stats"].items()
        }
    return variables


# -- Sizes and shapes --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("model", "expected"), PARAM_COUNTS, ids=[type(m).__name__ for m, _ in PARAM_COUNTS]
)
def test_param_counts_on_mnist1d(model, expected):
    params = jax.eval_shape(model.init, KEY, MNIST1D)["params"]
    assert _numel(params) == expected
    assert models.count_params(params) == expected


def test_gru_cell_has_pytorch_param_count():
    # torch.nn.GRU(1, 6): 3 * (6*1 + 6*6 + 6 + 6) = 162 per direction; flax's GRUCell has 150.
    cell = models.TorchGRUCell(features=6)
    x = jnp.zeros((2, 1))
    h = cell.initialize_carry(KEY, x.shape)
    assert _numel(jax.eval_shape(cell.init, KEY, h, x)) == 162
    assert _numel(jax.eval_shape(nn.GRUCell(features=6).init, KEY, h, x)) == 150


def test_digits_cnn_param_count():
    # 8x8 digits: 8 -> 3 -> 2 -> 1 positions; 650 + 5650 + 5650 + 260.
    model = models.CNN(ndim=2, image_shape=(8, 8))
    assert _numel(jax.eval_shape(model.init, KEY, jnp.zeros((1, 64)))) == 12_210


@pytest.mark.parametrize(
    ("model", "shape"),
    [
        (models.Linear(), (3, 40)),
        (models.MLP(hidden=(16, 16, 8)), (3, 40)),
        (models.CNN(), (3, 40)),
        (models.CNN(), (3, 40, 2)),
        (models.CNN(ndim=2), (3, 8, 8)),
        (models.CNN(ndim=2), (3, 8, 8, 1)),
        (models.CNN(ndim=2, image_shape=(8, 8)), (3, 64)),
        (models.GRU(bidirectional=False), (3, 40)),
        (models.LSTM(), (3, 40)),
        (models.Transformer(), (3, 40)),
        (models.Transformer(num_classes=4), (3, 12, 2)),
    ],
)
def test_output_shapes(model, shape):
    x = jnp.zeros(shape)
    variables = jax.eval_shape(model.init, KEY, x)
    out = jax.eval_shape(model.apply, variables, x)
    assert out.shape == (3, model.num_classes)


def test_cnn_bad_input_raises():
    with pytest.raises(ValueError, match="image_shape"):
        jax.eval_shape(models.CNN(ndim=2).init, KEY, jnp.zeros((2, 64)))
    with pytest.raises(ValueError, match="ndim=2"):
        jax.eval_shape(models.CNN().init, KEY, jnp.zeros((2, 8, 8, 1)))
    with pytest.raises(ValueError, match="same length"):
        jax.eval_shape(models.CNN(kernel_sizes=(3,)).init, KEY, MNIST1D)
    with pytest.raises(ValueError, match="init_scheme must be one of"):
        jax.eval_shape(models.MLP(init_scheme="torch").init, KEY, MNIST1D)
    with pytest.raises(ValueError, match="fan_in must be a positive int"):
        models.torch_uniform_init(0)


# -- Numerics against numpy references ---------------------------------------------------


def _np_conv1d(x, kernel, bias, stride, pad):
    """x (B, L, Cin), kernel (K, Cin, Cout): PyTorch Conv1d semantics."""
    x = np.pad(x, ((0, 0), (pad, pad), (0, 0)))
    k = kernel.shape[0]
    length = (x.shape[1] - k) // stride + 1
    windows = np.stack([x[:, i * stride : i * stride + k] for i in range(length)], axis=1)
    return np.einsum("blkc,kco->blo", windows, kernel) + bias


def test_cnn1d_matches_numpy_reference_and_pytorch_init():
    model = models.CNN()
    x = np.asarray(jax.random.normal(KEY, (2, 40)))

    @jax.jit
    def run(x):
        variables = model.init(KEY, x)
        return variables["params"], model.apply(variables, x)

    params, out = run(x)
    params = jax.tree.map(np.asarray, params)
    h = x[..., None]
    lengths = []
    for i in range(3):
        conv = params[f"Conv_{i}"]
        h = np.maximum(_np_conv1d(h, conv["kernel"], conv["bias"], stride=2, pad=1), 0)
        lengths.append(h.shape[1])
    assert lengths == [19, 10, 5]  # PyTorch's lengths for padding=1
    want = h.reshape(2, -1) @ params["Dense_0"]["kernel"] + params["Dense_0"]["bias"]
    assert_allclose(out, want, rtol=1e-5, atol=1e-5)
    # U(+-1/sqrt(fan_in)) with fan_in = in_channels * kernel_size, for kernels and biases.
    for name, fan_in in [("Conv_0", 5), ("Conv_1", 75), ("Conv_2", 75), ("Dense_0", 125)]:
        bound = 1 / math.sqrt(fan_in)
        assert np.abs(params[name]["kernel"]).max() <= bound
        assert np.abs(params[name]["bias"]).max() <= bound
        assert np.abs(params[name]["kernel"]).max() > 0.8 * bound  # fills the range


def _sigmoid(x):
    return 1 / (1 + np.exp(-x))


def _np_torch_gru_step(x, h, p):
    """PyTorch's GRU equations; weights in torch's layout (3H, in), rows r, z, n."""
    w_ih, w_hh = np.asarray(p["ih"]["kernel"]).T, np.asarray(p["hh"]["kernel"]).T
    b_ih, b_hh = np.asarray(p["ih"]["bias"]), np.asarray(p["hh"]["bias"])
    (w_ir, w_iz, w_in), (w_hr, w_hz, w_hn) = np.split(w_ih, 3), np.split(w_hh, 3)
    (b_ir, b_iz, b_in), (b_hr, b_hz, b_hn) = np.split(b_ih, 3), np.split(b_hh, 3)
    r = _sigmoid(x @ w_ir.T + b_ir + h @ w_hr.T + b_hr)
    z = _sigmoid(x @ w_iz.T + b_iz + h @ w_hz.T + b_hz)
    n = np.tanh(x @ w_in.T + b_in + r * (h @ w_hn.T + b_hn))
    return (1 - z) * n + z * h


def test_gru_cell_matches_pytorch_equations():
    cell = models.TorchGRUCell(features=4)
    rng = np.random.default_rng(1)
    x = rng.standard_normal((2, 3)).astype(np.float32)
    h = rng.standard_normal((2, 4)).astype(np.float32)
    shapes = jax.eval_shape(cell.init, KEY, h, x)["params"]
    params = jax.tree.map(lambda s: rng.standard_normal(s.shape).astype(np.float32), shapes)
    new_h, out = jax.jit(cell.apply)({"params": params}, h, x)
    assert_allclose(new_h, _np_torch_gru_step(x, h, params), rtol=1e-5, atol=1e-6)
    assert_allclose(out, new_h)


def test_bidirectional_gru_matches_numpy_loop_and_pytorch_init():
    model = models.GRU(hidden=3, num_classes=4)
    x = np.asarray(jax.random.normal(KEY, (2, 5)))

    @jax.jit
    def run(x):
        variables = model.init(KEY, x)
        return variables["params"], model.apply(variables, x)

    params, out = run(x)
    h_fwd, h_bwd = np.zeros((2, 3)), np.zeros((2, 3))
    fwd, bwd = [], [None] * 5
    for t in range(5):
        h_fwd = _np_torch_gru_step(x[:, t : t + 1], h_fwd, params["forward"])
        fwd.append(h_fwd)
    for t in reversed(range(5)):  # the backward direction reads the sequence reversed
        h_bwd = _np_torch_gru_step(x[:, t : t + 1], h_bwd, params["backward"])
        bwd[t] = h_bwd
    feats = np.concatenate([np.stack(fwd, 1), np.stack(bwd, 1)], axis=-1).reshape(2, -1)
    want = feats @ np.asarray(params["head"]["kernel"]) + np.asarray(params["head"]["bias"])
    assert_allclose(out, want, rtol=1e-5, atol=1e-5)
    # PyTorch's init: U(+-1/sqrt(hidden)) in the cells, U(+-1/sqrt(fan_in=30)) in the head.
    for direction in ("forward", "backward"):
        for leaf in jax.tree.leaves(params[direction]):
            assert np.abs(leaf).max() <= 1 / math.sqrt(3)
    for leaf in jax.tree.leaves(params["head"]):
        assert np.abs(leaf).max() <= 1 / math.sqrt(30)


def test_lstm_runs():
    model = models.LSTM(hidden=3)
    variables = _random_variables(model, MNIST1D)
    # flax's LSTM cell has no input-side biases: 4 * (3 + 9 + 3) per direction.
    assert models.count_params(variables["params"]["forward"]) == 60
    out = jax.jit(model.apply)(variables, jax.random.normal(KEY, (2, 40)))
    assert out.shape == (2, 10)
    assert np.isfinite(out).all()


# -- Initialisation, batch norm, dropout, vmap --------------------------------------------


def test_linear_pytorch_and_flax_init_under_vmap():
    @jax.jit
    def run(keys, x):
        ensemble = jax.vmap(models.Linear().init, in_axes=(0, None))(keys, x)
        return ensemble, models.Linear(init_scheme="flax").init(keys[0], x)

    ensemble, flax_default = run(jax.random.split(KEY, 3), MNIST1D)
    kernel = np.asarray(ensemble["params"]["Dense_0"]["kernel"])
    bias = np.asarray(ensemble["params"]["Dense_0"]["bias"])
    assert kernel.shape == (3, 40, 10) and bias.shape == (3, 10)
    bound = 1 / math.sqrt(40)  # PyTorch: U(+-1/sqrt(fan_in)) for weights and biases
    assert 0.8 * bound < np.abs(kernel).max() <= bound
    assert np.abs(bias).max() <= bound
    assert not np.allclose(kernel[0], kernel[1])  # each key gives its own parameters
    assert not np.asarray(flax_default["params"]["Dense_0"]["bias"]).any()  # zero biases


def test_batch_norm_train_updates_stats_and_eval_uses_them():
    model = models.MLP(hidden=(8,), batch_norm=True, residual=False)
    x = np.asarray(jax.random.normal(KEY, (16, 5))) * 3.0 + 1.0
    assert set(jax.eval_shape(model.init, KEY, x)) == {"params", "batch_stats"}
    variables = _random_variables(model, x)

    @jax.jit
    def run(variables, x):
        out_train, updates = model.apply(variables, x, train=True, mutable=["batch_stats"])
        out_eval = model.apply(variables, x)  # initial running stats: mean 0, var 1
        out_eval_new = model.apply({**variables, **updates}, x)
        return updates, out_train, out_eval, out_eval_new

    updates, out_train, out_eval, out_eval_new = run(variables, x)
    dense = variables["params"]["Dense_0"]
    pre = x @ dense["kernel"] + dense["bias"]
    new = updates["batch_stats"]["BatchNorm_0"]
    # Running averages with flax's momentum 0.99 (biased batch variance).
    assert_allclose(new["mean"], 0.01 * pre.mean(0), rtol=1e-4, atol=1e-6)
    assert_allclose(new["var"], 0.99 + 0.01 * pre.var(0), rtol=1e-4)
    # Train mode normalises with batch statistics, eval mode with the running ones.
    bn = variables["params"]["BatchNorm_0"]
    normed = (pre - pre.mean(0)) / np.sqrt(pre.var(0) + 1e-5) * bn["scale"] + bn["bias"]
    head = variables["params"]["Dense_1"]
    want_train = np.maximum(normed, 0) @ head["kernel"] + head["bias"]
    assert_allclose(out_train, want_train, rtol=1e-4, atol=1e-4)
    assert not np.allclose(out_train, out_eval, atol=1e-3)
    assert not np.allclose(out_eval_new, out_eval, atol=1e-3)


@pytest.mark.parametrize(
    "model",
    [
        models.MLP(hidden=(32,), dropout=0.5),
        models.CNN(features=(8,), kernel_sizes=(3,), dropout=0.5),
        models.Transformer(num_layers=1, d_model=8, num_heads=2, mlp_dim=8, dropout=0.5),
    ],
    ids=["MLP", "CNN", "Transformer"],
)
def test_dropout_only_in_train_mode(model):
    x = np.asarray(jax.random.normal(KEY, (4, 6)))
    variables = _random_variables(model, x)

    @jax.jit
    def run(variables, x):
        evals = [model.apply(variables, x) for _ in range(2)]
        train = lambda key: model.apply(variables, x, train=True, rngs={"dropout": key})
        return evals, jax.vmap(train)(jax.random.split(KEY))

    (eval_1, eval_2), (train_1, train_2) = run(variables, x)
    assert_allclose(eval_1, eval_2)
    assert not np.allclose(train_1, eval_1, atol=1e-4)
    assert not np.allclose(train_1, train_2, atol=1e-4)


def _np_mlp(params, x):
    """numpy reference of MLP(hidden=(16, 16)): relu, residual on the second layer."""
    p = jax.tree.map(np.asarray, params)
    h = np.maximum(x @ p["Dense_0"]["kernel"] + p["Dense_0"]["bias"], 0)
    h = h + np.maximum(h @ p["Dense_1"]["kernel"] + p["Dense_1"]["bias"], 0)
    return h @ p["Dense_2"]["kernel"] + p["Dense_2"]["bias"]


def test_vmap_over_three_param_sets():
    model = models.MLP(hidden=(16, 16))
    x = np.asarray(jax.random.normal(KEY, (4, 40)))
    sets = [_random_variables(model, x, seed=i) for i in range(3)]
    stacked = jax.tree.map(lambda *leaves: np.stack(leaves), *sets)
    assert stacked["params"]["Dense_0"]["kernel"].shape == (3, 40, 16)
    out = jax.jit(jax.vmap(model.apply, in_axes=(0, None)))(stacked, x)
    assert out.shape == (3, 4, 10)
    for i in range(3):
        assert_allclose(out[i], _np_mlp(sets[i]["params"], x), rtol=1e-5, atol=1e-5)
    assert not np.allclose(out[0], out[1])
