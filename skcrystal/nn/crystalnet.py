"""CrystalNet layers (communicative message passing on the crystal multigraph).

CrystalNet (Matgen paper, Methods "Deep learning framework") is CMPNN
adapted to crystals: a directed multigraph whose edges keep hidden states
and know their reverse edge. The layers follow the paper and the authors'
code (Matgen-project/CrystalNet; ``MPNEncoder`` and ``BatchGRU`` in
``chemprop/models/mpn.py`` of its copy jcchan23/CrystalNet). Pure torch;
operates on a :class:`~skcrystal.graphs.GraphBatch` whose extras hold the
reverse-edge index of :func:`skcrystal.graphs.reverse_edges.reverse_edges`
(``rev_edge``, ``rev_edge_ok``).

Direction
---------
skcrystal edge ``e`` (centre ``c = center[e]``, neighbour ``n =
neighbor[e]``, image ``k = offsets[e]``) is the paper's directed edge
``(n, c)_k``: a message *into* the centre, as everywhere in skcrystal. Its
reverse ``(c, n)_-k`` is the skcrystal edge with centre ``n``, neighbour
``c`` and image ``-k``.

Equations
---------
Inputs ``x0(v) = ReLU(W_a x(v))`` (the atom's element features) and
``h0(e) = ReLU(W_b g(d_e))`` (``g`` the Gaussian expansion of the bond
length). With ``h(v) = x0(v)``, ``h(e) = h0(e)``, each of the ``depth - 1``
iterations does

* node message ``m(v) = sum_{e into v} h(e) * max_{e into v} h(e)``
  (element-wise; the paper's, ``aggregation="sum_max"``; the default
  ``"mean_max"`` takes the mean for the sum, see "Aggregation" below), node
  update ``h(v) <- h(v) + m(v)`` (the paper's "add" communicate function);
* edge message ``m(e) = h(source of e) - h_old(reverse of e)``: the source
  node's new state minus what that node received *from* the edge's target,
  so a message does not bounce straight back;
* edge update ``h(e) = ReLU(h0(e) + W_l m(e))``.

The last round (the paper's "one more round of interaction", the
reference's ``depth``-th step) aggregates the edges once more and mixes
``h(v) = W_c [m(v), h(v), x0(v)]``; then the GRU readout, ``ReLU(W_o .)``
and pooling over atoms, and the MLP head.

``depth`` counts that last round, as in the reference (its default 2 is one
communicative iteration plus the last round). The reference's linear maps
``W_a, W_b, W_l, W_c`` have no bias (its ``--bias`` flag is off), ``W_o``
and the head have one; every weight matrix starts Xavier-normal and every
bias (GRU biases included) at zero (``init="reference"``).

Aggregation
-----------
``aggregation="sum_max"`` is the paper's and the reference's node message.
Its scale grows with the number of incoming edges times their largest
state (60-80 edges per atom in the reference graph of a dense crystal),
and on the reference graph it does not train: the first epochs' loss is 10^3-10^6
times the target variance and the model ends worse than, or barely better
than, the mean predictor, with the reference's initialisation or
PyTorch's, with or without the reference's learning-rate warm-up (measured
in ``benchmarks/RESULTS.md``, "CrystalNet aggregation"). The default
``aggregation="mean_max"`` divides the sum by the number of incoming
edges, which keeps the message on the scale of one edge state; it is the
one deliberate change to the equations, and ``aggregation="sum_max"``
restores the paper's.

GRU readout
-----------
The reference (``BatchGRU``) feeds ``ReLU(h(v) + b)`` to a bidirectional GRU
whose initial state, in both directions, is the element-wise max of the
crystal's ``h(v)``, and concatenates the two directions (``2 * hidden``
wide, so ``W_o`` maps ``2 * hidden`` to ``hidden``). It runs the GRU over
the atoms of each crystal *as a sequence*, so a prediction depends on the
order in which the atoms are listed. ``readout_gru="atomwise"`` (default)
runs the same GRU (same weights) with every atom as its own one-step
sequence: one batched call, invariant to atom order. ``readout_gru=
"sequence"`` reproduces the reference's sequence over each crystal's atoms
in their given order (packed per crystal: the reference pads every crystal
to the longest one in its batch and runs the backward direction over that
padding too, which makes a prediction depend on the other crystals of the
batch; that is not reproduced).

The paper's readout ``z = sum_v GRU(h(v))`` is ``pooling="sum"``; the
default ``"mean"`` is the reference code's (a mean over the atoms), which
keeps intensive predictions invariant to the choice of supercell.

Graph
-----
The estimator's default graph is the reference's: 5 Å, up to 64 neighbours
per atom, both directions of every neighbour-list entry
(``symmetrize="both"``, see :mod:`skcrystal.graphs.symmetrize`), so every
edge has its reverse. On a graph with edges that have no reverse (e.g.
``symmetrize=None``) such an edge's message is ``h(source)`` alone (the
missing reverse carries nothing back) and ``rev_edge`` maps it to itself
with ``rev_edge_ok = False``.
"""
import numbers

