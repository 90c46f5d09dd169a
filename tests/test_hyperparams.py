"""Reading and editing hyperparameters held in state: chains, wrappers, names, no retracing."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import jopt

PARAMS = {"dense": {"kernel": jnp.ones((3, 2)), "bias": jnp.zeros(2)}, "scale": jnp.ones(2)}


def test_hparams_found_inside_chain_masked_partition_and_multisteps():
    tx = optax.chain(jopt.regularizers.clip_by_global_norm(1.0), jopt.adam(1e-3))
    assert set(jopt.hparams(tx.init(PARAMS))) == {
        "max_norm",
        "learning_rate",
        "b1",
        "b2",
        "eps",
        "eps_root",
    }

    masked = optax.masked(jopt.sgd(0.1), jopt.regularizers.kernels)
    assert jopt.hparams(masked.init(PARAMS)) == {"learning_rate": pytest.approx(0.1)}

    multi = optax.MultiSteps(jopt.momentum(0.1, beta=0.8), every_k_schedule=2)
    values = jopt.hparams(multi.init(PARAMS))
    assert float(values["beta"]) == pytest.approx(0.8)

    labels = {"dense": {"kernel": "decay", "bias": "plain"}, "scale": "plain"}
    part = optax.partition({"decay": jopt.adamw(1e-3), "plain": jopt.adam(1e-2)}, labels)
    values = jopt.hparams(part.init(PARAMS))
    # learning_rate occurs twice, so both are qualified by their partition label.
    assert float(values["decay/learning_rate"]) == pytest.approx(1e-3)
    assert float(values["plain/learning_rate"]) == pytest.approx(1e-2)
    assert float(values["weight_decay"]) == pytest.approx(1e-4)  # unique: stays bare


def test_shared_names_in_a_chain_are_qualified_by_position_or_name():
    tx = optax.chain(jopt.regularizers.l1(1e-4), jopt.regularizers.l2(1e-3), jopt.sgd(0.1))
    state = tx.init(PARAMS)
    values = jopt.hparams(state)
    assert set(values) == {"0/strength", "1/strength", "learning_rate"}
    with pytest.raises(ValueError, match=r"ambiguous.*0/strength"):
        jopt.set_hparams(state, strength=0.5)
    state = jopt.set_hparams(state, **{"1/strength": 0.5})
    assert float(jopt.hparams(state)["1/strength"]) == 0.5
    assert float(jopt.hparams(state)["0/strength"]) == pytest.approx(1e-4)

    named = optax.chain(
        jopt.regularizers.l1(1e-4, name="sparse"), jopt.regularizers.l2(1e-3, name="ridge")
    )
    assert set(jopt.hparams(named.init(PARAMS))) == {"sparse/strength", "ridge/strength"}
    # Qualified keys work even for unique names.
    qualified = jopt.hparams(jopt.sgd(0.1).init(PARAMS), qualified=True)
    assert set(qualified) == {"sgd/learning_rate"}


def test_unknown_name_lists_the_known_ones():
    state = jopt.adam(1e-3).init(PARAMS)
    with pytest.raises(ValueError, match=r"unknown hyperparameter 'lr'.*learning_rate"):
        jopt.set_hparams(state, lr=0.1)


def test_set_hparams_changes_the_update_and_keeps_avals():
    tx = jopt.sgd(0.1)
    state = tx.init(PARAMS)
    new = jopt.set_hparams(state, learning_rate=0.01)
    chex.assert_trees_all_equal_shapes_and_dtypes(state, new)
    grads = jax.tree.map(jnp.ones_like, PARAMS)
    updates, _ = tx.update(grads, new, PARAMS)
    chex.assert_trees_all_close(updates, jax.tree.map(lambda g: -0.01 * g, grads))


def test_set_hparams_between_steps_does_not_retrace():
    tx = optax.chain(jopt.regularizers.clip_by_global_norm(10.0), jopt.adam(1e-2))
    traces = []

    @jax.jit
    def step(params, state):
        traces.append(1)
        grads = jax.tree.map(jnp.ones_like, params)
        updates, state = tx.update(grads, state, params)
        return optax.apply_updates(params, updates), state

    params, state = PARAMS, tx.init(PARAMS)
    for i in range(5):
        state = jopt.set_hparams(state, learning_rate=1e-3 * (i + 1), max_norm=float(i + 1))
        params, state = step(params, state)
    assert len(traces) == 1
    assert float(jopt.hparams(state)["learning_rate"]) == pytest.approx(5e-3)


def test_schedule_value_shows_and_set_pins_while_scale_keeps_the_shape():
    schedule = optax.linear_schedule(1.0, 0.0, 10)
    tx = jopt.sgd(schedule)
    state = tx.init(PARAMS)
    grads = jax.tree.map(jnp.ones_like, PARAMS)
    for _ in range(3):
        _, state = tx.update(grads, state, PARAMS)
    assert float(jopt.hparams(state)["learning_rate"]) == pytest.approx(schedule(2))

    pinned = jopt.set_hparams(state, learning_rate=0.5)
    for _ in range(2):
        updates, pinned = tx.update(grads, pinned, PARAMS)
    chex.assert_trees_all_close(updates, jax.tree.map(lambda g: -0.5 * g, grads))

    scaled = jopt.scale_hparams(state, learning_rate=0.5)
    updates, scaled = tx.update(grads, scaled, PARAMS)  # count 3 -> 0.5 * schedule(3)
    chex.assert_trees_all_close(updates, jax.tree.map(lambda g: -0.5 * schedule(3) * g, grads))


def test_set_hparams_on_a_batched_population():
    lrs = jnp.array([0.1, 0.2, 0.4])
    states = jax.vmap(lambda lr: jopt.sgd(lr).init(PARAMS))(lrs)
    states = jopt.set_hparams(states, learning_rate=jnp.array([1.0, 2.0, 3.0]))
    np.testing.assert_allclose(jopt.hparams(states)["learning_rate"], [1.0, 2.0, 3.0])
    states = jopt.scale_hparams(states, learning_rate=0.5)
    np.testing.assert_allclose(jopt.hparams(states)["learning_rate"], [0.5, 1.0, 1.5])
    with pytest.raises(ValueError, match="shape"):
        jopt.set_hparams(states, learning_rate=jnp.ones(4))
    with pytest.raises(TypeError, match="learning_rate"):
        jopt.set_hparams(states, learning_rate="fast")


def test_hparams_in_a_flax_train_state():
    from flax.training import train_state

    state = train_state.TrainState.create(
        apply_fn=lambda *a: None, params=PARAMS, tx=jopt.lion(1e-4)
    )
    assert float(jopt.hparams(state)["weight_decay"]) == pytest.approx(1e-3)
    state = state.replace(opt_state=jopt.set_hparams(state.opt_state, weight_decay=0.0))
    assert float(jopt.hparams(state)["weight_decay"]) == 0.0


def test_a_sweep_addresses_each_partition_group_by_its_qualified_name():
    """Two groups' learning rates swept independently in one program, against plain optax."""
    params = {"embed": jnp.ones(3), "head": jnp.ones(2)}
    labels = {"embed": "embed", "head": "head"}
    tx = optax.partition({"embed": jopt.sgd(0.0), "head": jopt.momentum(0.0, beta=0.9)}, labels)
    assert {"embed/learning_rate", "head/learning_rate"} <= set(
        jopt.hparams(tx.init(params), qualified=True)
    )

    def train(tx, state):
        def step(carry, _):
            p, s = carry
            g = jax.grad(lambda p: jnp.sum(p["embed"] ** 2) + jnp.sum(p["head"] ** 2))(p)
            u, s = tx.update(g, s, p)
            return (optax.apply_updates(p, u), s), None

        (p, _), _ = jax.lax.scan(step, (params, state), None, length=10)
        return {"embed": jnp.sum(p["embed"] ** 2), "head": jnp.sum(p["head"] ** 2)}

    def trial(hp, key):
        return train(tx, jopt.set_hparams(tx.init(params), **hp))

    space = jopt.sweep.grid(
        **{"embed/learning_rate": [0.0, 0.1], "head/learning_rate": [0.0, 0.05]}
    )
    result = jopt.sweep.run(trial, space, progress=False)
    for c, config in enumerate(space.configs):
        reference = optax.partition(
            {
                "embed": optax.sgd(config["embed/learning_rate"]),
                "head": optax.sgd(config["head/learning_rate"], momentum=0.9),
            },
            labels,
        )
        expected = train(reference, reference.init(params))
        for name in ("embed", "head"):
            np.testing.assert_allclose(result.metrics[name][c, 0], expected[name], rtol=1e-6)
    assert result.metrics["embed"][2, 0] == pytest.approx(3 * 0.8**20, rel=1e-5)  # closed form
