"""Composition-only baselines: what can be predicted without the structure.

The periodicity paper compares its GNNs with a composition-only model
(ROOST) to tell what a structure model learns beyond the chemical formula.
:class:`CompositionBaseline` is the cheap, deterministic stand-in used in
skcrystal's probe tables: matminer's Magpie element-property statistics of
the composition (``ElementProperty.from_preset("magpie")``: minimum,
maximum, range, mean, average deviation and mode of 22 element properties,
132 numbers) followed by a random forest.

Only the composition of each structure is used, so polymorphs get
identical predictions by construction.
"""
from __future__ import annotations

import numbers

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin, RegressorMixin, clone
from sklearn.utils.validation import check_is_fitted

from ._validation import check_targets, split_input

__all__ = ["CompositionBaseline", "CompositionBaselineClassifier",
           "composition_features", "clear_composition_cache"]

# (preset, fractional composition key) -> feature row; Magpie is ~1 ms per
# composition and data sets repeat formulas, so rows are computed once per process.
_CACHE: dict = {}
_FEATURIZERS: dict = {}


def clear_composition_cache():
    """Empty the process-wide cache of composition feature rows."""
    _CACHE.clear()


def _featurizer(preset):
    if preset not in _FEATURIZERS:
        from matminer.featurizers.composition import ElementProperty
        try:
            _FEATURIZERS[preset] = ElementProperty.from_preset(preset)
        except ValueError as exc:  # matminer's "Invalid preset_name specified!"
            raise ValueError(f"preset={preset!r} is not a matminer ElementProperty preset "
                             f"(e.g. 'magpie', 'deml', 'matminer'): {exc}") from None
    return _FEATURIZERS[preset]


def _composition(item, i, structure_column="structure"):
    from pymatgen.core import Composition, Structure
    if isinstance(item, Structure):
        return item.composition
    if isinstance(item, Composition):
        return item
    if isinstance(item, str):
        try:
            return Composition(item)
        except Exception as exc:  # noqa: BLE001 - re-raised naming the item
            raise ValueError(f"X[{i}] = {item!r} is not a chemical formula: {exc}") from exc
    comp = getattr(item, "composition", None)  # Molecule, IStructure, ...
    if comp is not None:
        return comp
    raise TypeError(f"X[{i}] is a {type(item).__name__}; expected a pymatgen Structure, "
                    "Composition or formula string")


def _items(X, structure_column):
    if isinstance(X, str) or not hasattr(X, "__len__"):
        raise TypeError(f"X must be a sequence of structures/compositions, got "
                        f"{type(X).__name__}")
    items = split_input(X, structure_column, descriptor_columns=False)[0]
    if not items:
        raise ValueError("X is empty: at least one structure is needed")
    return items


def composition_features(X, preset="magpie", structure_column="structure"):
    """Element-property statistics of the compositions of ``X``.

    Parameters
    ----------
    X : sequence of Structure, Composition or formula str, or DataFrame
        A DataFrame must have ``structure_column``.
    preset : str
        matminer ``ElementProperty`` preset ("magpie", "deml", "matminer", ...).

    Returns
    -------
    features : ndarray, shape (n, n_features)
        NaN where an element lacks a property in the preset's table.
    labels : list of str
        matminer's feature labels.
    """
    feat = _featurizer(preset)
    rows = []
    for i, item in enumerate(_items(X, structure_column)):
        comp = _composition(item, i)
        if len(comp) == 0:
            raise ValueError(f"X[{i}] has an empty composition")
        frac = comp.fractional_composition
        key = (preset, tuple(sorted((str(el), round(float(x), 10))
                                    for el, x in frac.items())))
        row = _CACHE.get(key)
        if row is None:
            try:
                row = np.asarray(feat.featurize(comp), dtype=np.float64)
            except Exception as exc:  # noqa: BLE001 - re-raised naming the item
                raise ValueError(f"X[{i}] ({comp.reduced_formula}): Magpie featurization "
                                 f"failed: {type(exc).__name__}: {exc}") from exc
            _CACHE[key] = row
        rows.append(row)
    return np.vstack(rows), list(feat.feature_labels())


