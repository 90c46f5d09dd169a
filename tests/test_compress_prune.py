"""jopt.compress.prune: exact sparsity (also traced and scheduled), frozen zeros, N:M, gradual,
regrowth (regrow="dpf") and its equality with the values of the earlier API."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import jopt
from jopt.compress import gradual, prune, sparsity

SHAPES = {"dense_0": (40, 100), "dense_1": (100, 100), "dense_2": (100, 12)}


def make_params(key=0):
    params = {}
    for i, (name, shape) in enumerate(SHAPES.items()):
        k1, k2 = jax.random.split(jax.random.PRNGKey(key * 10 + i))
        params[name] = {
            "kernel": jax.random.normal(k1, shape),
            "bias": jax.random.normal(k2, shape[-1:]),
        }
    return params


def random_like(params, key):
    leaves, treedef = jax.tree.flatten(params)
    keys = jax.random.split(jax.random.PRNGKey(key), len(leaves))
    return jax.tree.unflatten(
        treedef, [0.1 * jax.random.normal(k, p.shape) for k, p in zip(keys, leaves)]
    )


def kernels(params):
    return [params[name]["kernel"] for name in SHAPES]


def n_zeros(x):
    return int(np.sum(np.asarray(x) == 0.0))


def expected_k(s, n):
    return int(np.round(np.float32(s) * np.float32(n)))


N_TOTAL = sum(int(np.prod(s)) for s in SHAPES.values())


def one_step(tx, params, updates):
    new_updates, state = tx.update(updates, tx.init(params), params)
    return optax.apply_updates(params, new_updates), state


def test_global_sparsity_exact():
    params, updates = make_params(), random_like(make_params(), 1)
    run = jax.jit(lambda s: one_step(prune(s), params, updates)[0])  # s traced: one compile
    would_be = optax.apply_updates(params, updates)
    for s in [0.0, 0.3, 0.5, 0.8, 0.97]:
        new = run(s)
        assert sum(n_zeros(k) for k in kernels(new)) == expected_k(s, N_TOTAL)
        assert sparsity(new) == pytest.approx(expected_k(s, N_TOTAL) / N_TOTAL, abs=1e-12)
        # global: one threshold, every kept magnitude >= every pruned would-be magnitude
        pruned = [np.abs(w)[k == 0] for w, k in zip(kernels(would_be), kernels(new))]
        kept = np.concatenate([np.abs(k)[k != 0] for k in kernels(new)])
        if s > 0:
            assert np.concatenate(pruned).max() <= kept.min()


def test_layer_sparsity_exact():
    params, updates = make_params(), random_like(make_params(), 2)
    run = jax.jit(lambda s: one_step(prune(s, scope="layer"), params, updates)[0])
    for s in [0.25, 0.6, 0.9]:
        for k in kernels(run(s)):
            assert n_zeros(k) == expected_k(s, k.size)


def test_ties_and_zeros_do_not_change_the_count():
    params = {"kernel": jnp.ones((8, 10)).at[:, :3].set(0.0), "bias": jnp.zeros(10)}
    zeros = jax.tree.map(jnp.zeros_like, params)
    run = jax.jit(lambda s: one_step(prune(s), params, zeros))
    for s in (0.1, 0.3, 0.55, 0.9):
        new, state = run(s)
        pruned = ~np.asarray(state.inner.masks["kernel"])
        assert pruned.sum() == expected_k(s, 80)  # exactly k pruned by the mask ...
        assert np.all(np.asarray(new["kernel"])[pruned] == 0.0)
        assert n_zeros(new["kernel"]) == max(expected_k(s, 80), 24)  # ... zeros first


def test_traced_sparsity_under_vmap_each_member_exact():
    params, updates = make_params(), random_like(make_params(), 3)
    sparsities = jnp.array([0.1, 0.45, 0.7, 0.93])

    def run(s):
        tx = prune(s, scope="layer")
        return one_step(tx, params, updates)[0]

    batched = jax.jit(jax.vmap(run))(sparsities)
    for i, s in enumerate(np.asarray(sparsities)):
        for k in kernels(batched):
            assert n_zeros(k[i]) == expected_k(s, k[i].size)

    def run_global(s):
        return one_step(prune(s), params, updates)[0]

    batched = jax.jit(jax.vmap(run_global))(sparsities)
    for i, s in enumerate(np.asarray(sparsities)):
        assert sum(n_zeros(k[i]) for k in kernels(batched)) == expected_k(s, N_TOTAL)


@pytest.mark.parametrize("scope, regrow", [("global", None), ("layer", None), ("global", "dpf")])
def test_nested_vmap_of_scheduled_runs_equals_separate_runs(scope, regrow):
    """Members whose masks change at different steps (traced begin steps), batched twice
    (as sweep.run does: configurations x seeds), give each member's own run: the same masks
    exactly, the same values up to rounding."""
    params = make_params()

    def run(s, begin, seed):
        every = 4 if regrow else None
        pruner = prune(
            gradual(s, begin, begin + 6, 2), scope=scope, regrow=regrow, regrow_every=every
        )
        tx = optax.chain(jopt.sgd(0.1), pruner)

        def step(carry, t):
            p, state = carry
            grads = jax.tree.map(
                lambda x: jax.random.normal(jax.random.fold_in(seed, t), x.shape), p
            )
            updates, state = tx.update(grads, state, p)
            return (optax.apply_updates(p, updates), state), None

        (p, _), _ = jax.lax.scan(step, (params, tx.init(params)), jnp.arange(12))
        return p

    sparsities, begins = jnp.array([0.3, 0.8, 0.95]), jnp.array([0, 3, 5])
    seeds = jax.random.split(jax.random.PRNGKey(0), 2)
    batched = jax.jit(jax.vmap(jax.vmap(run, in_axes=(None, None, 0)), in_axes=(0, 0, None)))(
        sparsities, begins, seeds
    )
    # the batched program still branches: the selection is under a cond, not a select
    jaxpr = jax.make_jaxpr(jax.vmap(run, in_axes=(0, 0, None)))(sparsities, begins, seeds[0])
    assert "cond" in str(jaxpr)
    single = jax.jit(run)
    for i in range(3):
        for j in range(2):
            alone = single(sparsities[i], begins[i], seeds[j])
            member = jax.tree.map(lambda x: x[i, j], batched)
            # the same pruned weights exactly; the values up to how a batched program rounds
            same_zeros = lambda a, b: np.testing.assert_array_equal(a == 0, b == 0)
            jax.tree.map(same_zeros, member, alone)
            close = lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
            jax.tree.map(close, member, alone)


def test_scheduled_sparsity_exact_every_step_and_monotone_masks():
    schedule = gradual(0.9, begin_step=2, end_step=22, every=4)
    tx = optax.chain(jopt.sgd(0.1), prune(schedule))  # the default: regrow=None
    params = make_params()
    state = tx.init(params)
    step = jax.jit(tx.update)
    previous = None
    for t in range(30):
        updates, state = step(random_like(params, 100 + t), state, params)
        params = optax.apply_updates(params, updates)
        zero = np.concatenate([np.asarray(k).ravel() == 0 for k in kernels(params)])
        assert zero.sum() == expected_k(float(schedule(t)), N_TOTAL), t
        if previous is not None:
            assert np.all(zero[previous])  # pruned weights never come back
        previous = zero
    assert float(jopt.hparams(state)["sparsity"]) == pytest.approx(0.9)


def test_zeros_stay_exactly_zero_and_biases_untouched():
    tx = optax.chain(jopt.sgd(0.1), prune(0.8))
    sgd = jopt.sgd(0.1)
    params = make_params()
    state, sgd_state = tx.init(params), sgd.init(params)

    @jax.jit
    def step(params, state, sgd_state, grads):
        updates, state = tx.update(grads, state, params)
        plain, sgd_state = sgd.update(grads, sgd_state, params)
        return updates, plain, state, sgd_state

    first = None
    for t in range(50):
        grads = random_like(params, 200 + t)
        updates, plain, state, sgd_state = step(params, state, sgd_state, grads)
        for name in SHAPES:
            np.testing.assert_array_equal(updates[name]["bias"], plain[name]["bias"])
        params = optax.apply_updates(params, updates)
        zero = [np.asarray(k) == 0.0 for k in kernels(params)]
        if first is None:
            first = zero
        for z0, z in zip(first, zero):
            np.testing.assert_array_equal(z0, z)  # same mask, zeros exactly 0.0
        assert sum(int(z.sum()) for z in zero) == expected_k(0.8, N_TOTAL)
    assert float(jax.jit(sparsity)(params)) == pytest.approx(0.8, abs=1e-4)


def test_set_hparams_raises_sparsity_without_recompiling():
    tx = prune(0.5)
    params, updates = make_params(), random_like(make_params(), 4)
    traces = []

    @jax.jit
    def step(state, params):
        traces.append(1)
        new_updates, state = tx.update(updates, state, params)
        return optax.apply_updates(params, new_updates), state

    params, state = step(tx.init(params), params)
    state = jopt.set_hparams(state, sparsity=0.75)
    params, state = step(state, params)
    assert len(traces) == 1
    assert sum(n_zeros(k) for k in kernels(params)) == expected_k(0.75, N_TOTAL)


@pytest.mark.parametrize("structure, n, m", [("2:4", 2, 4), ("1:4", 1, 4), ("3:5", 3, 5)])
def test_n_m_pattern(structure, n, m):
    params = {"a": {"kernel": jax.random.normal(jax.random.PRNGKey(0), (40, 100))}}
    params["a"]["bias"] = jnp.ones(100)
    updates = random_like(params, 5)
    new, _ = one_step(prune(None, structure=structure), params, updates)
    kernel = np.asarray(new["a"]["kernel"])
    groups = kernel.reshape(40 // m, m, 100)  # consecutive entries along axis -2
    np.testing.assert_array_equal((groups != 0).sum(axis=1), n)
    would_be = np.abs(np.asarray(params["a"]["kernel"] + updates["a"]["kernel"]))
    would_be = would_be.reshape(40 // m, m, 100)
    kept_min = np.where(groups != 0, would_be, np.inf).min(axis=1)
    pruned_max = np.where(groups == 0, would_be, -np.inf).max(axis=1)
    assert np.all(kept_min >= pruned_max)
    np.testing.assert_array_equal(new["a"]["bias"], params["a"]["bias"] + updates["a"]["bias"])
    assert sparsity(new) == pytest.approx(1 - n / m)


def test_gradual_matches_formula():
    s_f, s_i, t0, t1, dt = 0.85, 0.1, 50, 1050, 100
    schedule = jax.jit(gradual(s_f, t0, t1, dt, initial_sparsity=s_i))

    def reference(t):
        if t < t0:
            return s_i
        if t >= t1:
            return s_f
        tau = t0 + dt * ((t - t0) // dt)
        return s_f + (s_i - s_f) * (1 - (tau - t0) / (t1 - t0)) ** 3

    for t in [0, 49, 50, 51, 149, 150, 151, 333, 549, 550, 999, 1049, 1050, 1051, 9999]:
        assert float(schedule(t)) == pytest.approx(reference(t), abs=1e-6), t
    # traceable in its arguments too
    finals = jax.vmap(lambda f: gradual(f, t0, t1, dt)(jnp.int32(550)))(jnp.array([0.5, 0.9]))
    np.testing.assert_allclose(finals, [0.5 - 0.5 * 0.5**3, 0.9 - 0.9 * 0.5**3], rtol=1e-6)


@pytest.mark.parametrize("scope", ["global", "layer"])
def test_begin_step_prunes_nothing_before_then_exactly_the_sparsity(scope):
    tx = optax.chain(jopt.sgd(0.1), prune(0.6, scope=scope, begin_step=3))
    params = make_params()
    state = tx.init(params)
    step = jax.jit(tx.update)
    for t in range(6):
        updates, state = step(random_like(params, 200 + t), state, params)
        params = optax.apply_updates(params, updates)
        zeros = sum(n_zeros(k) for k in kernels(params))
        assert zeros == (0 if t < 3 else expected_k(0.6, N_TOTAL)), t


def test_begin_step_traced_under_vmap_and_with_a_schedule():
    params, updates = make_params(), random_like(make_params(), 3)

    def zeros_after(n_steps, begin):
        tx = prune(gradual(0.8, 0, 4, 1), begin_step=begin)
        state, p = tx.init(params), params
        for _ in range(n_steps):
            u, state = tx.update(updates, state, p)
            p = optax.apply_updates(p, u)
        return sum(jnp.sum(k == 0) for k in kernels(p))

    # the schedule runs on the global count; begin_step only holds it at 0 before
    counts = jax.jit(jax.vmap(lambda b: zeros_after(6, b)))(jnp.array([0, 2, 6]))
    assert counts.tolist() == [expected_k(0.8, N_TOTAL), expected_k(0.8, N_TOTAL), 0]
    schedule = gradual(0.8, 0, 4, 1)
    assert int(zeros_after(3, 2)) == expected_k(float(schedule(2)), N_TOTAL)


def test_saliency_prunes_by_weight_times_update():
    params = {"kernel": jnp.array([[4.0, 3.0], [2.0, 1.0]])}
    updates = {"kernel": jnp.array([[-1e-3, 1e-1], [1e-1, -1.0]])}
    # would-be weights w = p + u; magnitude prunes the smallest |w|, saliency the smallest |w*u|
    magnitude, _ = one_step(prune(0.5), params, updates)
    saliency, _ = one_step(prune(0.5, criterion="saliency"), params, updates)
    np.testing.assert_array_equal(np.asarray(magnitude["kernel"]) == 0, [[0, 0], [1, 1]])
    # |w*u| = [0.004, 0.31, 0.21, 0.0] -> prune entries (0,0) and (1,1)
    np.testing.assert_array_equal(np.asarray(saliency["kernel"]) == 0, [[1, 0], [0, 1]])


def test_sparsity_counts_kernels_only():
    params = {"k": jnp.array([[0.0, 1.0], [2.0, 0.0]]), "b": jnp.zeros(5)}
    assert sparsity(params) == 0.5
    assert float(jax.jit(sparsity)(params)) == 0.5
    assert sparsity(params, mask={"k": True, "b": True}) == pytest.approx(7 / 9)


@pytest.mark.parametrize("bad", [1.0, -0.1, 1.5])
def test_bad_sparsity(bad):
    with pytest.raises(ValueError, match=r"sparsity.*\[0, 1\)"):
        prune(bad)


def test_bad_arguments():
    with pytest.raises(ValueError, match="scope"):
        prune(0.5, scope="network")
    with pytest.raises(ValueError, match="criterion"):
        prune(0.5, criterion="random")
    for bad in ("4:2", "2:2", "a:b", "2:4:8", "0:4", "2-4"):
        with pytest.raises(ValueError, match="structure"):
            prune(None, structure=bad)
    with pytest.raises(ValueError, match="sparsity"):
        prune(0.3, structure="2:4")
    with pytest.raises(ValueError, match="multiple of 4"):
        prune(None, structure="2:4").init({"kernel": jnp.ones((6, 3))})
    with pytest.raises(ValueError, match="final_sparsity"):
        gradual(1.0, 0, 10, 1)
    with pytest.raises(ValueError, match="end_step"):
        gradual(0.5, 10, 10, 1)
    with pytest.raises(ValueError, match="begin_step"):
        prune(0.5, begin_step=-1)
    with pytest.raises(ValueError, match="begin_step"):
        prune(None, structure="2:4", begin_step=10)
    with pytest.raises(ValueError, match=r"sparsity.*\[0, 1\)"):
        prune(1.5, begin_step=10)  # checked before it becomes a schedule


# --- regrow="dpf": dense latent weights, the mask re-selected from them -----------------------


def _regrow_run(tx, params, n_steps, key=300):
    """Steps of ``tx`` with fresh random updates; yields (params, state) after each."""
    state = tx.init(params)
    step = jax.jit(tx.update)
    for t in range(n_steps):
        updates, state = step(random_like(params, key + t), state, params)
        params = optax.apply_updates(params, updates)
        yield params, state


@pytest.mark.parametrize("scope", ["global", "layer"])
def test_regrow_params_are_mask_times_latent_with_exact_zeros_every_step(scope):
    s = 0.7
    tx = prune(s, scope=scope, regrow="dpf", regrow_every=3)
    previous = None
    for t, (params, state) in enumerate(_regrow_run(tx, make_params(), 8)):
        inner = state.inner
        for name in SHAPES:
            mask = np.asarray(inner.masks[name]["kernel"])
            latent = np.asarray(inner.latent[name]["kernel"])
            kernel = np.asarray(params[name]["kernel"])
            np.testing.assert_array_equal(kernel[~mask], 0.0)  # pruned: exactly zero
            np.testing.assert_allclose(kernel[mask], latent[mask], rtol=1e-6, atol=1e-7)
            if scope == "layer":
                assert n_zeros(kernel) == expected_k(s, mask.size), (t, name)
        if scope == "global":
            assert sum(n_zeros(k) for k in kernels(params)) == expected_k(s, N_TOTAL), t
        masks = np.concatenate([np.asarray(inner.masks[n]["kernel"]).ravel() for n in SHAPES])
        if previous is not None and t % 3 != 0:  # reselected only on steps 0, 3, 6
            np.testing.assert_array_equal(masks, previous)
        previous = masks
        assert int(inner.step) == t + 1


def test_regrow_brings_back_a_pruned_weight_whose_updates_outgrow_the_kept_ones():
    params = {"kernel": jnp.array([[4.0, 3.0], [2.0, 1.0]])}
    zero = {"kernel": jnp.zeros((2, 2))}
    push = {"kernel": jnp.array([[0.0, 0.0], [0.0, 1.0]])}  # pushes the pruned (1, 1) weight
    for regrow, comes_back in [("dpf", True), (None, False)]:
        tx = prune(0.5, regrow=regrow, regrow_every=2 if regrow else None)
        state, p = tx.init(params), params
        u, state = tx.update(zero, state, p)  # step 0 prunes the two smallest, 2 and 1
        p = optax.apply_updates(p, u)
        np.testing.assert_array_equal(p["kernel"], [[4.0, 3.0], [0.0, 0.0]])
        if regrow:  # pruned weights restart from 0 in the latent
            np.testing.assert_array_equal(state.inner.latent["kernel"], [[4.0, 3.0], [0.0, 0.0]])
        for _ in range(3):  # steps 1-3: latent (1, 1) = 3 at step 3; re-selected at step 2
            u, state = tx.update(push, state, p)
            p = optax.apply_updates(p, u)
            np.testing.assert_array_equal(p["kernel"], [[4.0, 3.0], [0.0, 0.0]])
        u, state = tx.update(push, state, p)  # step 4 re-selects: latent 4 > 3, it comes back
        p = optax.apply_updates(p, u)
        if comes_back:  # ... and the dropped 3.0 restarts from 0
            np.testing.assert_array_equal(p["kernel"], [[4.0, 0.0], [0.0, 4.0]])
            np.testing.assert_array_equal(state.inner.latent["kernel"], [[4.0, 0.0], [0.0, 4.0]])
        else:  # classic: the pruned weight stays pruned
            np.testing.assert_array_equal(p["kernel"], [[4.0, 3.0], [0.0, 0.0]])
        assert sparsity(p) == 0.5


def test_regrow_vmapped_over_sparsity_equals_separate_runs():
    params = make_params()
    updates = [random_like(params, 400 + t) for t in range(5)]

    def run(s):
        tx = optax.chain(jopt.sgd(0.1), prune(s, regrow="dpf", regrow_every=2))
        state, p = tx.init(params), params
        for u in updates:
            u, state = tx.update(u, state, p)
            p = optax.apply_updates(p, u)
        return p

    sparsities = jnp.array([0.2, 0.5, 0.9])
    batched = jax.jit(jax.vmap(run))(sparsities)
    for i, s in enumerate(sparsities):
        single = jax.jit(run)(s)
        jax.tree.map(
            lambda a, b: np.testing.assert_allclose(a[i], b, rtol=1e-6, atol=1e-7), batched, single
        )
        assert sum(n_zeros(k[i]) for k in kernels(batched)) == expected_k(float(s), N_TOTAL)


def test_regrow_n_m_and_begin_step():
    params = make_params()
    tx = prune(None, structure="2:4", regrow="dpf", regrow_every=2)
    for params_t, _ in _regrow_run(tx, params, 4):
        kernel = np.asarray(params_t["dense_1"]["kernel"])
        groups = np.moveaxis(kernel, -2, -1).reshape(100, 25, 4)
        assert np.all(np.sum(groups != 0, axis=-1) <= 2)
    tx = prune(0.6, begin_step=2, regrow="dpf", regrow_every=4)
    for t, (params_t, _) in enumerate(_regrow_run(tx, params, 4)):
        zeros = sum(n_zeros(k) for k in kernels(params_t))
        assert zeros == (0 if t < 2 else expected_k(0.6, N_TOTAL)), t


@pytest.mark.parametrize("bad", [0, -3, 1.5, "16", True])
def test_bad_regrow_every(bad):
    with pytest.raises(ValueError, match="regrow_every"):
        prune(0.5, regrow_every=bad)


@pytest.mark.parametrize("bad", ["DPF", "RigL", "none", "", True, 16, ("dpf",)])
def test_bad_regrow_names_the_argument_the_value_and_the_choices(bad):
    choices = r"None, 'dpf', 'rigl', 'set'"
    with pytest.raises(ValueError, match=rf"regrow must be one of {choices}, got ") as info:
        prune(0.5, regrow=bad)
    assert repr(bad) in str(info.value)
    # regrowth was once the default: regrow_every alone must not silently mean no regrowth
    with pytest.raises(ValueError, match=r"regrow_every=4 applies only with regrow='dpf'"):
        prune(0.5, regrow_every=4)
    dpf = prune(0.5, regrow="dpf", regrow_every=None).init(make_params())  # None: every 16
    assert any(np.shape(x) != () for x in jax.tree.leaves(dpf.inner.latent))  # kernels kept


def test_state_keeps_a_latent_only_with_dpf():
    params = make_params()
    for kwargs in ({}, {"regrow": None}, {"regrow_every": None}):
        latent = prune(0.5, **kwargs).init(params).inner.latent
        assert all(np.shape(x) == () for x in jax.tree.leaves(latent)), kwargs
    latent = prune(0.5, regrow="dpf").init(params).inner.latent
    for name in SHAPES:
        np.testing.assert_array_equal(latent[name]["kernel"], params[name]["kernel"])
        assert np.shape(latent[name]["bias"]) == ()  # biases are not pruned: no copy


# --- bit for bit: regrow=None is the classic pruning that regrow_every=None was, and
# regrow="dpf" the regrowth that was the default (regrow_every=16) -------------------------------


def _same_program(make, kwargs_list, params, updates):
    """The update of ``make(**kwargs)`` traces to one jaxpr for every kwargs: same numbers."""
    programs = set()
    for kwargs in kwargs_list:
        tx = make(**kwargs)
        programs.add(str(jax.make_jaxpr(tx.update)(updates, tx.init(params), params)))
    return len(programs) == 1


@pytest.mark.parametrize(
    "kwargs",
    [{}, {"scope": "layer"}, {"structure": "2:4"}, {"criterion": "saliency", "begin_step": 2}],
    ids=["global", "layer", "2:4", "saliency-begin"],
)
def test_regrow_none_is_the_default_and_equals_regrow_every_none_bit_for_bit(kwargs):
    params, updates = make_params(), random_like(make_params(), 6)
    s = None if "structure" in kwargs else 0.7
    spellings = [
        {},
        {"regrow": None},
        {"regrow_every": None},
        {"regrow": None, "regrow_every": None},
    ]
    assert _same_program(lambda **kw: prune(s, **kwargs, **kw), spellings, params, updates)
    dpf = [{"regrow": "dpf"}, {"regrow": "dpf", "regrow_every": 16}]
    assert _same_program(lambda **kw: prune(s, **kwargs, **kw), dpf, params, updates)
    runs = []
    for spelling in spellings[:3]:
        runs.append(list(_regrow_run(prune(s, **kwargs, **spelling), params, 5)))
    for other in runs[1:]:
        for (p0, s0), (p1, s1) in zip(runs[0], other):
            jax.tree.map(np.testing.assert_array_equal, (p0, s0), (p1, s1))


def _exact_tree(values):
    """Two kernels (4x4 and 4x2) from 24 multiples of 1/16: sums and products of a few of these
    are exact in float32, so the expected numbers below hold on any backend."""
    values = jnp.asarray(values, jnp.float32) / 16
    return {
        "a": {"kernel": values[:16].reshape(4, 4), "bias": jnp.ones(4)},
        "b": {"kernel": values[16:].reshape(4, 2)},
    }


def _exact_run(tx, steps=20):
    i = np.arange(24)
    params = _exact_tree((i * 37 + 11) % 61 - 30)
    state, step = tx.init(params), jax.jit(tx.update)
    for t in range(steps):
        updates = _exact_tree((i * i * 5 + i * t * 7 + t * 3 + 1) % 33 - 16)
        updates["a"]["bias"] = jnp.zeros(4)
        updates, state = step(updates, state, params)
        params = optax.apply_updates(params, updates)
    return params, state.inner


def _ints(text):
    return [int(v) for v in text.split()]


# name: (sparsity, spellings in this API, kernels after 20 steps in 1/16ths ("a" then "b",
# flat), the latent kernels (None: no latent), the flat indices the masks prune). The numbers
# are those of the API before ``regrow`` existed, where regrowth every 16 steps was the default
# and ``regrow_every=None`` gave classic pruning: prune(s, **kw) there with kw = the spelling
# given in the comment.
EARLIER_API = {
    "dpf-default": (  # prune(0.5)
        0.5,
        [{"regrow": "dpf"}, {"regrow": "dpf", "regrow_every": 16}],
        "-46 -6 0 -51 0 0 23 0 0 -114 -40 0 -6 -18 0 0 0 0 0 42 106 23 21 0",
        "-46 -6 25 -51 -3 4 23 -6 9 -114 -40 -23 -6 -18 37 -12 -27 -8 0 42 106 23 21 15",
        "2 4 5 7 8 11 14 15 16 17 18 23",
    ),
    "dpf-layer-every-2": (  # prune(0.5, scope="layer", regrow_every=2)
        0.5,
        [{"regrow": "dpf", "scope": "layer", "regrow_every": 2}],
        "-46 0 25 -51 0 0 23 0 0 -114 0 0 -6 -18 45 0 0 0 15 9 106 0 0 30",
        "-46 15 25 -51 0 6 23 -7 9 -114 -12 -23 -6 -18 45 -21 -27 -8 15 9 106 -15 9 30",
        "1 4 5 7 8 10 11 15 16 17 21 22",
    ),
    "dpf-saliency-gradual-every-3": (  # prune(gradual(...), criterion="saliency", regrow_every=3)
        gradual(0.75, 2, 12, 2),
        [{"regrow": "dpf", "criterion": "saliency", "regrow_every": 3}],
        "0 0 33 0 0 0 0 0 0 -90 0 -33 0 0 0 -21 0 0 0 9 76 0 0 0",
        "18 0 33 -15 18 7 -3 -3 22 -90 -9 -33 0 3 33 -21 -15 0 6 9 76 -3 9 22",
        "0 1 3 4 5 6 7 8 10 12 13 14 16 17 18 21 22 23",
    ),
    "dpf-2:4-every-2": (  # prune(None, structure="2:4", regrow_every=2)
        None,
        [{"regrow": "dpf", "structure": "2:4", "regrow_every": 2}],
        "-46 0 25 -51 0 0 0 0 0 -114 0 -23 -6 0 45 0 -45 -3 0 9 106 0 0 0",
        "-46 0 25 -51 -12 6 -3 -7 6 -114 -15 -23 -6 -4 45 -12 -45 -3 15 9 106 -9 9 15",
        "4 5 6 7 8 10 13 15 18 21 22 23",
    ),
    "none-gradual": (  # prune(gradual(...), regrow_every=None)
        gradual(0.75, 2, 12, 2),
        [{}, {"regrow": None}, {"regrow_every": None}],
        "-46 0 0 -51 0 0 0 0 0 -111 0 0 0 -18 0 0 -16 0 0 0 0 0 0 17",
        None,
        "1 2 4 5 6 7 8 10 11 12 14 15 17 18 19 20 21 22",
    ),
    "none-layer-falling": (  # prune(falling, scope="layer", regrow_every=None)
        lambda count: jnp.where(count < 10, 0.75, 0.25),
        [
            {"scope": "layer"},
            {"scope": "layer", "regrow": None},
            {"scope": "layer", "regrow_every": None},
        ],
        "-46 0 0 -51 0 0 -9 6 22 -60 -40 -23 -3 18 40 -28 0 0 -9 0 61 23 21 85",
        None,
        "1 2 4 5 16 17",
    ),
}


@pytest.mark.parametrize("name", list(EARLIER_API))
def test_values_equal_those_of_the_api_before_regrow_bit_for_bit(name):
    sparsity_, spellings, kernels_, latent, pruned = EARLIER_API[name]
    flat = lambda tree: np.concatenate([np.asarray(tree[n]["kernel"]).ravel() for n in "ab"])
    for kwargs in spellings:
        params, inner = _exact_run(prune(sparsity_, **kwargs))
        np.testing.assert_array_equal(flat(params) * 16, _ints(kernels_), err_msg=str(kwargs))
        np.testing.assert_array_equal(np.flatnonzero(~flat(inner.masks)), _ints(pruned))
        if latent is None:
            assert all(np.shape(x) == () for x in jax.tree.leaves(inner.latent))
        else:
            np.testing.assert_array_equal(flat(inner.latent) * 16, _ints(latent))


def test_size_report_sparse_relative_index_and_bitmask():
    from jopt.compress import size_report

    kernel = np.zeros((1, 40), np.float32)
    kernel[0, [0, 39]] = 1.5  # gaps 1 and 39: one filler zero bridges the 39 (> 2**5)
    params = {"kernel": kernel, "bias": np.zeros(3, np.float32)}
    report = size_report(params, sparse=True)
    assert report["bytes_before"] == 4 * 43
    assert report["bytes_after"] == math.ceil(3 * (32 + 5) / 8) + 12
    bitmask = size_report(params, sparse=True, index="bitmask")
    assert bitmask["bytes_after"] == math.ceil((2 * 32 + 40) / 8) + 12
    assert report["nonzero_fraction"] == 2 / 40
    assert size_report(params)["ratio"] == 1.0
    with pytest.raises(ValueError, match="not both"):
        size_report(params, bits=4, clusters=16)
