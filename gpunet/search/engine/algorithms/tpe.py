"""TPE baseline: Optuna's TPE sampler over the pool's genes, each proposal snapped to a pool row.

Each gene with more than one value in the pool is an integer parameter holding the index of its
value among the pool's sorted distinct values (ordinal, so TPE's Parzen estimators see neighbours
as close). A proposal maps to the nearest untold, not-in-flight pool row (Euclidean distance on
those indices scaled to [0, 1]); the trial Optuna learns from is that row, not the raw proposal.
Optuna is imported on first use.
"""
from __future__ import annotations

import warnings
from typing import Any, Dict

import numpy as np

from .base import SearchAlgorithm

__all__ = ["TPESearch"]


class TPESearch(SearchAlgorithm):
    """Optuna ``TPESampler`` over a pool. Options are ``TPESampler`` keyword arguments.

    Defaults: ``n_startup_trials=10`` (random first), ``multivariate=True`` (joint Parzen
    estimator: genes interact), ``constant_liar=True`` (rows in flight count as bad, so parallel
    asks spread). Failed rows are told to Optuna as ``FAIL`` trials, which TPE does not model (no
    value is imputed, so a failure is never told as a huge or a made-up value); a diverged run's
    value is told as it is, which is safe because TPE splits the trials by rank (the best
    ``gamma(n)`` against the rest), so one value at chance is just one more bad trial.
    The study is rebuilt from the told rows at each ask, with a sampler seeded from this
    algorithm's random stream, so a reloaded state gives the same next ask.
    """

    defaults: Dict[str, Any] = {"n_startup_trials": 10, "multivariate": True, "constant_liar": True}

    def __init__(self, pool, seed: int = 0, **opts):
        super().__init__(pool, seed, **opts)
        live = [j for j in range(self.width) if len(np.unique(self.pool[:, j])) > 1]
        self._genes = live
        self._levels = np.zeros((len(self.pool), len(live)), dtype=np.int64)
        self._n_levels = []
        for k, j in enumerate(live):
            values = np.unique(self.pool[:, j])
            self._levels[:, k] = np.searchsorted(values, self.pool[:, j])
            self._n_levels.append(len(values))
        scale = np.maximum(np.asarray(self._n_levels, dtype=float) - 1, 1)
        self._coords = self._levels / scale

    def _distributions(self):
        from optuna.distributions import IntDistribution
        return {f"g{j}": IntDistribution(0, m - 1) for j, m in zip(self._genes, self._n_levels)}

    def _params(self, row: int) -> Dict[str, int]:
        return {f"g{j}": int(v) for j, v in zip(self._genes, self._levels[row])}

    def _trials(self, dists):
        """The study's history: told rows as COMPLETE (value as told) or FAIL, rows in flight RUNNING.

        A failure is never given a made-up value: TPE leaves FAIL trials out of its model, so a
        failure can neither rank as good nor stretch anything. A diverged run (a real value far
        below the rest) is an ordinary COMPLETE trial: TPE only ranks values (the best few vs the
        rest), so it lands among the bad ones however far down it is.
        """
        from optuna.trial import TrialState, create_trial

        trials = []
        for row, value in self._told:
            if value is None:
                trials.append(create_trial(params=self._params(row), distributions=dists, state=TrialState.FAIL))
            else:
                trials.append(create_trial(params=self._params(row), distributions=dists, value=value))
        for row in self._pending:
            trials.append(create_trial(params=self._params(row), distributions=dists, state=TrialState.RUNNING))
        return trials

    def _propose(self, n: int, available: np.ndarray) -> np.ndarray:
        import optuna

        optuna.logging.set_verbosity(optuna.logging.WARNING)
        dists = self._distributions()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # ExperimentalWarning for multivariate / constant_liar
            sampler = optuna.samplers.TPESampler(seed=int(self.rng.integers(2 ** 31 - 1)), **self.options)
            study = optuna.create_study(direction="maximize", sampler=sampler)
            study.add_trials(self._trials(dists))
            free = np.ones(len(available), dtype=bool)
            picks = []
            for _ in range(n):
                trial = study.ask(dists)   # stays RUNNING: later asks in this batch see it (constant liar)
                want = np.array([trial.params[f"g{j}"] for j in self._genes], dtype=float)
                want /= np.maximum(np.asarray(self._n_levels, dtype=float) - 1, 1)
                d = ((self._coords[available] - want) ** 2).sum(axis=1)
                d[~free] = np.inf
                k = int(np.argmin(d))
                free[k] = False
                picks.append(available[k])
        return np.asarray(picks, dtype=np.int64)
