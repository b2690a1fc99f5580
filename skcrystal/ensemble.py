"""Deep ensembles of any skcrystal regressor: mean prediction and its spread.

The CrysToGraph paper averages an ensemble of models; the spread of the
members is also the cheapest useful uncertainty estimate for a graph
network (Lakshminarayanan et al. 2017): members trained from different
random seeds agree where training data constrain them and disagree away
from it (e.g. on elements or structure types absent from training).
"""
from __future__ import annotations

import os

import numpy as np
from joblib import Parallel, delayed
from sklearn.base import BaseEstimator, MetaEstimatorMixin, RegressorMixin, clone, is_classifier
from sklearn.exceptions import NotFittedError
from sklearn.utils import check_random_state

from ._validation import check_n_jobs

__all__ = ["EnsembleRegressor"]


def _fit_member(estimator, X, y, threads, fit_params):
    if threads is not None:
        import torch
        torch.set_num_threads(threads)
    return estimator.fit(X, y, **fit_params)


class EnsembleRegressor(MetaEstimatorMixin, RegressorMixin, BaseEstimator):
    """Train ``n_estimators`` clones of a regressor from different seeds.

    Parameters
    ----------
    estimator : regressor
        Any skcrystal regressor (or scikit-learn regressor with a
        ``random_state`` parameter). It is cloned; the clones differ only in
        ``random_state`` (weight initialisation, shuffling, dropout).
    n_estimators : int, default=5
        Ensemble size.
    n_jobs : int or None, default=None
        joblib processes training members in parallel (``None``: one, in
        this process). Each worker's torch uses ``cpu_count // n_jobs``
        threads so the workers do not oversubscribe the cores.
    random_state : int, RandomState or None
        Seeds of the members are drawn from it; ``None`` draws fresh ones.

    Attributes
    ----------
    estimators_ : list of fitted regressors
    seeds_ : ndarray of int, shape (n_estimators,)

    Examples
    --------
    >>> from skcrystal.ensemble import EnsembleRegressor
    >>> from skcrystal.estimators.cgcnn import CGCNNRegressor
    >>> ens = EnsembleRegressor(CGCNNRegressor(max_epochs=20), n_estimators=5,
    ...                         random_state=0).fit(X, y)        # doctest: +SKIP
    >>> mean, std = ens.predict(X_new, return_std=True)       # doctest: +SKIP
    """

    def __init__(self, estimator, n_estimators=5, n_jobs=None, random_state=None):
        self.estimator = estimator
        self.n_estimators = n_estimators
        self.n_jobs = n_jobs
        self.random_state = random_state

    def fit(self, X, y, **fit_params):
        """Fit every member on ``(X, y)``; ``fit_params`` go to each member's fit."""
        if not (isinstance(self.n_estimators, (int, np.integer)) and self.n_estimators >= 1):
            raise ValueError(f"n_estimators must be an int >= 1, got {self.n_estimators!r}")
        if not (hasattr(self.estimator, "fit") and hasattr(self.estimator, "get_params")):
            raise TypeError(f"estimator must be a scikit-learn regressor (e.g. "
                            f"CGCNNRegressor()), got {type(self.estimator).__name__}")
        if is_classifier(self.estimator):  # the mean of class labels is no prediction
            raise TypeError(f"estimator must be a regressor, got the classifier "
                            f"{type(self.estimator).__name__}; EnsembleRegressor averages "
                            "its members' predictions and their spread")
        if "random_state" not in self.estimator.get_params():
            raise TypeError(f"estimator {type(self.estimator).__name__} has no "
                            "random_state parameter; members would be identical")
        rng = check_random_state(self.random_state)
        self.seeds_ = rng.randint(0, 2**31 - 1, size=self.n_estimators)
        members = [clone(self.estimator).set_params(random_state=int(s)) for s in self.seeds_]
        n_jobs = 1 if check_n_jobs(self.n_jobs) is None else int(self.n_jobs)
        if n_jobs < 0:
            n_jobs = max(1, (os.cpu_count() or 1) + 1 + n_jobs)
        n_jobs = min(n_jobs, self.n_estimators)
        threads = None if n_jobs == 1 else max(1, (os.cpu_count() or 1) // n_jobs)
        self.estimators_ = Parallel(n_jobs=n_jobs)(
            delayed(_fit_member)(m, X, y, threads, fit_params) for m in members)
        return self

    def _check_fitted(self):
        if not hasattr(self, "estimators_"):
            raise NotFittedError(f"this {type(self).__name__} is not fitted yet; "
                                 "call fit(X, y) first")

    def predict_members(self, X):
        """Each member's prediction, shape (n_estimators, n) or (n_estimators, n, n_targets)."""
        self._check_fitted()
        return np.stack([np.asarray(m.predict(X), dtype=np.float64) for m in self.estimators_])

    def predict(self, X, return_std=False):
        """Mean of the members' predictions (and their standard deviation).

        Parameters
        ----------
        X : structures (whatever the members accept)
        return_std : bool
            Also return the members' standard deviation (ddof=0), in the
            units of ``y``: a measure of model (epistemic) uncertainty.

        Returns
        -------
        mean : ndarray, shape (n,) or (n, n_targets)
        std : ndarray, same shape, only with ``return_std=True``
        """
        preds = self.predict_members(X)
        mean = preds.mean(axis=0)
        return (mean, preds.std(axis=0)) if return_std else mean

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        try:
            inner = self.estimator.__sklearn_tags__()
            tags.input_tags = inner.input_tags
        except AttributeError:  # pragma: no cover
            pass
        return tags
