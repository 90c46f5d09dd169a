"""SweepResult.pareto and jopt.plot.pareto against a brute-force front, and on a real sweep."""

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jopt
from jopt.sweep import SweepResult


@pytest.fixture
def plt():
    """pyplot on the Agg backend; every figure is closed after the test."""
    matplotlib = pytest.importorskip("matplotlib")  # the [plot] extra
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    yield plt
    plt.close("all")


def _brute_force_front(means, modes, excluded):
    """Indices no other kept config beats: a plain double loop over the seed means."""
    signs = np.array([1.0 if m == "min" else -1.0 for m in modes])
    points = means * signs  # smaller is better in every column
    kept = [i for i in range(len(points)) if not excluded[i]]
    front = []
    for i in kept:
        dominated = False
        for j in kept:
            no_worse = all(points[j, k] <= points[i, k] for k in range(points.shape[1]))
            better = any(points[j, k] < points[i, k] for k in range(points.shape[1]))
            dominated = dominated or (no_worse and better)
        if not dominated:
            front.append(i)
    return front


def _random_result(seed, n_configs=40, n_seeds=3, n_metrics=2):
    rng = np.random.default_rng(seed)
    metrics = {f"m{k}": rng.random((n_configs, n_seeds)) for k in range(n_metrics)}
    metrics["m0"] = np.round(metrics["m0"], 1)  # ties in one metric
    for i in rng.choice(n_configs, size=5, replace=False):  # five configs lose one seed
        metrics[f"m{rng.integers(n_metrics)}"][i, rng.integers(n_seeds)] = rng.choice(
            [np.nan, np.inf]
        )
    configs = [{"lr": float(lr)} for lr in rng.random(n_configs)]
    # Three more runs flagged diverged with finite metrics (as a trial's own flag may mark them).
    diverged = np.any([~np.isfinite(v) for v in metrics.values()], axis=0)
    diverged[rng.choice(n_configs, size=3, replace=False), 0] = True
    return SweepResult(configs, metrics, seeds=range(n_seeds), diverged=diverged)


@pytest.mark.parametrize(
    "seed, modes",
    [
        (0, ["min", "min"]),
        (1, ["max", "min"]),
        (2, ["max", "max"]),
        (3, ["min", "max", "min"]),
    ],
)
def test_front_equals_brute_force(seed, modes):
    result = _random_result(seed, n_metrics=len(modes))
    names = [f"m{k}" for k in range(len(modes))]
    means = np.stack([result.metrics[n].mean(axis=1) for n in names], axis=1)
    excluded = result.diverged.any(axis=1)
    assert excluded.sum() >= 5  # the random result does test the exclusion
    front = result.pareto(names, modes)
    assert front.dtype.kind == "i"
    assert front.tolist() == _brute_force_front(means, modes, excluded)
    assert 0 < len(front) < len(result)
    # Flag one seed of a front config diverged: it leaves, and what it dominated may enter.
    diverged = result.diverged.copy()
    diverged[front[0], -1] = True
    flagged = SweepResult(result.configs, result.metrics, result.seeds, diverged=diverged)
    new_front = flagged.pareto(names, modes)
    assert front[0] not in new_front
    assert new_front.tolist() == _brute_force_front(means, modes, diverged.any(axis=1))


def test_diverged_config_is_excluded_even_when_it_would_dominate():
    # Config 0 is best in both metrics on the seed that ran, but its other seed diverged.
    acc = np.array([[0.99, np.nan], [0.8, 0.8], [0.9, 0.9], [0.7, 0.7]])
    size = np.array([[1.0, 1.0], [2.0, 2.0], [3.0, 3.0], [4.0, 4.0]])
    result = SweepResult([{"i": i} for i in range(4)], {"acc": acc, "bytes": size}, seeds=[0, 1])
    assert result.pareto(["acc", "bytes"], ["max", "min"]).tolist() == [1, 2]
    # A divergence mask given explicitly counts too, with finite values.
    mask = np.zeros((4, 2), bool)
    mask[0, 1] = True
    finite = SweepResult(
        result.configs, {"acc": np.nan_to_num(acc, nan=0.99), "bytes": size}, [0, 1], diverged=mask
    )
    assert finite.pareto(["acc", "bytes"], ["max", "min"]).tolist() == [1, 2]


def test_every_config_diverged_gives_an_empty_front():
    result = SweepResult([{"i": 0}, {"i": 1}], {"a": np.full((2, 1), np.nan)}, seeds=[0])
    assert result.pareto(["a"], ["min"]).tolist() == []


