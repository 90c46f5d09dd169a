"""jopt.from_optax: any optax factory, bit-identical to optax.inject_hyperparams, with its
hyperparameters readable and editable through jopt.hparams / set_hparams / scale_hparams."""

import inspect

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import jopt
from jopt import sweep
from jopt.hyperparams import checks

ALIASES = [
    ("sgd", {"learning_rate": 1e-2, "momentum": 0.9}),
    ("adafactor", {"learning_rate": 5e-3}),
    ("adabelief", {"learning_rate": 1e-2}),
    ("adadelta", {"learning_rate": 0.1}),
    ("adagrad", {"learning_rate": 0.1}),
    ("adam", {"learning_rate": 1e-2}),
    ("adamw", {"learning_rate": 1e-2}),
    ("adamax", {"learning_rate": 1e-2}),
    ("adamaxw", {"learning_rate": 1e-2}),
    ("adan", {"learning_rate": 1e-2}),
    ("amsgrad", {"learning_rate": 1e-2}),
    ("fromage", {"learning_rate": 5e-3}),
    ("lamb", {"learning_rate": 1e-3}),
    ("lars", {"learning_rate": 0.1}),
    ("lion", {"learning_rate": 1e-3, "weight_decay": 1e-4}),
    ("nadam", {"learning_rate": 1e-2}),
    ("nadamw", {"learning_rate": 1e-2}),
    ("noisy_sgd", {"learning_rate": 1e-3, "eta": 1e-4, "key": 0}),
    ("novograd", {"learning_rate": 1e-3}),
    ("optimistic_adam", {"learning_rate": 2e-3}),
    ("optimistic_adam_v2", {"learning_rate": 2e-3}),
    ("optimistic_gradient_descent", {"learning_rate": 2e-3, "alpha": 0.7, "beta": 0.1}),
    ("radam", {"learning_rate": 5e-3}),
    ("rmsprop", {"learning_rate": 5e-3}),
    ("rmsprop", {"learning_rate": 5e-3, "momentum": 0.9}),
    ("rprop", {"learning_rate": 0.1}),
    ("sign_sgd", {"learning_rate": 0.1}),
    ("signum", {"learning_rate": 1e-2}),
    ("sm3", {"learning_rate": 0.1}),
    ("yogi", {"learning_rate": 0.1}),
]
CONTRIB = [
    ("muon", {"learning_rate": 1e-2}),
    ("adopt", {"learning_rate": 1e-2}),
    ("schedule_free_adamw", {"learning_rate": 1e-2}),
    ("prodigy", {"learning_rate": 1.0}),
    ("ademamix", {"learning_rate": 1e-2}),
    ("dadapt_adamw", {"learning_rate": 1.0}),
]
# polyak_sgd needs value= and sophia needs obj_fn= at every update: not a plain 20-step loop.
CASES = [pytest.param(getattr(optax, n), kw, id=n) for n, kw in ALIASES if hasattr(optax, n)] + [
    pytest.param(getattr(optax.contrib, n), kw, id=f"contrib.{n}")
    for n, kw in CONTRIB
    if hasattr(optax.contrib, n)
]

STEPS = 20


def _static_args(factory):
    """The keywords from_optax passes through as static: a callable default that is not a
    schedule (adopt's clip_value_fn, which plain inject_hyperparams would call with its schedule
    state) and integer sizes (adafactor's min_dim_size_to_factor, used in Python control flow)."""
    return [
        k
        for k, p in inspect.signature(factory).parameters.items()
        if (callable(p.default) and not isinstance(p.default, bool)) or type(p.default) is int
    ]


def _run(tx, problem, steps=STEPS):
    params, _, state = jax.jit(lambda: problem.run(tx, steps=steps))()
    return params, state


def _assert_equal(a, b):
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
        np.testing.assert_array_equal(x, y)


