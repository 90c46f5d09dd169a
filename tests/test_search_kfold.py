"""jopt.search.cross_validate: folds as a vmapped axis give what k separate sweeps give."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jopt
from jopt.search.kfold import cross_validate

K = 3


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(90, 4)).astype(np.float32)
    y = (x @ np.float32([1.0, -1.0, 0.5, 0.0]) > 0).astype(np.int32)
    return jopt.data.Dataset(x, y, x[:10], y[:10])


def make_trial(fold):
    """Logistic regression, 5 full-batch gradient steps from an initialization drawn from `key`."""

    def trial(hp, key):
        w = 0.1 * jax.random.normal(key, (4, 2))

        def loss(w):
            log_p = jax.nn.log_softmax(fold.x_train @ w)
            return -jnp.mean(jnp.take_along_axis(log_p, fold.y_train[:, None], 1))

        for _ in range(5):
            w = w - hp["learning_rate"] * hp["scale"] * jax.grad(loss)(w)
        accuracy = jnp.mean(jnp.argmax(fold.x_test @ w, -1) == fold.y_test)
        return {"accuracy": accuracy, "norm": jnp.sum(w**2), "steps": jnp.int32(5)}

    return trial


SPACE = jopt.sweep.grid(learning_rate=[0.01, 0.3, 3.0], scale=jopt.sweep.static([1.0, 0.5]))


@pytest.fixture(scope="module")
def result(data):
    return cross_validate(make_trial, data, SPACE, k=K, seeds=2, progress=False)


def test_folds_equal_separate_sweeps(data, result):
    folds = jopt.data.kfold(data, K, 0)
    rows = [i for i, c in enumerate(SPACE.configs) if c["scale"] == 1.0]  # one static group
    for i in range(K):
        fold = jax.tree.map(lambda leaf, i=i: leaf[i], folds)
        space = jopt.sweep.Space([SPACE.configs[r] for r in rows], static_names=["scale"])
        alone = jopt.sweep.run(make_trial(fold), space, seeds=2, progress=False)
        for name in ("accuracy", "norm", "steps"):
            np.testing.assert_allclose(
                result.metrics[name][rows, :, i], alone.metrics[name], rtol=1e-5, atol=1e-7
            )


def test_shapes_mean_std(result):
    assert result.metrics["accuracy"].shape == (6, 2, K)
    assert result.metrics["accuracy_mean"].shape == (6, 2)
    np.testing.assert_allclose(
        result.metrics["norm_mean"], result.metrics["norm"].astype(np.float64).mean(2)
    )
    np.testing.assert_allclose(
        result.metrics["norm_std"], result.metrics["norm"].astype(np.float64).std(2)
    )
    assert "steps_mean" not in result.metrics  # ints are not summarized by default
    assert result.info["k"] == K and len(result.info["groups"]) == 2  # one program per static
    best = result.best("accuracy_mean", mode="max")
    assert best["learning_rate"] > 0.01
    assert set(result.to_dataframe().columns) >= {"accuracy_mean", "accuracy_std"}


def test_metrics_argument_and_errors(data):
    result = cross_validate(
        make_trial, data, SPACE.configs[:2], k=2, metrics="norm", progress=False
    )
    assert "norm_mean" in result.metrics and "accuracy_mean" not in result.metrics
    assert result.metrics["norm"].shape == (2, 1, 2)
    with pytest.raises(ValueError, match="unknown names"):
        cross_validate(make_trial, data, SPACE.configs[:2], k=2, metrics=["loss"], progress=False)
    with pytest.raises(ValueError, match="k must be"):
        cross_validate(make_trial, data, SPACE, k=1, progress=False)
    with pytest.raises(TypeError, match="make_trial"):
        cross_validate(None, data, SPACE, progress=False)
    with pytest.raises(TypeError, match="Dataset"):
        cross_validate(make_trial, (data.x_train, data.y_train), SPACE, progress=False)


def test_fit_vmaps_over_folds():
    """The real use: jopt.train.fit on traced fold data, vmapped over folds."""
    data = jopt.data.digits()
    model = jopt.models.Linear()

    def make_fit_trial(fold):
        def trial(hp, key):
            _, history = jopt.train.fit(
                model, jopt.sgd(hp["learning_rate"]), fold, steps=10, batch_size=32, key=key,
                progress=False,
            )  # fmt: skip
            return {"accuracy": history["val_accuracy"][-1]}

        return trial

    space = [{"learning_rate": 0.05}, {"learning_rate": 0.5}]
    result = cross_validate(make_fit_trial, data, space, k=2, progress=False)
    assert result.metrics["accuracy"].shape == (2, 1, 2)
    assert result.metrics["accuracy_mean"][1, 0] > 0.5
