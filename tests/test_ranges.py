"""Hyperparameter ranges wherever a value is concrete: set/scale_hparams, every sweep and search.

A learning rate that arrives as a tracer (a sweep's space) cannot be checked where the trial
builds its optimizer; the engine records the check while tracing and evaluates it on every
configuration's concrete value before anything runs.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jopt
from jopt import search, sweep

ARGS = {"min_steps": 2, "metric": "val_accuracy", "mode": "max", "progress": False}


def test_set_and_scale_hparams_check_the_new_values():
    state = jopt.momentum(0.1, beta=0.9).init(jnp.zeros(3))
    with pytest.raises(ValueError, match=r"learning_rate must be finite and >= 0.0, got -1.0"):
        jopt.set_hparams(state, learning_rate=-1.0)
    with pytest.raises(ValueError, match=r"beta must be in \[0, 1\), got 1.5"):
        jopt.set_hparams(state, beta=1.5)
    with pytest.raises(ValueError, match=r"beta must be in \[0, 1\)"):
        jopt.scale_hparams(state, beta=2.0)  # 0.9 * 2 leaves the range
    with pytest.raises(ValueError, match="learning_rate"):
        jopt.set_hparams(state, learning_rate=float("nan"))
    edited = jopt.set_hparams(state, beta=0.5, learning_rate=0.0)  # the bounds themselves
    assert float(jopt.hparams(edited)["beta"]) == 0.5
    chained = jopt.adam(1e-3).init(jnp.zeros(3))
    with pytest.raises(ValueError, match="b2"):
        jopt.set_hparams(chained, b2=1.0)


def test_a_batched_state_is_checked_value_by_value():
    states = jax.vmap(lambda lr: jopt.sgd(lr).init(jnp.zeros(2)))(jnp.array([0.1, 0.2, 0.3]))
    with pytest.raises(ValueError, match=r"got \[-0.5\]"):
        jopt.set_hparams(states, learning_rate=jnp.array([0.1, -0.5, 0.2]))


def test_a_sweep_refuses_a_bad_configuration_before_running_anything():
    ran = []

    def trial(hp, key):
        jax.debug.callback(lambda: ran.append(1))
        tx = jopt.momentum(hp["learning_rate"], beta=hp["beta"])
        return {"lr": jopt.hparams(tx.init(jnp.zeros(2)))["learning_rate"]}

    space = sweep.grid(learning_rate=[0.1, -0.1], beta=[0.0, 0.9])
    with pytest.raises(ValueError, match=r"configuration 2 .*learning_rate must be .* got -0.1"):
        sweep.run(trial, space, progress=False)
    bad_beta = sweep.grid(learning_rate=[0.1], beta=[0.5, 1.5])
    with pytest.raises(ValueError, match=r"configuration 1 .*beta must be in \[0, 1\), got 1.5"):
        sweep.run(trial, bad_beta, progress=False)
    assert ran == []  # nothing trained
    good = sweep.run(trial, sweep.grid(learning_rate=[0.1, 0.2], beta=[0.9]), progress=False)
    np.testing.assert_allclose(good.metrics["lr"][:, 0], [0.1, 0.2])


def test_a_derived_value_is_checked_too():
    def trial(hp, key):  # the space holds log10 of the learning rate; 1 - 10**x is the beta
        jopt.momentum(10.0 ** hp["log_lr"], beta=1.0 - 10.0 ** hp["log_one_minus_beta"])
        return {"y": hp["log_lr"]}

    sweep.run(trial, sweep.grid(log_lr=[-2.0], log_one_minus_beta=[-1.0]), progress=False)
    with pytest.raises(ValueError, match="beta must be in"):
        sweep.run(trial, sweep.grid(log_lr=[-2.0], log_one_minus_beta=[0.5]), progress=False)


def test_halving_hyperband_tpe_and_pbt_refuse_bad_values():
    data = jopt.data.digits()
    trial = search.fit_trial(
        jopt.models.Linear(), jopt.momentum(0.0, beta=0.0), data, batch_size=32
    )
    with pytest.raises(ValueError, match=r"configuration 1 .*learning_rate must be"):
        search.successive_halving(trial, sweep.grid(learning_rate=[0.1, -0.1, 0.2]), **ARGS)
    with pytest.raises(ValueError, match=r"beta must be in \[0, 1\)"):
        search.hyperband(
            trial,
            {"learning_rate": sweep.LogUniform(1e-3, 1.0), "beta": sweep.Uniform(1.0, 1.5)},
            max_steps=4,
            min_steps=2,
            eta=2,
            metric="val_accuracy",
            progress=False,
            mode="max",
        )
    with pytest.raises(ValueError, match=r"configuration 0 .*beta must be in"):
        search.pbt(
            trial,
            [{"learning_rate": 0.1, "beta": 1.2}, {"learning_rate": 0.1, "beta": 0.5}],
            rounds=2,
            ready_every=2,
            metric="val_accuracy",
            mode="max",
        )

    def quadratic(hp, key):
        jopt.sgd(hp["learning_rate"])
        return {"score": -(hp["learning_rate"] ** 2)}

    with pytest.raises(ValueError, match="learning_rate must be"):
        search.tpe(
            quadratic,
            {"learning_rate": sweep.Uniform(-1.0, 1.0)},
            n_trials=8,
            batch_size=8,
            metric="score",
            progress=False,
            mode="max",
        )


def test_pbt_explores_inside_the_transform_ranges():
    """beta near 1 doubled by explore would leave [0, 1): it is clipped to the range instead."""
    tx = jopt.momentum(0.0, beta=0.0)

    def init(hp, key):
        w = jnp.full(4, 3.0)
        return {"w": w, "opt": jopt.set_hparams(tx.init(w), **hp)}

    def advance(carry, hp, steps):
        def step(c, _):
            u, opt = tx.update(c["w"], c["opt"])
            return {"w": c["w"] + u, "opt": opt}, None

        carry, _ = jax.lax.scan(step, carry, None, length=steps)
        return carry, {"loss": jnp.sum(carry["w"] ** 2)}

    configs = [{"learning_rate": 0.01 * (i + 1), "beta": 0.9} for i in range(4)]
    out = search.pbt(
        search.Resumable(init, advance),
        configs,
        rounds=6,
        ready_every=3,
        metric="loss",
        mode="min",
        perturb=(2.0,),
        fraction=0.5,
    )
    assert np.all(out.history["beta"] < 1.0) and np.all(out.history["beta"] >= np.float32(0.9))
    assert np.any(out.history["beta"] > 0.9)  # explored, up to the edge
    assert np.all(np.asarray(jopt.hparams(out.carry)["beta"]) < 1.0)