@pytest.mark.parametrize(("factory", "kwargs"), CASES)
def test_bit_identical_to_inject_hyperparams(problem, factory, kwargs):
    injected = optax.inject_hyperparams(factory, static_args=_static_args(factory))
    # one compiled program for the three runs (compiling dominates this test's time)
    (ours, state), (theirs, _), (plain, _) = jax.jit(
        lambda: [
            problem.run(tx, steps=STEPS)[::2]
            for tx in (jopt.from_optax(factory, **kwargs), injected(**kwargs), factory(**kwargs))
        ]
    )()
    if factory is optax.fromage:
        # Bit-identical when run alone; inside the suite XLA's CPU reductions of fromage's
        # global norms may differ in the last bit.
        for x, y in zip(jax.tree.leaves(ours), jax.tree.leaves(theirs), strict=True):
            np.testing.assert_allclose(x, y, rtol=1e-6, atol=1e-7)
    else:
        _assert_equal(ours, theirs)
    for x, y in zip(jax.tree.leaves(ours), jax.tree.leaves(plain), strict=True):
        np.testing.assert_allclose(x, y, rtol=1e-4, atol=1e-5)
    assert not np.allclose(ours["dense_0"]["kernel"], problem.params["dense_0"]["kernel"])
    found = jopt.hparams(state)
    np.testing.assert_allclose(found["learning_rate"], kwargs["learning_rate"], rtol=1e-7)


def _float64_run(tx, steps=STEPS):
    """``steps`` updates of a float64 least-squares problem; the final params."""
    keys = jax.random.split(jax.random.PRNGKey(0), 3)
    params = {"w": jax.random.normal(keys[0], (8, 4), jnp.float64), "b": jnp.zeros(4)}
    x = jax.random.normal(keys[1], (32, 8), jnp.float64)
    y = jax.random.normal(keys[2], (32, 4), jnp.float64)

    def step(carry, _):
        params, state = carry
        grads = jax.grad(lambda p: jnp.mean((x @ p["w"] + p["b"] - y) ** 2))(params)
        updates, state = tx.update(grads, state, params)
        return (optax.apply_updates(params, updates), state), None

    (params, _), _ = jax.lax.scan(step, (params, tx.init(params)), length=steps)
    return params


@pytest.mark.parametrize(("factory", "kwargs"), CASES)
def test_equal_to_the_plain_optimizer_in_float64(factory, kwargs):
    # In float32 a hyperparameter held as an array can round differently from the Python
    # float the plain optimizer folds into its constants; in float64 both paths agree.
    with jax.enable_x64(True):
        ours, plain = jax.jit(  # one compiled program for both runs
            lambda: [
                _float64_run(tx) for tx in (jopt.from_optax(factory, **kwargs), factory(**kwargs))
            ]
        )()
        assert {leaf.dtype for leaf in jax.tree.leaves(ours)} == {jnp.dtype(jnp.float64)}
    if factory is optax.adafactor:
        # adafactor's decay schedule computes with a float32 step count: times a Python
        # decay_rate it stays float32, times the state's float64 decay_rate it is float64.
        # The difference is float32 rounding of the plain optimizer, not of ours.
        for x, y in zip(jax.tree.leaves(ours), jax.tree.leaves(plain), strict=True):
            np.testing.assert_allclose(x, y, rtol=1e-6)
    else:
        _assert_equal(ours, plain)


@pytest.mark.parametrize(("factory", "kwargs"), CASES)
def test_sweep_run_over_the_learning_rate_equals_separate_runs(problem, factory, kwargs):
    # Every optimizer of optax's alias tests and the contrib ones: one vmapped sweep.run over
    # the learning rate gives each member's separate run.
    from tests.conftest import mlp_loss

    def trial(hp, key):
        del key
        tx = jopt.from_optax(factory, **{**kwargs, "learning_rate": hp["learning_rate"]})
        params, losses, _ = problem.run(tx, steps=STEPS)
        return {"loss": losses[-1], "final": mlp_loss(params, (problem.xs[0], problem.ys[0]))}

    rates = [kwargs["learning_rate"], 3 * kwargs["learning_rate"]]
    result = sweep.run(trial, sweep.grid(learning_rate=rates), seeds=1, progress=False)
    single = jax.jit(trial)
    for i, lr in enumerate(rates):
        expected = single({"learning_rate": jnp.float32(lr)}, jax.random.PRNGKey(0))
        # batched matmuls (muon's Newton-Schulz, norms) may sum in another order
        np.testing.assert_allclose(result.metrics["final"][i, 0], expected["final"], rtol=2e-5)
        np.testing.assert_allclose(result.metrics["loss"][i, 0], expected["loss"], rtol=2e-5)
    assert not result.diverged.any()
    assert result.metrics["final"][0, 0] != result.metrics["final"][1, 0]


