"""scikit-learn estimators (skorch wrappers) for the skcrystal models.

The model estimators are found through :mod:`skcrystal.estimators.registry`:
each model's estimator file registers itself, and this package exports
every registered regressor and classifier.
"""
from . import registry
from .base import (CrystalClassifierBase, CrystalGraphNet, CrystalRegressorBase, GraphDataset,
                   NonFiniteError)
from .callbacks import Checkpoint, EpochProgressBar, RecomputeBatchNorm
from .registry import ModelSpec, register
from .scaling import DescriptorScaler, LabelEncoder, TargetScaler

__all__ = ["CrystalGraphNet", "CrystalRegressorBase", "CrystalClassifierBase",
           "GraphDataset", "ModelSpec", "register", "RecomputeBatchNorm", "TargetScaler",
           "LabelEncoder", "DescriptorScaler", "NonFiniteError", "Checkpoint", "EpochProgressBar"]

for _spec in registry.specs():
    for _cls in (_spec.regressor, _spec.classifier):
        if _cls is not None:
            globals()[_cls.__name__] = _cls
            __all__.append(_cls.__name__)
del _spec, _cls
