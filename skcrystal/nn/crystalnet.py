"""CrystalNet layers (communicative message passing on the crystal multigraph).

CrystalNet (Matgen paper, Methods "Deep learning framework") is CMPNN
adapted to crystals: a directed multigraph whose edges keep hidden states
and know their reverse edge. Pure torch; operates on a
:class:`~skcrystal.graphs.GraphBatch` whose extras hold the reverse-edge
index of :func:`skcrystal.graphs.reverse_edges.reverse_edges` (``rev_edge``,
``rev_edge_ok``).

Direction
---------
skcrystal edge ``e`` (centre ``c = center[e]``, neighbour ``n =
neighbor[e]``, image ``k = offsets[e]``) is the paper's directed edge
``(n, c)_k``: a message *into* the centre, as everywhere in skcrystal. Its
reverse ``(c, n)_-k`` is the skcrystal edge with centre ``n``, neighbour
``c`` and image ``-k``.

Iteration ``l = 1..L`` (``depth``):

* node message ``m(v) = sum_{e into v} h(e) * max_{e into v} h(e)``
  (element-wise), node update ``h(v) <- h(v) + m(v)`` (add communicate);
* edge message ``m(e) = h(source of e) - h_{l-1}(reverse of e)``: the source
  node's state minus what that node received *from* the edge's target, so a
  message does not bounce straight back;
* edge update ``h(e) = ReLU(h0(e) + W_l m(e))``.

Then one more round: ``h(v) = W [m(v), h(v), h0(v)]`` (the incoming-edge
message, the node state and the initial node features), a GRU, a Linear +
ReLU, pooling over atoms, and the MLP head.

Non-symmetric graphs
--------------------
The builder's k-nearest cut does not make neighbour lists symmetric: ``n``
may be among the 12 nearest of ``c`` while ``c`` is not among the 12
nearest of ``n``. Such an edge has no reverse; its edge message is then
``h(source)`` alone (the reverse edge's state is taken as zero, it
carries nothing back), and ``rev_edge`` maps it to itself with
``rev_edge_ok = False`` so that ``rev_edge`` is an involution on every
edge (11.9% of the edges of 200 bundled perovskites with 8 Å / 12 neighbours
have no reverse). The edge set is not changed (symmetrizing would change the graph
other models cache and share, and the atoms' neighbour counts). With
``max_neighbors=None`` (all neighbours in the radius) every edge has its
reverse.

GRU readout
-----------
CMPNN's reference code runs a bidirectional GRU over the atoms of each
molecule *as a sequence*, which makes the output depend on the atom order.
Here a GRU cell is applied to every atom at once, with input ``h(v)`` and,
as hidden state, the element-wise max of the crystal's node states (the
reference's initial hidden state): one batched call, invariant to atom
order. The paper's readout ``z = sum_v GRU(h(v))`` is ``pooling="sum"``;
the default is ``"mean"`` (the CMPNN code divides by the atom count), which
keeps intensive predictions invariant to the choice of supercell.
"""
import numbers

import torch
from sklearn.utils._param_validation import Interval, StrOptions
from torch import nn
from torch.nn import functional as F

from ..graphs.reverse_edges import REVERSE_EDGES_EXTRA
from .basis import GaussianExpansion
from .embedding import AtomEmbedding
from .head import ReadoutHead
from .model import COMMON_CONSTRAINTS, CrystalModel
from .pooling import POOLINGS, pool
from .scatter import scatter_max, scatter_sum

__all__ = ["CrystalNetLayer", "CrystalNet", "node_message"]


def node_message(h_edge, center, n_nodes):
    """``sum * max`` of the states of the edges into each node, (n_nodes, d)."""
    return scatter_sum(h_edge, center, n_nodes) * scatter_max(h_edge, center, n_nodes)


class CrystalNetLayer(nn.Module):
    """One communicative iteration: node aggregation and update, edge update.

    Parameters
    ----------
    dim : int
        Hidden state length of nodes and edges.
    dropout : float
        Dropout on the new edge states.

    Shapes
    ------
    h_node (n_nodes, d), h_edge (n_edges, d), h0_edge (n_edges, d),
    edge_index (2, n_edges), rev (n_edges,), rev_ok (n_edges,) ->
    (n_nodes, d), (n_edges, d)
    """

    def __init__(self, dim, dropout=0.0):
        super().__init__()
        self.linear = nn.Linear(dim, dim)
        self.dropout = nn.Dropout(dropout)

    def edge_messages(self, h_node, h_edge, edge_index, rev, rev_ok):
        """``m(e) = h(source) - h(reverse of e)`` (0 for a missing reverse)."""
        back = h_edge.index_select(0, rev) * rev_ok.unsqueeze(1).to(h_edge.dtype)
        return h_node.index_select(0, edge_index[1]) - back

    def forward(self, h_node, h_edge, h0_edge, edge_index, rev, rev_ok):
        h_node = h_node + node_message(h_edge, edge_index[0], h_node.shape[0])
        m = self.edge_messages(h_node, h_edge, edge_index, rev, rev_ok)
        h_edge = self.dropout(F.relu(h0_edge + self.linear(m)))
        return h_node, h_edge


