"""jopt.sweep.engine: every model in every strategy equals its single runs; programs by content.

The matrix: each ``jopt.models`` model x {``sweep.run`` with 3 seeds chunked over the devices,
successive halving, PBT, TPE, ``cross_validate``} (the LSTM in ``sweep.run`` only: the GRU
stands for it in the others); member i of each must equal one ``jax.jit`` run of member i.
Tolerance: ``rtol=2e-5, atol=2e-6`` on losses (a vmapped batch of runs and a single run may
round a matmul differently; a wrong member differs by far more).
"""

import functools
import gc

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jopt
from jopt import search, sweep
from jopt.sweep import engine

TOLERANCE = {"rtol": 2e-5, "atol": 2e-6}
LRS = [0.05, 0.1, 0.2, 0.5]


def _data() -> jopt.data.Dataset:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(64, 16)).astype(np.float32)
    y = x[:, :4].argmax(1).astype(np.int32)
    return jopt.data.Dataset(x[:48], y[:48], x[48:], y[48:])


DATA = _data()
M = jopt.models
MODELS = {
    "linear": M.Linear(num_classes=4),
    "mlp": M.MLP(hidden=(8,), num_classes=4),
    "mlp_bn_dropout": M.MLP(hidden=(8, 8), num_classes=4, batch_norm=True, dropout=0.2),
    "cnn_1d": M.CNN(features=(4, 4), kernel_sizes=(3, 3), num_classes=4),
    "cnn_2d": M.CNN(features=(4,), kernel_sizes=(3,), ndim=2, image_shape=(4, 4), num_classes=4),
    "gru": M.GRU(hidden=4, num_classes=4),
    "lstm": M.LSTM(hidden=4, num_classes=4),
    "transformer": M.Transformer(num_layers=1, d_model=8, num_heads=2, mlp_dim=8, num_classes=4),
}
FIT = {"batch_size": 8, "progress": False}


def make_trial(model, data=DATA, steps=4):
    def trial(hp, key):
        tx = jopt.momentum(hp["learning_rate"], beta=0.9)
        _, history = jopt.train.fit(model, tx, data, steps=steps, key=key, eval_every=steps, **FIT)
        return {"loss": history["loss"][-1], "val_loss": history["val_loss"][-1]}

    return trial


@functools.partial(jax.jit, static_argnames=("model",))
def single_fit(model, lr, key):
    """One uninterrupted 6-step fit of one configuration, evaluated after steps 2, 4 and 6:
    what every strategy's member must equal (the first 2 steps of a longer run are a 2-step
    run: batches and keys do not depend on the length)."""
    tx = jopt.momentum(lr, beta=0.9)
    return jopt.train.fit(model, tx, DATA, steps=6, key=key, eval_every=2, **FIT)[1]


@functools.partial(jax.jit, static_argnames=("model",))
def single_fold(model, fold, hp, key):
    return make_trial(model, fold)(hp, key)


