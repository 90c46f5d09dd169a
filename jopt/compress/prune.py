r"""Magnitude pruning with an exact, traceable sparsity, and the Zhu & Gupta schedule.

``prune`` goes in ``optax.chain`` **after** the optimizer. It receives the optimizer's update
:math:`u` and the params :math:`\theta` and emits :math:`u'` such that :math:`\theta + u'` is the
pruned weight: kept weights get exactly :math:`\theta + u`, pruned ones exactly ``0.0``.

By default only kernels (leaves with ``ndim >= 2``) are pruned; biases and normalization scales
are left alone (``mask=`` overrides this).

How the exact count stays traceable. The number of weights to prune is
:math:`k = \operatorname{round}(s \cdot n)` (round half to even), an int32 computed from the
sparsity :math:`s`, which may be a tracer (``jax.vmap`` over sparsities) or a schedule. The
:math:`k`-th smallest score is found by a 31-step bisection over the bits of the float32 scores
(non-negative floats order like their int32 bit patterns), so no shape depends on :math:`k`;
ties at the threshold are broken by position, so exactly :math:`k` weights are pruned whatever
the values. (A bisection rather than ``jnp.sort``: XLA's CPU sort of 15k floats takes ~3 ms,
which would dwarf an optimizer step; the bisection is ~0.2 ms and gives the same threshold.)

Masks live in the state. By default (``regrow=None``, classic magnitude pruning) pruned weights
score below every kept weight, so when the sparsity only grows a pruned weight never comes back,
and when it is unchanged the mask is unchanged; the selection therefore only runs (under
``lax.cond``) on the steps where :math:`k` differs from the number currently pruned (or, with
``regrow="dpf"``, also on every ``regrow_every``-th step). Under ``jax.vmap`` over the sparsity
a plain ``cond`` would become a select that runs the selection on every step; a custom batching
rule keeps it a branch that runs (for the whole batch) only on the steps where some member's
count changes.

With ``regrow="dpf"`` the state also keeps latent weights and the selection runs among all of
them every ``regrow_every`` (default 16) steps (dynamic pruning with feedback), so pruned weights
can come back and pruning from the first step trains. In both modes the params are exactly zero
wherever the mask is off. Each ``regrow`` method is a small selection function (``_REGROW``):
given the scores and the current masks, it says which weights compete for the kept places.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax import lax

from jopt.hyperparams import (
    Check,
    ScalarOrSchedule,
    in_unit_interval,
    stateful_transform,
    validate_hyperparam,
)

__all__ = ["PruneState", "gradual", "prune", "sparsity", "sparsity_jnp"]

Mask = Any | Callable[[optax.Params], Any] | None


# --- shared helpers (also used by quantize.py and share.py) -------------------------------------


def _kernels(params: optax.Params) -> Any:
    return jax.tree.map(lambda p: jnp.ndim(p) >= 2, params)


def _target_mask(mask: Mask, params: optax.Params) -> Any:
    """The static bool pytree of leaves to compress: kernels unless ``mask`` says otherwise."""
    if mask is None:
        return _kernels(params)
    resolved = mask(params) if callable(mask) else mask
    return jax.tree.map(bool, resolved)


def _needs_params(kind: str, params: Any) -> None:
    if params is None:
        raise ValueError(f"{kind} needs the params: call tx.update(updates, state, params).")


# --- exact selection of the k smallest ----------------------------------------------------------


def _keys(scores: jax.Array, kept: jax.Array) -> jax.Array:
    """int32 keys ordered like the scores (>= 0); pruned weights get key 0, below all others."""
    bits = lax.bitcast_convert_type(jnp.abs(scores).astype(jnp.float32), jnp.int32)
    return jnp.where(kept, bits + 1, 0)


def _kth_smallest(keys: jax.Array, k: jax.Array) -> jax.Array:
    """The k-th smallest key (1-based) by bisection over its 31 value bits; 0 when k == 0."""

    def body(i, prefix):
        candidate = prefix | jnp.left_shift(jnp.int32(1), 30 - i)
        below = jnp.sum(keys < candidate, dtype=jnp.int32)
        return jnp.where(below < k, candidate, prefix)

    return lax.fori_loop(0, 31, body, jnp.int32(0))


def _keep_all_but_k_smallest(keys: jax.Array, k: jax.Array) -> jax.Array:
    """Bool mask (flat) that drops exactly the k smallest keys, ties broken by position."""
    threshold = _kth_smallest(keys, k)
    below = keys < threshold
    tied = keys == threshold
    wanted = k - jnp.sum(below, dtype=jnp.int32)  # how many of the ties at the threshold to drop
    drop = below | (tied & (jnp.cumsum(tied, dtype=jnp.int32) <= wanted))
    return ~drop


def _n_m_keep(scores: jax.Array, kept: jax.Array, n: int, m: int) -> jax.Array:
    """Keeps the n largest of every m consecutive entries along axis -2 (ties by position)."""
    keys = _keys(scores, kept)
    moved = jnp.moveaxis(keys, -2, -1)
    groups = moved.reshape((*moved.shape[:-1], moved.shape[-1] // m, m))
    # rank = how many entries of the group come first (larger, or equal and earlier): m * m
    # elementwise comparisons, much cheaper on a CPU than two argsorts for the small m of N:M
    a, b = groups[..., :, None], groups[..., None, :]
    earlier = np.arange(m)[None, :] < np.arange(m)[:, None]  # [i, j]: j before i
    rank = jnp.sum((b > a) | ((b == a) & earlier), axis=-1, dtype=jnp.int32)
    keep = (rank < n).reshape(moved.shape)
    return jnp.moveaxis(keep, -1, -2)


def _keep_all_but_k_smallest_per_leaf(keys: list[jax.Array], ks: jax.Array) -> list[jax.Array]:
    """``_keep_all_but_k_smallest`` for several flat leaves at once, as one padded ``(leaves,
    max size)`` array: one bisection and one cumsum for all leaves rather than one per leaf
    (XLA's CPU kernel launches dominate at these sizes)."""
    sizes = [k.size for k in keys]
    pad = jnp.iinfo(jnp.int32).max  # above every key: never counted, never dropped
    table = jnp.stack([jnp.pad(k, (0, max(sizes) - k.size), constant_values=pad) for k in keys])

    def body(i, prefixes):
        candidates = prefixes | jnp.left_shift(jnp.int32(1), 30 - i)
        below = jnp.sum(table < candidates[:, None], axis=1, dtype=jnp.int32)
        return jnp.where(below < ks, candidates, prefixes)

    thresholds = lax.fori_loop(0, 31, body, jnp.zeros((len(keys),), jnp.int32))[:, None]
    below, tied = table < thresholds, table == thresholds
    wanted = ks - jnp.sum(below, axis=1, dtype=jnp.int32)
    keep = ~(below | (tied & (jnp.cumsum(tied, axis=1, dtype=jnp.int32) <= wanted[:, None])))
    return [keep[row, :size] for row, size in enumerate(sizes)]


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


# --- the transform --------------------------------------------------------------------------------


class PruneState(NamedTuple):
    """Inner state of ``prune`` (inside ``jopt.HyperparamState.inner``).

    Attributes:
      masks: bool pytree like the params; True where a weight is kept (a scalar True for leaves
        that are not pruned).
      pruned: int32 vector, the number of weights currently pruned in each pruned leaf.
      latent: with ``regrow="dpf"``, the dense weights of the pruned leaves (pruned weights keep
        learning here); a scalar 0 for the other leaves, and for every leaf with ``regrow=None``
        (no second copy of the weights).
      step: int32, the number of updates so far.
    """

    masks: Any
    pruned: jax.Array
    latent: Any
    step: jax.Array


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


# --- regrowth methods ---------------------------------------------------------------------------
#
# A method re-selects the mask: ``select(scores, old, choose)`` gets the scores of the pruned
# leaves, their masks before the step and ``choose(scores, candidates)``, the exact selection of
# the current scope or N:M structure, which keeps all but the k smallest scores and ranks every
# non-candidate below every candidate (so non-candidates are dropped first). Scope, structure
# and the exact count are shared; a method only says which weights compete for the kept places.


def _select_none(scores: list, old: list, choose: Callable) -> list:
    """``regrow=None``: only the kept weights compete, so a pruned weight stays pruned while the
    sparsity does not fall, and an unchanged count leaves the mask unchanged."""
    return choose(scores, old)


def _select_dpf(scores: list, old: list, choose: Callable) -> list:
    """``regrow="dpf"``: every weight competes by the score of its latent weight, so a pruned
    weight whose updates outgrow the kept ones comes back."""
    return choose(scores, [jnp.ones(m.shape, bool) for m in old])


class _Regrow(NamedTuple):
    select: Callable[[list, list, Callable], list]
    latent: bool  # dense latent weights in the state: pruned weights keep taking updates
    periodic: bool  # also re-selects every ``regrow_every`` steps, not only when k changes


_REGROW: dict[str | None, _Regrow] = {
    None: _Regrow(_select_none, latent=False, periodic=False),
    "dpf": _Regrow(_select_dpf, latent=True, periodic=True),
}


# Steps between re-selections of the mask with regrow="dpf" (Lin et al. 2020 used 16).
DPF_REGROW_EVERY = 16


def prune(
    sparsity: ScalarOrSchedule | None,
    *,
    scope: str = "global",
    structure: str | None = None,
    regrow: str | None = None,
    regrow_every: int | None = None,
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
    note): there, start later (``begin_step``, ``gradual``) or use ``regrow="dpf"``.

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

    In both modes the params are exactly 0 wherever the mask is off, after every update.

    With ``scope="global"``, :math:`n` counts the weights of all pruned leaves together and one
    threshold is shared; with ``"layer"`` each leaf is pruned to :math:`s_t` separately. Exactly
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
        pruned while the sparsity does not fall; or ``"dpf"``: latent weights in the state and
        the mask re-selected among all of them every ``regrow_every`` steps (static).
      regrow_every: :math:`R`, an int >= 1 (static), the steps between re-selections with
        ``regrow="dpf"`` (None: ``DPF_REGROW_EVERY`` = 16). Only with ``regrow="dpf"``: with
        ``regrow=None`` an int is refused, since ``prune(s, regrow_every=4)`` used to mean
        regrowth and would now silently mean none.
      criterion: ``"magnitude"`` or ``"saliency"`` (static).
      mask: which leaves to prune: a bool pytree or ``params -> bool pytree`` (static); default
        the leaves with ``ndim >= 2``.
      begin_step: the first update (0-based count) at which ``sparsity`` applies; before it
        the sparsity is 0 (nothing is pruned). An int >= 0 or a JAX scalar (may be traced).
        With a schedule, the schedule is still evaluated at the global count. Not with
        ``structure``.
      name: optional label for ``jopt.hparams``.

    Returns:
      An optax ``GradientTransformationExtraArgs`` holding ``sparsity`` in its state and the masks
      in ``state.inner`` (a ``PruneState``).

    Raises:
      ValueError: a sparsity outside [0, 1), an unknown ``scope``, ``criterion`` or ``regrow``,
        a malformed ``structure``, a ``regrow_every`` that is not None or an int >= 1 (or an
        int without ``regrow="dpf"``), or (at ``init``) a kernel whose axis -2 is not a
        multiple of ``m``.

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

    References:
      Han et al., `Learning both Weights and Connections for Efficient Neural Networks
      <https://arxiv.org/abs/1506.02626>`_, 2015. Zhu & Gupta, `To prune, or not to prune
      <https://arxiv.org/abs/1710.01878>`_, 2017. Mishra et al., `Accelerating Sparse Deep
      Neural Networks <https://arxiv.org/abs/2104.08378>`_, 2021 (2:4). Lin, Stich, Barba,
      Dmitriev & Jaggi, `Dynamic Model Pruning with Feedback
      <https://arxiv.org/abs/2006.07253>`_, ICLR 2020.
    """
    if scope not in ("global", "layer"):
        raise ValueError(f"prune: scope must be 'global' or 'layer', got {scope!r}.")
    if criterion not in ("magnitude", "saliency"):
        raise ValueError(f"prune: criterion must be 'magnitude' or 'saliency', got {criterion!r}.")
    n_m = _parse_structure(structure)
    if not (regrow is None or isinstance(regrow, str)) or regrow not in _REGROW:
        allowed = ", ".join(repr(key) for key in _REGROW)
        raise ValueError(f"prune: regrow must be one of {allowed}, got {regrow!r}.")
    if regrow_every is not None and (
        isinstance(regrow_every, bool)
        or not isinstance(regrow_every, (int, np.integer))
        or regrow_every < 1
    ):
        raise ValueError(f"prune: regrow_every must be an int >= 1 or None, got {regrow_every!r}.")
    if regrow is None and regrow_every is not None:
        # with regrowth once the default, this call would now prune without it, silently
        raise ValueError(
            f"prune: regrow_every={regrow_every!r} applies only with regrow='dpf'; pass "
            "regrow='dpf' as well (pruned weights regrow), or drop regrow_every for classic "
            "magnitude pruning."
        )
    if regrow is not None and regrow_every is None:
        regrow_every = DPF_REGROW_EVERY
    method = _REGROW[regrow]
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
        hyperparams, checks = {}, {}
    else:
        checks: dict[str, Check] = {"sparsity": in_unit_interval()}
        if delayed:
            validate_hyperparam(
                "prune", "sparsity", sparsity, checks["sparsity"]
            )  # before it is wrapped
            sparsity = _from_step(sparsity, begin_step)
        hyperparams = {"sparsity": sparsity}

    def leaves_of(params):
        targets = _target_mask(mask, params)
        leaves, treedef = jax.tree.flatten(params)
        on = jax.tree.leaves(targets)
        if len(on) != len(leaves):
            raise ValueError("prune: mask must have the same structure as the params.")
        return leaves, treedef, on

    def init(params, hp):
        del hp
        leaves, treedef, on = leaves_of(params)
        for leaf, flag in zip(leaves, on):
            if not flag or n_m is None:
                continue
            if jnp.ndim(leaf) < 2 or leaf.shape[-2] % n_m[1]:
                raise ValueError(
                    f"prune: structure={structure!r} needs axis -2 of every pruned leaf to be a "
                    f"multiple of {n_m[1]}, got a leaf of shape {jnp.shape(leaf)}."
                )
        masks = [
            jnp.ones(jnp.shape(leaf), bool) if flag else jnp.ones((), bool)
            for leaf, flag in zip(leaves, on)
        ]
        pruned = jnp.zeros((sum(on),), jnp.int32)
        latent = [
            jnp.asarray(leaf) if flag and method.latent else jnp.zeros((), jnp.float32)
            for leaf, flag in zip(leaves, on)
        ]
        return PruneState(
            masks=jax.tree.unflatten(treedef, masks),
            pruned=pruned,
            latent=jax.tree.unflatten(treedef, latent),
            step=jnp.zeros((), jnp.int32),
        )

    def update(updates, state, params, hp):
        _needs_params("prune", params)
        leaves, treedef, on = leaves_of(params)
        ups = treedef.flatten_up_to(updates)
        masks = treedef.flatten_up_to(state.masks)
        idx = [i for i, flag in enumerate(on) if flag]
        if not idx:
            return updates, state._replace(step=state.step + 1)
        if method.latent:  # the dense latent learns every weight; the mask picks from it
            latents = treedef.flatten_up_to(state.latent)
            ws = [latents[i] + ups[i] for i in idx]
        else:
            ws = [leaves[i] + ups[i] for i in idx]
        us = [ups[i] for i in idx] if criterion == "saliency" else []
        old = [masks[i] for i in idx]
        sizes = np.array([w.size for w in ws])

        if n_m is not None:
            target = jnp.asarray(sizes * (n_m[1] - n_m[0]) // n_m[1], jnp.int32)
        elif scope == "layer":
            target = jnp.round(hp["sparsity"] * sizes).astype(jnp.int32)
        else:
            total = jnp.round(hp["sparsity"] * sizes.sum()).astype(jnp.int32)

        if n_m is not None:
            count = jnp.zeros((), jnp.int32)  # unused: the pattern fixes the count
        elif scope == "layer":
            count = target
        else:
            count = total

        # Everything the selection reads is passed in (no closed-over tracers), so that
        # _gated_cond can batch it.
        def select(operand):
            ws, us, old, count = operand
            scores = [jnp.abs(w * u) for w, u in zip(ws, us)] if us else [jnp.abs(w) for w in ws]

            def choose(scores, candidates):
                # all but the k smallest scores stay; non-candidates rank below every candidate
                if n_m is not None:
                    return [_n_m_keep(s, m, *n_m) & m for s, m in zip(scores, candidates)]
                if scope == "layer":
                    flat = [_keys(s, m).ravel() for s, m in zip(scores, candidates)]
                    kept = _keep_all_but_k_smallest_per_leaf(flat, count)
                    return [f.reshape(s.shape) for f, s in zip(kept, scores)]
                keys = jnp.concatenate([_keys(s, m).ravel() for s, m in zip(scores, candidates)])
                flat = _keep_all_but_k_smallest(keys, count)
                cuts = np.cumsum(sizes)[:-1].tolist()
                return [f.reshape(s.shape) for f, s in zip(jnp.split(flat, cuts), scores)]

            return method.select(scores, old, choose)

        if n_m is not None or scope == "layer":
            changed = jnp.any(state.pruned != target)
        else:
            changed = jnp.sum(state.pruned) != total
        if method.periodic:
            changed = changed | (state.step % regrow_every == 0)
        operand = (ws, us, old, count)
        new = _gated_cond(changed, select, lambda operand: list(operand[2]), operand)

        out, new_masks = list(ups), list(masks)
        new_latents = list(treedef.flatten_up_to(state.latent))
        for j, i in enumerate(idx):
            if method.latent:
                # A weight pruned now restarts from 0 in the latent: a pruned weight's latent is
                # the sum of the updates since it was pruned (keeping its old value instead
                # swaps stale weights back in: 59% vs 63% on the chain of the docstring's note,
                # 6 keys).
                latent = jnp.where(old[j] & ~new[j], 0.0, ws[j])
                out[i] = jnp.where(new[j], latent - leaves[i], -leaves[i])  # -theta+theta == 0
                new_latents[i] = latent
            else:
                out[i] = jnp.where(new[j], ups[i], -leaves[i])
            new_masks[i] = new[j]
        pruned = jnp.stack([jnp.sum(~m, dtype=jnp.int32) for m in new])
        new_state = PruneState(
            masks=jax.tree.unflatten(treedef, new_masks),
            pruned=pruned,
            latent=jax.tree.unflatten(treedef, new_latents),
            step=state.step + 1,
        )
        return jax.tree.unflatten(treedef, out), new_state

    return stateful_transform("prune", init, update, hyperparams, checks, name=name)


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


def sparsity_jnp(params: optax.Params, mask: Mask = None) -> jax.Array:
    """The exact-zero fraction over the compressed leaves, as a float32 JAX scalar (jit-safe).

    Args:
      params: a pytree of arrays.
      mask: which leaves count (as in ``prune``); default those with ``ndim >= 2``.

    Returns:
      A float32 scalar; 0.0 when no leaf counts.
    """
    targets = jax.tree.leaves(_target_mask(mask, params))
    leaves = [p for p, on in zip(jax.tree.leaves(params), targets) if on]
    total = sum(int(np.prod(jnp.shape(p))) for p in leaves)
    if total == 0:
        return jnp.zeros([], jnp.float32)
    zeros = sum(jnp.sum(p == 0, dtype=jnp.int32) for p in leaves)
    return (zeros / total).astype(jnp.float32)


def sparsity(params: optax.Params, mask: Mask = None) -> float:
    """The exact-zero fraction over leaves with ``ndim >= 2``, as a Python float.

    Not usable under ``jit`` (it returns a concrete float); use ``sparsity_jnp`` there.

    Examples:
      >>> import jax.numpy as jnp
      >>> from jopt.compress import sparsity
      >>> sparsity({"kernel": jnp.array([[0.0, 1.0], [0.0, 0.0]]), "bias": jnp.zeros(2)})
      0.75
    """
    targets = jax.tree.leaves(_target_mask(mask, params))
    leaves = [np.asarray(p) for p, on in zip(jax.tree.leaves(params), targets) if on]
    total = sum(p.size for p in leaves)
    return float(sum(int(np.sum(p == 0)) for p in leaves) / total) if total else 0.0
