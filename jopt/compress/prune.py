r"""Magnitude pruning with an exact, traceable sparsity, dynamic sparse training, and Zhu & Gupta.

``prune`` goes in ``optax.chain`` **after** the optimizer. It receives the optimizer's update
:math:`u` and the params :math:`\theta` and emits :math:`u'` such that :math:`\theta + u'` is the
pruned weight: kept weights get exactly :math:`\theta + u`, pruned ones exactly ``0.0``.

By default only kernels (leaves with ``ndim >= 2``) are pruned; biases and normalization scales
are left alone (``mask=`` overrides this).

How the exact count stays traceable. The number of weights to prune is
:math:`k = \operatorname{round}(s \cdot n)` (round half to even), an int32 computed from the
sparsity :math:`s`, which may be a tracer (``jax.vmap`` over sparsities) or a schedule. The
weights to drop are found by ``jopt.compress.masks.keep_all_but_k_smallest`` (a bisection over
the bits of the float32 scores, ties broken by position), so no shape depends on :math:`k` and
exactly :math:`k` weights are pruned whatever the values.

The transform is a few small named pieces and one wrapper, as in jaxpruner:

* a **score** per ``criterion`` (``_CRITERIA``): :math:`|w|` or :math:`|w \cdot u|`;
* a **selection** per structure (``_selection``): one global threshold, one per leaf, or the
  ``n`` largest of every ``m``; each keeps all but a given count of the smallest scores and
  ranks non-candidates below every candidate;
* a **regrowth** method per ``regrow`` (``_REGROW``): which weights compete for the kept
  places, whether a dense latent copy is kept, and when the mask is re-selected;
* the shared **mask update** (``_apply_masks``): :math:`\theta + u'` is the masked weight.

Masks live in the state. With ``regrow=None`` (classic magnitude pruning) pruned weights score
below every kept weight, so when the sparsity only grows a pruned weight never comes back, and
when it is unchanged the mask is unchanged; the selection therefore only runs (under
``lax.cond``) on the steps where :math:`k` differs from the number currently pruned, or, with a
``regrow`` method, also on every ``regrow_every``-th step. Under ``jax.vmap`` over the sparsity
a plain ``cond`` would become a select that runs the selection on every step; a custom batching
rule keeps it a branch that runs (for the whole batch) only on the steps where some member's
mask may change.
"""

from __future__ import annotations

import math
import re
import warnings
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax import lax

from jopt.compress.masks import (
    Mask,
    check_seed,
    flat_mask,
    keep_all_but_k_smallest,
    keep_all_but_k_smallest_per_leaf,
    needs_params,
    order_keys,
    resolve_mask,
    seed_key,
)
from jopt.hyperparams import (
    Check,
    ScalarOrSchedule,
    in_unit_interval,
    is_concrete,
    stateful_transform,
    validate_hyperparam,
)

__all__ = [
    "DPF_REGROW_EVERY",
    "SPARSE_TRAINING_REGROW_EVERY",
    "PruneState",
    "gradual",
    "prune",
    "sparsity",
    "with_gradients",
]

# Steps between re-selections of the mask with regrow="dpf" (Lin et al. 2020 used 16).
DPF_REGROW_EVERY = 16
# Steps between drop-and-grow updates with regrow="rigl" or "set" (Evci et al. 2020: 100).
SPARSE_TRAINING_REGROW_EVERY = 100
# The fraction of kept weights dropped and regrown (alpha of RigL, zeta of SET: 0.3 in both).
DEFAULT_DROP_FRACTION = 0.3


class PruneState(NamedTuple):
    """Inner state of ``prune`` (inside ``jopt.HyperparamState.inner``).

    Attributes:
      masks: bool pytree like the params; True where a weight is kept (a scalar True for leaves
        that are not pruned).
      pruned: int32 vector, the number of weights currently pruned in each pruned leaf.
      latent: with ``regrow="dpf"``, the dense weights of the pruned leaves (pruned weights keep
        learning here); a scalar 0 for the other leaves, and for every leaf with the other
        methods (no second copy of the weights).
      step: int32, the number of updates so far.
      key: with ``regrow="set"``, the uint32 PRNG key of the random growth (step ``t`` draws
        from ``fold_in(key, t)``); None otherwise.
    """

    masks: Any
    pruned: jax.Array
    latent: Any
    step: jax.Array
    key: jax.Array | None = None


# --- scores, one per criterion ------------------------------------------------------------------


def _magnitude(w: jax.Array, u: jax.Array | None) -> jax.Array:
    """``criterion="magnitude"``: :math:`|w|`."""
    del u
    return jnp.abs(w)


def _saliency(w: jax.Array, u: jax.Array) -> jax.Array:
    """``criterion="saliency"``: the first-order Taylor estimate :math:`|w \\cdot u|`."""
    return jnp.abs(w * u)


_CRITERIA: dict[str, Callable[[jax.Array, Any], jax.Array]] = {
    "magnitude": _magnitude,
    "saliency": _saliency,
}


# --- selections, one per structure --------------------------------------------------------------
#
# ``keep(scores, candidates, count) -> masks`` keeps all but the ``count`` smallest scores of the
# pruned leaves and ranks every non-candidate below every candidate (so non-candidates are
# dropped first). ``count`` is a scalar (global), a vector (per leaf), or unused (N:M).


def _keep_global(scores: list, candidates: list, count: jax.Array) -> list:
    """One threshold over all pruned leaves together."""
    keys = jnp.concatenate([order_keys(s, m).ravel() for s, m in zip(scores, candidates)])
    flat = keep_all_but_k_smallest(keys, count)
    cuts = np.cumsum([s.size for s in scores])[:-1].tolist()
    return [f.reshape(s.shape) for f, s in zip(jnp.split(flat, cuts), scores)]


def _keep_per_leaf(scores: list, candidates: list, counts: jax.Array) -> list:
    """One threshold per leaf, ``counts[i]`` pruned in leaf ``i``."""
    flat = [order_keys(s, m).ravel() for s, m in zip(scores, candidates)]
    kept = keep_all_but_k_smallest_per_leaf(flat, counts)
    return [f.reshape(s.shape) for f, s in zip(kept, scores)]


