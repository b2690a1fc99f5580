"""ALIGNN layers (Choudhary & DeCost, npj Comput. Mater. 7, 185 (2021)).

Equations 5-10 of ``gnn-descriptors-periodicity``: edge-gated graph
convolutions update atoms and bonds on the atom graph (Eqs. 5-7) and bonds
and bond angles on the line graph (Eqs. 8-10). Pure torch; operates on a
:class:`~skcrystal.graphs.GraphBatch`. The line graph is the reference's
(``convention="alignn"`` of :func:`skcrystal.graphs.line_graph.line_graph`):
declare :attr:`ALIGNN.graph_extras` so it is built once per structure and
cached; a batch without it gets it computed on the fly.

The model equals the reference implementation (usnistgov/alignn,
``alignn/models/alignn.py``, class ``ALIGNN``; with ``norm="layer"``,
``alignn/models/alignn_atomwise_pure.py``, class ``ALIGNNAtomWisePure``)
layer for layer; ``tests/test_alignn_reference.py`` copies the reference's
weights in with :func:`load_reference_state_dict` and compares outputs.

* Radial basis ``exp(-(x - mu_k)^2 / spacing)`` (the reference's
  ``gamma = 1 / lengthscale`` with lengthscale = centre spacing), i.e. a
  Gaussian width of ``sqrt(spacing)``: 0.318 Å for 80 centres on 0-8 Å,
  0.226 for 40 centres on the cosine range -1..1.
* Embeddings are Linear -> norm -> SiLU blocks: atoms 92 -> hidden,
  bonds 80 -> 64 -> hidden, angles 40 -> 64 -> hidden.
* An ALIGNN layer first convolves the atom graph (atoms as nodes, bonds as
  edges), then the line graph with the *updated* bond features as nodes and
  the angle features as edges (``ALIGNNConv.forward``). Each convolution
  has its own residual connection; then ``gcn_layers`` atom-graph
  convolutions. Average pooling, then one Linear layer.
* With descriptors (``n_descriptors > 0``) the reference's extra-features
  head (Gong et al., arXiv:2208.05039): the descriptor vector goes on every
  atom, through a Linear-norm-SiLU block and average pooling, is
  concatenated to the pooled atoms and goes through two
  Linear(d, d)-norm-SiLU blocks and a Linear layer (``d = hidden +
  n_descriptors``).

The reference graph is the 12-nearest-neighbour graph (8 Å, grown when an
atom has fewer neighbours), symmetrized: :func:`skcrystal.graphs.build_graph`
followed by :func:`skcrystal.graphs.symmetrize.symmetrize_graph`.

Deviations from the reference, each switchable: the batch norm accepts a
single-row batch in training (normalised with the running statistics; the
reference raises); the graph keeps every neighbour tied with the 12th
(``tie_tol``; the reference compares its distances exactly, and they carry
~1e-6 Å of noise, so it keeps an arbitrary part of a tied shell); and a
bond of an atom to its own periodic image is stored once, not twice (which
makes predictions independent of the cell chosen for a crystal;
``symmetrize_graph(duplicate_self_images=True)`` for the reference's graph).
"""
import math
import os
from numbers import Integral, Real

import torch
from torch import nn

from ..graphs.line_graph import DEFAULT_MAX_TRIPLETS, line_graph_extra
from ._constraints import Interval, StrOptions
from .basis import GaussianExpansion
from .common import _ACTIVATIONS, BatchNorm, activation
from .embedding import AtomEmbedding
from .head import CrystalModel, ReadoutHead
from .pooling import POOLINGS, pool
from .scatter import scatter_mean, scatter_sum

__all__ = ["EdgeGatedGraphConv", "ALIGNNLayer", "ALIGNN", "reference_rbf",
           "alignn_line_graph", "load_reference_state_dict"]

NORMS = ("batch", "layer")

#: bytes of one per-edge feature tensor per chunk in :class:`EdgeGatedGraphConv`
#: (see its ``forward``); below glibc's largest mmap threshold (32 MB)
EDGE_CHUNK_BYTES = 16 * 2**20


def reference_rbf(start, stop, n_centers):
    """Gaussian expansion with the ALIGNN reference width ``sqrt(spacing)``."""
    spacing = (stop - start) / max(n_centers - 1, 1)
    return GaussianExpansion(start, stop, n_centers=n_centers, width=math.sqrt(spacing))