@pytest.mark.parametrize("name", list(MODELS))
def test_every_model_in_every_strategy_equals_its_single_runs(name):
    model = MODELS[name]
    trial = make_trial(model)
    single = jax.jit(trial)

    # sweep.run: 4 configs x 3 seeds, chunks of 2 over the devices
    result = sweep.run(trial, sweep.grid(learning_rate=LRS), seeds=3, chunk_size=2, progress=False)
    assert result.metrics["val_loss"].shape == (4, 3)
    for c, lr in enumerate(LRS):
        for s in range(3):
            expected = single({"learning_rate": jnp.float32(lr)}, jax.random.PRNGKey(s))
            for metric in ("loss", "val_loss"):
                np.testing.assert_allclose(
                    result.metrics[metric][c, s], expected[metric], **TOLERANCE
                )

    if name == "lstm":
        # the LSTM differs from the GRU only inside its recurrent cell, which no strategy sees
        # (to the engine both are the same (params, apply)): the other strategies run once, on
        # the GRU, which saves half a minute of compiling
        return

    # tpe: 2 batches of 2 trials, 3 seeds (the same shapes as the sweep: its program is reused)
    out = search.tpe(
        trial,
        {"learning_rate": sweep.LogUniform(0.01, 0.5)},
        n_trials=4,
        batch_size=2,
        metric="val_loss",
        mode="min",
        seeds=3,
        progress=False,
    )
    assert all(all(b["cached_program"]) for b in out.result.info["batches"])
    for c, config in enumerate(out.result.configs):
        for s in range(3):
            hp = {"learning_rate": jnp.float32(config["learning_rate"])}
            expected = single(hp, jax.random.PRNGKey(s))["val_loss"]
            np.testing.assert_allclose(out.result.metrics["val_loss"][c, s], expected, **TOLERANCE)

    # cross_validate: 2 folds, 2 seeds; fold f of config c equals a run on fold f's data
    cv = search.cross_validate(
        lambda fold: make_trial(model, fold),
        DATA,
        sweep.grid(learning_rate=LRS[:2]),
        k=2,
        seeds=2,
        progress=False,
    )
    folds = jopt.data.kfold(DATA, 2, 0)
    for f in range(2):
        fold = jax.tree.map(lambda x: x[f], folds)
        for c, lr in enumerate(LRS[:2]):
            hp = {"learning_rate": jnp.float32(lr)}
            expected = single_fold(model, fold, hp, jax.random.PRNGKey(1))
            np.testing.assert_allclose(
                cv.metrics["val_loss"][c, 1, f], expected["val_loss"], **TOLERANCE
            )

    resumable = search.fit_trial(model, jopt.momentum(0.0, beta=0.9), DATA, batch_size=8)

    # successive halving: 3 configs at 2 steps, the survivor continues to 6 steps
    halving = search.successive_halving(
        resumable,
        sweep.grid(learning_rate=LRS[1:]),
        min_steps=2,
        eta=3,
        metric="val_loss",
        mode="min",
        seed=1,
        progress=False,
    )
    first = halving.history[0]
    for row, c in enumerate(first["configs"]):
        expected = single_fit(model, LRS[1 + c], jax.random.PRNGKey(1))["val_loss"][0]
        np.testing.assert_allclose(first["values"][row], expected, **TOLERANCE)
    survivor = halving.best_index
    expected = single_fit(model, LRS[1 + survivor], jax.random.PRNGKey(1))["val_loss"][-1]
    np.testing.assert_allclose(halving.best_value, expected, **TOLERANCE)

    # PBT: 2 members; the first round is each member's own 2-step run (all with key 0)
    members = [0.1, 0.5]
    population = search.pbt(
        resumable,
        [{"learning_rate": lr} for lr in members],
        rounds=2,
        ready_every=2,
        metric="val_loss",
        mode="min",
        fraction=0.5,
        key=1,
    )
    for i, lr in enumerate(members):
        expected = single_fit(model, lr, jax.random.PRNGKey(1))["val_loss"][0]
        np.testing.assert_allclose(population.history["metric"][0, i], expected, **TOLERANCE)


def test_conv_net_sweep_with_several_seeds_runs():
    """A conv net in sweep.run with seeds >= 2 (JAX's conv batching rule used to raise)."""
    data = jopt.data.digits()
    model = jopt.models.CNN(features=(4,), kernel_sizes=(3,), ndim=2, image_shape=(8, 8))

    def trial(hp, key):
        _, history = jopt.train.fit(
            model, jopt.sgd(hp["learning_rate"]), data, steps=12, batch_size=16, key=key,
            progress=False,
        )  # fmt: skip
        return {"loss": history["loss"][-1]}

    result = sweep.run(trial, sweep.grid(learning_rate=[0.01, 0.1]), seeds=2, progress=False)
    expected = jax.jit(trial)({"learning_rate": jnp.float32(0.1)}, jax.random.PRNGKey(1))
    np.testing.assert_allclose(result.metrics["loss"][1, 1], expected["loss"], **TOLERANCE)


# --- programs keyed by content ------------------------------------------------------------------


def test_a_new_trial_at_a_reused_address_never_gets_the_old_program():
    """Trials made and dropped in a loop often reuse an address: each must run its own code."""
    for scale in range(1, 6):
        trial = search.Resumable(
            lambda hp, key: jnp.float32(1.0),
            lambda x, hp, steps, scale=scale: (x * scale, {"value": x * scale}),
        )
        population = engine.Population(
            trial, [{"lr": 0.1}, {"lr": 0.2}], jnp.zeros((2, 2), jnp.uint32)
        )
        np.testing.assert_array_equal(population.advance([0, 1], 1)["value"], [scale, scale])
        del trial, population
        gc.collect()


