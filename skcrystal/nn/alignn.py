"""ALIGNN layers (Choudhary & DeCost, npj Comput. Mater. 7, 185 (2021)).

Equations 5-10 of ``gnn-descriptors-periodicity``: edge-gated graph
convolutions update atoms and bonds on the atom graph (Eqs. 5-7) and bonds
and bond angles on the line graph (Eqs. 8-10). Pure torch; operates on a
:class:`~skcrystal.graphs.GraphBatch` whose extras hold the line graph of
:func:`skcrystal.graphs.line_graph.line_graph` (``lg_index``, ``lg_cos``).

Details the paper text lacks follow the reference implementation
(usnistgov/alignn, ``alignn/models/alignn.py``, published configuration):

* Radial basis ``exp(-(x - mu_k)^2 / spacing)`` (the reference's
  ``gamma = 1 / lengthscale`` with lengthscale = centre spacing), i.e. a
  Gaussian width of ``sqrt(spacing)``: 0.318 Å for 80 centres on 0-8 Å,
  0.226 for 40 centres on the cosine range -1..1.
* Embeddings are Linear -> BatchNorm -> SiLU blocks: atoms 92 -> hidden,
  bonds 80 -> 64 -> hidden, angles 40 -> 64 -> hidden.
* An ALIGNN layer first convolves the line graph (bond features as nodes,
  angle features as edges; "triplet-pair" order), then the atom graph with
  the updated bond features. Each convolution has its own residual
  connection. Average pooling, then one Linear layer.
"""
import math
import numbers

import torch
from sklearn.utils._param_validation import Interval, StrOptions
from torch import nn

from ..graphs.line_graph import DEFAULT_MAX_TRIPLETS, line_graph_extra
from .basis import GaussianExpansion
from .common import BatchNorm, activation
from .embedding import AtomEmbedding
from .head import ReadoutHead
from .model import COMMON_CONSTRAINTS, CrystalModel
from .pooling import POOLINGS, pool
from .scatter import scatter_sum

__all__ = ["EdgeGatedGraphConv", "ALIGNNLayer", "ALIGNN", "reference_rbf"]


def reference_rbf(start, stop, n_centers):
    """Gaussian expansion with the ALIGNN reference width ``sqrt(spacing)``."""
    spacing = (stop - start) / max(n_centers - 1, 1)
    return GaussianExpansion(start, stop, n_centers=n_centers, width=math.sqrt(spacing))


def _mlp_block(n_in, n_out, act):
    return nn.Sequential(nn.Linear(n_in, n_out), BatchNorm(n_out), activation(act))


class EdgeGatedGraphConv(nn.Module):
    """Edge-gated graph convolution (paper Eqs. 5-7 / 8-10).

    For an edge ``e`` from sender ``j`` to receiver ``i`` with features
    ``e_ij`` and node features ``h``:

    ``m_ij = A h_j + B h_i + C e_ij`` (edge pre-activation),
    ``h_i' = h_i + SiLU(BN(U h_i + sum_j sigmoid(m_ij) * V h_j /
    (sum_j sigmoid(m_ij) + 1e-6)))``,
    ``e_ij' = e_ij + SiLU(BN(m_ij))``.

    The same module is used on the atom graph (nodes = atoms, edges = bonds)
    and on the line graph (nodes = bonds, edges = bond pairs).

    Parameters
    ----------
    dim : int
        Node and edge feature length.
    act : str
        Activation (SiLU in the reference).
    residual : bool
        Add the inputs to the outputs.

    Shapes
    ------
    x (n_nodes, dim), e (n_edges, dim), receiver, sender (n_edges,) ->
    (n_nodes, dim), (n_edges, dim)
    """

    def __init__(self, dim, act="silu", residual=True):
        super().__init__()
        self.src_gate = nn.Linear(dim, dim)
        self.dst_gate = nn.Linear(dim, dim)
        self.edge_gate = nn.Linear(dim, dim)
        self.bn_edges = BatchNorm(dim)
        self.src_update = nn.Linear(dim, dim)  # the receiver's own term, U
        self.dst_update = nn.Linear(dim, dim)  # the gated sender term, V
        self.bn_nodes = BatchNorm(dim)
        self.act = activation(act)
        self.residual = residual

    def forward(self, x, e, receiver, sender):
        m = (self.src_gate(x).index_select(0, sender)
             + self.dst_gate(x).index_select(0, receiver) + self.edge_gate(e))
        sigma = torch.sigmoid(m)
        n = x.shape[0]
        num = scatter_sum(sigma * self.dst_update(x).index_select(0, sender), receiver, n)
        den = scatter_sum(sigma, receiver, n)
        x_new = self.act(self.bn_nodes(self.src_update(x) + num / (den + 1e-6)))
        e_new = self.act(self.bn_edges(m))
        if self.residual:
            return x + x_new, e + e_new
        return x_new, e_new


class ALIGNNLayer(nn.Module):
    """Line-graph convolution, then atom-graph convolution with the new bonds.

    Shapes
    ------
    x (n_nodes, dim), y (n_edges, dim), z (n_pairs, dim) -> same shapes
    """

    def __init__(self, dim, act="silu"):
        super().__init__()
        self.edge_update = EdgeGatedGraphConv(dim, act)
        self.node_update = EdgeGatedGraphConv(dim, act)

    def forward(self, x, y, z, edge_index, lg_index):
        y, z = self.edge_update(y, z, lg_index[:, 0], lg_index[:, 1])
        x, y = self.node_update(x, y, edge_index[0], edge_index[1])
        return x, y, z