class CrystalNet(CrystalModel):
    """CrystalNet: CMPNN-style communicative message passing for crystals.

    Defaults are the paper's: 100 Gaussians on 0-5 Å with sigma 0.5 Å,
    hidden 512, 2 message-passing iterations, 2 MLP layers after the
    readout, ReLU. Atom inputs: the CGCNN one-hot "element fingerprint"
    (the paper's ref. 18).

    Parameters
    ----------
    n_outputs : int
        Targets or classes (set by the estimator).
    atom_features, extra_atom_features
        See :class:`~skcrystal.nn.embedding.AtomEmbedding`.
    hidden : int
        Hidden state length of atoms and edges.
    depth : int
        Message-passing iterations ``L`` (before the final communicative
        round).
    n_basis : int
        Gaussian centres on 0 to ``cutoff`` Å (the paper's 100 Gaussians).
    cutoff, gaussian_width : float
        Last centre and width sigma, Å (the paper's 5 Å and 0.5 Å); the
        estimator sets ``cutoff`` to its graph ``radius``.
    n_mlp : int
        Linear layers of the head (>= 1).
    pooling : {"mean", "sum", "max"}
        See the module docstring (the paper's formula is ``"sum"``).
    n_descriptors : int
        Descriptor-vector length for hybrid models.
    dropout : float
        Dropout on edge states and in the head.
    """

    #: measured training memory (26 KB per edge at the default width and depth;
    #: see CrystalModel.training_memory)
    _training_memory = {"edge": 26_000, "at": {"hidden": 512, "depth": 2}}

    _parameter_constraints = {
        **COMMON_CONSTRAINTS,
        "hidden": [Interval(numbers.Integral, 1, None, closed="left")],
        "depth": [Interval(numbers.Integral, 0, None, closed="left")],
        "n_basis": [Interval(numbers.Integral, 1, None, closed="left")],
        "gaussian_width": [Interval(numbers.Real, 0, None, closed="neither")],
        "n_mlp": [Interval(numbers.Integral, 1, None, closed="left")],
        "pooling": [StrOptions(set(POOLINGS))],
    }

    def __init__(self, n_outputs=1, atom_features="cgcnn", extra_atom_features=None,
                 hidden=512, depth=2, n_basis=100, cutoff=5.0,
                 gaussian_width=0.5, n_mlp=2, pooling="mean", n_descriptors=0,
                 dropout=0.0):
        super().__init__()
        self.pooling = pooling
        self.embedding = AtomEmbedding(hidden, atom_features, extra_atom_features)
        self.rbf = GaussianExpansion(0.0, cutoff, n_centers=n_basis, width=gaussian_width)
        self.edge_input = nn.Linear(n_basis, hidden)
        self.layers = nn.ModuleList(CrystalNetLayer(hidden, dropout) for _ in range(depth))
        self.communicate = nn.Linear(3 * hidden, hidden)
        self.gru = nn.GRUCell(hidden, hidden)
        self.output = nn.Linear(hidden, hidden)
        self.head = ReadoutHead(hidden, n_outputs, (hidden,) * (n_mlp - 1),
                                act="relu", n_descriptors=n_descriptors, dropout=dropout)

    @property
    def graph_extras(self):
        return (REVERSE_EDGES_EXTRA,)

    def atom_features(self, batch):
        """Atom vectors after the GRU, shape (n_nodes, hidden)."""
        if "rev_edge" not in batch.extras:
            raise ValueError("CrystalNet needs the reverse-edge index in batch.extras "
                             "(collate the graphs with extras=model.graph_extras)")
        rev, rev_ok = batch.extras["rev_edge"], batch.extras["rev_edge_ok"]
        x0 = F.relu(self.embedding(batch.atomic_numbers))
        h0_edge = F.relu(self.edge_input(self.rbf(batch.distances)))
        h_node, h_edge = x0, h0_edge
        for layer in self.layers:
            h_node, h_edge = layer(h_node, h_edge, h0_edge, batch.edge_index, rev, rev_ok)
        m = node_message(h_edge, batch.edge_index[0], batch.n_nodes)
        h = self.communicate(torch.cat([m, h_node, x0], dim=1))
        context = scatter_max(F.relu(h), batch.node_graph, batch.n_graphs)
        h = self.gru(h, context.index_select(0, batch.node_graph))
        return F.relu(self.output(h))

    def embed(self, batch):
        """Pooled crystal vectors ``z``, shape (n_graphs, hidden)."""
        return pool(self.atom_features(batch), batch.node_graph, batch.n_graphs, self.pooling)
