"""ALIGNN estimators."""
import torch

from ..graphs.line_graph import DEFAULT_MAX_TRIPLETS, check_line_graph_sizes, line_graph_extra
from ..nn.alignn import ALIGNN
from .base import CrystalClassifierBase, CrystalRegressorBase

__all__ = ["ALIGNNRegressor", "ALIGNNClassifier"]


class _ALIGNNMixin:
    """Line graph as a graph extra, with the size bound checked per structure."""

    def graph_extras(self):
        return (line_graph_extra(self.max_triplets),)

    def _graphs(self, structures):
        graphs = super()._graphs(structures)
        # name the offending structure (its index in X) before any batch is built
        check_line_graph_sizes(graphs, self.max_triplets)
        return graphs


class ALIGNNRegressor(_ALIGNNMixin, CrystalRegressorBase):
    """ALIGNN regressor (Choudhary & DeCost 2021) on pymatgen structures.

    Model parameters go through the ``module__`` prefix, e.g.
    ``ALIGNNRegressor(module__hidden_features=64, module__alignn_layers=2)``; see
    :class:`skcrystal.nn.alignn.ALIGNN` (reference defaults: 4 ALIGNN + 4
    gated graph convolutions, hidden 256, embedding 64, 80 distance and 40
    angle basis functions, SiLU, batch norm, mean pooling). Training and
    data parameters are those of
    :class:`~skcrystal.estimators.base.CrystalGraphNet` (graphs: 8 Å, 12
    neighbours).

    Parameters
    ----------
    max_triplets : int or None, default 2,000,000
        Largest line graph (bond pairs) allowed for one structure; a larger
        one raises a ``ValueError`` naming the structure's index in ``X``
        (memory: ~24 bytes per pair cached, see
        :mod:`skcrystal.graphs.line_graph`). ``None``: no bound.
    """

    def __init__(self, module=ALIGNN, criterion=torch.nn.MSELoss,
                 max_triplets=DEFAULT_MAX_TRIPLETS, **kwargs):
        super().__init__(module, criterion=criterion, **kwargs)
        self.max_triplets = max_triplets


class ALIGNNClassifier(_ALIGNNMixin, CrystalClassifierBase):
    """ALIGNN classifier; same parameters as :class:`ALIGNNRegressor`."""

    def __init__(self, module=ALIGNN, criterion=torch.nn.CrossEntropyLoss,
                 max_triplets=DEFAULT_MAX_TRIPLETS, **kwargs):
        super().__init__(module, criterion=criterion, **kwargs)
        self.max_triplets = max_triplets
