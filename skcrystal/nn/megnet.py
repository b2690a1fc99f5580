"""MEGNet layers (Chen, Ye, Zuo, Zheng & Ong, Chem. Mater. 31, 3564 (2019)).

A MatErials Graph Network updates three kinds of features in turn: bonds
(edges), atoms (nodes) and one global state vector per crystal. For a bond
``k`` from sender ``s_k`` to receiver ``r_k`` in crystal ``g``:

* bond update: ``e_k' = phi_e(v_sk (+) v_rk (+) e_k (+) u_g)``;
* atom update: ``v_i' = phi_v(v_i (+) mean_{k: r_k = i} e_k' (+) u_g)``;
* state update: ``u_g' = phi_u(u_g (+) mean_{k in g} e_k' (+) mean_{i in g} v_i')``;

``(+)`` is concatenation and each ``phi`` an MLP with an activation after
every layer. The crystal vector is ``Set2Set(atoms) (+) Set2Set(bonds) (+)
u``, followed by an MLP.

Pure torch; operates on a :class:`~skcrystal.graphs.GraphBatch` whose
``edge_index`` row 0 is the centre atom (the receiver) and row 1 the
neighbour (the sender). Details the paper leaves open follow the reference
implementation, matgl (materialsvirtuallab/matgl, ``models/_megnet.py``,
``layers/_graph_convolution.py``, ``layers/_core.py``), whose defaults are
those of the MEGNet formation-energy model:

* Bonds: the distance in 100 Gaussians with centres evenly spaced from 0 to
  ``cutoff + 1`` Å (0-5 Å for the 4 Å graph) and matgl's form
  ``exp(-0.5 (d - mu)^2)`` (a width ``sqrt(2)`` Å in the
  ``exp(-((d - mu) / width)^2)`` form used here; the paper writes 0.5 Å).
* Atoms: a learnable 16-dimensional embedding of the element; state: a
  vector of 2 zeros per crystal (matgl's default when no state is given).
* Encoders: each of bonds, atoms and state passes an MLP 64 -> 32 with an
  activation after both layers.
* Three MEGNet blocks of width 32. Every block but the first starts with
  its own dense MLPs (64 -> 32) on bonds, atoms and state; the update MLPs
  are 64 -> 64 -> 32; then dropout and a residual connection to the
  block's inputs.
* Set2Set on atoms and on bonds: 2 iterations of a 1-layer LSTM, each
  giving 64 numbers; with the 32-long state 160 numbers per crystal, then
  dropout and the output MLP 32 -> 16 -> n_outputs.
* Activation "softplus2": ``softplus(x) - log 2`` (0 at 0).
"""
import math
import numbers

import torch
from torch import nn
from torch.nn import functional as F

from ._constraints import Interval, StrOptions
from .basis import GaussianExpansion
from .common import _ACTIVATIONS, MLP, activation
from .embedding import AtomEmbedding
from .head import CrystalModel, ReadoutHead
from .scatter import scatter_mean, scatter_softmax, scatter_sum

__all__ = ["SoftPlus2", "MEGNetConv", "MEGNetBlock", "Set2Set", "MEGNet"]

_LOG2 = math.log(2.0)


class SoftPlus2(nn.Module):
    """``softplus(x) - log 2``: a softplus shifted to pass through 0.

    The MEGNet paper's activation (matgl ``softplus2``); with it an MLP maps
    a zero input (e.g. the default zero state) to its biases only.
    """

    def forward(self, x):
        return F.softplus(x) - _LOG2


def megnet_activation(name):
    """An activation module: ``"softplus2"`` or a name :func:`~.common.activation` knows."""
    if isinstance(name, str) and name == "softplus2":
        return SoftPlus2()
    return activation(name)


def _dense(sizes, act):
    """matgl's MLP with ``activate_last=True``: an activation after every layer."""
    return MLP(sizes, act=megnet_activation(act), final_act=True)