def test_sweep_checks_a_traced_learning_rate(problem):
    def trial(hp, key):
        del key
        tx = jopt.from_optax(optax.adamw, learning_rate=hp["learning_rate"])
        return {"loss": problem.run(tx, steps=2)[1][-1]}

    with pytest.raises(ValueError, match="learning_rate"):
        sweep.run(trial, sweep.grid(learning_rate=[1e-2, -1.0]), progress=False)


def _params():
    return {"w": jnp.array([1.0, -2.0, 3.0])}


def test_plain_inject_hyperparams_state_in_a_chain():
    tx = optax.chain(optax.clip(1.0), optax.inject_hyperparams(optax.adam)(1e-3))
    state = tx.init(_params())
    found = jopt.hparams(state)
    assert sorted(found) == ["b1", "b2", "eps", "eps_root", "learning_rate"]
    np.testing.assert_allclose(found["learning_rate"], 1e-3, rtol=1e-7)
    assert sorted(jopt.hparams(state, qualified=True))[0] == "1/b1"
    new = jopt.set_hparams(state, learning_rate=0.5)
    assert jopt.hparams(new)["learning_rate"] == np.float32(0.5)
    assert new[1].hyperparams["learning_rate"].dtype == state[1].hyperparams["learning_rate"].dtype
    assert new[1].hyperparams["learning_rate"].shape == ()
    # the edit is what the next update uses
    updates, _ = tx.update({"w": jnp.ones(3)}, new)
    np.testing.assert_allclose(updates["w"], -0.5 * jnp.ones(3), rtol=1e-5)
    scaled = jopt.scale_hparams(new, learning_rate=0.1)
    np.testing.assert_allclose(jopt.hparams(scaled)["learning_rate"], 0.05, rtol=1e-6)
    assert checks(state)["b1"].allowed == "in [0, 1)"
    with pytest.raises(ValueError, match="learning_rate"):
        jopt.set_hparams(state, learning_rate=-1.0)
    with pytest.raises(ValueError, match="b2"):
        jopt.set_hparams(state, b2=1.0)


def test_plain_inject_hyperparams_states_in_a_partition():
    tx = optax.partition(
        {
            "a": optax.inject_hyperparams(optax.adam)(1e-3),
            "b": optax.inject_hyperparams(optax.sgd)(0.1),
        },
        {"w": "a", "v": "b"},
    )
    state = tx.init({"w": jnp.ones(2), "v": jnp.ones(2)})
    found = jopt.hparams(state)
    assert "a/learning_rate" in found and "b/learning_rate" in found
    np.testing.assert_allclose(found["b/learning_rate"], 0.1, rtol=1e-7)
    new = jopt.set_hparams(state, **{"b/learning_rate": 0.2})
    np.testing.assert_allclose(jopt.hparams(new)["b/learning_rate"], 0.2, rtol=1e-7)
    np.testing.assert_allclose(jopt.hparams(new)["a/learning_rate"], 1e-3, rtol=1e-7)
    with pytest.raises(ValueError, match="ambiguous"):
        jopt.set_hparams(state, learning_rate=0.2)


def test_set_hparams_does_not_retrace():
    tx = jopt.from_optax(optax.adamw, learning_rate=1e-2)
    traces = []

    @jax.jit
    def step(params, state):
        traces.append(1)
        grads = jax.grad(lambda p: jnp.sum(p["w"] ** 2))(params)
        updates, state = tx.update(grads, state, params)
        return optax.apply_updates(params, updates), state

    params = _params()
    state = tx.init(params)
    params, state = step(params, state)
    state = jopt.set_hparams(state, learning_rate=0.0, weight_decay=0.0)
    frozen, state = step(params, state)
    assert len(traces) == 1
    _assert_equal(frozen, params)  # learning rate 0: nothing moves


def test_construction_checks_ranges():
    with pytest.raises(ValueError, match="learning_rate"):
        jopt.from_optax(optax.adam, learning_rate=-1.0)
    with pytest.raises(ValueError, match="b1"):
        jopt.from_optax(optax.adam, learning_rate=0.1, b1=1.5)
    with pytest.raises(ValueError, match="weight_decay"):
        jopt.from_optax(optax.adamw, learning_rate=0.1, weight_decay=-1e-4)
    with pytest.raises(ValueError, match="learning_rate"):
        jopt.from_optax(optax.adam, learning_rate=optax.linear_schedule(-1.0, 0.0, 10))
    with pytest.raises(TypeError, match="lr"):
        jopt.from_optax(optax.adam, lr=0.1)


