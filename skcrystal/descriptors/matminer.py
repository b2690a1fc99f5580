"""Any matminer featurizer as a scikit-learn transformer of structures.

matminer featurizers are scikit-learn estimators in name, but used directly
on structures they trip over three things: many take a ``Composition`` (or
an oxidation-state-decorated structure) rather than a ``Structure``; they
return NaN or raise for inputs they cannot handle, which later turns a
cross-validation score into ``nan``; and their ``featurize_many`` starts
worker processes and progress bars of its own. :class:`MatminerFeaturizer`
converts the input, computes one row per structure in this process (or in
joblib workers), names the structure that failed, and fills missing values
with the training means so that a hybrid model always gets finite numbers.
"""
from __future__ import annotations

import copy
import warnings
from functools import partial

import numpy as np
from sklearn.base import BaseEstimator, TransformerMixin, clone
from sklearn.utils._param_validation import StrOptions
from sklearn.utils.validation import check_is_fitted

from .._parallel import map_chunks
from .._validation import check_structures

__all__ = ["MatminerFeaturizer"]


def _convert(structure, on):
    if on == "structure":
        return structure
    if on == "composition":
        return structure.composition
    # on == "oxi_structure": a copy decorated with guessed oxidation states
    decorated = structure.copy()
    decorated.add_oxidation_state_by_guess()
    return decorated


def _featurize_many(featurizer, items):
    """One row (float64) per item, or the exception that stopped it."""
    rows = []
    for item in items:
        try:
            rows.append(np.asarray(featurizer.featurize(item), dtype=np.float64).ravel())
        except Exception as exc:  # noqa: BLE001 - reported per on_error by the caller
            rows.append(exc)
    return rows


