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


# ------------------------------------------------------------------------------ re-saving


def test_a_save_that_dies_while_writing_keeps_the_old_checkpoint(tmp_path, monkeypatch):
    import orbax.checkpoint as ocp

    checkpoint.save(tmp_path, {"w": jnp.zeros(3)}, step=7)

    async def killed(self, *args, **kwargs):
        raise KeyboardInterrupt("killed while writing")

    monkeypatch.setattr(ocp.StandardCheckpointHandler, "async_save", killed)
    with pytest.raises(KeyboardInterrupt):
        checkpoint.save(tmp_path, {"w": jnp.ones(3)}, step=7)
    monkeypatch.undo()
    assert checkpoint.all_steps(tmp_path) == [7]
    restored = checkpoint.restore(tmp_path, like={"w": jnp.zeros(3)}, step=7)
    np.testing.assert_array_equal(restored["w"], [0.0, 0.0, 0.0])


def test_resaving_a_step_survives_a_crash_at_every_rename_and_delete(tmp_path, monkeypatch):
    """Killed before or after any rename or delete of the swap: one whole checkpoint."""
    like = {"w": jnp.zeros(3)}
    real = {"_rename": checkpoint._rename, "_remove": checkpoint._remove}
    calls = []

    def patch(crash_at):
        def wrap(name):
            def op(*args):
                calls.append(name)
                if len(calls) - 1 == crash_at:
                    raise KeyboardInterrupt(f"killed at {name}{args}")
                return real[name](*args)

            return op

        for name in real:
            monkeypatch.setattr(checkpoint, name, wrap(name))

    checkpoint.save(tmp_path, {"w": jnp.full(3, -1.0)}, step=7)
    patch(crash_at=-1)  # count the operations of one re-save
    checkpoint.save(tmp_path, {"w": jnp.full(3, 0.0)}, step=7)
    count = len(calls)
    assert count >= 3  # old -> trash, new -> final, delete trash
    for crash_at in range(count):
        calls.clear()
        patch(crash_at)
        old = float(checkpoint.restore(tmp_path, like=like, step=7)["w"][0])
        with pytest.raises(KeyboardInterrupt):
            checkpoint.save(tmp_path, {"w": jnp.full(3, old + 1)}, step=7)
        monkeypatch.undo()
        assert checkpoint.all_steps(tmp_path) == [7] and checkpoint.latest_step(tmp_path) == 7
        value = float(checkpoint.restore(tmp_path, like=like, step=7)["w"][0])
        assert value in (old, old + 1), (crash_at, old, value)
    # the next save cleans up whatever a crash left behind
    checkpoint.save(tmp_path, {"w": jnp.full(3, 100.0)}, step=7)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["7"]
    np.testing.assert_array_equal(checkpoint.restore(tmp_path, like=like, step=7)["w"], [100.0] * 3)


def test_an_old_checkpoint_left_under_its_trash_name_is_the_step(tmp_path):
    checkpoint.save(tmp_path, {"w": jnp.arange(3.0)}, step=4)
    checkpoint.save(tmp_path, {"w": jnp.ones(3)}, step=7)
    (tmp_path / "7").rename(tmp_path / checkpoint._trash_name("7"))  # killed mid-swap
    assert checkpoint.all_steps(tmp_path) == [4, 7]
    restored = checkpoint.restore(tmp_path, like={"w": jnp.zeros(3)}, step=7)
    np.testing.assert_array_equal(restored["w"], [1.0, 1.0, 1.0])
    # also without steps: a checkpoint directory of its own
    path = checkpoint.save(tmp_path / "single", {"w": jnp.ones(2)})
    os_path = tmp_path / "single"
    os_path.rename(tmp_path / checkpoint._trash_name("single"))
    np.testing.assert_array_equal(checkpoint.restore(path, like={"w": jnp.zeros(2)})["w"], [1, 1])


# ------------------------------------------------------------------------------ finished only


def test_only_finished_checkpoints_count_as_steps(tmp_path):
    for step in (5, 10):
        checkpoint.save(tmp_path, {"w": jnp.ones(2)}, step=step)
    (tmp_path / "7").mkdir()  # e.g. made by hand, or a copy that did not finish
    (tmp_path / "12").mkdir()
    (tmp_path / "12" / "_METADATA").write_text("{}")  # a partial copy of a checkpoint
    assert checkpoint.all_steps(tmp_path) == [5, 10]
    assert checkpoint.latest_step(tmp_path) == 10
    with pytest.raises(FileNotFoundError, match="no finished checkpoint"):
        checkpoint.restore(tmp_path, like={"w": jnp.zeros(2)}, step=7)


# ------------------------------------------------------------------------------ mismatches


def nested(kernel, bias=None):
    tree = {"params": {"dense": {"kernel": kernel}}}
    if bias is not None:
        tree["params"]["dense"]["bias"] = bias
    return tree


def test_restore_refuses_another_dtype(tmp_path):
    path = checkpoint.save(tmp_path / "c", nested(jnp.full((2, 3), 0.7, jnp.float32)))
    with pytest.raises(
        ValueError, match=r"params/dense/kernel: stored float32\[2, 3\], like has int32\[2, 3\]"
    ):
        checkpoint.restore(path, like=nested(jnp.zeros((2, 3), jnp.int32)))
    # the matching like restores the value, not a cast of it
    restored = checkpoint.restore(path, like=nested(jnp.zeros((2, 3), jnp.float32)))
    np.testing.assert_allclose(restored["params"]["dense"]["kernel"], 0.7)


def test_restore_refuses_another_shape(tmp_path):
    path = checkpoint.save(tmp_path / "c", nested(jnp.ones((2, 3))))
    with pytest.raises(
        ValueError, match=r"params/dense/kernel: stored float32\[2, 3\], like has float32\[3, 2\]"
    ):
        checkpoint.restore(path, like=nested(jnp.ones((3, 2))))


def test_restore_refuses_another_structure(tmp_path):
    path = checkpoint.save(tmp_path / "c", nested(jnp.ones((2, 3)), bias=jnp.ones(3)))
    with pytest.raises(ValueError, match=r"(?s)only in the checkpoint: params/dense/bias"):
        checkpoint.restore(path, like=nested(jnp.ones((2, 3))))
    with pytest.raises(ValueError, match=r"(?s)only in like: params/dense/scale"):
        like = nested(jnp.ones((2, 3)), bias=jnp.ones(3))
        like["params"]["dense"]["scale"] = jnp.ones(3)
        checkpoint.restore(path, like=like)


def test_restore_names_the_path_inside_a_train_state(state, tmp_path):
    path = checkpoint.save(tmp_path / "c", state)
    blank = init(jnp.zeros((16, 4)), jax.random.PRNGKey(9))
    wrong = blank.replace(params=jax.tree.map(lambda p: p.astype(jnp.bfloat16), blank.params))
    with pytest.raises(ValueError, match=r"params/Dense_0/kernel: stored float32\[4, 8\]"):
        checkpoint.restore(path, like=wrong)