class MEGNetConv(nn.Module):
    """One bond -> atom -> state update (paper Eqs. 1-5; matgl ``MEGNetGraphConv``).

    Parameters
    ----------
    dim : int
        Length of the incoming bond, atom and state features.
    hidden : sequence of int
        Layer widths of each update MLP; the last is the output length.
    act : str or nn.Module
        Activation after every layer (the last included).

    Shapes
    ------
    e (n_edges, dim), v (n_nodes, dim), u (n_graphs, dim),
    edge_index (2, n_edges), node_graph (n_nodes,), edge_graph (n_edges,) ->
    e' (n_edges, out), v' (n_nodes, out), u' (n_graphs, out)
    with ``out = hidden[-1]``.
    """

    def __init__(self, dim, hidden, act="softplus2"):
        super().__init__()
        hidden = tuple(hidden)
        out = hidden[-1]
        self.edge_mlp = _dense((4 * dim, *hidden), act)        # v_s, v_r, e, u
        self.node_mlp = _dense((2 * dim + out, *hidden), act)  # v, mean e', u
        self.state_mlp = _dense((dim + 2 * out, *hidden), act)  # u, mean e', mean v'

    def forward(self, e, v, u, edge_index, node_graph, edge_graph):
        receiver, sender = edge_index[0], edge_index[1]
        n_nodes, n_graphs = v.shape[0], u.shape[0]
        e = self.edge_mlp(torch.cat([v.index_select(0, sender), v.index_select(0, receiver),
                                     e, u.index_select(0, edge_graph)], dim=1))
        # an atom without incoming bonds gets a zero mean, as DGL's mean
        # reduction gives
        e_mean = scatter_mean(e, receiver, n_nodes)
        v = self.node_mlp(torch.cat([v, e_mean, u.index_select(0, node_graph)], dim=1))
        u = self.state_mlp(torch.cat([u, scatter_mean(e, edge_graph, n_graphs),
                                      scatter_mean(v, node_graph, n_graphs)], dim=1))
        return e, v, u


class MEGNetBlock(nn.Module):
    """Dense pre-processing, one :class:`MEGNetConv`, dropout, residual sum.

    matgl ``MEGNetBlock``: bonds, atoms and state each pass their own MLP
    (``dense``; none in the first block), then the convolution; the block's
    inputs are added to its outputs.

    Parameters
    ----------
    dim : int
        Feature length of bonds, atoms and state, in and out.
    dense_hidden : sequence of int or None
        Hidden widths of the pre-processing MLPs ``dim -> *dense_hidden ->
        dim``; None: no pre-processing (matgl's first block).
    conv_hidden : sequence of int
        Hidden widths of the update MLPs ``... -> *conv_hidden -> dim``.
    act : str or nn.Module
    dropout : float
        Dropout on the convolution's outputs before the residual sum.

    Shapes
    ------
    As :class:`MEGNetConv` with ``out = dim``.
    """

    def __init__(self, dim, dense_hidden, conv_hidden, act="softplus2", dropout=0.0):
        super().__init__()
        if dense_hidden is None:
            self.edge_dense = self.node_dense = self.state_dense = nn.Identity()
        else:
            sizes = (dim, *dense_hidden, dim)
            self.edge_dense = _dense(sizes, act)
            self.node_dense = _dense(sizes, act)
            self.state_dense = _dense(sizes, act)
        self.conv = MEGNetConv(dim, (*conv_hidden, dim), act)
        self.dropout = nn.Dropout(dropout)

    def forward(self, e, v, u, edge_index, node_graph, edge_graph):
        e_new, v_new, u_new = self.conv(self.edge_dense(e), self.node_dense(v),
                                        self.state_dense(u), edge_index, node_graph,
                                        edge_graph)
        return (e + self.dropout(e_new), v + self.dropout(v_new),
                u + self.dropout(u_new))


class Set2Set(nn.Module):
    """Set2Set readout (Vinyals et al. 2016) over the segments of a batch.

    Starting from ``q* = 0``, each of ``n_iters`` steps runs an LSTM on
    ``q*`` to get a query ``q`` per crystal, weights the crystal's rows
    ``x_i`` by ``a_i = softmax_i(x_i . q)`` and sets
    ``q* = q (+) sum_i a_i x_i``. All crystals are processed at once (one
    LSTM call per step, the softmax by segment); identical in value to DGL's
    ``Set2Set`` and matgl's ``EdgeSet2Set``.

    Parameters
    ----------
    dim : int
        Row length ``d``.
    n_iters : int
        LSTM steps (matgl ``niters_set2set``).
    n_layers : int
        LSTM layers (matgl ``nlayers_set2set``).

    Shapes
    ------
    x (n_rows, d), index (n_rows,), n_segments -> (n_segments, 2 d)
    """

    def __init__(self, dim, n_iters=2, n_layers=1):
        super().__init__()
        self.dim, self.n_iters, self.n_layers = int(dim), int(n_iters), int(n_layers)
        self.lstm = nn.LSTM(2 * self.dim, self.dim, self.n_layers)

    def forward(self, x, index, n_segments):
        state = (x.new_zeros(self.n_layers, n_segments, self.dim),
                 x.new_zeros(self.n_layers, n_segments, self.dim))
        q_star = x.new_zeros(n_segments, 2 * self.dim)
        for _ in range(self.n_iters):
            q, state = self.lstm(q_star.unsqueeze(0), state)
            q = q.squeeze(0)
            score = (x * q.index_select(0, index)).sum(dim=1)
            alpha = scatter_softmax(score, index, n_segments)
            readout = scatter_sum(alpha.unsqueeze(1) * x, index, n_segments)
            q_star = torch.cat([q, readout], dim=1)
        return q_star

    def extra_repr(self):
        return f"dim={self.dim}, n_iters={self.n_iters}, n_layers={self.n_layers}"


