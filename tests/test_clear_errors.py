"""Bad input gets a clear error naming the argument and what was allowed, before any compute."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jopt
from jopt import sweep
from jopt.compress import quantize_params, size_report


def trial(hp, key):
    return {"loss": hp["learning_rate"] ** 2, "accuracy": 1.0 - hp["learning_rate"]}


SPACE = sweep.grid(learning_rate=[0.1, 0.5, 0.9])


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"seeds": 1.5}, TypeError, r"seeds must be an int >= 1 or a list of ints, got 1.5"),
        ({"seeds": 0}, ValueError, "seeds must be an int >= 1"),
        ({"seeds": [0, "1"]}, TypeError, "seeds must be"),
        ({"devices": []}, ValueError, "devices is empty"),
        ({"chunk_size": 0}, ValueError, "chunk_size must be"),
    ],
)
def test_run_arguments(kwargs, error, match):
    with pytest.raises(error, match=match):
        sweep.run(trial, SPACE, progress=False, **kwargs)


def test_best_has_no_default_direction():
    result = sweep.run(trial, SPACE, progress=False)
    with pytest.raises(ValueError, match="no default direction"):
        result.best("loss")  # would have been the worst configuration by the loss
    assert result.best("loss", mode="min") == {"learning_rate": 0.1}
    assert result.best("accuracy", mode="max") == {"learning_rate": 0.1}
    with pytest.raises(ValueError, match="no default direction"):
        jopt.plot.heatmap(result, x="learning_rate", y="learning_rate", metric="loss")


def test_size_report_counts_quantized_params_at_their_bit_width():
    key = jax.random.PRNGKey(0)
    params = {"kernel": jax.random.normal(key, (64, 32)), "bias": jnp.zeros(32)}
    stored = quantize_params(params, 8)
    report = size_report(stored)
    assert report["bytes_after"] == stored.nbytes
    assert report["bytes_after"] == size_report(params, bits=8)["bytes_after"]
    assert report["ratio"] == pytest.approx(4 * (64 * 32 + 32) / stored.nbytes)
    assert report["ratio"] > 3.5
    with pytest.raises(ValueError, match="QuantizedParams of 8 bits"):
        size_report(stored, bits=4)


def test_trial_errors_name_the_space_or_the_groups():
    with pytest.raises(KeyError, match=r"'lr'.*\['learning_rate'\]"):
        sweep.run(lambda hp, key: {"y": hp["lr"]}, SPACE, progress=False)
    with pytest.raises(TypeError, match="must return a dict"):
        sweep.run(lambda hp, key: hp["learning_rate"], SPACE, progress=False)
    np.testing.assert_allclose(
        sweep.run(trial, SPACE, progress=False).metrics["loss"][:, 0], [0.01, 0.25, 0.81]
    )
