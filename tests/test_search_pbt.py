"""jopt.search.pbt: exploit copies whole carries, explore perturbs, one trace, lineage."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import jopt
from jopt.search.pbt import pbt, plot_lineage
from jopt.search.resumable import Resumable, fit_trial
from jopt.sweep import engine

TX = jopt.momentum(0.0, beta=0.5)


def _leaves(tree):
    """A plain dict path -> leaf (no jopt state inside, so jopt.hparams does not see it)."""
    return {jax.tree_util.keystr(p): x for p, x in jax.tree_util.tree_flatten_with_path(tree)[0]}


def quadratic_trial(dim=4, noise=0.0, traces=None):
    """Momentum on 0.5 * |w|^2 with optional gradient noise; lr and beta live in the state.

    The carry keeps a snapshot of the params and optimizer state at the start of the latest
    round, so a test can see what exploit handed over. A config may also hold ``shrink``, a
    hyperparameter the carry does not have (PBT keeps it and passes it to ``advance``).
    """

    def init(hp, key):
        w = jnp.linspace(1.0, 3.0, dim)
        opt = jopt.set_hparams(TX.init(w), learning_rate=hp["learning_rate"])
        return {"w": w, "opt": opt, "key": key, "start": {"w": w, "opt": _leaves(opt)}}

    def advance(carry, hp, steps):
        if traces is not None:
            traces.append(1)
        start = {"w": carry["w"], "opt": _leaves(carry["opt"])}
        shrink = hp.get("shrink", 1.0)

        def step(c, i):
            g = c["w"] + noise * jax.random.normal(jax.random.fold_in(c["key"], i), (dim,))
            u, opt = TX.update(g, c["opt"])
            return {**c, "w": shrink * (c["w"] + u), "opt": opt}, None

        carry, _ = jax.lax.scan(step, carry, carry["opt"].count + jnp.arange(steps))
        loss = 0.5 * jnp.sum(carry["w"] ** 2)
        return {**carry, "start": start}, {"loss": loss, "lr_seen": hp["learning_rate"]}

    return Resumable(init, advance)


LRS = [0.01, 0.02, 0.05, 0.1, 0.2]


def test_exploit_copies_whole_carry_and_top_is_unchanged():
    trial = quadratic_trial()
    configs = [{"learning_rate": lr} for lr in LRS]
    kw = dict(ready_every=5, metric="loss", mode="min", fraction=0.4, key=3)
    one = pbt(trial, configs, rounds=1, **kw)  # the population after round 0, no exploit
    two = pbt(trial, configs, rounds=2, **kw)
    h = two.history
    np.testing.assert_array_equal(h["metric"][0], one.history["metric"][0])
    order = np.argsort(h["metric"][0])  # min mode: small loss first
    top, bottom = set(order[:2].tolist()), set(order[-2:].tolist())
    assert top == {3, 4} and bottom == {0, 1}  # larger lr converges faster here
    parent = h["parent"][1]
    for i in range(5):
        if i in bottom:
            assert parent[i] in top
        else:
            assert parent[i] == i
    after0 = jax.device_get(one.carry)
    start1 = jax.device_get(two.carry["start"])  # what each member began round 1 with
    for i in range(5):
        p = parent[i]
        np.testing.assert_array_equal(start1["w"][i], after0["w"][p])  # params: exact copy
        ref = _leaves(jax.tree.map(lambda x: x[p], after0["opt"]))
        for path, leaf in ref.items():
            got = start1["opt"][path][i]
            if "learning_rate" in path and i in bottom:  # explored: parent's lr times a factor
                ratio = float(got) / float(leaf)
                assert min(abs(ratio - 0.8), abs(ratio - 1.2)) < 1e-6, ratio
            else:  # count, momentum trace, beta: exact copies; top members: unchanged
                np.testing.assert_array_equal(got, leaf, err_msg=path)
    # the learning rates each member trained with, read back from the carry by advance
    np.testing.assert_allclose(two.result.metrics["lr_seen_per_round"][:, 0].T, h["learning_rate"])
    assert two.result.metrics["loss"].shape == (5, 1)
    assert two.result.metrics["loss_per_round"].shape == (5, 1, 2)
    assert [c["learning_rate"] for c in two.result.configs] == pytest.approx(
        h["learning_rate"][1].tolist()
    )


BOUNDS = {"learning_rate": (0.005, 0.25), "shrink": (0.0, 1.0)}


@pytest.fixture(scope="module")
def noisy_run():
    trial = quadratic_trial(noise=1.0)
    configs = jopt.sweep.random(
        8,
        0,
        learning_rate=jopt.sweep.LogUniform(0.01, 0.3),
        shrink=jopt.sweep.Uniform(0.9, 1.0),
    ).configs
    return pbt(
        trial,
        configs,
        rounds=6,
        ready_every=4,
        metric="loss",
        mode="min",
        fraction=0.25,
        perturb=(0.5, 2.0),
        bounds=BOUNDS,
        key=1,
        seeds_share_data=False,
    )


def test_explore_factors_bounds_and_lineage(noisy_run):
    out, bounds = noisy_run, BOUNDS
    h = out.history
    ratios = {"learning_rate": set(), "shrink": set()}
    clipped = 0
    for r in range(1, 6):
        order = np.argsort(h["metric"][r - 1], kind="stable")
        top, bottom = order[:2], order[-2:]
        for i in range(8):
            p = h["parent"][r, i]
            if i in bottom:
                assert p in top  # lineage: the copied members' parents are top members
            else:
                assert p == i
            for name in ratios:
                before, after = h[name][r - 1, p], h[name][r, i]
                if p == i:
                    assert after == before  # not copied: not perturbed
                    continue
                lo, hi = bounds[name]
                candidates = np.clip(before * np.array([0.5, 2.0]), lo, hi)
                assert np.min(np.abs(candidates - after)) < 1e-6 * max(abs(after), 1e-3)
                if lo < before * 0.5 and before * 2.0 < hi:
                    ratios[name].add(round(after / before, 5))
                else:
                    clipped += after in (lo, hi)
    assert ratios["learning_rate"] == {0.5, 2.0} and ratios["shrink"] <= {0.5, 2.0}
    assert clipped >= 1  # shrink * 2 > 1 is clipped
    assert np.all((h["shrink"] <= 1.0) & (h["learning_rate"] <= 0.3))
    # best lineage follows parents backwards from the winner
    b = out.best["index"]
    assert b == int(np.argmin(h["metric"][-1]))
    lineage = out.best["lineage"]
    assert lineage[-1] == b and len(lineage) == 6
    for r in range(5, 0, -1):
        assert lineage[r - 1] == h["parent"][r, lineage[r]]
    np.testing.assert_array_equal(
        out.best["trajectory"]["learning_rate"], h["learning_rate"][np.arange(6), lineage]
    )


def test_traces_once_and_finds_a_decreasing_learning_rate():
    """Noisy gradients: a large lr is best early, a small one late (its noise floor is lower)."""
    traces = []
    trial = quadratic_trial(dim=8, noise=1.0, traces=traces)
    configs = [{"learning_rate": lr} for lr in np.geomspace(0.01, 0.5, 8).tolist()]
    out = pbt(
        trial,
        configs,
        rounds=16,
        ready_every=10,
        metric="loss",
        mode="min",
        fraction=0.25,
        key=0,
        seeds_share_data=False,
    )
    assert len(traces) == 1  # 16 rounds of advance + exploit + explore: one traced program
    assert int(out.carry["opt"].count[0]) == 160
    lr = out.best["trajectory"]["learning_rate"]
    assert lr[0] > 0.02 and lr[-1] / lr[0] < 0.5, lr  # not simply the smallest lr throughout
    # a second search with other starting values and another key traces the trial again (to
    # see what it computes now) but reuses every compiled program
    programs = len(engine.PROGRAMS)
    again = pbt(
        trial,
        [{"learning_rate": lr} for lr in np.geomspace(0.02, 0.3, 8).tolist()],
        rounds=16,
        ready_every=10,
        metric="loss",
        mode="min",
        fraction=0.25,
        key=1,
        seeds_share_data=False,
    )
    assert len(traces) == 2 and len(engine.PROGRAMS) == programs
    assert again.history["learning_rate"][0, 0] == pytest.approx(0.02)
    assert not np.array_equal(again.history["parent"], out.history["parent"])


def test_composes_with_fit_trial():
    data = jopt.data.digits()
    tx = optax.chain(jopt.regularizers.l1(0.0), jopt.regularizers.l2(0.0), jopt.sgd(0.0))
    trial = fit_trial(jopt.models.Linear(), tx, data, batch_size=32)
    configs = [{"learning_rate": lr, "1/strength": 1e-4} for lr in (0.003, 0.01, 0.03, 0.1)]
    out = pbt(
        trial, configs, rounds=2, ready_every=10, metric="val_accuracy", fraction=0.25, mode="max"
    )
    h = out.history
    worst, best0 = int(np.argmin(h["metric"][0])), int(np.argmax(h["metric"][0]))
    assert h["parent"][1].tolist() == [best0 if i == worst else i for i in range(4)]
    for name in ("learning_rate", "1/strength"):
        ratio = h[name][1, worst] / h[name][0, best0]
        assert min(abs(ratio - 0.8), abs(ratio - 1.2)) < 1e-5
    opt_hp = jopt.hparams(out.carry["state"].opt_state)
    np.testing.assert_allclose(opt_hp["learning_rate"], h["learning_rate"][1])
    np.testing.assert_allclose(opt_hp["1/strength"], h["1/strength"][1])
    np.testing.assert_array_equal(out.carry["state"].step, [20] * 4)
    assert out.result.metrics["val_accuracy"].shape == (4, 1)


def test_plot_lineage(noisy_run):
    import matplotlib

    matplotlib.use("Agg")
    ax = plot_lineage(noisy_run, "learning_rate")
    exploits = int((noisy_run.history["parent"] != np.arange(8)).sum())
    # one solid segment per member and exploit, a dotted jump per exploit, the best lineage
    assert len(ax.lines) == 8 + 2 * exploits + 1 and ax.get_yscale() == "log"
    with pytest.raises(ValueError, match="unknown hyperparameter"):
        plot_lineage(noisy_run, "parent")


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(configs=[{"learning_rate": 0.1}]), "population"),
        (dict(fraction=0.0), "fraction"),
        (dict(fraction=0.6), "fraction"),
        (dict(ready_every=0), "ready_every"),
        (dict(rounds=0), "rounds"),
        (dict(hparams=["beta2"]), "unknown hyperparameter 'beta2'"),
        (dict(bounds={"lr": (0, 1)}), "unknown hyperparameter 'lr'"),
        (dict(mode="best"), "mode"),
        (dict(mode=None), "no default direction"),
        (dict(metric="accuracy"), "metric"),
        (dict(population=3), "population"),
    ],
)
def test_bad_arguments(kwargs, match):
    args = dict(configs=[{"learning_rate": lr} for lr in LRS[:2]], rounds=1, ready_every=1)
    args.update(metric="loss", mode="min")
    args.update(kwargs)
    configs = args.pop("configs")
    with pytest.raises(ValueError, match=match):
        pbt(quadratic_trial(), configs, **args)


# A small PBT run pinned to the numbers it gave before exploit / explore / the round were split
# into named functions: every hyperparameter a member trained with, every parent, every metric,
# the best lineage and the final params must stay bit-identical. Members 0 and 1 are the same
# config on the same data (a tie at the truncation boundary, broken by slot order); member 5
# diverges (a NaN metric ranks last); shrink is clipped to its bounds; learning_rate lives in
# the carry's optimizer state and shrink is held by PBT. The numbers are those of conftest's
# compile flags on one device (another XLA version or CPU may round the metrics differently;
# then regenerate them from a commit known to be right, never from the code under test).
PINNED_CONFIGS = [
    {"learning_rate": 0.05, "shrink": 0.95},
    {"learning_rate": 0.05, "shrink": 0.95},
    {"learning_rate": 0.2, "shrink": 0.99},
    {"learning_rate": 0.01, "shrink": 1.0},
    {"learning_rate": 0.1, "shrink": 0.9},
    {"learning_rate": 1e30, "shrink": 1.0},
]
# fmt: off
PINNED = {
    "learning_rate": [
        [0.05000000074505806, 0.05000000074505806, 0.20000000298023224, 0.009999999776482582, 0.10000000149011612, 1.0000000150474662e+30],  # noqa: E501
        [0.05000000074505806, 0.07500000298023224, 0.20000000298023224, 0.07500000298023224, 0.10000000149011612, 0.10000000149011612],  # noqa: E501
        [0.15000000596046448, 0.07500000298023224, 0.11250000447034836, 0.03750000149011612, 0.10000000149011612, 0.10000000149011612],  # noqa: E501
        [0.11250000447034836, 0.07500000298023224, 0.11250000447034836, 0.03750000149011612, 0.15000000596046448, 0.10000000149011612],  # noqa: E501
        [0.11250000447034836, 0.07500000298023224, 0.07500000298023224, 0.03750000149011612, 0.05625000223517418, 0.05625000223517418],  # noqa: E501
    ],
    "shrink": [
        [0.949999988079071, 0.949999988079071, 0.9900000095367432, 1.0, 0.8999999761581421, 1.0],
        [0.949999988079071, 0.4749999940395355, 0.9900000095367432, 1.0, 0.8999999761581421, 0.4749999940395355],  # noqa: E501
        [1.0, 0.4749999940395355, 0.7124999761581421, 0.949999988079071, 0.8999999761581421, 0.4749999940395355],  # noqa: E501
        [0.23749999701976776, 0.4749999940395355, 0.7124999761581421, 0.949999988079071, 0.7124999761581421, 0.4749999940395355],  # noqa: E501
        [0.23749999701976776, 0.4749999940395355, 1.0, 0.949999988079071, 0.4749999940395355, 1.0],
    ],
    "metric": [
        [4.250576972961426, 4.250576972961426, 1.0006053447723389, 8.368220329284668, 1.7939043045043945, float("nan")],  # noqa: E501
        [1.725816249847412, 0.01653212308883667, 0.3479844331741333, 1.7214648723602295, 0.3035781681537628, 0.01294056884944439],  # noqa: E501
        [0.08484821021556854, 0.003915307577699423, 0.028724372386932373, 0.005093329586088657, 0.024152304977178574, 0.00720121618360281],  # noqa: E501
        [0.0018239927012473345, 0.0038911455776542425, 0.023678850382566452, 0.005576229654252529, 0.04308820515871048, 0.007066990714520216],  # noqa: E501
        [0.000860385422129184, 0.0018876325339078903, 0.024423658847808838, 0.006349755451083183, 0.0010828908998519182, 0.014764241874217987],  # noqa: E501
    ],
    "parent": [
        [0, 1, 2, 3, 4, 5],
        [0, 0, 2, 0, 4, 0],
        [4, 1, 1, 1, 4, 5],
        [1, 1, 1, 3, 5, 5],
        [0, 1, 3, 3, 0, 3],
    ],
}
PINNED_W = [
    [-0.03161695972084999, -0.004940161481499672, 0.007961970753967762, -0.025166256353259087],
    [-0.04446079209446907, 0.002615982433781028, 0.003002827987074852, -0.04222135245800018],
    [-0.12113817036151886, 0.07153870165348053, -0.030607588589191437, -0.16768497228622437],
    [-0.045083411037921906, 0.06997598707675934, -0.0006110658869147301, -0.07596041262149811],
    [-0.03324124217033386, 0.0018761808751150966, 0.001755948644131422, -0.03246841952204704],
    [-0.0848231166601181, 0.07582502067089081, -0.01668696105480194, -0.1276935189962387],
]
# fmt: on


def test_pinned_run_is_bit_identical():
    out = pbt(
        quadratic_trial(noise=1.0),
        PINNED_CONFIGS,
        rounds=5,
        ready_every=3,
        metric="loss",
        mode="min",
        fraction=0.5,
        perturb=(0.5, 1.5, 2.0),
        bounds={"shrink": (0.0, 1.0)},
        key=7,
        devices=jax.devices()[:1],
    )
    assert sorted(out.history) == sorted(PINNED)
    for name, expected in PINNED.items():
        np.testing.assert_array_equal(out.history[name], np.asarray(expected), err_msg=name)
    np.testing.assert_array_equal(
        out.result.metrics["lr_seen_per_round"][:, 0].T, out.history["learning_rate"]
    )
    np.testing.assert_array_equal(np.asarray(out.carry["w"]), np.asarray(PINNED_W, np.float32))
    np.testing.assert_array_equal(out.carry["opt"].count, [15] * 6)
    assert out.best["index"] == 0 and out.best["lineage"] == [0, 1, 1, 0, 0]
    assert out.best["metric"] == PINNED["metric"][-1][0]
    lineage = np.asarray(PINNED["learning_rate"])[np.arange(5), [0, 1, 1, 0, 0]]
    np.testing.assert_array_equal(out.best["trajectory"]["learning_rate"], lineage)
    assert out.best["config"] == {
        "learning_rate": PINNED["learning_rate"][-1][0],
        "shrink": PINNED["shrink"][-1][0],
    }