class ALIGNN(CrystalModel):
    """Atomistic line graph neural network.

    Defaults are the reference implementation's: 4 ALIGNN layers + 4
    edge-gated graph convolutions, 80 radial basis centres on 0-8 Å for
    distances and 40 on -1..1 for bond-angle cosines, embedding 64, hidden
    256, SiLU, batch norm, average pooling, one Linear layer after pooling.
    The graph itself (8 Å, 12 neighbours) is the estimator's.

    Parameters
    ----------
    n_outputs : int
        Targets or classes (set by the estimator).
    atom_features, extra_atom_features
        See :class:`~skcrystal.nn.embedding.AtomEmbedding` (``"cgcnn"``: the
        92-feature one-hot table ALIGNN also uses).
    alignn_layers : int
        ALIGNN layers (line graph + atom graph).
    gcn_layers : int
        Further atom-graph edge-gated convolutions.
    hidden : int
        Feature length of atoms, bonds and angles in the convolutions (the
        reference's ``hidden_features``).
    embedding_features : int
        Intermediate width of the bond and angle embeddings.
    n_basis, n_angle_basis : int
        Radial basis centres for distances (0 to ``cutoff`` Å) and cosines
        (the reference's ``edge_input_features``, ``triplet_input_features``).
    cutoff : float
        Last distance centre, Å; the estimator sets it to its graph ``radius``.
    act : str
        Activation.
    pooling : {"mean", "sum", "max"}
    head_hidden : sequence of int
        Hidden layers of the head (reference: none, one Linear layer).
    max_triplets : int or None
        Largest line graph (bond pairs) of one structure; a larger one
        raises naming the structure (memory: see
        :mod:`skcrystal.graphs.line_graph`). None: no bound.
    n_descriptors : int
        Descriptor-vector length for hybrid models (0: none).
    dropout : float
        Dropout in the head.
    """

    _parameter_constraints = {
        **COMMON_CONSTRAINTS,
        "alignn_layers": [Interval(numbers.Integral, 0, None, closed="left")],
        "gcn_layers": [Interval(numbers.Integral, 0, None, closed="left")],
        **{name: [Interval(numbers.Integral, 1, None, closed="left")]
           for name in ("hidden", "embedding_features", "n_basis", "n_angle_basis")},
        "act": [str, nn.Module],
        "pooling": [StrOptions(set(POOLINGS))],
        "head_hidden": ["array-like"],
        "max_triplets": [Interval(numbers.Integral, 1, None, closed="left"), None],
    }

    def __init__(self, n_outputs=1, atom_features="cgcnn", extra_atom_features=None,
                 alignn_layers=4, gcn_layers=4, hidden=256, embedding_features=64,
                 n_basis=80, n_angle_basis=40, cutoff=8.0, act="silu",
                 pooling="mean", head_hidden=(), max_triplets=DEFAULT_MAX_TRIPLETS,
                 n_descriptors=0, dropout=0.0):
        super().__init__()
        self.max_triplets = max_triplets
        self.pooling = pooling
        self.embedding = AtomEmbedding(hidden, atom_features, extra_atom_features)
        self.atom_norm = nn.Sequential(BatchNorm(hidden), activation(act))
        self.edge_embedding = nn.Sequential(
            reference_rbf(0.0, cutoff, n_basis),
            _mlp_block(n_basis, embedding_features, act),
            _mlp_block(embedding_features, hidden, act))
        self.angle_embedding = nn.Sequential(
            reference_rbf(-1.0, 1.0, n_angle_basis),
            _mlp_block(n_angle_basis, embedding_features, act),
            _mlp_block(embedding_features, hidden, act))
        self.alignn_layers = nn.ModuleList(
            ALIGNNLayer(hidden, act) for _ in range(alignn_layers))
        self.gcn_layers = nn.ModuleList(
            EdgeGatedGraphConv(hidden, act) for _ in range(gcn_layers))
        self.head = ReadoutHead(hidden, n_outputs, tuple(head_hidden), act=act,
                                n_descriptors=n_descriptors, dropout=dropout)

    @property
    def needs_line_graph(self):
        return len(self.alignn_layers) > 0

    @property
    def graph_extras(self):
        return (line_graph_extra(self.max_triplets),) if self.needs_line_graph else ()

    def atom_features(self, batch):
        """Atom vectors after all convolutions, shape (n_nodes, hidden)."""
        x = self.atom_norm(self.embedding(batch.atomic_numbers))
        y = self.edge_embedding(batch.distances)
        if self.needs_line_graph:
            if "lg_index" not in batch.extras:
                raise ValueError("ALIGNN layers need the line graph in batch.extras "
                                 "(collate the graphs with extras=model.graph_extras)")
            lg_index = batch.extras["lg_index"]
            z = self.angle_embedding(batch.extras["lg_cos"].to(y.dtype))
            for layer in self.alignn_layers:
                x, y, z = layer(x, y, z, batch.edge_index, lg_index)
        for layer in self.gcn_layers:
            x, y = layer(x, y, batch.edge_index[0], batch.edge_index[1])
        return x

    def embed(self, batch):
        """Pooled crystal vectors, shape (n_graphs, hidden)."""
        return pool(self.atom_features(batch), batch.node_graph, batch.n_graphs, self.pooling)
