"""Successive halving and Hyperband: survivors continue exactly, top 1/eta survive, budgets."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jopt
from jopt import search


def decay_trial(traces=None):
    """x_{t+1} = x_t (1 - 2 lr): gradient descent on x^2, closed form, cheap."""

    def init(hp, key):
        return {"x": jnp.float32(5.0) + 0.0 * jax.random.uniform(key), "t": jnp.int32(0)}

    def advance(carry, hp, steps):
        if traces is not None:
            traces.append(steps)
        x = carry["x"] * (1 - 2 * hp["lr"]) ** steps
        return {"x": x, "t": carry["t"] + steps}, {"loss": x**2, "t": carry["t"] + steps}

    return search.Resumable(init, advance)


LRS = [0.01, 0.02, 0.05, 0.1, 0.15, 0.2, 0.25, 0.3, 0.35, 0.4, 0.42, 0.45, 0.47, 0.49] + [
    0.5 + 0.1 * i for i in range(13)
]  # 27 configs


def test_exactly_the_top_third_survive_each_rung_and_compute_is_accounted():
    traces = []
    space = jopt.sweep.grid(lr=LRS)
    out = search.successive_halving(
        decay_trial(traces), space, min_steps=1, metric="loss", mode="min", progress=False
    )
    sizes = [len(r["configs"]) for r in out.history]
    assert sizes == [27, 9, 3, 1]
    assert [r["steps"] for r in out.history] == [1, 3, 9, 27]
    for rung in out.history:
        values = np.asarray(rung["values"])
        expected = [rung["configs"][i] for i in np.argsort(values, kind="stable")]
        assert rung["kept"] == expected[: max(len(values) // 3, 1)]
    # 27*1 + 9*2 + 3*6 + 1*18 steps on real configurations
    assert out.compute_steps == 81
    assert out.best == {"lr": 0.5}  # x * 0 ** t: the exact minimizer is in the grid
    assert set(traces) == {1}  # one compiled program: every rung advances in units of 1
    assert len(traces) == 1
    assert out.result.metrics["steps"][:, 0].tolist().count(27) == 1


def test_survivor_equals_one_uninterrupted_fit():
    data = jopt.data.digits()
    model = jopt.models.MLP(hidden=(16,))
    trial = search.fit_trial(model, jopt.momentum(0.0, beta=0.9), data, batch_size=32)
    space = jopt.sweep.grid(learning_rate=[0.003, 0.01, 0.03, 0.1])
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
    # The winner, retrained from scratch in one fit call, ends at the same accuracy.
    _, history = jopt.train.fit(
        model,
        jopt.momentum(out.best["learning_rate"], beta=0.9),
        data,
        steps=steps,
        batch_size=32,
        key=jax.random.PRNGKey(3),
        progress=False,
    )
    assert out.best_value == pytest.approx(float(history["val_accuracy"][-1]), abs=1e-6)


def test_resumed_carry_equals_uninterrupted_params():
    data = jopt.data.digits()
    model = jopt.models.Linear()
    trial = search.fit_trial(model, jopt.sgd(0.0), data, batch_size=50)
    configs = [{"learning_rate": 0.05}, {"learning_rate": 0.2}]
    carry = search.init_population(trial, configs, jnp.stack([jax.random.PRNGKey(1)] * 2))
    for _ in range(3):  # three calls of one compiled program; the epoch ends mid-call
        carry, _ = search.advance_population(trial, carry, configs, 11)
    state, _ = jopt.train.fit(
        model,
        jopt.sgd(0.2),
        data,
        steps=33,
        batch_size=50,
        key=jax.random.PRNGKey(1),
        progress=False,
    )
    chex.assert_trees_all_close(
        jax.tree.map(lambda x: x[1], carry["state"].params), state.params, atol=1e-6
    )


def test_diverged_configs_rank_last():
    space = jopt.sweep.grid(lr=[0.1, 2.0e6, 0.3])
    out = search.successive_halving(
        decay_trial(), space, min_steps=1, eta=2, metric="loss", mode="min", progress=False
    )
    assert out.history[0]["kept"] == [2]
    assert out.result.diverged[1, 0] or np.isfinite(out.result.metrics["loss"][1, 0])


def test_hyperband_brackets_follow_the_paper():
    out = search.hyperband(
        decay_trial(),
        {"lr": jopt.sweep.Uniform(0.0, 0.6)},
        max_steps=27,
        metric="loss",
        mode="min",
        progress=False,
    )
    firsts = [r for r in out.history if r["rung"] == 0]
    assert [r["bracket"] for r in firsts] == [3, 2, 1, 0]
    assert [len(r["configs"]) for r in firsts] == [27, 12, 6, 4]  # n_s = ceil(4 * 3^s / (s+1))
    assert [r["steps"] for r in firsts] == [1, 3, 9, 27]  # r_s = R 3^-s
    assert len(out.result) == 27 + 12 + 6 + 4
    assert out.best_value < 1e-3
    assert out.result.configs[out.best_index] == out.best
    assert out.result.metrics["loss"][out.best_index, 0] == pytest.approx(out.best_value)


def test_hyperband_min_steps_sets_the_smallest_rung():
    # R = 54, r_min = 2: s_max = floor(log3 27) = 3, brackets start at 2, 6, 18, 54 steps
    out = search.hyperband(
        decay_trial(),
        {"lr": jopt.sweep.Uniform(0.0, 0.6)},
        max_steps=54,
        min_steps=2,
        width=4,
        metric="loss",
        mode="min",
        progress=False,
    )
    firsts = [r for r in out.history if r["rung"] == 0]
    assert [r["steps"] for r in firsts] == [2, 6, 18, 54]
    assert [len(r["configs"]) for r in firsts] == [27, 12, 6, 4]
    assert out.result.info["min_steps"] == 2
    assert min(r["steps"] for r in out.history) == 2
    assert out.result.configs[out.best_index] == out.best


@pytest.mark.parametrize(
    "call,word",
    [
        (
            lambda t, s: search.successive_halving(
                t, s, min_steps=1, metric="loss", eta=1, mode="max"
            ),
            "eta",
        ),
        (
            lambda t, s: search.successive_halving(t, s, min_steps=0, metric="loss", mode="max"),
            "min_steps",
        ),
        (
            lambda t, s: search.successive_halving(
                t, s, min_steps=9, max_steps=3, metric="loss", mode="max"
            ),
            "does not fit",
        ),
        (
            lambda t, s: search.successive_halving(t, [], min_steps=1, metric="loss", mode="max"),
            "empty",
        ),
        (
            lambda t, s: search.hyperband(
                t, {"lr": jopt.sweep.Uniform(0, 1)}, max_steps=10, metric="loss", mode="max"
            ),
            "multiple",
        ),
        (
            lambda t, s: search.hyperband(
                t,
                {"lr": jopt.sweep.Uniform(0, 1)},
                max_steps=3,
                min_steps=9,
                metric="loss",
                mode="max",
            ),
            "min_steps",
        ),
        (
            lambda t, s: search.successive_halving(
                t, s, min_steps=1, metric="acc", progress=False, mode="max"
            ),
            "unknown metric",
        ),
    ],
)
def test_bad_arguments(call, word):
    with pytest.raises(ValueError, match=word):
        call(decay_trial(), jopt.sweep.grid(lr=[0.1, 0.2, 0.3]))
