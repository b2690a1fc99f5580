"""scikit-learn estimators (skorch wrappers) for the skcrystal models."""
from .base import CrystalGraphNet, CrystalRegressorBase, CrystalClassifierBase, GraphDataset
from .cgcnn import CGCNNRegressor, CGCNNClassifier
from .alignn import ALIGNNRegressor, ALIGNNClassifier
from .crystalnet import CrystalNetRegressor, CrystalNetClassifier
from .crystograph import CrysToGraphRegressor, CrysToGraphClassifier

__all__ = ["CrystalGraphNet", "CrystalRegressorBase", "CrystalClassifierBase",
           "GraphDataset", "CGCNNRegressor", "CGCNNClassifier", "ALIGNNRegressor",
           "ALIGNNClassifier", "CrystalNetRegressor", "CrystalNetClassifier",
           "CrysToGraphRegressor", "CrysToGraphClassifier"]