def test_the_program_cache_is_bounded_and_shared_by_equal_content():
    engine.PROGRAMS.clear()
    make = lambda c: lambda hp, key: {"y": hp["x"] * c}
    first = sweep.run(make(2.0), sweep.grid(x=[1.0, 2.0]), progress=False)
    second = sweep.run(make(2.0), sweep.grid(x=[3.0, 4.0]), progress=False)  # a new object
    assert second.info["groups"][0]["cached_program"]
    third = sweep.run(make(5.0), sweep.grid(x=[3.0, 4.0]), progress=False)  # new content
    assert not third.info["groups"][0]["cached_program"]
    np.testing.assert_array_equal(first.metrics["y"][:, 0], [2.0, 4.0])
    np.testing.assert_array_equal(third.metrics["y"][:, 0], [15.0, 20.0])
    for c in range(engine.PROGRAMS.size + 5):
        sweep.run(make(float(c)), sweep.grid(x=[1.0]), progress=False)
    assert len(engine.PROGRAMS) == engine.PROGRAMS.size


def test_fingerprint_sees_constants_nested_functions_globals_and_partials():
    x = jax.ShapeDtypeStruct((), jnp.float32)

    def loss(act):
        return lambda v: act(v) ** 2

    base = engine.fingerprint(lambda v: loss(jnp.tanh)(v), x)
    assert base == engine.fingerprint(lambda v: loss(jnp.tanh)(v), x)  # same code, same print
    assert base != engine.fingerprint(lambda v: loss(jax.nn.relu)(v), x)  # nested function

    def scaled(v, factor):
        return v * factor

    assert engine.fingerprint(functools.partial(scaled, factor=2.0), x) != engine.fingerprint(
        functools.partial(scaled, factor=3.0), x
    )
    table = np.arange(3.0)
    reads_table = lambda v: v * jnp.asarray(table)  # a closed-over array: a constant
    before = engine.fingerprint(reads_table, x)
    table[1] = 7.0
    assert engine.fingerprint(reads_table, x) != before


# --- spaces the engine must handle --------------------------------------------------------------


def test_a_space_of_static_values_only_runs():
    def trial(hp, key):
        h = hp["activation"](jnp.linspace(-1.0, 1.0, hp["width"]))
        return {"mean": jnp.mean(h) + 0.0 * jax.random.uniform(key)}

    space = sweep.grid(activation=sweep.static([jax.nn.relu, jnp.tanh]), width=sweep.static([3, 5]))
    result = sweep.run(trial, space, seeds=2, progress=False)
    expected = [
        np.mean(act(np.linspace(-1.0, 1.0, w)))
        for act in (lambda v: np.maximum(v, 0), np.tanh)
        for w in (3, 5)
    ]
    np.testing.assert_allclose(result.metrics["mean"], np.repeat(np.c_[expected], 2, 1), atol=1e-6)


def test_a_misspelt_hyperparameter_names_the_space():
    with pytest.raises(KeyError, match=r"'lr'.*learning_rate"):
        sweep.run(lambda hp, key: {"y": hp["lr"]}, sweep.grid(learning_rate=[0.1]), progress=False)


def test_static_groups_with_different_metrics_fail_before_any_compute():
    def trial(hp, key):
        return {"a": hp["x"]} if hp["kind"] == "one" else {"b": hp["x"]}

    space = sweep.grid(kind=sweep.static(["one", "two"]), x=[1.0, 2.0])
    with pytest.raises(ValueError, match="same metrics"):
        sweep.run(trial, space, progress=False)


def test_the_seeds_one_after_another_fallback_gives_the_same_runs(monkeypatch):
    """When JAX cannot batch a trial over seeds and configurations at once, the engine maps
    over seeds instead: the same numbers."""
    trial = make_trial(MODELS["cnn_1d"])
    space = sweep.grid(learning_rate=LRS[:2])
    both = sweep.run(trial, space, seeds=2, progress=False)
    batched = engine._batched

    def seeds_outside_fails(traced, seeds_outside=True):
        if seeds_outside:
            raise NotImplementedError  # what JAX's batching rule raises
        return batched(traced, seeds_outside)

    monkeypatch.setattr(engine, "_batched", seeds_outside_fails)
    engine.PROGRAMS.clear()
    mapped = sweep.run(trial, space, seeds=2, progress=False)
    np.testing.assert_allclose(mapped.metrics["loss"], both.metrics["loss"], **TOLERANCE)
