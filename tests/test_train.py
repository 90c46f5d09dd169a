"""jopt.train: fit against separate runs, a hand-written scan and closed forms; errors;
checkpoint/resume; progress; batch norm and dropout."""

import functools

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from jopt import checkpoint, train
from jopt import data as jdata
from jopt.data import Dataset
from jopt.train import create_train_state, evaluate, fit, train_step


class MLP(nn.Module):
    classes: int = 3

    @nn.compact
    def __call__(self, x, *, train=False):
        x = nn.tanh(nn.Dense(16)(x))
        return nn.Dense(self.classes)(x)


class BNMLP(nn.Module):
    @nn.compact
    def __call__(self, x, *, train=False):
        x = nn.Dense(16)(x)
        x = nn.BatchNorm(use_running_average=not train, momentum=0.5)(x)
        return nn.Dense(3)(nn.relu(x))


class DropoutMLP(nn.Module):
    @nn.compact
    def __call__(self, x, *, train=False):
        x = nn.relu(nn.Dense(32)(x))
        x = nn.Dropout(0.5, deterministic=not train)(x)
        return nn.Dense(3)(x)


def make_data(n_train=96, n_test=48, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n_train + n_test, 8)).astype(np.float32)
    y = ((x[:, 0] > 0).astype(np.int32) + (x[:, 1] > 0.5)).astype(np.int32)
    return Dataset(x[:n_train], y[:n_train], x[n_train:], y[n_train:])


DATA = make_data()
KEY = jax.random.PRNGKey(0)
MODEL = MLP()
TX = optax.sgd(0.1)
RUN = dict(steps=40, batch_size=16, eval_every=20, progress=False)
SEQ = {**RUN, "batch_mode": "sequential"}  # no permutation to compile: faster tests


def leaves_equal(a, b):
    for u, v in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
        np.testing.assert_array_equal(u, v)


@pytest.fixture(scope="module")
def baseline():
    """The reference run: MODEL, TX, DATA, KEY, RUN."""
    return fit(MODEL, TX, DATA, key=KEY, **RUN)


# ------------------------------------------------------------------------------ numbers


def test_history_contents(baseline):
    state, history = baseline
    assert sorted(history) == [
        "loss", "step", "train_accuracy", "train_loss", "val_accuracy", "val_loss"
    ]  # fmt: skip
    np.testing.assert_array_equal(history["step"], [20, 40])
    assert int(state.step) == 40
    final = jax.jit(evaluate)(state, DATA.x_test, DATA.y_test)
    np.testing.assert_allclose(history["val_loss"][-1], final["loss"], rtol=1e-6)
    np.testing.assert_allclose(history["val_accuracy"][-1], final["accuracy"])
    assert history["train_loss"][-1] < history["train_loss"][0]


def test_fit_matches_hand_written_optax_scan(baseline):
    """Same init (init_key) and batches (batch_indices(data_key, t, ...)): equal numbers."""
    init_key, data_key, _ = jax.random.split(KEY, 3)
    state0 = create_train_state(MODEL, TX, DATA.x_train[:1], init_key)

    def loss_fn(params, x, y):
        logits = MODEL.apply({"params": params}, x)
        return optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()

    @jax.jit
    def run(params, opt_state):
        def step(carry, t):
            params, opt_state = carry
            idx = jdata.batch_indices(data_key, t, DATA.n_train, 16)
            x, y = jnp.asarray(DATA.x_train)[idx], jnp.asarray(DATA.y_train)[idx]
            loss, grads = jax.value_and_grad(loss_fn)(params, x, y)
            updates, opt_state = TX.update(grads, opt_state, params)
            return (optax.apply_updates(params, updates), opt_state), loss

        return jax.lax.scan(step, (params, opt_state), jnp.arange(40))

    (params, _), losses = run(state0.params, state0.opt_state)
    state, history = baseline
    leaves_equal(state.params, params)
    np.testing.assert_allclose(history["loss"], losses.reshape(2, 20).mean(1), rtol=1e-6)