def _n_m_keep(scores: jax.Array, kept: jax.Array, n: int, m: int) -> jax.Array:
    """Keeps the n largest of every m consecutive entries along axis -2 (ties by position)."""
    keys = order_keys(scores, kept)
    moved = jnp.moveaxis(keys, -2, -1)
    groups = moved.reshape((*moved.shape[:-1], moved.shape[-1] // m, m))
    # rank = how many entries of the group come first (larger, or equal and earlier): m * m
    # elementwise comparisons, much cheaper on a CPU than two argsorts for the small m of N:M
    a, b = groups[..., :, None], groups[..., None, :]
    earlier = np.arange(m)[None, :] < np.arange(m)[:, None]  # [i, j]: j before i
    rank = jnp.sum((b > a) | ((b == a) & earlier), axis=-1, dtype=jnp.int32)
    keep = (rank < n).reshape(moved.shape)
    return jnp.moveaxis(keep, -1, -2)


class _Selection(NamedTuple):
    keep: Callable[[list, list, jax.Array], list]  # (scores, candidates, count) -> masks
    count: Callable[[dict, np.ndarray], jax.Array]  # (hparams, leaf sizes) -> target pruned
    changed: Callable[[jax.Array, jax.Array], jax.Array]  # (pruned per leaf, target) -> bool
    kept: Callable[[jax.Array, np.ndarray], jax.Array] | None  # (target, sizes) -> kept


def _any_leaf_changed(pruned: jax.Array, target: jax.Array) -> jax.Array:
    return jnp.any(pruned != target)


def _selection(scope: str, n_m: tuple[int, int] | None) -> _Selection:
    """The selection of ``scope`` and ``structure`` (N:M ignores the scope)."""
    if n_m is not None:
        n, m = n_m

        def keep_n_of_m(scores, candidates, count):
            del count  # the pattern fixes the count
            return [_n_m_keep(s, c, n, m) & c for s, c in zip(scores, candidates)]

        n_m_count = lambda hp, sizes: jnp.asarray(sizes * (m - n) // m, jnp.int32)
        return _Selection(keep_n_of_m, n_m_count, _any_leaf_changed, kept=None)
    if scope == "layer":
        return _Selection(
            _keep_per_leaf,
            lambda hp, sizes: jnp.round(hp["sparsity"] * sizes).astype(jnp.int32),
            _any_leaf_changed,
            kept=lambda count, sizes: jnp.asarray(sizes, jnp.int32) - count,
        )
    return _Selection(
        _keep_global,
        lambda hp, sizes: jnp.round(hp["sparsity"] * sizes.sum()).astype(jnp.int32),
        lambda pruned, total: jnp.sum(pruned) != total,
        kept=lambda total, sizes: jnp.int32(sizes.sum()) - total,
    )


# --- regrowth methods ---------------------------------------------------------------------------
#
# A method re-selects the mask: ``select(scores, old, keep, count, grow)`` gets the scores of the
# pruned leaves, their masks before the step, the selection ``keep`` of the current scope or
# structure, the target ``count`` and the method's own input ``grow`` (built outside the
# ``cond`` by ``grow_input``). Scope, structure and the exact count are shared; a method only
# says which weights compete for the kept places.


def _select_none(scores: list, old: list, keep: Callable, count: jax.Array, grow: Any) -> list:
    """``regrow=None``: only the kept weights compete, so a pruned weight stays pruned while the
    sparsity does not fall, and an unchanged count leaves the mask unchanged."""
    del grow
    return keep(scores, old, count)


def _select_dpf(scores: list, old: list, keep: Callable, count: jax.Array, grow: Any) -> list:
    """``regrow="dpf"``: every weight competes by the score of its latent weight, so a pruned
    weight whose updates outgrow the kept ones comes back."""
    del grow
    return keep(scores, [jnp.ones(m.shape, bool) for m in old], count)


def _drop_and_grow(
    scores: list,
    old: list,
    keep: Callable,
    count: jax.Array,
    grow_scores: list,
    drop: jax.Array,
    avoid_dropped: bool,
) -> list:
    """Drops the ``drop`` kept weights of smallest score and grows as many of largest
    ``grow_scores`` among the others: the pruned count stays ``count`` exactly.

    With ``avoid_dropped`` the weights dropped now are grown back only when too few others are
    pruned (SET grows new connections); otherwise they compete like any pruned weight (RigL).
    """
    base = keep(scores, old, count)  # the target count first, as with regrow=None
    kept = keep(scores, base, count + drop)  # base's pruned rank lowest: `drop` more go
    # The weights still kept outrank every grow score; then the `count` lowest stay pruned.
    lifted = [jnp.where(k, jnp.inf, g) for k, g in zip(kept, grow_scores)]
    if avoid_dropped:
        candidates = [~(b & ~k) for b, k in zip(base, kept)]
    else:
        candidates = [jnp.ones(k.shape, bool) for k in kept]
    return keep(lifted, candidates, count)


def _select_rigl(scores: list, old: list, keep: Callable, count: jax.Array, grow: Any) -> list:
    """``regrow="rigl"``: grows where the dense gradient is largest in magnitude."""
    grads, drop = grow
    magnitudes = [jnp.abs(g) for g in grads]
    return _drop_and_grow(scores, old, keep, count, magnitudes, drop, avoid_dropped=False)


def _select_set(scores: list, old: list, keep: Callable, count: jax.Array, grow: Any) -> list:
    """``regrow="set"``: grows at uniformly random pruned positions."""
    key, drop = grow
    keys = jax.random.split(key, len(scores))
    draws = [jax.random.uniform(k, s.shape) for k, s in zip(keys, scores)]
    return _drop_and_grow(scores, old, keep, count, draws, drop, avoid_dropped=True)


def _period(hp: dict) -> jax.Array:
    """``regrow_every`` as an int32 >= 1 (it is held as a float, and may be traced)."""
    return jnp.maximum(jnp.round(hp["regrow_every"]).astype(jnp.int32), 1)


def _due_every(step: jax.Array, hp: dict) -> jax.Array:
    """Re-select on every ``regrow_every``-th step, from step 0 (DPF)."""
    return step % _period(hp) == 0


def _due_until_end(step: jax.Array, hp: dict) -> jax.Array:
    """Drop and grow on every ``regrow_every``-th step after the first and before
    ``regrow_end`` (RigL, SET); step 0 only forms the first mask."""
    return (step % _period(hp) == 0) & (step > 0) & (step < hp["regrow_end"])


def _drop_fraction(step: jax.Array, hp: dict) -> jax.Array:
    r"""RigL's cosine decay :math:`\alpha_t = \frac{\alpha}{2}(1 + \cos(\pi t / T_{end}))`; the
    constant :math:`\alpha` when ``regrow_end`` is infinite (None)."""
    decay = 0.5 * (1.0 + jnp.cos(jnp.pi * step.astype(jnp.float32) / hp["regrow_end"]))
    return hp["drop_fraction"] * decay


def _drop_count(step: jax.Array, hp: dict, kept: jax.Array, due: jax.Array) -> jax.Array:
    """round(alpha_t * kept) weights to drop (and grow) on a due step, 0 otherwise."""
    drop = jnp.round(_drop_fraction(step, hp) * kept).astype(jnp.int32)
    return jnp.where(due, drop, 0)


def _no_input(state: PruneState, grads: list | None, drop: jax.Array) -> None:
    del state, grads, drop


def _gradient_input(state: PruneState, grads: list | None, drop: jax.Array) -> tuple:
    del state
    if grads is None:
        raise ValueError(
            "prune: regrow='rigl' grows where the dense gradient is largest and needs it: "
            "call tx.update(updates, state, params, grads=grads), or wrap the whole optimizer "
            "as jopt.compress.with_gradients(optax.chain(...)) (as jopt.train.fit calls it)."
        )
    return grads, drop


def _random_input(state: PruneState, grads: list | None, drop: jax.Array) -> tuple:
    del grads
    return jax.random.fold_in(state.key, state.step), drop


class _Regrow(NamedTuple):
    select: Callable[[list, list, Callable, jax.Array, Any], list]
    latent: bool  # dense latent weights in the state: pruned weights keep taking updates
    due: Callable[[jax.Array, dict], jax.Array] | None  # periodic re-selection (None: never)
    every: int | None  # default regrow_every
    drops: bool  # drop-and-grow: drop_fraction and regrow_end apply
    grow_input: Callable[[PruneState, list | None, jax.Array], Any]


_REGROW: dict[str | None, _Regrow] = {
    None: _Regrow(_select_none, False, None, None, False, _no_input),
    "dpf": _Regrow(_select_dpf, True, _due_every, DPF_REGROW_EVERY, False, _no_input),
    "rigl": _Regrow(
        _select_rigl, False, _due_until_end, SPARSE_TRAINING_REGROW_EVERY, True, _gradient_input
    ),
    "set": _Regrow(
        _select_set, False, _due_until_end, SPARSE_TRAINING_REGROW_EVERY, True, _random_input
    ),
}


# --- the shared mask update ---------------------------------------------------------------------


def _apply_masks(
    ups: list, leaves: list, latents: list, idx: list, ws: list, old: list, new: list, latent: bool
) -> tuple[list, list]:
    """The updates ``u'`` with :math:`\\theta + u'` the masked weight, and the new latents."""
    out, new_latents = list(ups), list(latents)
    for j, i in enumerate(idx):
        if latent:
            # A weight pruned now restarts from 0 in the latent: a pruned weight's latent is the
            # sum of the updates since it was pruned (keeping its old value instead swaps stale
            # weights back in: 59% vs 63% on the chain of prune's docstring note, 6 keys).
            w = jnp.where(old[j] & ~new[j], 0.0, ws[j])
            out[i] = jnp.where(new[j], w - leaves[i], -leaves[i])  # -theta+theta == 0
            new_latents[i] = w
        else:
            # A pruned weight is exactly 0, so a weight kept again (or grown) starts from 0 + u.
            out[i] = jnp.where(new[j], ups[i], -leaves[i])
    return out, new_latents


# --- the transform --------------------------------------------------------------------------------


def _is_int_like(value: Any) -> bool:
    """A Python/NumPy int or a JAX/NumPy scalar array (possibly traced), not a bool or str."""
    if isinstance(value, bool):
        return False
    if isinstance(value, (int, np.integer)):
        return True
    return isinstance(value, (jax.Array, np.ndarray)) and np.ndim(value) == 0


_PERIOD = Check(lambda v: bool(np.all((v >= 1) & (v == np.floor(v)))), "an int >= 1", low=1.0)
_END = Check(lambda v: bool(np.all(v > 0)), "> 0 (inf: no end)", low=0.0, low_open=True)


def _regrow_hyperparams(
    regrow: Any,
    regrow_every: Any,
    drop_fraction: Any,
    regrow_end: Any,
    seed: Any,
) -> tuple[dict, dict[str, Check]]:
    """Checks the regrowth arguments; returns the hyperparameters they put in the state."""
    if not (regrow is None or isinstance(regrow, str)) or regrow not in _REGROW:
        allowed = ", ".join(repr(key) for key in _REGROW)
        raise ValueError(f"prune: regrow must be one of {allowed}, got {regrow!r}.")
    if regrow_every is not None and (
        not _is_int_like(regrow_every)
        or (is_concrete(regrow_every) and not _PERIOD.ok(np.asarray(regrow_every)))
    ):  # a traced period is checked per configuration by the sweep (stateful_transform)
        raise ValueError(f"prune: regrow_every must be an int >= 1 or None, got {regrow_every!r}.")
    method = _REGROW[regrow]
    if regrow is None and regrow_every is not None:
        # with regrowth once the default, this call would now prune without it, silently
        raise ValueError(
            f"prune: regrow_every={regrow_every!r} applies only with regrow='dpf', 'rigl' or "
            "'set'; pass one of those as well (pruned weights regrow), or drop regrow_every "
            "for classic magnitude pruning."
        )
    for name, value in (("drop_fraction", drop_fraction), ("regrow_end", regrow_end)):
        if value is not None and not method.drops:
            raise ValueError(
                f"prune: {name}={value!r} applies only with regrow='rigl' or 'set', got "
                f"regrow={regrow!r}."
            )
    if seed is not None and regrow != "set":
        raise ValueError(f"prune: seed applies only with regrow='set', got regrow={regrow!r}.")
    if method.every is None:
        return {}, {}
    hyperparams = {"regrow_every": method.every if regrow_every is None else regrow_every}
    checks = {"regrow_every": _PERIOD}
    if method.drops:
        hyperparams["drop_fraction"] = (
            DEFAULT_DROP_FRACTION if drop_fraction is None else drop_fraction
        )
        hyperparams["regrow_end"] = math.inf if regrow_end is None else regrow_end
        checks["drop_fraction"] = in_unit_interval(closed=True)
        checks["regrow_end"] = _END
    if regrow == "set":
        check_seed("prune", 0 if seed is None else seed)
    return hyperparams, checks


def _sparsity_hyperparams(
    sparsity: Any, n_m: tuple[int, int] | None, structure: Any, begin_step: Any
) -> tuple[dict, dict[str, Check]]:
    """Checks ``sparsity`` and ``begin_step``; returns the hyperparameters they put in state."""
    if not isinstance(begin_step, jax.core.Tracer) and not float(begin_step) >= 0:
        raise ValueError(f"prune: begin_step must be >= 0, got {begin_step!r}.")
    delayed = isinstance(begin_step, jax.core.Tracer) or float(begin_step) > 0
    if n_m is not None and delayed:
        raise ValueError(f"prune: begin_step is not supported with structure={structure!r}.")
    if n_m is None and sparsity is None:
        raise ValueError("prune: sparsity must be a value in [0, 1) or a schedule, got None.")
    if n_m is not None:
        implied = 1.0 - n_m[0] / n_m[1]
        if sparsity is not None and not (
            isinstance(sparsity, (int, float)) and np.isclose(sparsity, implied)
        ):
            raise ValueError(
                f"prune: with structure={structure!r} the sparsity is {implied:g}; pass "
                f"sparsity=None (got {sparsity!r})."
            )
        return {}, {}
    checks: dict[str, Check] = {"sparsity": in_unit_interval()}
    if delayed:
        validate_hyperparam("prune", "sparsity", sparsity, checks["sparsity"])  # before wrapping
        sparsity = _from_step(sparsity, begin_step)
    return {"sparsity": sparsity}, checks


def _parse_structure(structure: str | None) -> tuple[int, int] | None:
    if structure is None:
        return None
    match = re.fullmatch(r"\s*(\d+)\s*:\s*(\d+)\s*", str(structure))
    if match is None:
        raise ValueError(f"prune: structure must be None or 'n:m' (e.g. '2:4'), got {structure!r}.")
    n, m = int(match.group(1)), int(match.group(2))
    if not 0 < n < m:
        raise ValueError(f"prune: structure 'n:m' needs 0 < n < m, got {structure!r}.")
    return n, m


def _gated_cond(pred: jax.Array, true_fn: Callable, false_fn: Callable, operand: Any) -> Any:
    """``lax.cond(pred, true_fn, false_fn, operand)`` that stays a branch under ``jax.vmap``.

    Under ``vmap`` a batched predicate turns ``lax.cond`` into a select that runs both branches
    for every member on every call. Here the batched version runs ``true_fn`` for the whole
    batch only when some member's predicate holds (and takes it for those members only), so
    a sweep over sparsities pays for the mask selection on the steps where some member's
    target changes (every ``every`` steps of a ``gradual`` schedule), not on all of them.
    Nested vmaps nest the same rule. ``true_fn`` and ``false_fn`` must be pure.
    """

    @jax.custom_batching.custom_vmap
    def gated(pred, operand):
        return lax.cond(pred, true_fn, false_fn, operand)

    @gated.def_vmap
    def gated_batched(axis_size, in_batched, pred, operand):
        pred_batched, operand_batched = in_batched
        axes = jax.tree.map(lambda b: 0 if b else None, operand_batched)
        pred = pred if pred_batched else jnp.broadcast_to(pred, (axis_size,))
        batched_false = jax.vmap(false_fn, in_axes=(axes,), axis_size=axis_size)
        batched_true = jax.vmap(true_fn, in_axes=(axes,), axis_size=axis_size)

        def some(args):
            member_pred, x = args
            new, old = batched_true(x), batched_false(x)
            pick = lambda a, b: jnp.where(member_pred.reshape((-1,) + (1,) * (a.ndim - 1)), a, b)
            return jax.tree.map(pick, new, old)

        def none(args):
            return batched_false(args[1])

        out = _gated_cond(jnp.any(pred), some, none, (pred, operand))
        return out, jax.tree.map(lambda _: True, out)

    return gated(pred, operand)


def _from_step(sparsity: ScalarOrSchedule, begin_step: int | jax.Array) -> Callable:
    """The schedule ``count -> sparsity(count) if count >= begin_step else 0``."""
    if callable(sparsity) and not isinstance(sparsity, jax.Array):
        base = sparsity
    else:
        base = lambda count: sparsity

    def schedule(count):
        value = jnp.asarray(base(count), jnp.float32)
        return jnp.where(count >= begin_step, value, jnp.zeros_like(value))

    return schedule


def prune(
    sparsity: ScalarOrSchedule | None,
    *,
    scope: str = "global",
    structure: str | None = None,
    regrow: str | None = None,
    regrow_every: int | jax.Array | None = None,
    drop_fraction: ScalarOrSchedule | None = None,
    regrow_end: float | jax.Array | None = None,
    seed: int | jax.Array | None = None,
    criterion: str = "magnitude",
    mask: Mask = None,
    begin_step: int | jax.Array = 0,
    name: str | None = None,
) -> optax.GradientTransformationExtraArgs:
    r"""Magnitude pruning to an exact sparsity; pruned weights are exactly zero.

    Place it after the optimizer. By default (``regrow=None``) this is magnitude pruning as Han
    et al. and Zhu & Gupta publish it (and as jaxpruner, TF-MOT and ``torch.nn.utils.prune``
    implement it): a pruned weight stays exactly zero unless the sparsity falls. With :math:`w
    = \theta + u`, :math:`s_t` the sparsity and :math:`k_t = \operatorname{round}(s_t\, n)`:

    .. math::
      \sigma &= \begin{cases} |w| & \text{criterion="magnitude"} \\
                              |w \odot u| & \text{criterion="saliency"} \end{cases} \\
      M_t &= M_{t-1} \setminus \{\text{the } k_t - |\lnot M_{t-1}| \text{ kept weights of
             smallest } \sigma\} \\
      u'_t &= \begin{cases} u & M_t \\ -\theta & \lnot M_t \end{cases}
      \quad\text{so}\quad \theta + u' = M_t \odot w

    (If :math:`s_t` decreases, the :math:`k_t` pruned weights of lowest index stay pruned and
    the others are released, restarting from :math:`0 + u`.) It is the default because it is
    what "magnitude pruning" means to most users, it keeps no second copy of the weights (a step
    costs 1.00-1.09x a plain Adam step against 1.13-1.24x with regrowth,
    ``experiments.bench_compress``), and from trained weights with Zhu & Gupta's schedule it
    trains better than regrowth (66.4% against 63.1% in the note below). It cannot prune hard
    from the random init, since the mask chosen at the first update never changes (9% in the
    note): there, start later (``begin_step``, ``gradual``) or use a ``regrow`` method.

    With ``regrow="dpf"`` (dynamic pruning with feedback, Lin et al. 2020) the state holds
    latent weights :math:`\tilde\theta` (the params at ``init``) that take every update, also at
    pruned positions, where the gradient was computed with the weight at 0 (the "feedback");
    every :math:`R` = ``regrow_every`` steps, and whenever the target count changes, the mask is
    re-selected among *all* weights, so a pruned weight whose updates outgrow the kept weights
    comes back. With :math:`w = \tilde\theta_{t-1} + u_t` and :math:`\sigma` as above:

    .. math::
      M_t &= \begin{cases} \text{all but the } k_t \text{ smallest } \sigma
             & t \equiv 0 \pmod R \text{ or } k_t \ne k_{t-1} \\
             M_{t-1} & \text{otherwise} \end{cases} \\
      \tilde\theta_t &= \begin{cases} 0 & M_{t-1} \land \lnot M_t \\
                                      w & \text{otherwise} \end{cases}
      \qquad \theta_t = M_t \odot \tilde\theta_t

    A weight restarts from 0 in the latent when it is pruned, so a pruned weight's latent is
    the sum of the updates since it was pruned (keeping its old value instead lets stale
    weights swap back in, which trained to 59% rather than 63% on the chain measured below).
    The latent doubles the memory of the pruned leaves in the state; with :math:`R = 16` a step
    costs about 1.2x a plain Adam step, with :math:`R = 1` 2.7x (``experiments.bench_compress``).

    With ``regrow="rigl"`` (Evci et al. 2020) and ``regrow="set"`` (Mocanu et al. 2018), dynamic
    sparse training, the mask moves at a constant sparsity and no latent is kept: on every
    :math:`R`-th step :math:`t` with :math:`0 < t < T_{end}` (``regrow_end``), the
    :math:`d_t = \operatorname{round}(\alpha_t (n - k_t))` kept weights of smallest
    :math:`\sigma` are dropped and :math:`d_t` others are grown: for RigL those of largest
    dense-gradient magnitude :math:`|g|` among all weights not still kept (a weight dropped now
    may come straight back, as in RigL's code), for SET uniformly random ones among the
    weights pruned before this step (the dropped ones only when too few others are pruned),
    from ``fold_in(PRNGKey(seed), t)``. With :math:`K_t` the weights kept after the drop:

    .. math::
      \alpha_t &= \frac{\alpha}{2}\left(1 + \cos\frac{\pi t}{T_{end}}\right) \\
      K_t &= M'_t \setminus \{\text{the } d_t \text{ weights of } M'_t
             \text{ of smallest } \sigma\}, \quad M'_t = \text{the mask of regrow=None} \\
      M_t &= K_t \cup \{\text{the } d_t \text{ weights of largest } |g| \text{ (RigL) or
             random (SET) outside } K_t\}

    where :math:`\alpha` = ``drop_fraction``. A grown weight was exactly 0, so it starts from
    :math:`0 + u_t` (this step's update): the mask prunes exactly :math:`k_t` weights, and the
    params have exactly :math:`k_t` zeros after every update unless a kept weight is itself
    exactly 0 (a grown weight whose update is 0, e.g. one fed by an input that is always 0).
    Between drop-and-grow steps this is ``regrow=None``.

    RigL needs the dense gradient :math:`g`, while ``prune`` sits after the optimizer and
    receives its update :math:`u` (:math:`-\alpha g` only after plain SGD; a preconditioned,
    averaged step after momentum or Adam). So, like jaxpruner's RigL, which reads the gradient
    that reaches its wrapper before the inner optimizer, ``prune`` takes it as the extra keyword
    ``grads=`` of ``update``: wrap the whole optimizer in :func:`with_gradients`, which passes
    the gradient it receives on to every member of the chain, or call
    ``tx.update(updates, state, params, grads=grads)`` yourself. Without it, ``regrow="rigl"``
    raises a ValueError rather than rank by the update. The gradient at a pruned weight is
    the dense one (the weight is exactly 0 in the forward pass), which is what RigL grows by.

    .. warning::
      The optimizer's state is not reset where a weight is grown (jaxpruner resets momentum and
      Adam's moments there): ``prune`` cannot see the optimizer's state. With momentum or Adam
      the first updates of a grown weight carry the moments accumulated while it was pruned.

    .. note::
      Measured on the MNIST-1D MLP (3000 steps, batch 100, test accuracy, keys 0-5 as one vmapped
      program) with ``optax.chain(jopt.compress.topk(0.01), jopt.momentum(0.1), prune(...))``;
      dense ``jopt.momentum(0.1)``: 63.2%. With ``regrow="dpf"``: a constant ``prune(0.9)``
      from step 0: 63.2% (key 0: 66.0%) with the default ``regrow_every=16``; ``1``: 65.6%,
      ``4``: 64.1%, ``100``: 28%; ``scope="layer"``: 43% (90% of the 1,000-weight output layer
      goes). With ``regrow=None``: 9% at key 0 (the mask is chosen from the random init
      and frozen, and one global threshold leaves ~0.1% of the layers initialized at the
      smaller scale :math:`1/\sqrt{100}`). With Zhu & Gupta's schedule (``gradual(0.9, 600,
      2100, 100)``) ``regrow=None`` is better: 66.4% against 63.1% with ``"dpf"``; with
      ``begin_step=1000``, 65.5% with ``"dpf"``. With ``jopt.adam(1e-2)`` and ``prune(0.8)``
      from step 0: 63.7% with ``"dpf"`` against 54.2% with ``regrow=None``.

    With every method the params are exactly 0 wherever the mask is off, after every update.

    With ``scope="global"``, :math:`n` counts the weights of all pruned leaves together and one
    threshold is shared (RigL and SET then drop and grow across leaves); with ``"layer"`` each
    leaf is pruned to :math:`s_t` separately (and drops and grows its own :math:`d_t`). Exactly
    :math:`k_t` weights are zero by the mask after every update, also when :math:`s_t` is a
    tracer.

    ``criterion="saliency"`` is the first-order Taylor estimate of the loss change
    :math:`|w \cdot g|`, where :math:`g` is the update this transform receives (the optimizer's
    output: :math:`-\alpha\nabla L` after ``jopt.sgd``, a preconditioned step after Adam), so
    the score is proportional to the classic :math:`|w \cdot \nabla L|` only after plain SGD.

    ``structure="n:m"`` keeps the ``n`` largest of every ``m`` consecutive weights along axis -2
    (the input axis of a flax kernel, whose size must be a multiple of ``m``): the 2:4 pattern of
    sparse tensor cores. The sparsity is then ``1 - n/m`` and ``sparsity`` must be None or equal
    to it; ``scope`` is ignored.

    Args:
      sparsity: :math:`s` in [0, 1), a float, JAX scalar (tracer under ``vmap``) or schedule
        ``count -> value`` (e.g. ``jopt.compress.gradual(...)``). None with ``structure``.
      scope: ``"global"`` (one threshold over all pruned leaves) or ``"layer"`` (per leaf).
      structure: None (unstructured) or ``"n:m"`` with ``0 < n < m`` (static).
      regrow: None (default): classic magnitude pruning, no latent, a pruned weight stays
        pruned while the sparsity does not fall; ``"dpf"``: latent weights in the state and
        the mask re-selected among all of them every ``regrow_every`` steps; ``"rigl"`` or
        ``"set"``: drop and grow every ``regrow_every`` steps (unstructured only) (static).
      regrow_every: :math:`R`, an int >= 1, the steps between re-selections: a hyperparameter
        in the state (``jopt.hparams``, ``jopt.set_hparams``; a JAX scalar may be traced).
        None: ``DPF_REGROW_EVERY`` = 16 with ``"dpf"``, ``SPARSE_TRAINING_REGROW_EVERY`` = 100
        with ``"rigl"``/``"set"``. With ``regrow=None`` an int is refused, since
        ``prune(s, regrow_every=4)`` once meant regrowth and would now silently mean none.
      drop_fraction: :math:`\alpha` in [0, 1], the fraction of the kept weights dropped (and
        grown) on a drop-and-grow step, a float, JAX scalar or schedule, held in the state
        (None: 0.3). Only with ``"rigl"``/``"set"``.
      regrow_end: :math:`T_{end} > 0`, the step from which the mask stops moving; the drop
        fraction decays to 0 over it as a cosine. A hyperparameter in the state. None (the
        default): no end and a constant :math:`\alpha` (held as ``inf``). Only with
        ``"rigl"``/``"set"``.
      seed: SET's random growth: an int or a uint32 PRNG key of shape (2,), possibly traced
        (None: 0). Only with ``"set"``.
      criterion: ``"magnitude"`` or ``"saliency"`` (static).
      mask: which leaves to prune: a bool pytree or ``params -> bool pytree`` (static); default
        the leaves with ``ndim >= 2``.
      begin_step: the first update (0-based count) at which ``sparsity`` applies; before it
        the sparsity is 0 (nothing is pruned). An int >= 0 or a JAX scalar (may be traced).
        With a schedule, the schedule is still evaluated at the global count. Not with
        ``structure``.
      name: optional label for ``jopt.hparams``.

    Returns:
      An optax ``GradientTransformationExtraArgs`` holding ``sparsity`` (and ``regrow_every``,
      ``drop_fraction``, ``regrow_end`` where they apply) in its state and the masks in
      ``state.inner`` (a ``PruneState``). Its ``update`` takes the extra keyword ``grads=``.

    Raises:
      ValueError: a sparsity outside [0, 1), an unknown ``scope``, ``criterion`` or ``regrow``,
        a malformed ``structure``, a ``regrow_every`` that is not None or an int >= 1 (or an
        int without a ``regrow`` method), a ``drop_fraction`` outside [0, 1], a ``regrow_end``
        <= 0, ``drop_fraction``/``regrow_end``/``seed`` with a method they do not apply to,
        ``"rigl"``/``"set"`` with ``structure``, ``"rigl"`` updated without ``grads=``, or (at
        ``init``) a kernel whose axis -2 is not a multiple of ``m``.

    Examples:
      >>> import jax, jax.numpy as jnp, optax, jopt
      >>> from jopt.compress import prune, sparsity
      >>> params = {"kernel": jnp.arange(1.0, 11.0).reshape(5, 2), "bias": jnp.ones(2)}
      >>> tx = optax.chain(jopt.sgd(0.1), prune(0.6))
      >>> state = tx.init(params)
      >>> grads = jax.tree.map(jnp.ones_like, params)
      >>> updates, state = tx.update(grads, state, params)
      >>> params = optax.apply_updates(params, updates)
      >>> params["kernel"]
      Array([[0. , 0. ],
             [0. , 0. ],
             [0. , 0. ],
             [6.9, 7.9],
             [8.9, 9.9]], dtype=float32)
      >>> print(sparsity(params), params["bias"])
      0.6 [0.9 0.9]

      With ``regrow="dpf"`` pruned weights keep learning in ``state.inner.latent`` (from 0,
      where they were pruned) while the params stay exactly 0 there:

      >>> params = {"kernel": jnp.arange(1.0, 11.0).reshape(5, 2)}
      >>> tx = optax.chain(jopt.sgd(0.5), prune(0.6, regrow="dpf", regrow_every=4))
      >>> state = tx.init(params)
      >>> for _ in range(2):
      ...     updates, state = tx.update({"kernel": jnp.ones((5, 2))}, state, params)
      ...     params = optax.apply_updates(params, updates)
      >>> print(params["kernel"][:, 0], state[1].inner.latent["kernel"][:, 0])
      [0. 0. 0. 6. 8.] [-0.5 -0.5 -0.5  6.   8. ]

      With ``regrow="rigl"`` (inside ``with_gradients``, which hands it the gradient), step 0
      prunes the first column; step 1 drops the smallest kept weight (5.0) and grows the pruned
      one of largest gradient magnitude, from 0: :math:`0 - 0.1 \cdot (-4) = 0.4`:

      >>> params = {"kernel": jnp.array([[1.0, 5.0], [2.0, 6.0], [3.0, 7.0], [0.5, 8.0]])}
      >>> grads = {"kernel": jnp.array([[0.0, 0.0], [1.0, 0.0], [0.0, 0.0], [-4.0, 0.0]])}
      >>> rigl = prune(0.5, regrow="rigl", regrow_every=1, drop_fraction=0.25)
      >>> tx = jopt.compress.with_gradients(optax.chain(jopt.sgd(0.1), rigl))
      >>> state = tx.init(params)
      >>> for _ in range(2):
      ...     updates, state = tx.update(grads, state, params)
      ...     params = optax.apply_updates(params, updates)
      >>> params["kernel"]
      Array([[0. , 0. ],
             [0. , 6. ],
             [0. , 7. ],
             [0.4, 8. ]], dtype=float32)

    References:
      Han et al., `Learning both Weights and Connections for Efficient Neural Networks
      <https://arxiv.org/abs/1506.02626>`_, 2015. Zhu & Gupta, `To prune, or not to prune
      <https://arxiv.org/abs/1710.01878>`_, 2017. Mishra et al., `Accelerating Sparse Deep
      Neural Networks <https://arxiv.org/abs/2104.08378>`_, 2021 (2:4). Lin, Stich, Barba,
      Dmitriev & Jaggi, `Dynamic Model Pruning with Feedback
      <https://arxiv.org/abs/2006.07253>`_, ICLR 2020. Evci, Gale, Menick, Castro & Elsen,
      `Rigging the Lottery: Making All Tickets Winners <https://arxiv.org/abs/1911.11134>`_,
      ICML 2020. Mocanu et al., `Scalable Training of Artificial Neural Networks with
      Adaptive Sparse Connectivity inspired by Network Science
      <https://arxiv.org/abs/1707.04780>`_, Nature Communications 2018.
    """
    if scope not in ("global", "layer"):
        raise ValueError(f"prune: scope must be 'global' or 'layer', got {scope!r}.")
    if criterion not in ("magnitude", "saliency"):
        raise ValueError(f"prune: criterion must be 'magnitude' or 'saliency', got {criterion!r}.")
    n_m = _parse_structure(structure)
    regrow_hp, regrow_checks = _regrow_hyperparams(
        regrow, regrow_every, drop_fraction, regrow_end, seed
    )
    method = _REGROW[regrow]
    if method.drops and n_m is not None:
        raise ValueError(
            f"prune: regrow={regrow!r} drops and grows single weights; it does not support "
            f"structure={structure!r} (use structure=None, or regrow='dpf')."
        )
    hyperparams, checks = _sparsity_hyperparams(sparsity, n_m, structure, begin_step)
    hyperparams, checks = {**hyperparams, **regrow_hp}, {**checks, **regrow_checks}
    rule = _selection(scope, n_m)
    score = _CRITERIA[criterion]

    def leaves_of(params):
        leaves, treedef = jax.tree.flatten(params)
        return leaves, treedef, flat_mask(mask, params, kind="prune")

    def init(params, hp):
        del hp
        leaves, treedef, on = leaves_of(params)
        for leaf, flag in zip(leaves, on):
            if flag and n_m is not None and (jnp.ndim(leaf) < 2 or leaf.shape[-2] % n_m[1]):
                raise ValueError(
                    f"prune: structure={structure!r} needs axis -2 of every pruned leaf to be a "
                    f"multiple of {n_m[1]}, got a leaf of shape {jnp.shape(leaf)}."
                )
        masks = [
            jnp.ones(jnp.shape(x), bool) if flag else jnp.ones((), bool)
            for x, flag in zip(leaves, on)
        ]
        latent = [
            jnp.asarray(x) if flag and method.latent else jnp.zeros((), jnp.float32)
            for x, flag in zip(leaves, on)
        ]
        return PruneState(
            masks=jax.tree.unflatten(treedef, masks),
            pruned=jnp.zeros((sum(on),), jnp.int32),
            latent=jax.tree.unflatten(treedef, latent),
            step=jnp.zeros((), jnp.int32),
            key=seed_key(0 if seed is None else seed) if regrow == "set" else None,
        )

    # Everything the selection reads is passed in (no closed-over tracers), so that
    # _gated_cond can batch it.
    def select(operand):
        ws, us, old, count, grow = operand
        scores = [score(w, u) for w, u in zip(ws, us or [None] * len(ws))]
        return method.select(scores, old, rule.keep, count, grow)

    def update(updates, state, params, hp, grads=None, **extra_args):
        del extra_args
        needs_params("prune", params)
        leaves, treedef, on = leaves_of(params)
        idx = [i for i, flag in enumerate(on) if flag]
        if not idx:
            return updates, state._replace(step=state.step + 1)
        ups, latents = treedef.flatten_up_to(updates), treedef.flatten_up_to(state.latent)
        dense = latents if method.latent else leaves  # with a latent, the mask picks from it
        ws = [dense[i] + ups[i] for i in idx]
        us = [ups[i] for i in idx] if criterion == "saliency" else []
        masks = treedef.flatten_up_to(state.masks)
        old = [masks[i] for i in idx]
        sizes = np.array([w.size for w in ws])
        count = rule.count(hp, sizes)
        changed = rule.changed(state.pruned, count)
        due = None if method.due is None else method.due(state.step, hp)
        drop = None
        if method.drops:
            drop = _drop_count(state.step, hp, rule.kept(count, sizes), due)
        if due is not None:
            changed = changed | due
        picked = None if grads is None else [treedef.flatten_up_to(grads)[i] for i in idx]
        grow = method.grow_input(state, picked, drop)
        new = _gated_cond(changed, select, lambda op: list(op[2]), (ws, us, old, count, grow))
        out, new_latents = _apply_masks(ups, leaves, latents, idx, ws, old, new, method.latent)
        for j, i in enumerate(idx):
            masks[i] = new[j]
        new_state = state._replace(
            masks=jax.tree.unflatten(treedef, masks),
            pruned=jnp.stack([jnp.sum(~m, dtype=jnp.int32) for m in new]),
            latent=jax.tree.unflatten(treedef, new_latents),
            step=state.step + 1,
        )
        return jax.tree.unflatten(treedef, out), new_state

    return stateful_transform(
        "prune", init, update, hyperparams, checks, name=name, pass_extra_args=True
    )


def with_gradients(tx: optax.GradientTransformation) -> optax.GradientTransformationExtraArgs:
    r"""Passes the gradient that ``tx`` receives on to each member of ``tx`` as ``grads=``.

    ``prune(..., regrow="rigl")`` grows where the dense gradient is largest, but sits after the
    optimizer, which turns the gradient into an update. Wrapped in ``with_gradients``, the
    whole optimizer receives the gradient as usual and every member that takes extra
    arguments (every jopt transform, ``optax.chain``) also gets it as the keyword ``grads=``
    (members that take none are called without it). ``jopt.train.fit`` and ``train_step``
    call ``tx.update(grads, opt_state, params)``, so this is how RigL runs there. An explicit
    ``grads=`` passed to ``update`` wins.

    Args:
      tx: an optax ``GradientTransformation`` (usually an ``optax.chain``).

    Returns:
      An optax ``GradientTransformationExtraArgs`` with the state of ``tx``.

    Examples:
      >>> import jax.numpy as jnp, optax, jopt
      >>> from jopt.compress import prune, with_gradients
      >>> tx = with_gradients(optax.chain(jopt.adam(1e-3), prune(0.5, regrow="rigl")))
      >>> params = {"kernel": jnp.ones((4, 4))}
      >>> updates, state = tx.update(params, tx.init(params), params)
      >>> int((updates["kernel"] + params["kernel"] == 0).sum())
      8
    """
    inner = optax.with_extra_args_support(tx)

    def update_fn(updates, state, params=None, **extra_args):
        extra_args.setdefault("grads", updates)
        return inner.update(updates, state, params, **extra_args)

    return optax.GradientTransformationExtraArgs(inner.init, update_fn)


# --- schedule and measurement ---------------------------------------------------------------------


def _check_fraction(name: str, value: Any) -> None:
    if isinstance(value, jax.core.Tracer):
        return
    if not 0.0 <= float(value) < 1.0:
        raise ValueError(f"gradual: {name} must be in [0, 1), got {value!r}.")


def gradual(
    final_sparsity: float | jax.Array,
    begin_step: int | jax.Array,
    end_step: int | jax.Array,
    every: int | jax.Array,
    initial_sparsity: float | jax.Array = 0.0,
) -> Callable[[jax.Array], jax.Array]:
    r"""Zhu & Gupta's cubic sparsity schedule ``step -> sparsity``, for ``prune(sparsity=...)``.

    With :math:`s_i, s_f` = ``initial_sparsity``, ``final_sparsity``, :math:`t_0` =
    ``begin_step``, :math:`t_0 + n\Delta t` = ``end_step`` and :math:`\Delta t` = ``every``, the
    sparsity changes only every :math:`\Delta t` steps:

    .. math::
      s_t = \begin{cases}
        s_i & t < t_0 \\
        s_f + (s_i - s_f)\left(1 - \frac{\tau - t_0}{n \Delta t}\right)^3,
          \ \tau = t_0 + \Delta t \left\lfloor \frac{t - t_0}{\Delta t} \right\rfloor
          & t_0 \le t < t_0 + n\Delta t \\
        s_f & t \ge t_0 + n\Delta t
      \end{cases}

    Every argument may be a JAX scalar (a tracer under ``vmap``); range checks run on concrete
    values only.

    Args:
      final_sparsity: :math:`s_f` in [0, 1).
      begin_step: :math:`t_0` >= 0, the first step of pruning.
      end_step: the step from which :math:`s_f` holds; > ``begin_step``.
      every: :math:`\Delta t` >= 1, the pruning frequency in steps.
      initial_sparsity: :math:`s_i` in [0, 1).

    Returns:
      A schedule ``step -> float32 sparsity``.

    Examples:
      >>> from jopt.compress import gradual
      >>> schedule = gradual(0.9, begin_step=100, end_step=1100, every=100)
      >>> [round(float(schedule(t)), 4) for t in (0, 100, 199, 200, 600, 1099, 5000)]
      [0.0, 0.0, 0.0, 0.2439, 0.7875, 0.8991, 0.9]

    References:
      Zhu & Gupta, `To prune, or not to prune: exploring the efficacy of pruning for model
      compression <https://arxiv.org/abs/1710.01878>`_, 2017.
    """
    _check_fraction("final_sparsity", final_sparsity)
    _check_fraction("initial_sparsity", initial_sparsity)
    concrete = lambda v: not isinstance(v, jax.core.Tracer)
    if concrete(every) and not float(every) >= 1:
        raise ValueError(f"gradual: every must be >= 1, got {every!r}.")
    if concrete(begin_step) and not float(begin_step) >= 0:
        raise ValueError(f"gradual: begin_step must be >= 0, got {begin_step!r}.")
    if concrete(begin_step) and concrete(end_step) and not float(end_step) > float(begin_step):
        raise ValueError(
            f"gradual: end_step must be > begin_step, got end_step={end_step!r}, "
            f"begin_step={begin_step!r}."
        )

    def schedule(step):
        f32 = lambda v: jnp.asarray(v, jnp.float32)
        t, t0, t1, dt = f32(step), f32(begin_step), f32(end_step), f32(every)
        s_i, s_f = f32(initial_sparsity), f32(final_sparsity)
        tau = t0 + dt * jnp.floor((t - t0) / dt)
        progress = jnp.clip((tau - t0) / (t1 - t0), 0.0, 1.0)
        value = s_f + (s_i - s_f) * (1.0 - progress) ** 3
        return jnp.where(t < t0, s_i, jnp.where(t >= t1, s_f, value))

    return schedule


def sparsity(params: optax.Params, mask: Mask = None) -> float | jax.Array:
    """The fraction of exact zeros over the compressed leaves.

    .. math::
      s = \frac{\\sum_\\ell \\#\\{i : \theta_{\\ell,i} = 0\\}}{\\sum_\\ell n_\\ell}

    over the leaves ``mask`` selects. Concrete params give an exact Python float (the count
    divided in float64); traced ones (inside ``jit``/``vmap``, e.g. a sweep's trial returning
    it as a metric) a float32 JAX scalar.

    Args:
      params: a pytree of arrays.
      mask: which leaves count (as in ``prune``); default those with ``ndim >= 2``.

    Returns:
      A float, or a float32 scalar when any counted leaf is traced; 0.0 when no leaf counts.

    Examples:
      >>> import jax, jax.numpy as jnp
      >>> from jopt.compress import sparsity
      >>> params = {"kernel": jnp.array([[0.0, 1.0], [0.0, 0.0]]), "bias": jnp.zeros(2)}
      >>> sparsity(params)
      0.75
      >>> float(jax.jit(sparsity)(params))
      0.75
    """
    targets = jax.tree.leaves(resolve_mask(mask, params))
    leaves = [p for p, on in zip(jax.tree.leaves(params), targets) if on]
    total = sum(int(np.prod(jnp.shape(p))) for p in leaves)
    if any(isinstance(p, jax.core.Tracer) for p in leaves):
        if total == 0:
            return jnp.zeros([], jnp.float32)
        zeros = sum(jnp.sum(p == 0, dtype=jnp.int32) for p in leaves)
        return (zeros / total).astype(jnp.float32)
    zeros = sum(int(np.sum(np.asarray(p) == 0)) for p in leaves)
    return float(zeros / total) if total else 0.0


def sparsity_jnp(params: optax.Params, mask: Mask = None) -> jax.Array:
    """Deprecated: :func:`sparsity` is traceable now; this returns it as a float32 JAX scalar."""
    warnings.warn(
        "jopt.compress.sparsity_jnp is deprecated: use jopt.compress.sparsity (traceable).",
        DeprecationWarning,
        stacklevel=2,
    )
    return jnp.asarray(sparsity(params, mask), jnp.float32)
