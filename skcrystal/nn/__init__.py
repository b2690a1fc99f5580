"""Pure torch modules: no scikit-learn, no pymatgen.

Shared pieces exist once: :mod:`.scatter` (segment reductions),
:mod:`.basis` (Gaussian/RBF expansions), :mod:`.embedding` (atom features),
:mod:`.pooling`, :mod:`.head` (readout MLP with descriptor hybridization),
:mod:`.common` (MLP, BatchNorm). One file per model.
"""
from .basis import GaussianExpansion
from .alignn import ALIGNN, ALIGNNLayer, EdgeGatedGraphConv
from .cgcnn import CGCNN, CGCNNConv, CGCNNSimpleConv
from .crystalnet import CrystalNet, CrystalNetLayer
from .crystograph import CrysToGraph, ETGCLayer, GwTLayer
from .common import MLP, BatchNorm
from .embedding import AtomEmbedding
from .head import CrystalModel, ReadoutHead
from .pooling import pool
from .scatter import scatter_max, scatter_mean, scatter_softmax, scatter_sum

__all__ = ["GaussianExpansion", "ALIGNN", "ALIGNNLayer", "EdgeGatedGraphConv",
           "CGCNN", "CGCNNConv", "CGCNNSimpleConv", "CrystalNet", "CrystalNetLayer",
           "CrysToGraph", "ETGCLayer", "GwTLayer", "MLP",
           "BatchNorm", "AtomEmbedding", "CrystalModel", "ReadoutHead", "pool",
           "scatter_max", "scatter_mean", "scatter_softmax", "scatter_sum"]
