"""Search strategies on the vectorized runner: successive halving, Hyperband, PBT, TPE, k-fold."""

from jopt.search.halving import SearchResult, hyperband, successive_halving
from jopt.search.pbt import PBTResult, pbt, plot_lineage
from jopt.search.resumable import Resumable, advance_population, fit_trial, init_population

__all__ = [
    "PBTResult",
    "Resumable",
    "SearchResult",
    "advance_population",
    "fit_trial",
    "hyperband",
    "init_population",
    "pbt",
    "plot_lineage",
    "successive_halving",
]
