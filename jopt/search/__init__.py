"""Search strategies on the vectorized runner: successive halving, Hyperband, PBT, TPE, k-fold."""

from jopt.search.halving import SearchResult, hyperband, successive_halving
from jopt.search.resumable import Resumable, advance_population, fit_trial, init_population

__all__ = [
    "Resumable",
    "SearchResult",
    "advance_population",
    "fit_trial",
    "hyperband",
    "init_population",
    "successive_halving",
]