def _widths(value, name, allow_empty=True):
    """``value`` as a tuple of ints >= 1, or a ValueError naming ``name``."""
    widths = tuple(value)
    if (not allow_empty and not widths) or not all(
            isinstance(w, numbers.Integral) and not isinstance(w, bool) and w >= 1
            for w in widths):
        raise ValueError(f"{name} must be a {'non-empty ' if not allow_empty else ''}"
                         f"sequence of ints >= 1, got {value!r}")
    return tuple(int(w) for w in widths)


class MEGNet(CrystalModel):
    """MatErials Graph Network: bond, atom and global-state updates, Set2Set.

    Defaults are matgl's ``MEGNet`` (its formation-energy configuration);
    the matgl name of each parameter is given in brackets. The graph (matgl:
    every neighbour within 4 Å) is the estimator's.

    Parameters
    ----------
    n_outputs : int
        Targets or classes (set by the estimator).
    n_descriptors : int
        Descriptor-vector length for hybrid models (0: none).
    atom_features, extra_atom_features
        See :class:`~skcrystal.nn.embedding.AtomEmbedding`; ``"embedding"``
        (matgl: a learnable embedding of the element type).
    hidden : int
        Width of bond, atom and state features through the blocks
        (matgl: last entry of ``hidden_layer_sizes_input`` and of
        ``hidden_layer_sizes_conv``, 32).
    cutoff : float
        Graph cut-off in Å (matgl ``cutoff``, 4.0); the Gaussian centres run
        from 0 to ``cutoff + 1`` Å as in matgl.
    n_basis : int
        Number of Gaussians for the bond length (matgl
        ``dim_edge_embedding``, 100).
    n_blocks : int
        MEGNet blocks (matgl ``nblocks``, 3).
    node_embedding : int
        Length of the element embedding (matgl ``dim_node_embedding``, 16).
    state_dim : int
        Length of the (zero) input state of each crystal (matgl
        ``dim_state_embedding``, 2).
    input_hidden : sequence of int
        Hidden widths of the encoder MLPs and of the blocks' dense MLPs,
        ``... -> *input_hidden -> hidden`` (matgl
        ``hidden_layer_sizes_input`` = ``(64, 32)``, without its last entry).
    conv_hidden : sequence of int
        Hidden widths of the update MLPs, ``... -> *conv_hidden -> hidden``
        (matgl ``hidden_layer_sizes_conv`` = ``(64, 64, 32)``, without its
        last entry).
    head_hidden : sequence of int
        Hidden widths of the output MLP (matgl
        ``hidden_layer_sizes_output``, ``(32, 16)``).
    set2set_iters : int
        Set2Set LSTM steps (matgl ``niters_set2set``, 2).
    set2set_layers : int
        Set2Set LSTM layers (matgl ``nlayers_set2set``, 1).
    basis_width : float
        Gaussian width ``w`` in ``exp(-((d - mu) / w)^2)``, Å. Default
        ``sqrt(2)``: matgl's ``gauss_width=0.5`` is the coefficient in
        ``exp(-0.5 (d - mu)^2)``. The paper (and the original Keras
        implementation) use ``w = 0.5`` Å.
    act : str
        Activation (matgl ``activation_type``, ``"softplus2"``).
    dropout : float
        Dropout after each block's convolution and on the crystal vector
        before the output MLP (matgl ``dropout``, 0).

    Notes
    -----
    matgl's ``ntypes_state`` (a categorical state embedding) and
    ``include_state=False`` are not offered: graphs carry no state, so the
    state starts as zeros in every crystal, as matgl does by default.
    Dropout on the crystal vector is applied at the end of :meth:`embed`
    (where matgl applies it), so the head's own dropout is 0.
    """

    #: measured training memory (12.5 KB per edge at the default width and depth;
    #: see CrystalModel.training_memory)
    _training_memory = {"edge": 12_500, "at": {"n_blocks": 3}}

    _parameter_constraints = {
        "n_outputs": [Interval(numbers.Integral, 1, None, closed="left")],
        "n_descriptors": [Interval(numbers.Integral, 0, None, closed="left")],
        "atom_features": [str, dict, "array-like"],
        "extra_atom_features": ["array-like", None],
        "hidden": [Interval(numbers.Integral, 1, None, closed="left")],
        "cutoff": [Interval(numbers.Real, 0, None, closed="neither")],
        "n_basis": [Interval(numbers.Integral, 1, None, closed="left")],
        "n_blocks": [Interval(numbers.Integral, 1, None, closed="left")],
        "node_embedding": [Interval(numbers.Integral, 1, None, closed="left")],
        "state_dim": [Interval(numbers.Integral, 1, None, closed="left")],
        "input_hidden": [tuple, list],
        "conv_hidden": [tuple, list],
        "head_hidden": [tuple, list],
        "set2set_iters": [Interval(numbers.Integral, 1, None, closed="left")],
        "set2set_layers": [Interval(numbers.Integral, 1, None, closed="left")],
        "basis_width": [Interval(numbers.Real, 0, None, closed="neither")],
        "act": [StrOptions({"softplus2", *_ACTIVATIONS})],
        "dropout": [Interval(numbers.Real, 0, 1, closed="left")],
    }

    def __init__(self, n_outputs=1, n_descriptors=0, atom_features="embedding",
                 extra_atom_features=None, hidden=32, cutoff=4.0, n_basis=100, n_blocks=3,
                 node_embedding=16, state_dim=2, input_hidden=(64,), conv_hidden=(64, 64),
                 head_hidden=(32, 16), set2set_iters=2, set2set_layers=1,
                 basis_width=math.sqrt(2.0), act="softplus2", dropout=0.0):
        super().__init__()
        input_hidden = _widths(input_hidden, "input_hidden")
        conv_hidden = _widths(conv_hidden, "conv_hidden")
        head_hidden = _widths(head_hidden, "head_hidden")
        self.hidden, self.cutoff, self.state_dim = int(hidden), float(cutoff), int(state_dim)
        act_module = megnet_activation(act)

        self.embedding = AtomEmbedding(node_embedding, atom_features, extra_atom_features)
        self.bond_expansion = GaussianExpansion(0.0, self.cutoff + 1.0, n_centers=n_basis,
                                                width=basis_width)
        self.edge_encoder = _dense((n_basis, *input_hidden, hidden), act_module)
        self.node_encoder = _dense((node_embedding, *input_hidden, hidden), act_module)
        self.state_encoder = _dense((state_dim, *input_hidden, hidden), act_module)
        self.blocks = nn.ModuleList(
            MEGNetBlock(hidden, None if i == 0 else input_hidden, conv_hidden, act_module,
                        dropout)
            for i in range(n_blocks))
        self.node_set2set = Set2Set(hidden, set2set_iters, set2set_layers)
        self.edge_set2set = Set2Set(hidden, set2set_iters, set2set_layers)
        self.dropout = nn.Dropout(dropout)
        self.head = ReadoutHead(5 * hidden, n_outputs, head_hidden, act=act_module,
                                n_descriptors=n_descriptors)

    def initial_state(self, batch):
        """The input state of each crystal: zeros, shape (n_graphs, state_dim)."""
        return batch.distances.new_zeros(batch.n_graphs, self.state_dim)

    def features(self, batch):
        """Bond, atom and state features after the blocks.

        Returns
        -------
        e : Tensor, shape (n_edges, hidden)
        v : Tensor, shape (n_nodes, hidden)
        u : Tensor, shape (n_graphs, hidden)
        """
        e = self.edge_encoder(self.bond_expansion(batch.distances))
        v = self.node_encoder(self.embedding(batch.atomic_numbers))
        u = self.state_encoder(self.initial_state(batch))
        for block in self.blocks:
            e, v, u = block(e, v, u, batch.edge_index, batch.node_graph, batch.edge_graph)
        return e, v, u

    def embed(self, batch):
        """Crystal vectors ``Set2Set(v) (+) Set2Set(e) (+) u``, shape (n_graphs, 5 hidden)."""
        e, v, u = self.features(batch)
        n = batch.n_graphs
        h = torch.cat([self.node_set2set(v, batch.node_graph, n),
                       self.edge_set2set(e, batch.edge_graph, n), u], dim=1)
        return self.dropout(h)
