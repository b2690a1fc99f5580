"""scikit-learn estimators (skorch wrappers) for the skcrystal models.

The model estimators are found through :mod:`skcrystal.estimators.registry`
(each model's estimator file registers itself); attribute access such as
``skcrystal.estimators.CGCNNRegressor`` looks them up there.
"""
from . import registry
from .base import CrystalClassifierBase, CrystalGraphNet, CrystalRegressorBase, GraphDataset

__all__ = ["CrystalGraphNet", "CrystalRegressorBase", "CrystalClassifierBase",
           "GraphDataset", "registry"]


def __getattr__(name):
    cls = registry.estimator_class(name)
    if cls is None:
        raise AttributeError(f"module 'skcrystal.estimators' has no attribute {name!r}")
    return cls


def __dir__():
    names = [c.__name__ for s in registry.specs() for c in (s.regressor, s.classifier) if c]
    return sorted(list(globals()) + names)