class MatminerFeaturizer(TransformerMixin, BaseEstimator):
    """A matminer featurizer as a transformer of pymatgen structures.

    Use it as the ``descriptors=`` of any skcrystal estimator or as a step
    of a ``Pipeline``::

        from matminer.featurizers.composition import ElementProperty
        from skcrystal.descriptors import MatminerFeaturizer
        from skcrystal.estimators import CGCNNRegressor

        magpie = MatminerFeaturizer(ElementProperty.from_preset("magpie"),
                                    on="composition")
        est = CGCNNRegressor(descriptors=magpie)

    Parameters
    ----------
    featurizer : matminer featurizer
        Any object with ``featurize`` and ``feature_labels`` (matminer's
        ``BaseFeaturizer``). It is cloned in ``fit``; the original is never
        modified.
    on : {"structure", "composition", "oxi_structure"}
        What the featurizer takes: the structure itself, its composition
        (``Structure.composition``), or a copy of the structure decorated
        with oxidation states guessed by pymatgen (for featurizers that
        need them, e.g. ``EwaldEnergy``).
    impute : bool
        Replace missing values (NaN or infinite, or the row of a structure whose
        featurization failed) by the mean of that column over the training
        structures. Without it, missing values stay NaN, and a skcrystal
        estimator refuses them with an error naming the structure.
    on_error : {"warn", "raise"}
        A structure whose featurization raises gives a ``RuntimeWarning``
        naming its index and formula (its row is then missing), or a
        ``ValueError`` naming it.
    n_jobs : int or None
        joblib workers for featurization (matminer's own multiprocessing
        and progress bars are not used).

    Attributes
    ----------
    featurizer_ : matminer featurizer
        The fitted clone.
    feature_names_out_ : ndarray of str, shape (n_features,)
        The featurizer's ``feature_labels()``.
    n_features_out_ : int
    fill_values_ : ndarray of float
        Training means used for imputation, shape (n_features,) (0 for a column that was
        missing on every training structure).
    """

    _parameter_constraints = {
        "featurizer": [object],
        "on": [StrOptions({"structure", "composition", "oxi_structure"})],
        "impute": ["boolean"],
        "on_error": [StrOptions({"warn", "raise"})],
        "n_jobs": [int, None],
    }

    def __init__(self, featurizer, on="structure", impute=True, on_error="warn",
                 n_jobs=None):
        self.featurizer = featurizer
        self.on = on
        self.impute = impute
        self.on_error = on_error
        self.n_jobs = n_jobs

    def _check_featurizer(self):
        f = self.featurizer
        if not (callable(getattr(f, "featurize", None))
                and callable(getattr(f, "feature_labels", None))):
            raise TypeError(
                f"featurizer must be a matminer featurizer (with featurize and "
                f"feature_labels), got {type(f).__name__}")

    def _rows(self, featurizer, structures):
        """Featurize: (values (n, k) float64 with NaN rows for failures)."""
        items = [_convert(s, self.on) for s in structures]
        rows = map_chunks(partial(_featurize_many, featurizer), items, self.n_jobs)
        width = len(featurizer.feature_labels())
        out = np.full((len(items), width), np.nan)
        for i, row in enumerate(rows):
            where = f"X[{i}] ({structures[i].composition.reduced_formula})"
            if isinstance(row, Exception):
                msg = (f"{where}: {type(featurizer).__name__} failed on the "
                       f"{self.on} ({type(row).__name__}: {row})")
                if self.on_error == "raise":
                    raise ValueError(msg) from row
                warnings.warn(msg + "; its values are missing", RuntimeWarning,
                              stacklevel=3)
                continue
            if row.shape != (width,):
                raise ValueError(
                    f"{where}: {type(featurizer).__name__} returned {row.size} values "
                    f"but has {width} feature labels")
            out[i] = row
        return out

    def _fit(self, X):
        self._validate_params()
        self._check_featurizer()
        structures = check_structures(X)
        try:
            featurizer = clone(self.featurizer)
        except (TypeError, RuntimeError):
            # featurizers whose __init__ does not store its arguments as-is
            featurizer = copy.deepcopy(self.featurizer)
        fit = getattr(featurizer, "fit", None)
        if callable(fit):
            fit([_convert(s, self.on) for s in structures])
        self.featurizer_ = featurizer
        labels = [str(n) for n in featurizer.feature_labels()]
        self.feature_names_out_ = np.asarray(labels, dtype=object)
        self.n_features_out_ = len(labels)
        values = self._rows(featurizer, structures)
        seen = np.isfinite(values)
        with np.errstate(invalid="ignore", divide="ignore"):
            means = np.where(seen, values, 0.0).sum(0) / seen.sum(0)
        self.fill_values_ = np.where(seen.any(0), means, 0.0)
        return structures, values

    def fit(self, X, y=None):
        """Clone and fit the featurizer on ``X``; record the training means.

        Parameters
        ----------
        X : sequence of pymatgen Structure, length n_samples
        y : ignored
        """
        self._fit(X)
        return self

    def fit_transform(self, X, y=None, **fit_params):
        """``fit(X).transform(X)``, featurizing each structure once."""
        return self._finish(self._fit(X)[1])

    def transform(self, X):
        """Featurize structures.

        Parameters
        ----------
        X : sequence of pymatgen Structure, length n_samples

        Returns
        -------
        ndarray of float64, shape (n_samples, n_features)
            In the featurizer's units; missing values imputed (``impute``)
            or NaN.
        """
        check_is_fitted(self, "featurizer_")
        structures = check_structures(X)
        return self._finish(self._rows(self.featurizer_, structures))

    def _finish(self, values):
        if self.impute:
            missing = ~np.isfinite(values)
            values = np.where(missing, self.fill_values_[None, :], values)
        return values

    def get_feature_names_out(self, input_features=None):
        """The featurizer's ``feature_labels()``."""
        check_is_fitted(self, "feature_names_out_")
        return self.feature_names_out_.copy()

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.two_d_array = False
        tags.input_tags.string = False
        return tags