def test_curves_enter_by_their_last_entry():
    curve = np.array([[[9.0, 1.0]], [[0.0, 2.0]]])  # config 1 is better early, worse at the end
    size = np.array([[1.0], [1.0]])
    result = SweepResult([{"i": 0}, {"i": 1}], {"loss": curve, "bytes": size}, seeds=[0])
    assert result.pareto(["loss", "bytes"], ["min", "min"]).tolist() == [0]


def test_bad_arguments_are_named():
    result = _random_result(0)
    with pytest.raises(ValueError, match=r"unknown metric\(s\) \['acc'\]; known: \['m0', 'm1'\]"):
        result.pareto(["m0", "acc"], ["min", "min"])
    with pytest.raises(ValueError, match="one 'max' or 'min' per metric"):
        result.pareto(["m0", "m1"], ["min"])
    with pytest.raises(ValueError, match="metric 'm1', got 'best'"):
        result.pareto(["m0", "m1"], ["min", "best"])


def _two_quadratics(hp, key):
    """Two objectives of one hyperparameter: the front is -1 <= x <= 1; x = 0.5 diverges."""
    x = hp["x"]
    noise = jax.random.normal(key, (2,))
    return {
        "f": jnp.where(x == 0.5, jnp.nan, (x - 1.0) ** 2 + 0.1 * noise[0]),
        "g": (x + 1.0) ** 2 + 0.1 * noise[1],
    }


@pytest.fixture(scope="module")
def quadratic_sweep():
    space = jopt.sweep.grid(x=[-2.0, -1.5, -1.0, -0.5, 0.0, 0.5, 1.0, 1.5, 2.0])
    return jopt.sweep.run(_two_quadratics, space, seeds=2, progress=False)


def test_real_sweep_end_to_end(quadratic_sweep):
    result = quadratic_sweep
    xs = [c["x"] for c in result.configs]
    front = result.pareto(["f", "g"], ["min", "min"])
    # The same noise for every config (seed s, key s) shifts both objectives alike.
    assert [xs[i] for i in front] == [-1.0, -0.5, 0.0, 1.0]
    means = np.stack([result.metrics["f"].mean(1), result.metrics["g"].mean(1)], axis=1)
    assert front.tolist() == _brute_force_front(means, ["min", "min"], result.diverged.any(axis=1))


def test_plot_draws_every_point_and_the_front(quadratic_sweep, plt):
    result = quadratic_sweep
    ax = jopt.plot.pareto(result, x="f", y="g", modes=["min", "min"], label="x")
    everything, front_points = ax.collections
    assert len(everything.get_offsets()) == len(result) - 1  # x = 0.5 diverged: not drawn
    assert len(front_points.get_offsets()) == 4
    assert "1 diverged" in ax.get_legend().get_texts()[0].get_text()
    assert sorted(t.get_text() for t in ax.texts) == ["-0.5", "-1", "0", "1"]
    assert ax.get_xlabel() == "f (lower is better)" and ax.get_ylabel() == "g (lower is better)"


@pytest.mark.parametrize("modes", list(itertools.product(["min", "max"], repeat=2)))
def test_plot_staircase_bounds_the_dominated_region(modes, plt):
    result = _random_result(5)
    ax = jopt.plot.pareto(result, x="m0", y="m1", modes=list(modes))
    front = result.pareto(["m0", "m1"], list(modes))
    (step,) = ax.lines
    xs, ys = step.get_xdata(), step.get_ydata()
    assert len(xs) == len(front)
    signs = np.array([1.0 if m == "min" else -1.0 for m in modes])
    for (x0, y0), (x1, y1) in itertools.pairwise(zip(xs, ys)):
        corner = (x1, y0) if step.get_drawstyle() == "steps-post" else (x0, y1)
        # Each corner is weakly dominated by both points it joins: it is no better than either.
        for point in ((x0, y0), (x1, y1)):
            assert np.all(np.asarray(point) * signs <= np.asarray(corner) * signs)


def test_plot_log_x_for_bytes(plt):
    sizes = np.array([[1e3], [1e4], [1e5], [1e6]])
    acc = np.array([[0.5], [0.6], [0.7], [0.8]])
    result = SweepResult([{"i": i} for i in range(4)], {"bytes": sizes, "acc": acc}, seeds=[0])
    ax = jopt.plot.pareto(result, x="bytes", y="acc", modes=["min", "max"])
    assert ax.get_xscale() == "log"
    assert len(ax.collections[1].get_offsets()) == 4  # every point is on the front
    ax = jopt.plot.pareto(result, x="bytes", y="acc", modes=["min", "max"], logx=False)
    assert ax.get_xscale() == "linear"
