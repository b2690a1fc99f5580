"""CrystalNet estimators."""
import torch

from ..graphs.reverse_edges import REVERSE_EDGES_EXTRA
from ..nn.crystalnet import CrystalNet
from .base import CrystalClassifierBase, CrystalRegressorBase

__all__ = ["CrystalNetRegressor", "CrystalNetClassifier"]


class CrystalNetRegressor(CrystalRegressorBase):
    """CrystalNet regressor (Matgen paper, Methods) on pymatgen structures.

    Model parameters go through the ``module__`` prefix, e.g.
    ``CrystalNetRegressor(module__hidden=64, module__depth=3)``; see
    :class:`skcrystal.nn.crystalnet.CrystalNet` (paper defaults: 100
    Gaussians on 0-5 Å, sigma 0.5 Å, hidden 512, 2 message-passing
    iterations, 2 MLP layers). Graph and training parameters are those of
    :class:`~skcrystal.estimators.base.CrystalGraphNet`. Edges whose reverse
    is missing from the k-nearest graph are handled as documented in
    :mod:`skcrystal.nn.crystalnet`.
    """

    def graph_extras(self):
        return (REVERSE_EDGES_EXTRA,)

    def __init__(self, module=CrystalNet, criterion=torch.nn.MSELoss, **kwargs):
        super().__init__(module, criterion=criterion, **kwargs)


class CrystalNetClassifier(CrystalClassifierBase):
    """CrystalNet classifier; same parameters as :class:`CrystalNetRegressor`."""

    def graph_extras(self):
        return (REVERSE_EDGES_EXTRA,)

    def __init__(self, module=CrystalNet, criterion=torch.nn.CrossEntropyLoss, **kwargs):
        super().__init__(module, criterion=criterion, **kwargs)