import torch
from torch import nn
from torch.nn import functional as F

from ..graphs.reverse_edges import REVERSE_EDGES_EXTRA
from ._constraints import Interval, StrOptions
from .basis import GaussianExpansion
from .embedding import AtomEmbedding
from .head import ReadoutHead
from .model import COMMON_CONSTRAINTS, CrystalModel
from .pooling import POOLINGS, pool
from .scatter import scatter_max, scatter_mean, scatter_sum

__all__ = ["CrystalNetLayer", "CrystalNet", "node_message", "AGGREGATIONS",
           "READOUT_GRUS"]

#: Node messages: the paper's ``sum * max`` and ``mean * max``.
AGGREGATIONS = ("sum_max", "mean_max")

#: How the readout GRU sees the atoms (see the module docstring).
READOUT_GRUS = ("atomwise", "sequence")


def node_message(h_edge, center, n_nodes, aggregation="sum_max"):
    """``sum * max`` (or ``mean * max``) of the states of the edges into each node.

    Parameters
    ----------
    h_edge : Tensor, shape (n_edges, d)
    center : LongTensor, shape (n_edges,)
        Receiving node of each edge.
    n_nodes : int
    aggregation : {"sum_max", "mean_max"}

    Returns
    -------
    Tensor, shape (n_nodes, d)
        Zero for a node without incoming edges.
    """
    first = scatter_sum if aggregation == "sum_max" else scatter_mean
    return first(h_edge, center, n_nodes) * scatter_max(h_edge, center, n_nodes)


class CrystalNetLayer(nn.Module):
    """One communicative iteration: node aggregation and update, edge update.

    Parameters
    ----------
    dim : int
        Hidden state length of nodes and edges.
    dropout : float
        Dropout on the new edge states (as the reference).
    bias : bool
        Bias of the edge Linear map ``W_l`` (none in the reference).
    aggregation : {"sum_max", "mean_max"}
        Node message, see :func:`node_message`.

    Shapes
    ------
    h_node (n_nodes, d), h_edge (n_edges, d), h0_edge (n_edges, d),
    edge_index (2, n_edges), rev (n_edges,), rev_ok (n_edges,) ->
    (n_nodes, d), (n_edges, d)
    """

    def __init__(self, dim, dropout=0.0, bias=False, aggregation="mean_max"):
        super().__init__()
        self.aggregation = aggregation
        self.linear = nn.Linear(dim, dim, bias=bias)
        self.dropout = nn.Dropout(dropout)

    def edge_messages(self, h_node, h_edge, edge_index, rev, rev_ok):
        """``m(e) = h(source) - h(reverse of e)`` (0 for a missing reverse)."""
        back = h_edge.index_select(0, rev) * rev_ok.unsqueeze(1).to(h_edge.dtype)
        return h_node.index_select(0, edge_index[1]) - back

    def forward(self, h_node, h_edge, h0_edge, edge_index, rev, rev_ok):
        h_node = h_node + node_message(h_edge, edge_index[0], h_node.shape[0],
                                       self.aggregation)
        m = self.edge_messages(h_node, h_edge, edge_index, rev, rev_ok)
        h_edge = self.dropout(F.relu(h0_edge + self.linear(m)))
        return h_node, h_edge