def test_gathering_each_step_equals_gathering_each_block(monkeypatch, baseline):
    """Examples too large for a block-wide gather are gathered step by step: same run."""
    monkeypatch.setattr(train.compiled, "_BLOCK_GATHER_BYTES", 0)
    jax.clear_caches()  # the cached program gathers per block
    state, history = fit(MODEL, TX, DATA, key=KEY, **RUN)
    leaves_equal(state.params, baseline[0].params)
    np.testing.assert_array_equal(history["loss"], baseline[1]["loss"])
    jax.clear_caches()


PROGRESS_RUN = dict(
    steps=40, batch_size=16, eval_every=20, batch_mode="sequential", progress_every=10
)


def test_vmap_over_learning_rates_and_keys_equals_separate_runs():
    lrs = jnp.array([0.01, 0.1, 0.5, 1.0])
    keys = jax.random.split(jax.random.PRNGKey(1), 4)
    steps = []  # progress as a callable: under vmap it reports each step once
    report = lambda step, loss: steps.append(step)
    run = lambda lr, k: fit(MODEL, optax.sgd(lr), DATA, key=k, progress=report, **PROGRESS_RUN)[1]
    batched = jax.vmap(run)(lrs, keys)
    assert steps == [10, 20, 30, 40]
    single = jax.jit(run)  # one compilation for the 4 separate runs
    for i in range(4):
        separate = single(lrs[i], keys[i])
        for name in batched:
            np.testing.assert_allclose(batched[name][i], separate[name], atol=1e-5)
    assert len(set(np.asarray(batched["loss"][:, -1]).round(5).tolist())) == 4
    assert steps == [10, 20, 30, 40] * 5


# ------------------------------------------------------------------------------ accumulation


