"""Search strategies on the vectorized runner: successive halving, Hyperband, PBT, TPE, k-fold."""

from jopt.search.halving import (
    SearchResult,
    check_metrics,
    crowding_distance,
    hyperband,
    nsga2_order,
    sorted_front,
    successive_halving,
)
from jopt.search.kfold import cross_validate
from jopt.search.pbt import PBTResult, pbt, plot_lineage
from jopt.search.resumable import Resumable, advance_population, fit_trial, init_population
from jopt.search.tpe import TPEResult, tpe

__all__ = [
    "PBTResult",
    "Resumable",
    "SearchResult",
    "TPEResult",
    "advance_population",
    "check_metrics",
    "cross_validate",
    "crowding_distance",
    "fit_trial",
    "hyperband",
    "init_population",
    "nsga2_order",
    "pbt",
    "plot_lineage",
    "sorted_front",
    "successive_halving",
    "tpe",
]
