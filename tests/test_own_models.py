"""fit, evaluate, sweeps and searches with every kind of model: linen, NNX, Functional."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx, struct

import jopt
from jopt import search, train
from jopt.train import create_train_state, evaluate, fit, train_step

DATA = jopt.data.digits()
KEY = jax.random.PRNGKey(0)
HIDDEN = 32


class NNXMLP(nnx.Module):
    """64 -> HIDDEN -> 10 with ReLU, optionally batch norm and dropout after the hidden layer."""

    def __init__(self, *, rngs, batch_norm=False, dropout=0.0):
        self.hidden = nnx.Linear(64, HIDDEN, rngs=rngs)
        self.norm = nnx.BatchNorm(HIDDEN, momentum=0.5, rngs=rngs) if batch_norm else None
        self.dropout = nnx.Dropout(dropout, rngs=rngs) if dropout else None
        self.out = nnx.Linear(HIDDEN, 10, rngs=rngs)

    def __call__(self, x):
        h = self.hidden(x)
        if self.norm is not None:
            h = self.norm(h)
        h = nnx.relu(h)
        if self.dropout is not None:
            h = self.dropout(h)
        return self.out(h)


def _functional_init(key, x):
    sizes = [(x.shape[-1], HIDDEN), (HIDDEN, 10)]
    keys = jax.random.split(key, 2 * len(sizes))
    params = []
    for i, (fan_in, fan_out) in enumerate(sizes):
        bound = 1.0 / np.sqrt(fan_in)
        w = jax.random.uniform(keys[2 * i], (fan_in, fan_out), minval=-bound, maxval=bound)
        b = jax.random.uniform(keys[2 * i + 1], (fan_out,), minval=-bound, maxval=bound)
        params.append({"w": w, "b": b})
    return params


def _functional_apply(params, x, *, train=False, key=None):
    del train, key  # no dropout
    h = jax.nn.relu(x @ params[0]["w"] + params[0]["b"])
    return h @ params[1]["w"] + params[1]["b"]


LINEN = jopt.models.MLP(hidden=(HIDDEN,), residual=False)
NNX_INSTANCE = NNXMLP(rngs=nnx.Rngs(0))
NNX_BUILD = lambda rngs: NNXMLP(rngs=rngs)
FUNCTIONAL = jopt.models.Functional(_functional_init, _functional_apply)
KINDS = {
    "linen": LINEN,
    "nnx_instance": NNX_INSTANCE,
    "nnx_callable": NNX_BUILD,
    "functional": FUNCTIONAL,
}


@pytest.mark.parametrize("kind", KINDS)
def test_each_kind_learns_digits(kind):
    state, history = fit(
        KINDS[kind], jopt.adam(1e-2), DATA, steps=300, batch_size=64, key=KEY, progress=False
    )
    assert history["val_accuracy"][-1] > 0.85
    assert int(state.step) == 300
    # evaluate on the returned state reproduces the history's last evaluation
    metrics = jax.jit(evaluate)(state, DATA.x_test, DATA.y_test)
    assert float(metrics["accuracy"]) == float(history["val_accuracy"][-1])


def test_nnx_instance_gives_its_own_params_for_every_key_and_is_left_alone():
    before = jax.tree.map(np.asarray, nnx.to_pure_dict(nnx.state(NNX_INSTANCE, nnx.Param)))
    states = [
        create_train_state(NNX_INSTANCE, jopt.adam(1e-2), DATA.x_train[:1], k) for k in (0, 1)
    ]
    for state in states:
        jax.tree.map(np.testing.assert_array_equal, state.params, before)
    fit(NNX_INSTANCE, jopt.adam(1e-2), DATA, steps=20, batch_size=64, key=KEY, progress=False)
    after = nnx.to_pure_dict(nnx.state(NNX_INSTANCE, nnx.Param))
    jax.tree.map(np.testing.assert_array_equal, after, before)  # fit is pure


def test_nnx_instances_of_one_architecture_keep_their_own_params():
    tx = jopt.adam(1e-2)
    run = dict(steps=20, batch_size=64, key=KEY, progress=False)
    _, first = fit(NNX_INSTANCE, tx, DATA, **run)
    compiled = train.run._cache_size()
    _, again = fit(NNX_INSTANCE, tx, DATA, **run)
    assert train.run._cache_size() == compiled  # the same module reuses its compiled run
    np.testing.assert_array_equal(again["train_loss"], first["train_loss"])
    # another module of the same graph: its own parameters, not the compiled ones
    _, other = fit(NNXMLP(rngs=nnx.Rngs(1)), tx, DATA, **run)
    assert abs(float(other["train_loss"][-1]) - float(first["train_loss"][-1])) > 1e-4


def test_nnx_callable_initializes_from_each_key():
    init = lambda k: create_train_state(NNX_BUILD, jopt.adam(1e-2), DATA.x_train[:1], k)
    a, b, again = (
        init(jax.random.PRNGKey(0)),
        init(jax.random.PRNGKey(1)),
        init(jax.random.PRNGKey(0)),
    )
    assert not np.allclose(a.params["hidden"]["kernel"], b.params["hidden"]["kernel"])
    jax.tree.map(np.testing.assert_array_equal, a.params, again.params)


def test_nnx_copy_of_a_linen_mlp_gives_the_same_run():
    # fit initializes the linen module from the first of the three keys split from its key;
    # the NNX module gets those parameters copied in.
    init_key = jax.random.split(KEY, 3)[0]
    params = create_train_state(LINEN, jopt.adam(1e-2), DATA.x_train[:1], init_key).params
    model = NNXMLP(rngs=nnx.Rngs(0))
    model.hidden.kernel[...] = params["Dense_0"]["kernel"]
    model.hidden.bias[...] = params["Dense_0"]["bias"]
    model.out.kernel[...] = params["Dense_1"]["kernel"]
    model.out.bias[...] = params["Dense_1"]["bias"]
    run = dict(steps=50, batch_size=32, key=KEY, eval_every=1, progress=False)
    linen_state, linen = fit(LINEN, jopt.adam(1e-2), DATA, **run)
    state, ours = fit(model, jopt.adam(1e-2), DATA, **run)
    assert linen["loss"].shape == (50,)
    np.testing.assert_allclose(ours["loss"], linen["loss"], atol=1e-6, rtol=0)
    np.testing.assert_allclose(ours["val_loss"], linen["val_loss"], atol=1e-6, rtol=0)
    np.testing.assert_allclose(
        state.params["out"]["kernel"], linen_state.params["Dense_1"]["kernel"], atol=1e-5
    )
    assert linen["loss"][-1] < 0.5 * linen["loss"][0]  # it did train


def test_nnx_batch_norm_and_dropout_train_and_evaluate():
    build = lambda rngs: NNXMLP(rngs=rngs, batch_norm=True, dropout=0.3)
    state, history = fit(
        build, jopt.adam(1e-2), DATA, steps=300, batch_size=64, key=KEY, progress=False
    )
    assert history["val_accuracy"][-1] > 0.85
    mean = state.batch_stats["norm"]["mean"]
    assert np.abs(mean).min() > 1e-3  # the running statistics moved from their zeros
    # eval mode: running statistics, no dropout; deterministic
    first = jax.jit(evaluate)(state, DATA.x_test, DATA.y_test)
    second = jax.jit(evaluate)(state, DATA.x_test, DATA.y_test)
    assert float(first["loss"]) == float(second["loss"])
    np.testing.assert_allclose(first["loss"], history["val_loss"][-1], rtol=1e-6)
    # eval normalizes with the running statistics: changing them changes the outputs
    shifted = state.replace(
        batch_stats={
            **state.batch_stats,
            "norm": jax.tree.map(lambda s: s + 1.0, state.batch_stats["norm"]),
        }
    )
    assert abs(evaluate(shifted, DATA.x_test, DATA.y_test)["loss"] - first["loss"]) > 1e-3
    # train mode: dropout draws from the step's key, batch norm moves towards the batch mean
    x, y = DATA.x_train[:64], DATA.y_train[:64]
    step = jax.jit(train_step)
    one, m1 = step(state, (x, y), jax.random.PRNGKey(1))
    _, m2 = step(state, (x, y), jax.random.PRNGKey(2))
    _, m1_again = step(state, (x, y), jax.random.PRNGKey(1))
    assert float(m1["loss"]) != float(m2["loss"])
    assert float(m1["loss"]) == float(m1_again["loss"])
    hidden = x @ state.params["hidden"]["kernel"] + state.params["hidden"]["bias"]
    expected = 0.5 * mean + 0.5 * hidden.mean(0)
    np.testing.assert_allclose(one.batch_stats["norm"]["mean"], expected, atol=1e-5)


def test_nnx_checkpointed_run_resumes_bit_identical(tmp_path):
    build = lambda rngs: NNXMLP(rngs=rngs, batch_norm=True, dropout=0.3)
    tx = jopt.adam(1e-2)
    run = dict(batch_size=32, key=KEY, eval_every=20, progress=False)
    _, whole = fit(build, tx, DATA, steps=60, **run)
    fit(build, tx, DATA, steps=40, checkpoint_dir=tmp_path, **run)  # stopped at step 40
    state, resumed = fit(build, tx, DATA, steps=60, checkpoint_dir=tmp_path, **run)
    assert int(state.step) == 60
    for name, values in whole.items():
        np.testing.assert_array_equal(resumed[name], values)
    # the RNG streams are held as raw key data, as checkpoints store them
    assert state.batch_stats["dropout"]["rngs"]["key"].dtype == jnp.uint32


def test_nnx_module_taking_rngs_gets_the_step_key():
    class TakesRngs(nnx.Module):
        def __init__(self, rngs):
            self.linear = nnx.Linear(64, 10, rngs=rngs)
            self.dropout = nnx.Dropout(0.5)  # no stream of its own: the call brings one

        def __call__(self, x, *, rngs=None):
            return self.linear(self.dropout(x, rngs=rngs))

    state = create_train_state(TakesRngs(nnx.Rngs(0)), jopt.sgd(0.1), DATA.x_train[:1], KEY)
    batch = (DATA.x_train[:64], DATA.y_train[:64])
    losses = [float(train_step(state, batch, jax.random.PRNGKey(k))[1]["loss"]) for k in (1, 2, 1)]
    assert losses[0] != losses[1] and losses[0] == losses[2]
    evals = [float(evaluate(state, *batch)["loss"]) for _ in range(2)]
    assert evals[0] == evals[1]


def test_not_a_model_is_a_clear_type_error():
    with pytest.raises(
        TypeError, match=r"model must be .*got a function that does not return an nnx\.Module"
    ):
        fit(lambda rngs: 3, jopt.adam(1e-2), DATA, steps=10, batch_size=8, key=KEY)
    with pytest.raises(TypeError, match=r"Functional\.apply must be callable"):
        jopt.models.Functional(_functional_init, None)


# ------------------------------------------------------------------------------ sweeps


def _trial(model):
    def trial(hp, key):
        tx = jopt.adam(hp["learning_rate"])
        _, history = fit(model, tx, DATA, steps=60, batch_size=32, key=key, progress=False)
        # the initial state fit starts from (fit initializes from the first of three keys)
        start = create_train_state(model, tx, DATA.x_train[:1], jax.random.split(key, 3)[0])
        return {
            "val_accuracy": history["val_accuracy"][-1],
            "train_loss": history["train_loss"][-1],
            "initial_loss": evaluate(start, DATA.x_test, DATA.y_test)["loss"],
        }

    return trial


@pytest.mark.parametrize("kind", KINDS)
def test_each_kind_in_a_sweep_equals_single_runs(kind):
    trial = _trial(KINDS[kind])
    space = jopt.sweep.grid(learning_rate=[0.003, 0.01])
    result = jopt.sweep.run(trial, space, seeds=2, devices=jax.devices()[:1], progress=False)
    assert result.metrics["train_loss"].shape == (2, 2)
    single = jax.jit(trial)
    for c, config in enumerate(space.configs):
        for s, seed in enumerate(result.seeds):
            hp = {k: jnp.float32(v) for k, v in config.items()}
            out = single(hp, jax.random.PRNGKey(seed))
            for name, value in out.items():
                np.testing.assert_allclose(result.metrics[name][c, s], value, rtol=2e-5)
    initial = result.metrics["initial_loss"]
    if kind == "nnx_instance":  # its own parameters, whatever the seed
        np.testing.assert_array_equal(initial[:, 0], initial[:, 1])
    else:  # a fresh initialization per seed
        assert np.all(np.abs(initial[:, 0] - initial[:, 1]) > 1e-4)
    assert result.metrics["val_accuracy"].max() > 0.8


# ------------------------------------------------------------------------------ search


@pytest.mark.parametrize("kind", ["nnx_callable", "functional"])
def test_fit_trial_in_successive_halving(kind):
    model = KINDS[kind]
    trial = search.fit_trial(model, jopt.adam(0.0), DATA, batch_size=32)
    space = jopt.sweep.grid(learning_rate=[0.0003, 0.003, 0.01, 0.03])
    out = search.successive_halving(
        trial,
        space,
        min_steps=10,
        eta=2,
        metric="val_accuracy",
        progress=False,
        seed=3,
        mode="max",
    )
    steps = out.history[-1]["steps"]
    assert steps == 40
    assert out.best_value > 0.8
    # the winner, retrained from scratch in one fit call, ends at the same accuracy
    _, history = fit(
        model,
        jopt.adam(out.best["learning_rate"]),
        DATA,
        steps=steps,
        batch_size=32,
        key=jax.random.PRNGKey(3),
        progress=False,
    )
    assert out.best_value == pytest.approx(float(history["val_accuracy"][-1]), abs=1e-6)


@struct.dataclass
class LinearParams:  # a pytree that is not a mapping nor iterable, like an equinox module
    w: jax.Array
    b: jax.Array


def test_a_functional_model_with_non_dict_params_trains():
    # Parameters as any pytree (an equinox module from eqx.partition, a dataclass), not a
    # dict: the optimizer update must not look keys up in the gradients.
    def init(key, x):
        return LinearParams(0.01 * jax.random.normal(key, (x.shape[-1], 10)), jnp.zeros(10))

    def apply(params, x, *, train=False, key=None):
        return x @ params.w + params.b

    state, history = jopt.train.fit(
        jopt.models.Functional(init, apply),
        jopt.adam(1e-2),
        jopt.data.digits(),
        steps=200,
        batch_size=64,
        key=jax.random.PRNGKey(0),
        progress=False,
    )
    assert isinstance(state.params, LinearParams)
    assert history["val_accuracy"][-1] > 0.9
