"""jopt.checkpoint: exact orbax round trips of train states, step directories, errors."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from jopt import checkpoint
from jopt.train import TrainState, create_train_state, train_step


class BNMLP(nn.Module):
    @nn.compact
    def __call__(self, x, *, train=False):
        x = nn.BatchNorm(use_running_average=not train)(nn.Dense(8)(x))
        return nn.Dense(3)(nn.relu(x))


TX = optax.chain(optax.clip_by_global_norm(1.0), optax.adam(1e-2))
init = jax.jit(lambda x, key: create_train_state(BNMLP(), TX, x, key))


@pytest.fixture(scope="module")
def state():
    """A TrainState after two Adam steps: params, opt state (counts, moments), batch stats."""
    x = jax.random.normal(jax.random.PRNGKey(0), (16, 4))
    y = jnp.arange(16) % 3
    state = init(x, jax.random.PRNGKey(1))
    step = jax.jit(train_step)
    for _ in range(2):
        state, _ = step(state, (x, y), jax.random.PRNGKey(2))
    return state


def assert_trees_equal(a, b):
    assert jax.tree.structure(a) == jax.tree.structure(b)
    for u, v in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
        assert np.asarray(u).dtype == np.asarray(v).dtype
        np.testing.assert_array_equal(u, v)


def test_round_trip_of_a_train_state_is_exact(state, tmp_path):
    path = checkpoint.save(tmp_path / "ckpt", state)
    assert path == str(tmp_path / "ckpt")
    blank = init(jnp.zeros((16, 4)), jax.random.PRNGKey(9))
    restored = checkpoint.restore(path, like=blank)
    assert isinstance(restored, TrainState)
    assert restored.apply_fn == state.apply_fn and restored.tx is state.tx
    assert int(restored.step) == 2 and int(restored.opt_state[1][0].count) == 2
    assert_trees_equal(restored, state)
    # overwriting is allowed; the raw tree (like=None) holds the same arrays
    checkpoint.save(path, state.replace(step=state.step + 1))
    raw = checkpoint.restore(path)
    assert int(raw["step"]) == 3
    np.testing.assert_array_equal(
        raw["params"]["Dense_0"]["kernel"], state.params["Dense_0"]["kernel"]
    )


def test_step_directories_latest_and_keep(tmp_path):
    assert checkpoint.latest_step(tmp_path / "none") is None
    for step in (5, 10, 15):
        checkpoint.save(tmp_path, {"w": jnp.full(3, step, jnp.float32)}, step=step, keep=2)
    (tmp_path / "20.orbax-checkpoint-tmp-123").mkdir()  # an unfinished save is ignored
    assert checkpoint.all_steps(tmp_path) == [10, 15]
    assert checkpoint.latest_step(tmp_path) == 15
    restored = checkpoint.restore(tmp_path, like={"w": jnp.zeros(3)}, step=10)
    np.testing.assert_array_equal(restored["w"], [10.0, 10.0, 10.0])
    with pytest.raises(FileNotFoundError, match="no checkpoint at"):
        checkpoint.restore(tmp_path, like={"w": jnp.zeros(3)}, step=5)
