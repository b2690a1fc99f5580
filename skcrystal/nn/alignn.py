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

import torch
from torch import nn

from .basis import GaussianExpansion
from .common import BatchNorm, activation
from .embedding import AtomEmbedding
from .head import CrystalModel, ReadoutHead
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
    hidden_features : int
        Feature length of atoms, bonds and angles in the convolutions.
    embedding_features : int
        Intermediate width of the bond and angle embeddings.
    edge_input_features, triplet_input_features : int
        Radial basis centres for distances (0 to ``cutoff`` Å) and cosines.
    cutoff : float
        Last distance centre, Å.
    act : str
        Activation.
    pooling : {"mean", "sum", "max"}
    head_hidden : sequence of int
        Hidden layers of the head (reference: none, one Linear layer).
    n_descriptors : int
        Descriptor-vector length for hybrid models (0: none).
    dropout : float
        Dropout in the head.
    """

    def __init__(self, n_outputs=1, atom_features="cgcnn", extra_atom_features=None,
                 alignn_layers=4, gcn_layers=4, hidden_features=256, embedding_features=64,
                 edge_input_features=80, triplet_input_features=40, cutoff=8.0, act="silu",
                 pooling="mean", head_hidden=(), n_descriptors=0, dropout=0.0):
        super().__init__()
        for name, value in (("alignn_layers", alignn_layers), ("gcn_layers", gcn_layers)):
            if not (isinstance(value, int) and value >= 0):
                raise ValueError(f"{name} must be an int >= 0, got {value!r}")
        for name, value in (("hidden_features", hidden_features),
                            ("embedding_features", embedding_features),
                            ("edge_input_features", edge_input_features),
                            ("triplet_input_features", triplet_input_features)):
            if not (isinstance(value, int) and value >= 1):
                raise ValueError(f"{name} must be an int >= 1, got {value!r}")
        if pooling not in POOLINGS:
            raise ValueError(f"pooling must be one of {POOLINGS}, got {pooling!r}")
        self.pooling = pooling
        self.atom_embedding = AtomEmbedding(hidden_features, atom_features, extra_atom_features)
        self.atom_norm = nn.Sequential(BatchNorm(hidden_features), activation(act))
        self.edge_embedding = nn.Sequential(
            reference_rbf(0.0, cutoff, edge_input_features),
            _mlp_block(edge_input_features, embedding_features, act),
            _mlp_block(embedding_features, hidden_features, act))
        self.angle_embedding = nn.Sequential(
            reference_rbf(-1.0, 1.0, triplet_input_features),
            _mlp_block(triplet_input_features, embedding_features, act),
            _mlp_block(embedding_features, hidden_features, act))
        self.alignn_layers = nn.ModuleList(
            ALIGNNLayer(hidden_features, act) for _ in range(alignn_layers))
        self.gcn_layers = nn.ModuleList(
            EdgeGatedGraphConv(hidden_features, act) for _ in range(gcn_layers))
        self.head = ReadoutHead(hidden_features, n_outputs, tuple(head_hidden), act=act,
                                n_descriptors=n_descriptors, dropout=dropout)

    @property
    def needs_line_graph(self):
        return len(self.alignn_layers) > 0

    def atom_features(self, batch):
        """Atom vectors after all convolutions, shape (n_nodes, hidden_features)."""
        x = self.atom_norm(self.atom_embedding(batch.atomic_numbers))
        y = self.edge_embedding(batch.distances)
        if self.needs_line_graph:
            if "lg_index" not in batch.extras:
                raise ValueError("ALIGNN layers need the line graph in batch.extras "
                                 "(declare skcrystal.graphs.line_graph.line_graph_extra() "
                                 "in the estimator's graph_extras)")
            lg_index = batch.extras["lg_index"]
            z = self.angle_embedding(batch.extras["lg_cos"].to(y.dtype))
            for layer in self.alignn_layers:
                x, y, z = layer(x, y, z, batch.edge_index, lg_index)
        for layer in self.gcn_layers:
            x, y = layer(x, y, batch.edge_index[0], batch.edge_index[1])
        return x

    def embed(self, batch):
        """Pooled crystal vectors, shape (n_graphs, hidden_features)."""
        return pool(self.atom_features(batch), batch.node_graph, batch.n_graphs, self.pooling)
