"""Vectorized hyperparameter sweeps: spaces, the vmapped and sharded runner, results."""

from jopt.sweep.result import SweepResult
from jopt.sweep.runner import default_memory_budget, run
from jopt.sweep.spaces import (
    Choice,
    IntUniform,
    LogUniform,
    Space,
    Uniform,
    grid,
    log_range,
    quasirandom,
    random,
    static,
)

__all__ = [
    "Choice",
    "IntUniform",
    "LogUniform",
    "Space",
    "SweepResult",
    "Uniform",
    "default_memory_budget",
    "grid",
    "log_range",
    "quasirandom",
    "random",
    "run",
    "static",
]