class _CompositionModel(BaseEstimator):
    _default_forest = None

    def __init__(self, estimator=None, n_estimators=100, preset="magpie",
                 structure_column="structure", random_state=None, n_jobs=None):
        self.estimator = estimator
        self.n_estimators = n_estimators
        self.preset = preset
        self.structure_column = structure_column
        self.random_state = random_state
        self.n_jobs = n_jobs

    def _model(self):
        if self.estimator is not None:
            return clone(self.estimator)
        if not (isinstance(self.n_estimators, numbers.Integral) and self.n_estimators >= 1):
            raise ValueError(f"n_estimators must be a positive integer, got "
                             f"{self.n_estimators!r}")
        return self._default_forest(n_estimators=self.n_estimators,
                                    random_state=self.random_state, n_jobs=self.n_jobs)

    def transform(self, X):
        """Magpie features of the compositions, shape (n, n_features)."""
        return composition_features(X, self.preset, self.structure_column)[0]

    def fit(self, X, y):
        """Featurize the compositions of ``X`` and fit the model on ``y``.

        Parameters
        ----------
        X : sequence of Structure / Composition / formula, or DataFrame
        y : array-like, shape (n,) or (n, n_targets)
        """
        F, labels = composition_features(X, self.preset, self.structure_column)
        y = check_targets(y, classification=isinstance(self, ClassifierMixin))
        if len(y) != len(F):
            raise ValueError(f"X and y have different lengths: {len(F)} structures but "
                             f"{len(y)} targets")
        self.feature_names_ = np.asarray(labels, dtype=object)
        self.n_features_ = F.shape[1]
        self.estimator_ = self._model().fit(F, y)
        return self

    def predict(self, X):
        """Predictions from the compositions of ``X``, shape (n,) or (n, n_targets)."""
        check_is_fitted(self, "estimator_")
        return self.estimator_.predict(self.transform(X))

    @property
    def feature_importances_(self):
        """Importances of the Magpie features (from the fitted forest)."""
        check_is_fitted(self, "estimator_")
        return self.estimator_.feature_importances_

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.two_d_array = False
        return tags


class CompositionBaseline(RegressorMixin, _CompositionModel):
    """Composition-only regressor: Magpie statistics + random forest.

    Parameters
    ----------
    estimator : regressor or None
        Model on the Magpie features; None for
        ``RandomForestRegressor(n_estimators, random_state, n_jobs)``.
    n_estimators : int, default 100
        Trees of the default forest.
    preset : str, default "magpie"
        matminer ``ElementProperty`` preset.
    structure_column : str, default "structure"
        Column of the structures when ``X`` is a DataFrame (other columns
        are ignored: this is a composition-only model).
    random_state, n_jobs
        Passed to the default forest.

    Attributes
    ----------
    estimator_ : the fitted model
    feature_names_ : ndarray of str, Magpie feature labels

    Examples
    --------
    >>> from skcrystal.baselines import CompositionBaseline
    >>> from skcrystal.datasets import load_perovskites
    >>> X, y = load_perovskites(n=200)
    >>> CompositionBaseline(random_state=0).fit(X, y).predict(X[:2]).shape
    (2,)
    """

    @property
    def _default_forest(self):
        from sklearn.ensemble import RandomForestRegressor
        return RandomForestRegressor


class CompositionBaselineClassifier(ClassifierMixin, _CompositionModel):
    """Composition-only classifier: Magpie statistics + random forest.

    Same parameters as :class:`CompositionBaseline`; the default model is
    ``RandomForestClassifier``. ``classes_`` and ``predict_proba`` come from
    the fitted model.
    """

    @property
    def _default_forest(self):
        from sklearn.ensemble import RandomForestClassifier
        return RandomForestClassifier

    def fit(self, X, y):
        super().fit(X, y)
        self.classes_ = self.estimator_.classes_
        return self

    def predict_proba(self, X):
        """Class probabilities, shape (n, n_classes), columns as ``classes_``."""
        check_is_fitted(self, "estimator_")
        return self.estimator_.predict_proba(self.transform(X))


# what the learnability probes use for classification descriptors
CompositionBaseline.classifier_counterpart_class = CompositionBaselineClassifier
