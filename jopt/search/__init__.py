"""Search strategies on the vectorized runner: successive halving, Hyperband, PBT, TPE, k-fold."""

from jopt.search.halving import SearchResult, hyperband, successive_halving
from jopt.search.kfold import cross_validate
from jopt.search.pbt import PBTResult, exploit, explore, pbt, plot_lineage
from jopt.search.resumable import Resumable, advance_population, fit_trial, init_population
from jopt.search.tpe import TPEResult, tpe

__all__ = [
    "PBTResult",
    "Resumable",
    "SearchResult",
    "TPEResult",
    "advance_population",
    "cross_validate",
    "exploit",
    "explore",
    "fit_trial",
    "hyperband",
    "init_population",
    "pbt",
    "plot_lineage",
    "successive_halving",
    "tpe",
]