class CrystalNet(CrystalModel):
    """CrystalNet: CMPNN-style communicative message passing for crystals.

    Defaults are the paper's and the reference code's: 100 Gaussians on
    0-5 Å with sigma 0.5 Å, hidden 512, ``depth=2`` (one communicative
    iteration and the final round), 2 MLP layers after the readout, ReLU,
    the reference's biases and initialisation. Atom inputs: the CGCNN
    one-hot "element fingerprint" (the paper's ref. 18). Deviations, each a
    parameter (see the module docstring): ``aggregation`` (the paper's
    sum x max does not train), ``readout_gru`` (atom-order invariance).

    Parameters
    ----------
    n_outputs : int
        Targets or classes (set by the estimator).
    atom_features, extra_atom_features
        See :class:`~skcrystal.nn.embedding.AtomEmbedding`.
    hidden : int
        Hidden state length of atoms and edges.
    depth : int
        Message-passing steps ``L`` as the reference counts them: ``depth -
        1`` communicative iterations, then the final round (>= 1).
    n_basis : int
        Gaussian centres on 0 to ``cutoff`` Å (the paper's 100 Gaussians).
    cutoff, gaussian_width : float
        Last centre and width sigma, Å (the paper's 5 Å and 0.5 Å); the
        estimator sets ``cutoff`` to its graph ``radius``.
    n_mlp : int
        Linear layers of the head (>= 1).
    pooling : {"mean", "sum", "max"}
        See the module docstring (the paper's formula is ``"sum"``).
    aggregation : {"mean_max", "sum_max"}
        Node message (the paper's is ``"sum_max"``; see the module
        docstring for why the default is ``"mean_max"``).
    readout_gru : {"atomwise", "sequence"}
        ``"sequence"`` runs the GRU over each crystal's atoms in their order
        as the reference does (predictions then depend on atom order).
    bias : bool
        Biases on the input, message and mixing Linear maps (the reference
        has none).
    init : {"reference", "torch"}
        ``"reference"``: Xavier-normal weight matrices and zero biases, as
        the reference's ``initialize_weights``; ``"torch"``: PyTorch's
        default initialisation.
    n_descriptors : int
        Descriptor-vector length for hybrid models.
    dropout : float
        Dropout on edge states, on the atom states after ``W_o`` and
        before each Linear layer of the head (the reference's places).
    """

    #: measured training memory (26 KB per edge at the default width and depth,
    #: benchmarks/bench_training_memory.py; see CrystalModel.training_memory)
    _training_memory = {"edge": 26_000, "at": {"hidden": 512, "depth": 2}}

    _parameter_constraints = {
        **COMMON_CONSTRAINTS,
        "hidden": [Interval(numbers.Integral, 1, None, closed="left")],
        "depth": [Interval(numbers.Integral, 1, None, closed="left")],
        "n_basis": [Interval(numbers.Integral, 1, None, closed="left")],
        "gaussian_width": [Interval(numbers.Real, 0, None, closed="neither")],
        "n_mlp": [Interval(numbers.Integral, 1, None, closed="left")],
        "pooling": [StrOptions(set(POOLINGS))],
        "aggregation": [StrOptions(set(AGGREGATIONS))],
        "readout_gru": [StrOptions(set(READOUT_GRUS))],
        "bias": ["boolean"],
        "init": [StrOptions({"reference", "torch"})],
    }

    def __init__(self, n_outputs=1, atom_features="cgcnn", extra_atom_features=None,
                 hidden=512, depth=2, n_basis=100, cutoff=5.0,
                 gaussian_width=0.5, n_mlp=2, pooling="mean", aggregation="mean_max",
                 readout_gru="atomwise", bias=False, init="reference",
                 n_descriptors=0, dropout=0.0):
        super().__init__()
        self.pooling = pooling
        self.aggregation = aggregation
        self.readout_gru = readout_gru
        self.embedding = AtomEmbedding(hidden, atom_features, extra_atom_features, bias=bias)
        self.rbf = GaussianExpansion(0.0, cutoff, n_centers=n_basis, width=gaussian_width)
        self.edge_input = nn.Linear(n_basis, hidden, bias=bias)
        self.layers = nn.ModuleList(CrystalNetLayer(hidden, dropout, bias, aggregation)
                                    for _ in range(depth - 1))
        self.communicate = nn.Linear(3 * hidden, hidden, bias=bias)
        # BatchGRU: a learned offset before the ReLU of the GRU input, then a
        # bidirectional GRU whose two directions are concatenated
        self.gru_bias = nn.Parameter(torch.zeros(hidden))
        self.gru = nn.GRU(hidden, hidden, batch_first=True, bidirectional=True)
        self.output = nn.Linear(2 * hidden, hidden)
        self.dropout = nn.Dropout(dropout)
        self.head = ReadoutHead(hidden, n_outputs, (hidden,) * (n_mlp - 1),
                                act="relu", n_descriptors=n_descriptors, dropout=dropout)
        if init == "reference":
            self._reference_init()

    def _reference_init(self):
        """Xavier-normal matrices, zero vectors (the reference's ``initialize_weights``)."""
        skip = self.head.skip  # the descriptor skip starts at zero by design
        for module in self.modules():
            if module is skip:
                continue
            for param in module.parameters(recurse=False):
                if param.dim() == 1:
                    nn.init.zeros_(param)
                else:
                    nn.init.xavier_normal_(param)

    @property
    def graph_extras(self):
        return (REVERSE_EDGES_EXTRA,)

    def _readout_gru(self, h, batch):
        """``BatchGRU``: (n_nodes, hidden) -> (n_nodes, 2 * hidden)."""
        x = F.relu(h + self.gru_bias)
        h0 = scatter_max(h, batch.node_graph, batch.n_graphs)  # (n_graphs, hidden)
        if self.readout_gru == "atomwise":
            start = h0.index_select(0, batch.node_graph).unsqueeze(0).repeat(2, 1, 1)
            out, _ = self.gru(x.unsqueeze(1), start)
            return out.squeeze(1)
        # the atoms of each crystal as one sequence, in their order
        counts = batch.n_nodes_per_graph
        first = torch.cumsum(counts, 0) - counts
        pos = torch.arange(batch.n_nodes, device=h.device) - first.index_select(
            0, batch.node_graph)
        dense = x.new_zeros((batch.n_graphs, int(counts.max()), x.shape[1]))
        dense[batch.node_graph, pos] = x
        packed = nn.utils.rnn.pack_padded_sequence(
            dense, counts.cpu(), batch_first=True, enforce_sorted=False)
        out, _ = self.gru(packed, h0.unsqueeze(0).repeat(2, 1, 1))
        out, _ = nn.utils.rnn.pad_packed_sequence(out, batch_first=True)
        return out[batch.node_graph, pos]

    def atom_features(self, batch):
        """Atom vectors after the GRU readout and ``W_o``, shape (n_nodes, hidden)."""
        if "rev_edge" not in batch.extras:
            raise ValueError("CrystalNet needs the reverse-edge index in batch.extras "
                             "(collate the graphs with extras=model.graph_extras)")
        rev, rev_ok = batch.extras["rev_edge"], batch.extras["rev_edge_ok"]
        x0 = F.relu(self.embedding(batch.atomic_numbers))
        h0_edge = F.relu(self.edge_input(self.rbf(batch.distances)))
        h_node, h_edge = x0, h0_edge
        for layer in self.layers:
            h_node, h_edge = layer(h_node, h_edge, h0_edge, batch.edge_index, rev, rev_ok)
        m = node_message(h_edge, batch.edge_index[0], batch.n_nodes, self.aggregation)
        h = self.communicate(torch.cat([m, h_node, x0], dim=1))
        return self.dropout(F.relu(self.output(self._readout_gru(h, batch))))

    def embed(self, batch):
        """Pooled crystal vectors ``z``, shape (n_graphs, hidden)."""
        return pool(self.atom_features(batch), batch.node_graph, batch.n_graphs, self.pooling)

    def forward(self, batch):
        # the reference's head starts with a dropout too
        return self.head(self.dropout(self.embed(batch)), batch.descriptors)
