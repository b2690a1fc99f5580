"""Torch modules: one file per model, shared pieces once.

Models operate on :class:`~skcrystal.graphs.GraphBatch` tensors; no
pymatgen. Shared pieces: :mod:`.model` (the :class:`CrystalModel` contract:
graph extras, supported elements, readout, parameter constraints),
:mod:`.scatter` (segment reductions), :mod:`.basis` (Gaussian/RBF
expansions), :mod:`.embedding` (atom features), :mod:`.pooling`,
:mod:`.head` (readout MLP with descriptor hybridization), :mod:`.common`
(MLP, BatchNorm). The model classes live in their own files
(``skcrystal.nn.cgcnn.CGCNN``, ...) and are listed by
:mod:`skcrystal.estimators.registry`.
"""
from .basis import GaussianExpansion
from .common import MLP, BatchNorm
from .embedding import AtomEmbedding
from .head import ReadoutHead
from .model import CrystalModel
from .pooling import pool
from .scatter import scatter_max, scatter_mean, scatter_softmax, scatter_sum

__all__ = ["GaussianExpansion", "MLP", "BatchNorm", "AtomEmbedding", "CrystalModel",
           "ReadoutHead", "pool", "scatter_max", "scatter_mean", "scatter_softmax",
           "scatter_sum"]
