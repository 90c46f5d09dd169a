"""Progress of a compiled run: a tqdm bar (or a callable) fed by ``jax.debug.callback``."""

from __future__ import annotations

import collections
import itertools
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from tqdm.auto import tqdm

Array = jax.Array
Progress = bool | Callable[[int, float], None]


class _Progress:
    """The host side of one ``fit`` call's progress reports (a tqdm bar or a callable).

    Under ``vmap`` ``jax.debug.callback`` runs once per member with the same step: a
    report for the step just shown is dropped, so there is one bar (with the loss of the
    first member) however many runs are batched. A report for an earlier step means the
    compiled program runs again (``fit`` under an outer ``jit``): a new bar starts.
    """

    def __init__(self, target: Progress, start: int):
        self.fn = None if target is True else target
        self.start = start
        self.last = start
        self.bar = None

    def report(self, step: int, total: int, loss: float) -> None:
        if step == self.last:
            return
        if step < self.last:
            self.close()
        self.last = step
        if self.fn is not None:
            self.fn(step, loss)
        else:
            if self.bar is None:
                self.bar = tqdm(total=total, initial=self.start, desc="fit", unit="step")
            self.bar.update(step - self.bar.n)
            self.bar.set_postfix(loss=f"{loss:.4g}", refresh=False)
        if step >= total:
            self.close()

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None


# The progress of each fit call, by an id that the compiled program receives as an
# argument, so that a cached program never holds on to a particular bar. Kept after the
# run (the last 1024 calls): under an outer jit the same program, with the same id, may
# run again.
_PROGRESS: collections.OrderedDict[int, _Progress] = collections.OrderedDict()
_PROGRESS_IDS = itertools.count()


def start_progress(target: Progress, start: int) -> int:
    """Registers one run's progress and returns the id its compiled program reports to.

    Args:
      target: ``True`` for a tqdm bar, a callable ``(step, loss)``, or ``False`` for none.
      start: the step the run starts from (the bar's initial count).

    Returns:
      The run's id, an argument of the compiled program (so that a cached program never
      holds on to a bar); ``-1`` when ``target`` is ``False``.
    """
    if not target:
        return -1
    run_id = next(_PROGRESS_IDS)
    _PROGRESS[run_id] = _Progress(target, start)
    while len(_PROGRESS) > 1024:
        _PROGRESS.popitem(last=False)[1].close()
    return run_id


def _host_report(packed: np.ndarray) -> None:
    """Host side of the progress callback; ``packed`` is ``[run_id, step, total, loss]``."""
    packed = np.asarray(packed)
    run_id, step, total = (int(v) for v in packed[:3])
    if run_id in _PROGRESS:
        _PROGRESS[run_id].report(step, total, float(packed[3:].view(np.float32)[0]))


def report_progress(run_id: Array, step: Array, total: Array, loss: Array) -> None:
    """Reports ``(step, loss)`` of run ``run_id`` from inside a compiled program.

    A host callback (``jax.debug.callback``); under ``vmap`` one report per step reaches
    the bar (the first member's loss). A report for an id that is not registered (``-1``,
    or a run closed long ago) is dropped.

    Args:
      run_id: the id :func:`start_progress` returned, an int32 scalar.
      step: the number of steps done, counted from the start of the whole run.
      total: the step the run ends at; the bar closes once ``step`` reaches it.
      loss: the loss to show (cast to float32).
    """
    # One int32 array (the loss bit-cast) rather than four scalars: the callback moves
    # each argument to a device array first, and that dominates its cost.
    loss_bits = jax.lax.bitcast_convert_type(loss.astype(jnp.float32), jnp.int32)
    packed = jnp.stack([jnp.asarray(v, jnp.int32) for v in (run_id, step, total, loss_bits)])
    jax.debug.callback(_host_report, packed)


def finish_progress(progress: Progress, run_id: int, state: Any, history: Any) -> Any:
    """Waits for the run's last progress reports, closes its bar, and returns ``history``."""
    if progress:
        # The callback of the last step closes the bar; wait for it so that what is
        # printed after fit returns comes after the bar. (Under jit nothing ran yet.)
        jax.effects_barrier()
        if not isinstance(state.step, jax.core.Tracer) and run_id in _PROGRESS:
            _PROGRESS[run_id].close()
    return history