def test_static_keywords_pass_through():
    mask = lambda p: jax.tree.map(lambda x: x.ndim > 1, p)
    tx = jopt.from_optax(optax.adamw, learning_rate=0.1, weight_decay=0.5, mask=mask, nesterov=True)
    ref = optax.inject_hyperparams(optax.adamw, static_args=("mask",))(
        learning_rate=0.1, weight_decay=0.5, mask=mask, nesterov=True
    )
    params = {"w": jnp.ones((2, 2)), "b": jnp.ones(2)}
    grads = {"w": jnp.full((2, 2), 0.3), "b": jnp.full(2, 0.3)}
    ours, state = tx.update(grads, tx.init(params), params)
    theirs, _ = ref.update(grads, ref.init(params), params)
    _assert_equal(ours, theirs)
    assert not np.allclose(ours["w"], ours["b"][0])  # decay applied to w only
    assert sorted(jopt.hparams(state)) == [
        "b1",
        "b2",
        "eps",
        "eps_root",
        "learning_rate",
        "weight_decay",
    ]


def test_schedule_learning_rate(problem):
    schedule = optax.linear_schedule(0.1, 0.01, 10)
    tx = jopt.from_optax(optax.adam, learning_rate=schedule)
    ours, state = _run(tx, problem, steps=5)
    theirs, _ = _run(optax.inject_hyperparams(optax.adam)(learning_rate=schedule), problem, 5)
    _assert_equal(ours, theirs)
    # the value used by the latest (5th, count 4) update
    np.testing.assert_allclose(jopt.hparams(state)["learning_rate"], schedule(4), rtol=1e-7)
    # pinned by set_hparams, scaled by scale_hparams
    pinned = jopt.set_hparams(state, learning_rate=0.5)
    _, pinned = tx.update(jax.tree.map(jnp.ones_like, ours), pinned, ours)
    np.testing.assert_allclose(jopt.hparams(pinned)["learning_rate"], 0.5)
    scaled = jopt.scale_hparams(state, learning_rate=0.5)
    _, scaled = tx.update(jax.tree.map(jnp.ones_like, ours), scaled, ours)
    np.testing.assert_allclose(jopt.hparams(scaled)["learning_rate"], 0.5 * schedule(5), rtol=1e-6)
    with pytest.raises(ValueError, match="schedule"):
        jopt.set_hparams(
            optax.inject_hyperparams(optax.adam)(schedule).init(_params()), learning_rate=0.1
        )


@pytest.mark.skipif(not hasattr(optax.contrib, "schedule_free_adamw"), reason="no schedule_free")
def test_schedule_free_eval_params(problem):
    tx = jopt.from_optax(optax.contrib.schedule_free_adamw, learning_rate=1e-2)
    params, state = _run(tx, problem, steps=5)
    ref = optax.inject_hyperparams(optax.contrib.schedule_free_adamw)(learning_rate=1e-2)
    ref_params, ref_state = _run(ref, problem, steps=5)
    # optax reads b1 from the schedule-free state, which inject_hyperparams wraps
    ours = optax.contrib.schedule_free_eval_params(state.inner_state, params)
    theirs = optax.contrib.schedule_free_eval_params(ref_state.inner_state, ref_params)
    _assert_equal(ours, theirs)
    assert not np.allclose(ours["dense_0"]["kernel"], params["dense_0"]["kernel"])


def test_an_integer_count_without_an_integer_default_stays_static(problem):
    # schedule_free_adamw's warmup_steps defaults to None but is annotated Optional[int]: a
    # count the factory builds a schedule from in Python, which a traced value would break.
    kwargs = {"learning_rate": 1e-2, "warmup_steps": 5}
    factory = optax.contrib.schedule_free_adamw
    ours, state = _run(jopt.from_optax(factory, **kwargs), problem)
    injected = optax.inject_hyperparams(factory, static_args=("warmup_steps",))(**kwargs)
    _assert_equal(ours, _run(injected, problem)[0])
    assert "warmup_steps" not in jopt.hparams(state)
