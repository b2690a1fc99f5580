"""scikit-learn estimators (skorch wrappers) for the skcrystal models."""
from .base import CrystalGraphNet, CrystalRegressorBase, CrystalClassifierBase, GraphDataset
from .cgcnn import CGCNNRegressor, CGCNNClassifier

__all__ = ["CrystalGraphNet", "CrystalRegressorBase", "CrystalClassifierBase",
           "GraphDataset", "CGCNNRegressor", "CGCNNClassifier"]