def _norm(kind, dim):
    return BatchNorm(dim) if kind == "batch" else nn.LayerNorm(dim)


def _mlp_block(n_in, n_out, act, norm="batch"):
    """The reference's ``MLPLayer``: Linear -> norm -> activation."""
    return nn.Sequential(nn.Linear(n_in, n_out), _norm(norm, n_out), activation(act))


class EdgeGatedGraphConv(nn.Module):
    """Edge-gated graph convolution (paper Eqs. 5-7 / 8-10).

    For an edge ``e`` from sender ``j`` to receiver ``i`` with features
    ``e_ij`` and node features ``h``:

    ``m_ij = A h_j + B h_i + C e_ij`` (edge pre-activation),
    ``h_i' = h_i + SiLU(N(U h_i + sum_j sigmoid(m_ij) * V h_j /
    (sum_j sigmoid(m_ij) + 1e-6)))``,
    ``e_ij' = e_ij + SiLU(N(m_ij))``, ``N`` the norm.

    The same module is used on the atom graph (nodes = atoms, edges = bonds)
    and on the line graph (nodes = bonds, edges = bond pairs). Parameter
    names are the reference's (``src_gate`` = A, ``dst_gate`` = B,
    ``edge_gate`` = C, ``src_update`` = U, ``dst_update`` = V).

    Parameters
    ----------
    dim : int
        Node and edge feature length.
    act : str
        Activation (SiLU in the reference).
    residual : bool
        Add the inputs to the outputs.
    norm : {"batch", "layer"}
        Batch norm (reference ``ALIGNN``) or layer norm (``ALIGNNAtomWise``).

    Shapes
    ------
    x (n_nodes, dim), e (n_edges, dim), receiver, sender (n_edges,) ->
    (n_nodes, dim), (n_edges, dim)
    """

    def __init__(self, dim, act="silu", residual=True, norm="batch"):
        super().__init__()
        self.src_gate = nn.Linear(dim, dim)
        self.dst_gate = nn.Linear(dim, dim)
        self.edge_gate = nn.Linear(dim, dim)
        self.bn_edges = _norm(norm, dim)
        self.src_update = nn.Linear(dim, dim)  # the receiver's own term, U
        self.dst_update = nn.Linear(dim, dim)  # the gated sender term, V
        self.bn_nodes = _norm(norm, dim)
        self.act = activation(act)
        self.residual = residual
        self.chunk_bytes = EDGE_CHUNK_BYTES

    def forward(self, x, e, receiver, sender):
        n = x.shape[0]
        a, b, v = self.src_gate(x), self.dst_gate(x), self.dst_update(x)
        num = x.new_zeros((n, v.shape[1]))
        den = x.new_zeros((n, v.shape[1]))
        # the edges go through in row chunks so that no per-edge temporary
        # reaches the 32 MB above which glibc maps (and page-faults) every
        # allocation afresh; each row's arithmetic is unchanged, and the
        # atom-graph edges are one chunk
        rows = max(1, self.chunk_bytes // max(1, e.shape[1] * e.element_size()))
        rowwise = self.residual and not isinstance(self.bn_edges, BatchNorm)
        pieces = []
        for e_c, r_c, s_c in zip(e.split(rows), receiver.split(rows), sender.split(rows)):
            m = a.index_select(0, s_c)
            m = m.add_(b.index_select(0, r_c)).add_(self.edge_gate(e_c))
            sigma = torch.sigmoid(m)
            num.index_add_(0, r_c, sigma * v.index_select(0, s_c))
            den.index_add_(0, r_c, sigma)
            # layer norm acts row by row, so the whole edge update can be done
            # here; batch norm needs the statistics of all edges first
            pieces.append(e_c + self.act(self.bn_edges(m)) if rowwise else m)
        # rowwise: the updated edges; otherwise the pre-activations m
        joined = pieces[0] if len(pieces) == 1 else torch.cat(pieces)
        x_new = self.act(self.bn_nodes(self.src_update(x) + num / (den + 1e-6)))
        if rowwise:
            return x + x_new, joined
        e_new = self.act(self.bn_edges(joined))
        if self.residual:
            return x + x_new, e + e_new
        return x_new, e_new


class ALIGNNLayer(nn.Module):
    """Atom-graph convolution, then line-graph convolution on the new bonds.

    As the reference ``ALIGNNConv``: ``x, m = node_update(g, x, y)``, then
    ``y, z = edge_update(lg, m, z)``.

    Shapes
    ------
    x (n_nodes, dim), y (n_edges, dim), z (n_pairs, dim), edge_index (2,
    n_edges), lg_index (n_pairs, 2) -> x, y, z
    """

    def __init__(self, dim, act="silu", norm="batch"):
        super().__init__()
        self.node_update = EdgeGatedGraphConv(dim, act, norm=norm)
        self.edge_update = EdgeGatedGraphConv(dim, act, norm=norm)

    def forward(self, x, y, z, edge_index, lg_index):
        x, y = self.node_update(x, y, edge_index[0], edge_index[1])
        y, z = self.edge_update(y, z, lg_index[:, 0], lg_index[:, 1])
        return x, y, z


class ALIGNNDescriptorHead(nn.Module):
    """The reference's extra-features head (``extra_features > 0``).

    ``h_d = mean over the crystal's atoms of block(d)`` (the descriptor
    vector ``d`` sits on every atom, as the reference's per-atom
    ``extra_features``, so batch statistics in training weight a crystal by
    its atoms as there), then ``fc3(fc2(fc1([h, h_d])))`` with ``fc1``,
    ``fc2`` Linear-norm-SiLU blocks of width ``in_dim + n_descriptors``.

    Shapes
    ------
    h (n_graphs, in_dim), descriptors (n_graphs, n_descriptors), node_graph
    (n_nodes,) -> (n_graphs, n_outputs)
    """

    def __init__(self, in_dim, n_descriptors, n_outputs, act="silu", norm="batch"):
        super().__init__()
        d = in_dim + n_descriptors
        self.n_descriptors = n_descriptors
        self.extra_feature_embedding = _mlp_block(n_descriptors, n_descriptors, act, norm)
        self.fc1 = _mlp_block(d, d, act, norm)
        self.fc2 = _mlp_block(d, d, act, norm)
        self.fc3 = nn.Linear(d, n_outputs)

    def forward(self, h, descriptors, node_graph):
        if descriptors is None:
            raise ValueError(f"this model was built for {self.n_descriptors} descriptors "
                             "per crystal but the batch has none")
        if descriptors.shape[1] != self.n_descriptors:
            raise ValueError(f"expected {self.n_descriptors} descriptors per crystal, "
                             f"got {descriptors.shape[1]}")
        per_atom = self.extra_feature_embedding(
            descriptors.to(h.dtype).index_select(0, node_graph))
        h_d = scatter_mean(per_atom, node_graph, h.shape[0])
        return self.fc3(self.fc2(self.fc1(torch.cat([h, h_d], dim=1))))


def alignn_line_graph(edge_index, vectors):
    """The ALIGNN line graph of a (batched) atom graph, in torch.

    What :func:`skcrystal.graphs.line_graph.line_graph` with
    ``convention="alignn"`` caches per structure, for a batch that lacks
    it: every pair ``(B, A)`` with ``neighbor[B] == center[A]``.

    Parameters
    ----------
    edge_index : LongTensor, shape (2, n_edges)
        Centre (row 0) and neighbour (row 1) atoms.
    vectors : Tensor, shape (n_edges, 3)
        Bond vectors, Å.

    Returns
    -------
    lg_index : LongTensor, shape (T, 2)
        Receiving bond ``B``, sending bond ``A``.
    lg_cos : Tensor, shape (T,)
        Cosine of the angle at the shared atom.
    """
    center, neighbor = edge_index[0], edge_index[1]
    n = int(torch.maximum(center.max(), neighbor.max())) + 1 if center.numel() else 0
    k_send = torch.bincount(center, minlength=n)
    send_order = torch.argsort(center, stable=True)
    send_start = torch.cumsum(k_send, 0) - k_send
    reps = k_send.index_select(0, neighbor)
    e1 = torch.repeat_interleave(torch.arange(center.numel(), device=center.device), reps)
    block_start = torch.cumsum(reps, 0) - reps
    within = torch.arange(e1.numel(), device=center.device) - \
        torch.repeat_interleave(block_start, reps)
    e2 = send_order.index_select(0, send_start.index_select(0, neighbor.index_select(0, e1))
                                 + within)
    norm = vectors.norm(dim=1)
    cos = -(vectors.index_select(0, e1) * vectors.index_select(0, e2)).sum(1) / (
        norm.index_select(0, e1) * norm.index_select(0, e2))
    return torch.stack([e1, e2], dim=1), cos.clamp(-1.0, 1.0)


class ALIGNN(CrystalModel):
    """Atomistic line graph neural network.

    Defaults are the reference implementation's (``ALIGNNConfig``): 4
    ALIGNN layers + 4 edge-gated graph convolutions, 80 radial basis
    centres on 0-8 Å for distances and 40 on -1..1 for bond-angle cosines,
    embedding 64, hidden 256, SiLU, batch norm, average pooling, one Linear
    layer after pooling. The graph itself (8 Å, 12 nearest neighbours,
    symmetrized) is the estimator's.

    Parameters
    ----------
    n_outputs : int
        Targets or classes (set by the estimator). Reference:
        ``output_features`` / ``num_classes`` (the reference returns
        log-probabilities for classes; this module returns the logits).
    atom_features, extra_atom_features
        See :class:`~skcrystal.nn.embedding.AtomEmbedding`. The reference
        uses the 92-feature CGCNN table (``atom_input_features=92``); pass
        that table to reproduce it exactly.
    alignn_layers : int
        ALIGNN layers (atom graph + line graph). Reference: same name.
    gcn_layers : int
        Further atom-graph edge-gated convolutions. Reference: same name.
    hidden : int
        Feature length of atoms, bonds and angles in the convolutions.
        Reference: ``hidden_features``.
    embedding_features : int
        Intermediate width of the bond and angle embeddings. Reference:
        same name.
    n_basis : int
        Radial basis centres for distances (0 to ``cutoff`` Å). Reference:
        ``edge_input_features``.
    n_angle_basis : int
        Basis centres for bond-angle cosines (-1 to 1). Reference:
        ``triplet_input_features``.
    cutoff : float
        Last distance centre, Å (reference: 8 Å, fixed).
    act : str
        Activation (reference: SiLU).
    norm : {"batch", "layer"}
        Normalisation in every block: batch norm as the reference ``ALIGNN``
        (the published model and pretrained checkpoints) or layer norm as
        its ``ALIGNNAtomWise`` / ``ALIGNNAtomWisePure`` (the reference's
        current default model, also for properties).
    pooling : {"mean", "sum", "max"}
        Reference: mean.
    head_hidden : sequence of int
        Hidden layers of the head after pooling (reference: none, one Linear
        layer). Not used by the ``"mlp"`` descriptor head.
    n_descriptors : int
        Descriptor-vector length for hybrid models (0: none). Reference:
        ``extra_features``.
    descriptor_head : {"mlp", "concat"}
        With descriptors: ``"mlp"`` the reference's extra-features head (see
        :class:`ALIGNNDescriptorHead`); ``"concat"`` the head every skcrystal
        model shares (:class:`~skcrystal.nn.head.ReadoutHead`: descriptors
        concatenated to the pooled vector, then ``head_hidden``), for
        comparisons across models.
    dropout : float
        Dropout in the shared head between hidden layers (reference: none).
    max_triplets : int or None
        Largest line graph (bond pairs) allowed for one structure; a larger
        one raises a ``ValueError`` naming the structure (~24 bytes per pair
        cached, see :mod:`skcrystal.graphs.line_graph`). ``None``: no bound.
    """

    #: measured training memory (44 KB per angle pair at the default width and depth;
    #: see CrystalModel.training_memory)
    _training_memory = {"edge": 0, "angle": 44_000, "at": {"hidden": 256, "alignn_layers": 4}}

    _parameter_constraints = {
        "n_outputs": [Interval(Integral, 1, None, closed="left")],
        "atom_features": [str, os.PathLike, dict, "array-like"],
        "extra_atom_features": ["array-like", None],
        "alignn_layers": [Interval(Integral, 0, None, closed="left")],
        "gcn_layers": [Interval(Integral, 0, None, closed="left")],
        "hidden": [Interval(Integral, 1, None, closed="left")],
        "embedding_features": [Interval(Integral, 1, None, closed="left")],
        "n_basis": [Interval(Integral, 1, None, closed="left")],
        "n_angle_basis": [Interval(Integral, 1, None, closed="left")],
        "cutoff": [Interval(Real, 0, None, closed="neither")],
        "act": [StrOptions(set(_ACTIVATIONS)), nn.Module],
        "norm": [StrOptions(set(NORMS))],
        "pooling": [StrOptions(set(POOLINGS))],
        "head_hidden": ["array-like"],
        "n_descriptors": [Interval(Integral, 0, None, closed="left")],
        "descriptor_head": [StrOptions({"mlp", "concat"})],
        "dropout": [Interval(Real, 0, 1, closed="left")],
        "max_triplets": [Interval(Integral, 1, None, closed="left"), None],
    }

    def __init__(self, n_outputs=1, atom_features="cgcnn", extra_atom_features=None,
                 alignn_layers=4, gcn_layers=4, hidden=256, embedding_features=64,
                 n_basis=80, n_angle_basis=40, cutoff=8.0, act="silu", norm="batch",
                 pooling="mean", head_hidden=(), n_descriptors=0, descriptor_head="mlp",
                 dropout=0.0, max_triplets=DEFAULT_MAX_TRIPLETS):
        super().__init__()
        mlp_head = n_descriptors > 0 and descriptor_head == "mlp"
        if mlp_head and len(head_hidden):
            raise ValueError("head_hidden applies to the shared head; the 'mlp' "
                             "descriptor head has the reference's fixed layers (use "
                             "descriptor_head='concat' for head_hidden)")
        self.pooling = pooling
        self.max_triplets = max_triplets
        self.atom_embedding = AtomEmbedding(hidden, atom_features, extra_atom_features)
        self.atom_norm = nn.Sequential(_norm(norm, hidden), activation(act))
        self.edge_embedding = nn.Sequential(
            reference_rbf(0.0, cutoff, n_basis),
            _mlp_block(n_basis, embedding_features, act, norm),
            _mlp_block(embedding_features, hidden, act, norm))
        self.angle_embedding = nn.Sequential(
            reference_rbf(-1.0, 1.0, n_angle_basis),
            _mlp_block(n_angle_basis, embedding_features, act, norm),
            _mlp_block(embedding_features, hidden, act, norm))
        self.alignn_layers = nn.ModuleList(
            ALIGNNLayer(hidden, act, norm) for _ in range(alignn_layers))
        self.gcn_layers = nn.ModuleList(
            EdgeGatedGraphConv(hidden, act, norm=norm) for _ in range(gcn_layers))
        if mlp_head:
            self.head = ALIGNNDescriptorHead(hidden, n_descriptors, n_outputs, act, norm)
        else:
            self.head = ReadoutHead(hidden, n_outputs, tuple(head_hidden), act=act,
                                    n_descriptors=n_descriptors, dropout=dropout)

    @property
    def supported_elements(self):
        # the reference's module name for the atom input is kept
        return self.atom_embedding.supported_elements

    @property
    def needs_line_graph(self):
        return len(self.alignn_layers) > 0

    @property
    def graph_extras(self):
        """The ALIGNN line graph as a graph extra (none without ALIGNN layers)."""
        if not self.needs_line_graph:
            return ()
        return (line_graph_extra(self.max_triplets, convention="alignn"),)

    def _line_graph(self, batch):
        if "lg_alignn_index" in batch.extras:
            return batch.extras["lg_alignn_index"], batch.extras["lg_alignn_cos"]
        if self.max_triplets is not None and batch.n_edges:
            # the cached extra checks this per structure before building
            counts = torch.bincount(batch.center, minlength=batch.n_nodes) * \
                torch.bincount(batch.neighbor, minlength=batch.n_nodes)
            per_graph = scatter_sum(counts, batch.node_graph, batch.n_graphs)
            worst = int(per_graph.argmax())
            if int(per_graph[worst]) > self.max_triplets:
                raise ValueError(
                    f"crystal {worst} of the batch would have {int(per_graph[worst])} "
                    f"line-graph pairs, more than max_triplets={self.max_triplets}")
        return alignn_line_graph(batch.edge_index, batch.vectors)

    def atom_features(self, batch):
        """Atom vectors after all convolutions, shape (n_nodes, hidden)."""
        x = self.atom_norm(self.atom_embedding(batch.atomic_numbers))
        y = self.edge_embedding(batch.distances)
        if self.needs_line_graph:
            lg_index, lg_cos = self._line_graph(batch)
            z = self.angle_embedding(lg_cos.to(y.dtype))
            for layer in self.alignn_layers:
                x, y, z = layer(x, y, z, batch.edge_index, lg_index)
        for layer in self.gcn_layers:
            x, y = layer(x, y, batch.edge_index[0], batch.edge_index[1])
        return x

    def embed(self, batch):
        """Pooled crystal vectors, shape (n_graphs, hidden)."""
        return pool(self.atom_features(batch), batch.node_graph, batch.n_graphs, self.pooling)

    def forward(self, batch):
        h = self.embed(batch)
        if isinstance(self.head, ALIGNNDescriptorHead):
            return self.head(h, batch.descriptors, batch.node_graph)
        return self.head(h, batch.descriptors)


def _reference_key(key):
    """skcrystal parameter name -> reference (usnistgov/alignn) name, or None."""
    rules = (
        ("atom_embedding.linear.", "atom_embedding.layer.0."),
        ("atom_norm.0.", "atom_embedding.layer.1."),
        ("head.mlp.0.", "fc."),
        ("head.extra_feature_embedding.", "extra_feature_embedding.layer."),
        ("head.fc1.", "fc1.layer."),
        ("head.fc2.", "fc2.layer."),
        ("head.fc3.", "fc3."),
    )
    for ours, theirs in rules:
        if key.startswith(ours):
            return theirs + key[len(ours):]
    for emb in ("edge_embedding.", "angle_embedding."):
        if key.startswith(emb + "1.") or key.startswith(emb + "2."):
            block, rest = key[len(emb):].split(".", 1)
            return f"{emb}{block}.layer.{rest}"
        if key.startswith(emb + "0."):
            return key  # the basis centres
    return key  # alignn_layers.* and gcn_layers.* carry the reference's names


def load_reference_state_dict(model, state_dict):
    """Copy the weights of a reference ALIGNN model into ``model``.

    Reads the ``state_dict`` of ``alignn.models.alignn.ALIGNN`` (batch norm;
    e.g. the published pretrained checkpoints, whose ``"model"`` entry is
    this dict) or ``alignn.models.alignn_atomwise_pure.ALIGNNAtomWisePure``
    (layer norm), after checking every shape; no code is executed.

    Parameters
    ----------
    model : ALIGNN
        Built with the reference's hyperparameters: ``hidden``,
        ``embedding_features``, ``n_basis``, ``n_angle_basis``, layer counts,
        ``norm`` (``"batch"`` for ``ALIGNN``, ``"layer"`` for the atom-wise
        models), ``cutoff=8``, ``atom_features`` a table of
        ``atom_input_features`` columns (the 92 CGCNN features), and
        ``n_descriptors = extra_features``.
    state_dict : mapping of str -> Tensor

    Returns
    -------
    ALIGNN
        ``model``, with the weights loaded.

    Raises
    ------
    ValueError
        Naming the first missing or mismatched parameter.
    """
    if not isinstance(model, ALIGNN):
        raise TypeError(f"model must be an skcrystal ALIGNN, got {type(model).__name__}")
    ours = model.state_dict()
    new = {}
    for key, value in ours.items():
        if key == "atom_embedding.table":
            new[key] = value
            continue
        ref = _reference_key(key)
        if ref not in state_dict:
            raise ValueError(f"the reference state dict has no {ref!r} (for {key!r}); "
                             "was the model built with the reference's layer counts, "
                             "norm and n_descriptors?")
        theirs = torch.as_tensor(state_dict[ref])
        if theirs.shape != value.shape:
            raise ValueError(f"{ref!r} has shape {tuple(theirs.shape)} in the reference, "
                             f"{tuple(value.shape)} here ({key!r})")
        if key.endswith(".centers") and not torch.allclose(theirs.to(value.dtype), value,
                                                           atol=1e-6):
            raise ValueError(f"basis centres {ref!r} differ from this model's "
                             "(cutoff / n_basis / n_angle_basis)")
        new[key] = theirs.to(value.dtype)
    model.load_state_dict(new)
    return model
