"""The compiled training loop: blocks of steps, evaluation intervals, whole runs and segments."""

from __future__ import annotations

import dataclasses
import functools
import math
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import optax

from jopt.data import Dataset, batch_indices
from jopt.train.progress import report_progress
from jopt.train.step import TrainState, evaluate, state_from_init, train_step

Array = jax.Array
LossFn = Callable[[Array, Array], Array]
Augment = Callable[[Array, Array], Array]


@dataclasses.dataclass(frozen=True)
class Loop:
    """The static settings of the compiled loop (hashable: part of the ``jit`` cache key).

    Attributes:
      batch_size: examples per step.
      batch_mode: how batches are drawn (:func:`jopt.data.batch_indices`).
      eval_every: steps between evaluations.
      loss: ``"cross_entropy"``, ``"mse"``, a callable ``(outputs, y) -> scalar`` or ``None``
        (chosen from the labels' dtype).
      augment: ``augment(key, x) -> x`` applied to each training batch, or ``None``.
      progress_every: steps between progress reports; ``None`` traces no report at all.
    """

    batch_size: int
    batch_mode: str
    eval_every: int
    loss: str | LossFn
    augment: Augment | None
    progress_every: int | None  # None: no progress callback is traced at all


# The batches of a block of steps are drawn together, before the block's scan: one vectorized
# evaluation of the shuffle (a loop-free Feistel network plus a short cycle-walking loop) for
# BLOCK_POSITIONS positions costs far less than that many per-step evaluations, whose fixed
# cost (round keys, loop launch) rivals a small model's whole step on a CPU. The indices are
# the same pure function of the step either way.
_BLOCK_POSITIONS = 8192
# A block's examples are gathered together too when they fit in this many bytes: inside the
# MNIST-1D MLP loop, XLA's CPU gather of one batch of 100 rows took ~13 us per step (its
# fusion is split over two threads), a tenth of the step; one gather per block makes it
# noise. Larger examples (images) keep the per-step gather, small next to their model's step.
_BLOCK_GATHER_BYTES = 4 << 20


