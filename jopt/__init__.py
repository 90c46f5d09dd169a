"""jopt: a JAX research toolkit for optimizing and tuning models.

Optimizers, regularizers, schedules and compression transforms are optax
``GradientTransformation``s whose numeric hyperparameters live in their state
(``jopt.hparams``, ``jopt.set_hparams``), so a whole training run can be jitted, vmapped over
hyperparameters and sharded.
"""

from jopt import (
    checkpoint,
    compress,
    data,
    devices,
    hyperparams,
    metrics,
    models,
    plot,
    regularizers,
    rules,
    schedules,
    search,
    sweep,
    train,
)
from jopt.hyperparams import HyperparamState, hparams, scale_hparams, set_hparams
from jopt.rules import (
    adagrad,
    adam,
    adamw,
    from_optax,
    from_rule,
    lion,
    momentum,
    one_of,
    rmsprop,
    sgd,
)

__version__ = "0.1.0"

__all__ = [
    "HyperparamState",
    "adagrad",
    "adam",
    "adamw",
    "checkpoint",
    "compress",
    "data",
    "devices",
    "from_optax",
    "from_rule",
    "hparams",
    "hyperparams",
    "lion",
    "metrics",
    "models",
    "momentum",
    "one_of",
    "plot",
    "regularizers",
    "rmsprop",
    "rules",
    "scale_hparams",
    "schedules",
    "search",
    "set_hparams",
    "sgd",
    "sweep",
    "train",
]