def test_accumulation_closed_form_for_sgd():
    """k micro-batches of b, SGD on a linear least-squares model: one step with k*b."""
    k, b, lr = 3, 4, 0.1
    rng = np.random.default_rng(0)
    x = rng.normal(size=(k * b, 5)).astype(np.float32)
    y = rng.normal(size=(k * b,)).astype(np.float32)
    model = nn.Dense(1)
    tx = optax.MultiSteps(optax.sgd(lr), every_k_schedule=k).gradient_transformation()
    state = create_train_state(model, tx, x[:1], KEY)
    w0, b0 = np.asarray(state.params["kernel"])[:, 0], np.asarray(state.params["bias"])
    step = jax.jit(functools.partial(train_step, loss="mse"))
    for i in range(k):
        before = state.params
        state, _ = step(state, (x[i * b : (i + 1) * b], y[i * b : (i + 1) * b]), KEY)
        if i < k - 1:
            leaves_equal(state.params, before)  # nothing applied mid-accumulation
    residual = x @ w0 + b0 - y  # gradient of mean((x w + b - y)^2) over all k*b examples
    w1 = w0 - lr * 2 * x.T @ residual / (k * b)
    b1 = b0 - lr * 2 * residual.mean()
    np.testing.assert_allclose(state.params["kernel"][:, 0], w1, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(state.params["bias"], b1, rtol=1e-5, atol=1e-6)


def test_fit_accumulate_equals_larger_batch():
    """accumulate=4 with batches of 8 = SGD on batches of 32 (sequential batches)."""
    run = dict(key=KEY, batch_mode="sequential", progress=False)
    small = fit(MODEL, TX, DATA, steps=12, batch_size=8, accumulate=4, **run)[0]
    assert int(small.opt_state.gradient_step) == 3 and int(small.step) == 12
    large = create_train_state(MODEL, TX, DATA.x_train[:1], jax.random.split(KEY, 3)[0])
    step = jax.jit(train_step)
    for i in range(3):
        large, _ = step(large, (DATA.x_train[32 * i :][:32], DATA.y_train[32 * i :][:32]), KEY)
    for u, v in zip(jax.tree.leaves(small.params), jax.tree.leaves(large.params), strict=True):
        np.testing.assert_allclose(u, v, rtol=1e-5, atol=1e-6)


# ------------------------------------------------------------------------------ errors


BAD = [
    (dict(batch_size=0), ValueError, r"batch_size must be in \[1, 96\], got 0"),
    (dict(batch_size=97), ValueError, r"batch_size must be in \[1, 96\], got 97"),
    (dict(steps=0), ValueError, r"steps must be >= 1, got 0"),
    (dict(steps=2.5), TypeError, r"steps must be an int"),
    (dict(eval_every=0), ValueError, r"eval_every must be in \[1, 40\], got 0"),
    (dict(eval_every=41), ValueError, r"eval_every must be in \[1, 40\], got 41"),
    (dict(batch_mode="random"), ValueError, "batch_mode must be one of"),
    (dict(loss="hinge"), ValueError, "loss must be one of"),
    (dict(accumulate=0), ValueError, r"accumulate must be >= 1, got 0"),
    (dict(checkpoint_every=20), ValueError, "checkpoint_every needs a checkpoint_dir"),
    (dict(checkpoint_dir="/tmp/x", checkpoint_every=30), ValueError, "multiple of eval_every"),
    (dict(key=jnp.zeros(3)), TypeError, "key must be a PRNG key"),
    (dict(augment=3), TypeError, "augment must be a callable"),
]


@pytest.mark.parametrize("change, error, match", BAD)
def test_bad_arguments_raise_before_compiling(change, error, match):
    with pytest.raises(error, match=match):
        fit(MODEL, TX, DATA, **{"key": KEY, **RUN, **change})


X, Y = np.asarray(DATA.x_train), np.asarray(DATA.y_train)
BAD_DATA = [
    ((X, Y[:-1], X, Y), "x_train has 96 examples but y_train has 95"),
    ((np.where(X > 2, np.nan, X), Y, X, Y), "x_train holds .* NaN or inf"),
    (
        (X, Y - 1, X, Y),
        r"y_train holds labels in \[-1, 1\] but labels must lie in \[0, num_classes\) = \[0, 3\)",
    ),
    ((X, Y + 5, X, Y), r"outputs shape \(1, 3\) but the labels have num_classes=8"),
]


@pytest.mark.parametrize("data, match", BAD_DATA)
def test_bad_data_raises(data, match):
    with pytest.raises(ValueError, match=match):
        fit(MODEL, TX, data, key=KEY, **RUN)


def test_wrong_loss_and_too_few_outputs():
    regression = jdata.regression(n_train=32, n_test=8, dim=8)
    with pytest.raises(TypeError, match="loss='cross_entropy' needs integer labels"):
        fit(MODEL, TX, regression, key=KEY, loss="cross_entropy", **RUN)
    with pytest.raises(ValueError, match=r"outputs shape \(1, 2\).*num_classes=3"):
        fit(MLP(classes=2), TX, DATA, key=KEY, **RUN)


# ------------------------------------------------------------------------------ checkpoints


def test_checkpoint_resume_is_bit_identical(tmp_path, baseline):
    # a run killed after its checkpoint at step 20, then started again on the same dir
    first = fit(MODEL, TX, DATA, key=KEY, checkpoint_dir=tmp_path, **{**RUN, "steps": 20})
    assert checkpoint.all_steps(tmp_path) == [20]
    resumed = fit(MODEL, TX, DATA, key=KEY, checkpoint_dir=tmp_path, checkpoint_every=20, **RUN)
    assert checkpoint.all_steps(tmp_path) == [20, 40]
    leaves_equal(resumed, baseline)  # state and history, bit for bit
    # a finished run restores and returns without training; another key is refused
    leaves_equal(fit(MODEL, TX, DATA, key=KEY, checkpoint_dir=tmp_path, **RUN), baseline)
    with pytest.raises(ValueError, match="another key"):
        fit(MODEL, TX, DATA, key=jax.random.PRNGKey(5), checkpoint_dir=tmp_path, **RUN)
    with pytest.raises(ValueError, match=r"written with .*'batch_size': 16"):
        fit(MODEL, TX, DATA, key=KEY, checkpoint_dir=tmp_path, **{**RUN, "batch_size": 8})
    # continuing from a state: the step counter, and so the batches, carry on
    state, history = fit(MODEL, TX, DATA, key=KEY, state=first[0], **{**RUN, "steps": 20})
    np.testing.assert_array_equal(history["step"], [40])
    leaves_equal(state, baseline[0])


# ------------------------------------------------------------------------------ progress


def test_one_tqdm_bar_per_run_under_vmap_and_none_without_progress(monkeypatch):
    bars = []

    class FakeBar:
        def __init__(self, total, initial, **kwargs):
            self.total, self.n, self.updates, self.closed = total, initial, [], False
            bars.append(self)

        def update(self, n):
            self.n += n
            self.updates.append((self.n, None))

        def set_postfix(self, loss, **kwargs):
            self.updates[-1] = (self.n, float(loss))

        def close(self):
            self.closed = True

    monkeypatch.setattr(train.progress, "tqdm", FakeBar)
    run = lambda k: fit(MODEL, TX, DATA, key=k, progress=True, **PROGRESS_RUN)
    sweep = jax.jit(jax.vmap(run))
    keys = jax.random.split(KEY, 4)
    _, history = sweep(keys)  # 4 runs, one bar
    assert len(bars) == 1 and bars[0].total == 40 and bars[0].closed
    assert [n for n, _ in bars[0].updates] == [10, 20, 30, 40]  # once, not once per member
    # the loss shown is the mean so far over the interval, of the first member
    np.testing.assert_allclose(bars[0].updates[1][1], history["loss"][0, 0], rtol=1e-3)
    sweep(keys[::-1])  # the compiled program runs again: a new bar
    assert len(bars) == 2 and bars[1].closed and [n for n, _ in bars[1].updates][-1] == 40
    np.testing.assert_allclose(bars[1].updates[-1][1], history["loss"][-1, -1], rtol=1e-3)
    assert all(progress.bar is None for progress in train.progress._PROGRESS.values())  # all closed
    jaxpr = jax.make_jaxpr(lambda k: fit(MODEL, TX, DATA, key=k, **RUN)[1])(KEY)
    assert "debug_callback" not in str(jaxpr)
    assert len(bars) == 2


def test_default_progress_reports_about_20_times_on_whole_blocks():
    # each report costs ~0.3 ms of host callback, so the default keeps them few
    assert train.default_progress_every(20_000, 20_000, 100) == 960  # blocks of 80 steps
    assert train.default_progress_every(1000, 1000, 16) == 100  # a divisor of 500-step blocks
    assert train.default_progress_every(6000, 250, 100) == 300  # fit caps it at eval_every
    steps = []
    fit(MODEL, TX, DATA, key=KEY, steps=400, batch_size=16, progress=lambda s, _: steps.append(s))
    assert steps == [100, 200, 300, 400]


# ------------------------------------------------------------------------------ models


def test_batch_norm_statistics_update_in_train_and_are_used_in_eval():
    state, history = fit(BNMLP(), optax.adam(1e-2), DATA, key=KEY, **SEQ)
    mean = state.batch_stats["BatchNorm_0"]["mean"]
    assert np.abs(mean).min() > 1e-3  # moved away from its initial zeros
    # eval normalizes with the running statistics: changing them changes the outputs
    shifted = state.replace(batch_stats=jax.tree.map(lambda s: s + 1.0, state.batch_stats))
    test_loss = jax.jit(evaluate)(shifted, DATA.x_test, DATA.y_test)["loss"]
    assert abs(test_loss - history["val_loss"][-1]) > 1e-3
    # a train step moves the running mean towards the batch mean (momentum 0.5)
    x = DATA.x_train[:32]
    hidden = x @ state.params["Dense_0"]["kernel"] + state.params["Dense_0"]["bias"]
    after, _ = jax.jit(train_step)(state, (x, DATA.y_train[:32]), KEY)
    expected = 0.5 * mean + 0.5 * hidden.mean(0)
    np.testing.assert_allclose(after.batch_stats["BatchNorm_0"]["mean"], expected, atol=1e-5)
    # and one eval example does not depend on the rest of the eval batch
    apply = jax.jit(lambda state, x: state.apply_fn(state.variables, x, train=False))
    one, many = apply(state, DATA.x_test[:1]), apply(state, DATA.x_test)[:1]
    np.testing.assert_allclose(one, many, rtol=1e-5)


def test_dropout_uses_the_step_key_in_train_only():
    init_key, _, step_key = jax.random.split(KEY, 3)
    state = create_train_state(DropoutMLP(), TX, DATA.x_train[:1], init_key)
    batch = (DATA.x_train, DATA.y_train)
    step = jax.jit(train_step)
    a, b = step(state, batch, KEY)[1], step(state, batch, jax.random.PRNGKey(1))[1]
    assert a["loss"] != b["loss"]
    np.testing.assert_array_equal(a["loss"], step(state, batch, KEY)[1]["loss"])
    full = jax.jit(evaluate)(state, *batch)["loss"]  # no dropout: deterministic
    np.testing.assert_array_equal(full, jax.jit(evaluate)(state, *batch)["loss"])
    # fit folds the dropout key with the step: dropout_key = split(step_key)[1]
    dropout_key = jax.random.split(step_key)[1]
    for t in range(3):
        state, _ = step(state, batch, jax.random.fold_in(dropout_key, t))
    fitted, _ = fit(
        DropoutMLP(),
        TX,
        DATA,
        steps=3,
        batch_size=96,
        key=KEY,
        batch_mode="sequential",
        progress=False,
    )
    for u, v in zip(jax.tree.leaves(fitted.params), jax.tree.leaves(state.params), strict=True):
        np.testing.assert_allclose(u, v, rtol=1e-6, atol=1e-7)


def test_augment_is_applied_to_training_batches():
    seen = []

    def blank(key, x):  # zero inputs: the first layer's kernel gets no gradient
        seen.append(x.shape)
        return 0.0 * jdata.gaussian_noise(key, x, 1.0)

    state, _ = fit(MODEL, TX, DATA, key=KEY, augment=blank, **SEQ)
    assert seen == [(16, 8)]  # traced once, on the minibatch
    init = create_train_state(MODEL, TX, DATA.x_train[:1], jax.random.split(KEY, 3)[0])
    np.testing.assert_array_equal(
        state.params["Dense_0"]["kernel"], init.params["Dense_0"]["kernel"]
    )
    assert not np.array_equal(state.params["Dense_0"]["bias"], init.params["Dense_0"]["bias"])


def test_regression_with_mse_reaches_the_noise_floor():
    data = jdata.regression(n_train=256, n_test=256, dim=4, noise=0.1)
    _, history = fit(
        nn.Dense(1), optax.sgd(0.1), data, key=KEY, **{**SEQ, "steps": 200, "batch_size": 32}
    )
    assert sorted(history) == ["loss", "step", "train_loss", "val_loss"]
    assert float(history["val_loss"][-1]) < 0.02  # noise variance 0.01


def test_accumulate_accepts_optax_float_schedules():
    # piecewise_constant_schedule returns floats: 20 updates of 1 minibatch, 20 of 2, then 4s
    schedule = optax.piecewise_constant_schedule(1, {20: 2, 40: 2})
    from jopt import models, rules

    state, _ = fit(
        models.Linear(), rules.sgd(0.1), jdata.digits(), steps=100, batch_size=32,
        key=jax.random.PRNGKey(0), accumulate=schedule, progress=False,
    )  # fmt: skip
    assert int(state.opt_state.gradient_step) == 20 + 20 + 40 // 4
    assert state.opt_state.mini_step.dtype == jnp.int32


def test_grad_through_fit_with_shuffled_batches_matches_finite_differences():
    # the shuffle's cycle-walking while_loop carries only integers, so reverse mode works
    from jopt import models, rules

    data = jdata.digits()

    def final_loss(lr):
        _, history = fit(
            models.Linear(), rules.sgd(lr), data, steps=30, batch_size=32,
            key=jax.random.PRNGKey(0), progress=False,
        )  # fmt: skip
        return history["train_loss"][-1]

    lr, h = 0.05, 1e-3
    grad = float(jax.grad(final_loss)(lr))
    numeric = float((final_loss(lr + h) - final_loss(lr - h)) / (2 * h))
    assert grad < 0 and grad == pytest.approx(numeric, rel=0.05)


# ------------------------------------------------------------------------------ fit's errors


class ReluMLP(nn.Module):
    """MLP's parameters, another network."""

    classes: int = 3

    @nn.compact
    def __call__(self, x, *, train=False):
        x = nn.relu(nn.Dense(16)(x))
        return nn.Dense(self.classes)(x)


BAD_INPUTS = [
    (
        dict(data=Dataset(X, Y[:, None], X, Y[:, None])),
        ValueError,
        r"y_train has shape \(96, 1\) but integer class labels must have shape \(n,\); "
        r"pass y_train\.reshape\(-1\)",
    ),
    (
        dict(tx="adam"),
        TypeError,
        r"tx must be an optax GradientTransformation \(e\.g\. jopt\.adam\(1e-3\) or "
        r"optax\.adam\(1e-3\)\), got 'adam' \(str\)",
    ),
    (
        dict(data=Dataset(X, Y.astype(np.float32), X, Y.astype(np.float32))),
        TypeError,
        r"y_train holds floats \(float32\) of shape \(96,\) but the model outputs 3 values per "
        r"example: class labels must be integer class indices",
    ),
    (
        dict(data=Dataset(X, Y, X[:, :5], Y)),
        ValueError,
        r"x_test has examples of shape \(5,\) but x_train has \(8,\); they must be equal",
    ),
    (
        dict(data={"x_train": X, "y_train": Y, "x_test": X, "y_test": Y}),
        TypeError,
        r"data must be a jopt\.data\.Dataset.*got a dict.*"
        r"jopt\.data\.Dataset\(x_train, y_train, x_test, y_test\)",
    ),
]


@pytest.mark.parametrize("change, error, match", BAD_INPUTS)
def test_bad_inputs_raise_clear_errors_before_any_compute(change, error, match, monkeypatch):
    def computed(*args, **kwargs):
        raise AssertionError("fit computed before checking its inputs")

    for name in ("init_model", "run", "run_segment"):
        monkeypatch.setattr(train, name, computed)
    args = {"model": MODEL, "tx": TX, "data": DATA, **change}
    with pytest.raises(error, match=match):
        fit(args["model"], args["tx"], args["data"], key=KEY, **RUN)


def test_float_labels_as_regression_targets_of_the_outputs_shape_are_fine():
    # one output per example: float labels are regression targets (mse), as before
    data = Dataset(X, Y.astype(np.float32), X, Y.astype(np.float32))
    _, history = fit(nn.Dense(1), TX, data, key=KEY, **SEQ)
    assert "train_accuracy" not in history


# ------------------------------------------------------------------------------ fingerprints


def test_resume_with_another_learning_rate_is_refused(tmp_path):
    from jopt import rules

    fit(MODEL, rules.adam(0.05), DATA, key=KEY, checkpoint_dir=tmp_path, **{**SEQ, "steps": 20})
    with pytest.raises(ValueError, match=r"learning_rate: 0\.05 -> 0\.001") as error:
        fit(MODEL, rules.adam(0.001), DATA, key=KEY, checkpoint_dir=tmp_path, **SEQ)
    assert "use a new checkpoint_dir or delete" in str(error.value)
    assert checkpoint.all_steps(tmp_path) == [20]  # nothing was trained or written
    # the same optimizer resumes
    fit(MODEL, rules.adam(0.05), DATA, key=KEY, checkpoint_dir=tmp_path, **SEQ)
    assert checkpoint.all_steps(tmp_path) == [20, 40]


def test_resume_with_a_plain_optax_learning_rate_changed_is_refused(tmp_path):
    # optax keeps this learning rate in a closure, not in the state
    fit(MODEL, optax.adam(0.05), DATA, key=KEY, checkpoint_dir=tmp_path, **{**SEQ, "steps": 20})
    with pytest.raises(ValueError, match=r"optimizer: .*outside its state"):
        fit(MODEL, optax.adam(0.001), DATA, key=KEY, checkpoint_dir=tmp_path, **SEQ)


def test_resume_with_another_model_is_refused(tmp_path):
    fit(MODEL, TX, DATA, key=KEY, checkpoint_dir=tmp_path, **{**SEQ, "steps": 20})
    with pytest.raises(ValueError, match=r"(?s)different run.*model: MLP\(.*\) -> ReluMLP\("):
        fit(ReluMLP(), TX, DATA, key=KEY, checkpoint_dir=tmp_path, **SEQ)
    with pytest.raises(
        ValueError, match=r"model parameters: .*Dense_1/kernel \(16, 3\) float32 -> \(16, 4\)"
    ):
        fit(MLP(classes=4), TX, DATA, key=KEY, checkpoint_dir=tmp_path, **SEQ)


def test_resume_with_another_dataset_is_refused(tmp_path):
    fit(MODEL, TX, DATA, key=KEY, checkpoint_dir=tmp_path, **{**SEQ, "steps": 20})
    other = make_data(seed=1)  # same shapes and dtypes, other values
    with pytest.raises(ValueError, match=r"data: the values of x_train, y_train, x_test, y_test"):
        fit(MODEL, TX, other, key=KEY, checkpoint_dir=tmp_path, **SEQ)
    more = make_data(n_train=80)
    with pytest.raises(ValueError, match=r"data: x_train \(96, 8\) float32 -> \(80, 8\) float32"):
        fit(MODEL, TX, more, key=KEY, checkpoint_dir=tmp_path, **SEQ)


def test_fingerprint_hashes_large_arrays_by_their_ends(monkeypatch):
    monkeypatch.setattr(train.resume, "_HASH_FULL_BYTES", 1 << 20)  # larger arrays: samples only
    big = np.zeros((3 << 20) // 4 + 3, np.float32)  # 3 MiB and a bit
    digest = train.resume._array_digest
    assert digest(big) == digest(big.copy()) == digest(jnp.asarray(big))
    for position in (0, (1 << 18) - 1, -(1 << 18), -1):  # in the first or the last MiB
        changed = big.copy()
        changed[position] = 1.0
        assert digest(changed) != digest(big), position
    assert digest(big) != digest(big[:-1]) != digest(big.reshape(-1, 5)[:, :1])


def test_fingerprint_is_stored_and_checkpoints_without_one_resume_with_a_warning(tmp_path):
    fit(MODEL, TX, DATA, key=KEY, checkpoint_dir=tmp_path, **{**SEQ, "steps": 20})
    stored = tmp_path / train.resume._FINGERPRINT_FILE
    assert stored.exists() and sorted(p.name for p in tmp_path.iterdir()) == [
        "20",
        train.resume._FINGERPRINT_FILE,
    ]
    with pytest.raises(ValueError, match=r"written with .*'eval_every': 20"):  # before restoring
        fit(MODEL, TX, DATA, key=KEY, checkpoint_dir=tmp_path, **{**SEQ, "eval_every": 10})
    stored.unlink()  # e.g. checkpoints of an older version
    with pytest.warns(UserWarning, match="without a readable fit_fingerprint.json"):
        fit(MODEL, TX, DATA, key=KEY, checkpoint_dir=tmp_path, **SEQ)
    assert stored.exists() and checkpoint.all_steps(tmp_path) == [20, 40]
