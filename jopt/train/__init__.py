"""Training: an explicit ``TrainState``, a pure ``train_step``, ``evaluate``, and ``fit``.

``fit`` runs a whole training run as one ``jit``-compiled ``lax.scan`` (an outer scan over
evaluation intervals around an inner scan over steps). It is pure: a run is a function of
``(tx, key)``, so it can itself be ``vmap``-ed over learning rates (anything inside ``tx``)
and seeds::

    lrs = jnp.array([0.01, 0.1, 1.0])
    keys = jax.random.split(jax.random.PRNGKey(0), 3)
    history = jax.vmap(
        lambda lr, k: fit(model, optax.sgd(lr), data, steps=1000, batch_size=100, key=k,
                          progress=False)[1]
    )(lrs, keys)

All the randomness of step ``t`` (its minibatch, dropout and augmentation) is derived from
``(key, t)`` with ``jax.random.fold_in``, never from a key split and carried through the
loop, so a run that is stopped and resumed from a checkpoint ends bit-identical to an
uninterrupted one.

``fit`` (below) is a short composition of small public pieces; copy it into a script to
change what it does:

* :mod:`jopt.train.adapters`: :func:`as_pure_model` turns a flax.linen module, an
  ``nnx.Module``, a function ``rngs -> nnx.Module`` or a :class:`jopt.models.Functional`
  into one pure form, ``init(key, x) -> (params, model_state)`` and ``apply(params,
  model_state, x, train, rng) -> (outputs, new_model_state)``, the only way the loop calls
  a model;
* :mod:`jopt.train.step`: :class:`TrainState`, :func:`create_train_state`,
  :func:`init_model`, :func:`state_from_init`, the losses, :func:`train_step` and
  :func:`evaluate`;
* :mod:`jopt.train.compiled`: the compiled loop, :class:`Loop` (its static settings),
  :func:`run` (a whole run from the initial parameters) and :func:`run_segment` (a stretch
  of a run from a state), with the batches drawn by :func:`jopt.data.batch_indices`;
* :mod:`jopt.train.progress`: the progress bar fed from inside the compiled program;
* :mod:`jopt.train.resume`: checkpoints, resuming, and the fingerprint that refuses to
  resume another run's;
* :mod:`jopt.train.checks`: the argument checks, before anything compiles.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import optax

from jopt.data import Dataset
from jopt.train.adapters import as_pure_model, pure_model_of
from jopt.train.checks import as_dataset, check_fit_args, check_outputs, check_tx
from jopt.train.compiled import (
    Augment,
    Loop,
    accumulating,
    default_progress_every,
    run,
    run_keys,
    run_segment,
)
from jopt.train.progress import Progress, finish_progress, start_progress
from jopt.train.resume import concat_history, resume_run, save_run
from jopt.train.step import (
    LOSSES,
    LossFn,
    TrainState,
    create_train_state,
    cross_entropy,
    evaluate,
    init_model,
    is_classification,
    mse,
    state_from_init,
    train_step,
)

__all__ = [
    "LOSSES",
    "Loop",
    "TrainState",
    "as_pure_model",
    "create_train_state",
    "cross_entropy",
    "evaluate",
    "fit",
    "init_model",
    "is_classification",
    "mse",
    "pure_model_of",
    "run",
    "run_keys",
    "run_segment",
    "state_from_init",
    "train_step",
]

Array = jax.Array


def fit(
    model: Any,
    tx: optax.GradientTransformation,
    data: Dataset,
    *,
    steps: int,
    batch_size: int,
    key: Array,
    eval_every: int | None = None,
    batch_mode: str = "shuffle",
    augment: Augment | None = None,
    loss: str | LossFn | None = None,
    accumulate: int | Callable[[Array], Array] | None = None,
    progress: Progress = True,
    progress_every: int | None = None,
    checkpoint_dir: str | os.PathLike | None = None,
    checkpoint_every: int | None = None,
    state: TrainState | None = None,
) -> tuple[TrainState, dict[str, Array]]:
    """Trains a model with minibatch gradient steps, as one compiled ``lax.scan``.

    The run initializes the model from ``key`` and takes ``steps`` calls of
    :func:`train_step` on minibatches from :func:`jopt.data.batch_indices`, evaluating on
    the full training set and the held-out split every ``eval_every`` steps. All steps and
    evaluations run as one ``jit``-compiled program (the model's init is a second, small
    one, compiled once per model and input shape, so a sweep over optimizers does not
    compile it again).
    ``fit`` is pure and can be ``vmap``-ed over anything in ``tx`` (a traced learning
    rate) and over ``key``; ``progress``, ``checkpoint_dir`` and the Python checks are its
    only side effects. A second call with the same ``model``, ``tx`` object and argument
    shapes reuses the compiled programs.

    Randomness: ``key`` is split into ``init_key, data_key, step_key =
    jax.random.split(key, 3)``. ``init_key`` initializes the model
    (:func:`create_train_state`); ``data_key`` draws the batches
    (``batch_indices(data_key, t, ...)``); ``augment_key, dropout_key =
    jax.random.split(step_key)`` are folded with the step ``t`` for augmentation and
    dropout. Nothing depends on how the run is cut into segments.

    Batch-size schedules (``accumulate``): instead of decaying the learning rate, increase
    the batch size (Smith et al. 2018). ``accumulate=k`` averages the gradients of ``k``
    consecutive minibatches of ``batch_size`` and applies one update, exactly one step with
    a batch of ``k * batch_size`` for plain SGD; a schedule ``update_count -> k`` (e.g.
    ``optax.piecewise_constant_schedule(1, {1000: 2, 2000: 4})``) grows the effective batch
    during training. It wraps ``tx`` in ``optax.MultiSteps``. ``steps`` still counts
    minibatches, so the number of epochs stays fixed while the number of updates falls.

    Args:
      model: a flax.linen module ``__call__(x, *, train=False)`` (``train`` optional), an
        ``nnx.Module`` (its current parameters are the initial ones, for every key), a
        function ``rngs -> nnx.Module`` (a fresh initialization from each key) or a
        :class:`jopt.models.Functional`; see :func:`as_pure_model`.
      tx: an optax ``GradientTransformation``; its hyperparameters may be tracers.
      data: a :class:`jopt.data.Dataset` (or a tuple ``(x_train, y_train, x_test, y_test)``);
        integer labels (classification) of shape ``(n,)``, or float targets (regression).
        Its held-out split (``x_test``, ``y_test``) is what ``"val_*"`` is measured on: use
        :func:`jopt.data.validation_split` to keep the test set out of a choice.
      steps: number of training steps (minibatches), ``>= 1``. With ``checkpoint_dir`` it
        is the total length of the run, counted from step 0 also when resuming; with
        ``state`` it is the number of steps to add.
      batch_size: minibatch size, in ``[1, n_train]`` (static).
      key: a PRNG key.
      eval_every: evaluate every this many steps, in ``[1, steps]``; ``None`` evaluates
        once, at the end. If it does not divide ``steps`` the last interval is shorter.
      batch_mode: ``"shuffle"`` (epochs without replacement), ``"replacement"`` or
        ``"sequential"``; see :func:`jopt.data.batch_indices`.
      augment: ``augment(key, x) -> x`` applied on device to each training batch, e.g.
        ``functools.partial(jopt.data.random_shift, max_shift=4)``.
      loss: ``"cross_entropy"``, ``"mse"``, a callable ``(outputs, y) -> scalar``, or
        ``None`` for cross-entropy on integer labels and MSE on float targets.
      accumulate: ``k`` (an int ``>= 1``) or a schedule ``update_count -> k``: gradient
        accumulation, see above.
      progress: ``True`` shows a tqdm bar (step, mean loss of the current interval);
        ``False`` traces no callback at all; a callable ``progress(step, loss)`` is
        called instead of the bar. Under ``vmap`` there is one bar for all members.
      progress_every: report every this many steps of each evaluation interval and at
        its end. Each report is a host callback that costs about 0.2-0.5 ms on a CPU (the
        callback machinery, not the bar: ~50 us of that is Python), so the default makes
        about 20 of them: ``max(100, steps // 20)``, rounded to a multiple of the block of
        steps whose batches are drawn together, so that the bar does not change how the
        loop is cut.
      checkpoint_dir: a directory to save the state and history to (with
        :mod:`jopt.checkpoint`) every ``checkpoint_every`` steps. If it already holds
        a checkpoint of this run, training resumes from the latest one at or before
        ``steps`` and ends bit-identical to an uninterrupted run. Beside the checkpoints,
        ``fit_fingerprint.json`` records what the run is made of (the optimizer's initial
        state, hyperparameters included, and its update rule; the model's class, attributes
        and parameter shapes; hashes of the data; ``batch_size``, ``eval_every``,
        ``batch_mode``); resuming with anything else is refused. Not usable under
        ``jit``/``vmap``.
      checkpoint_every: save every this many steps (and at no other step), a multiple of
        ``eval_every``; defaults to ``eval_every``. The run is then a few calls of one
        compiled segment of ``checkpoint_every`` steps.
      state: continue from this :class:`TrainState` instead of initializing (its
        ``apply_fn`` and ``tx`` are used; ``model`` and ``tx`` are not); the step counter,
        and so the batches, continue from ``state.step``. May be batched under ``vmap``.

    Returns:
      ``(state, history)``: the final :class:`TrainState`, and a dict of arrays with one
      entry per evaluation: ``"step"``; ``"loss"``, the mean minibatch loss over the
      interval; ``"train_loss"`` and ``"val_loss"`` on the full sets; and for integer
      labels ``"train_accuracy"`` and ``"val_accuracy"``.

    Raises:
      ValueError, TypeError: before anything compiles, for an argument out of range or of
        the wrong type (the message names it and what is allowed: e.g. ``tx`` not an optax
        transformation, ``data`` not a :class:`jopt.data.Dataset`, ``model`` of none of
        the kinds of :func:`as_pure_model`) or bad data
        (mismatched lengths, NaN/inf, labels outside ``[0, num_classes)``, integer labels
        not of shape ``(n,)``, float labels that do not match the model's outputs,
        ``x_test`` examples shaped unlike ``x_train``'s).
      ValueError: ``checkpoint_dir`` holds checkpoints of another run (another optimizer
        or hyperparameter, model, data, key, ``batch_size``, ``eval_every`` or
        ``batch_mode``); the message says what differs.

    Examples:
      >>> import jax, optax, flax.linen as nn
      >>> import jopt
      >>> data = jopt.data.digits()
      >>> state, history = jopt.train.fit(
      ...     nn.Dense(10), optax.adam(1e-2), data, steps=200, batch_size=64,
      ...     key=jax.random.PRNGKey(0), eval_every=100, progress=False)
      >>> history["step"].tolist(), bool(history["val_accuracy"][-1] > 0.9)
      ([100, 200], True)

    References:
      Smith, Kindermans, Ying, Le, `Don't decay the learning rate, increase the batch size
      <https://arxiv.org/abs/1711.00489>`_, 2018.
    """
    # CHECK ARGUMENTS (Python, on concrete values, before anything compiles)
    data = as_dataset(data)
    if state is None:
        check_tx(tx)
    eval_every = steps if eval_every is None else eval_every
    if checkpoint_dir is not None and checkpoint_every is None:
        checkpoint_every = eval_every
    check_fit_args(
        data,
        steps=steps,
        batch_size=batch_size,
        eval_every=eval_every,
        batch_mode=batch_mode,
        loss=loss,
        augment=augment,
        accumulate=accumulate,
        progress=progress,
        progress_every=progress_every,
        checkpoint_dir=checkpoint_dir,
        checkpoint_every=checkpoint_every,
        state=state,
        key=key,
    )
    if state is None:
        model = as_pure_model(model)
        check_outputs(model, data, loss)
    if accumulate is not None:
        tx = accumulating(tx, accumulate)
    if progress and progress_every is None:
        progress_every = default_progress_every(steps, eval_every, batch_size)
    loop = Loop(
        batch_size, batch_mode, eval_every, loss, augment, progress_every if progress else None
    )
    init_key = run_keys(key)[0]

    # ONE PROGRAM: a whole run from the initial parameters (the usual case)
    if state is None and checkpoint_dir is None:
        run_id = start_progress(progress, 0)
        variables = init_model(model, data.x_train[:1], init_key)
        state, history = run(
            variables, data, key, run_id, model=model, tx=tx, loop=loop, steps=steps
        )
        return state, finish_progress(progress, run_id, state, history)

    # SEGMENTS: continue a given state, or save a checkpoint every checkpoint_every steps
    if state is None:
        state = state_from_init(model, tx, init_model(model, data.x_train[:1], init_key))
    total = jnp.asarray(state.step + steps, jnp.int32)
    position, history = 0, None
    if checkpoint_dir is not None:
        checkpoint_dir = os.path.abspath(os.fspath(checkpoint_dir))
        position, state, history = resume_run(
            checkpoint_dir, model, tx, state, data, steps, loop, key
        )
    run_id = start_progress(
        progress, 0 if isinstance(state.step, jax.core.Tracer) else int(state.step)
    )
    while position < steps:
        end = steps
        if checkpoint_every is not None:
            end = min(steps, (position // checkpoint_every + 1) * checkpoint_every)
        state, segment = run_segment(
            state, data, key, run_id, total, loop=loop, steps=end - position
        )
        history = concat_history(history, segment)
        position = end
        if checkpoint_dir is not None and position % checkpoint_every == 0:
            save_run(checkpoint_dir, position, state, history, key, loop)
    return state, finish_progress(progress, run_id, state, history)