def _block_length(length: int, batch_size: int) -> int:
    """The largest divisor of ``length`` whose batches hold at most ``_BLOCK_POSITIONS``."""
    cap = max(1, _BLOCK_POSITIONS // batch_size)
    return max(d for d in range(1, min(length, cap) + 1) if length % d == 0)


def default_progress_every(steps: int, eval_every: int, batch_size: int) -> int:
    """About 20 reports per run, each after a whole number of batch-drawing blocks."""
    block = _block_length(eval_every, batch_size)
    target = max(100, steps // 20)
    if block <= target:
        return round(target / block) * block
    return max(d for d in range(1, target + 1) if block % d == 0)


def _train_steps(state, loss_sum, data, keys, loop: Loop, length: int):
    """``length`` train steps as ``lax.scan``s over blocks; adds their losses to ``loss_sum``."""
    data_key, augment_key, dropout_key = keys
    n = data.x_train.shape[0]
    block = _block_length(length, loop.batch_size)

    row_bytes = sum(
        math.prod(a.shape[1:]) * jnp.dtype(a.dtype).itemsize for a in (data.x_train, data.y_train)
    )
    gather_per_block = block * loop.batch_size * row_bytes <= _BLOCK_GATHER_BYTES

    def one_step(carry, batch):
        state, loss_sum = carry
        step = state.step
        x, y = batch if gather_per_block else (data.x_train[batch], data.y_train[batch])
        if loop.augment is not None:
            x = loop.augment(jax.random.fold_in(augment_key, step), x)
        # UPDATE
        state, metrics = train_step(
            state, (x, y), jax.random.fold_in(dropout_key, step), loss=loop.loss
        )
        return (state, loss_sum + metrics["loss"].astype(jnp.float32)), None

    def one_block(carry, _):
        # BATCHES: a pure function of the step (a shuffled epoch's permutation is evaluated
        # at the block's positions only: no sort, nothing carried, no per-step branch)
        steps = carry[0].step + jnp.arange(block, dtype=jnp.int32)
        draw = lambda step: batch_indices(data_key, step, n, loop.batch_size, loop.batch_mode)
        batches = jax.vmap(draw)(steps)  # (block, batch_size) example indices
        if gather_per_block:
            batches = (data.x_train[batches], data.y_train[batches])
        carry, _ = jax.lax.scan(one_step, carry, batches)
        return carry, None

    (state, loss_sum), _ = jax.lax.scan(one_block, (state, loss_sum), length=length // block)
    return state, loss_sum


def _train_interval(state, data, keys, run_id, total, loop: Loop, length: int):
    """``length`` train steps, reporting progress between chunks, then one evaluation."""
    loss_sum = jnp.zeros((), jnp.float32)
    if loop.progress_every is None:
        state, loss_sum = _train_steps(state, loss_sum, data, keys, loop, length)
    else:
        # PROGRESS: chunks of progress_every steps with a host callback after each, so that
        # the step loop itself carries no callback and no per-step condition.
        every = min(loop.progress_every, length)

        def report(state, loss_sum, count):
            report_progress(run_id, state.step, total, loss_sum / count)

        def chunk(carry, i):
            state, loss_sum = carry
            state, loss_sum = _train_steps(state, loss_sum, data, keys, loop, every)
            report(state, loss_sum, (i + 1) * every)
            return (state, loss_sum), None

        carry = (state, loss_sum)
        (state, loss_sum), _ = jax.lax.scan(chunk, carry, jnp.arange(length // every))
        if length % every:
            state, loss_sum = _train_steps(state, loss_sum, data, keys, loop, length % every)
            report(state, loss_sum, length)
    # EVALUATE
    metrics = {"step": state.step, "loss": loss_sum / length}
    for prefix, x, y in (("train", data.x_train, data.y_train), ("val", data.x_test, data.y_test)):
        if x.shape[0]:
            for name, value in evaluate(state, x, y, loss=loop.loss).items():
                metrics[f"{prefix}_{name}"] = value.astype(jnp.float32)
    return state, metrics


def run_keys(key: Array) -> tuple[Array, tuple[Array, Array, Array]]:
    """A run's keys: ``init_key`` and ``(data_key, augment_key, dropout_key)``.

    ``init_key, data_key, step_key = jax.random.split(key, 3)``; ``init_key`` initializes
    the model, ``data_key`` draws the batches, and ``augment_key, dropout_key =
    jax.random.split(step_key)`` are folded with each step's number.

    Args:
      key: the run's PRNG key (``fit``'s ``key``).

    Returns:
      ``(init_key, (data_key, augment_key, dropout_key))``.

    Examples:
      >>> import jax
      >>> from jopt.train import run_keys
      >>> init_key, (data_key, augment_key, dropout_key) = run_keys(jax.random.PRNGKey(0))
      >>> bool((init_key == jax.random.split(jax.random.PRNGKey(0), 3)[0]).all())
      True
    """
    init_key, data_key, step_key = jax.random.split(key, 3)
    return init_key, (data_key, *jax.random.split(step_key))


def _segment(state, data, key, run_id, total, loop: Loop, steps: int):
    """``steps`` train steps from ``state``, evaluating every ``loop.eval_every`` steps and
    after the last one."""
    _, keys = run_keys(key)
    num_evals, tail = divmod(steps, loop.eval_every)

    def interval(state, _):
        return _train_interval(state, data, keys, run_id, total, loop, loop.eval_every)

    state, history = jax.lax.scan(interval, state, length=num_evals)
    if tail:
        state, last = _train_interval(state, data, keys, run_id, total, loop, tail)
        history = jax.tree.map(lambda h, v: jnp.concatenate([h, v[None]]), history, last)
    return state, history


@functools.partial(jax.jit, static_argnames=("loop", "steps"))
def run_segment(
    state: TrainState,
    data: Dataset,
    key: Array,
    run_id: int | Array,
    total: Array,
    *,
    loop: Loop,
    steps: int,
) -> tuple[TrainState, dict[str, Array]]:
    """``steps`` more steps of a run from ``state``, as one compiled program.

    The batches, augmentation and dropout of step ``t`` depend only on ``(key, t)``, so a run
    cut into segments (to save checkpoints between them, or to continue a state) ends
    bit-identical to one uninterrupted :func:`run`.

    Args:
      state: where the run is (may be batched under ``vmap``).
      data: the dataset.
      key: the run's key (see :func:`run_keys`).
      run_id: the id progress is reported to (:func:`jopt.train.progress.start_progress`;
        ``-1`` for none).
      total: the step the whole run ends at (for the progress bar).
      loop: the loop's static settings.
      steps: the number of steps to take (static).

    Returns:
      ``(state, history)``: the state after the segment and its evaluations (one entry per
      ``loop.eval_every`` steps, and one after the last step).
    """
    return _segment(state, data, key, run_id, total, loop, steps)


@functools.partial(jax.jit, static_argnames=("model", "tx", "loop", "steps"))
def run(
    variables: tuple[Any, Any],
    data: Dataset,
    key: Array,
    run_id: int | Array,
    *,
    model: Any,
    tx: optax.GradientTransformation,
    loop: Loop,
    steps: int,
) -> tuple[TrainState, dict[str, Array]]:
    """A whole run from the model's initial ``(params, model_state)``, as one program.

    Args:
      variables: ``init_model(model, x, init_key)``, the initial parameters and model state
        (computed by a separate small program, so that a sweep over optimizers does not
        compile the model's init again).
      data: the dataset.
      key: the run's key (see :func:`run_keys`).
      run_id: the id progress is reported to (``-1`` for none).
      model: the model in pure form (:func:`jopt.train.as_pure_model`).
      tx: the optimizer.
      loop: the loop's static settings.
      steps: the run's length (static).

    Returns:
      ``(state, history)`` as :func:`jopt.train.fit` returns them.
    """
    state = state_from_init(model, tx, variables)
    return _segment(state, data, key, run_id, jnp.asarray(steps, jnp.int32), loop, steps)


@functools.lru_cache(maxsize=64)
def accumulating(
    tx: optax.GradientTransformation, accumulate: int | Callable[[Array], Array]
) -> optax.GradientTransformation:
    """``tx`` applied once every ``accumulate`` steps to the mean of their gradients.

    A wrapper of ``optax.MultiSteps``; a schedule's values are rounded to integers.
    Cached, so that repeated fit calls with the same ``tx`` reuse their compiled programs.

    Args:
      tx: the optimizer to wrap (hashable, as ``optax`` transformations are).
      accumulate: ``k``, an int ``>= 1``, or a schedule ``update_count -> k``.

    Returns:
      An optax ``GradientTransformation``: zero updates while it accumulates, then one
      update of ``tx`` with the mean of the ``k`` gradients.
    """
    if callable(accumulate):
        schedule = accumulate

        def accumulate(count):
            # optax's schedules return floats; MultiSteps' counters must stay integers
            return jnp.round(schedule(count)).astype(jnp.int32)

    return optax.MultiSteps(tx, every_k_schedule=accumulate).gradient_transformation()
