"""CGCNN layers (Xie & Grossman, PRL 120, 145301 (2018)).

Pure torch; operates on a :class:`~skcrystal.graphs.GraphBatch`.
"""
import numbers
from typing import NamedTuple, Optional

import torch
from torch import nn
from torch.nn import functional as F

from ._constraints import Interval, StrOptions
from .basis import GaussianExpansion
from .common import MLP, BatchNorm, activation
from .embedding import AtomEmbedding
from .head import ReadoutHead
from .model import COMMON_CONSTRAINTS, CrystalModel
from .pooling import pool
from .scatter import scatter_mean, scatter_sum

__all__ = ["CGCNNConv", "CGCNNSimpleConv", "CGCNN", "EdgeIndex"]


#: merge duplicate edges when that leaves at most this fraction of the rows
_MERGE_BELOW = 0.75


class EdgeIndex(NamedTuple):
    """Per-batch index vectors shared by the gated convolutions of a forward pass.

    Attributes
    ----------
    center, neighbor : LongTensor, shape (n_edges,)
        Edge end points (messages flow neighbour -> centre).
    edge_term : LongTensor, shape (n_edges,)
        Row of the edge-term table that belongs to each edge (edges of equal
        length share a row, see :meth:`CGCNN.atom_features`).
    bags : LongTensor, shape (n_edges, 3)
        Rows of ``[atom terms viewed as (2 * n_nodes, 2 * atom_dim); edge
        terms]`` whose sum is each edge's pre-activation ``z``: centre,
        neighbour, edge.
    rows : LongTensor, shape (3, n_edges)
        ``bags`` transposed, contiguous (the backward pass reads it by column).
    count : Tensor, shape (n_edges,), or None
        How many edges of the graph each row stands for (see
        :meth:`merged`); None: one each.
    n_edges : int
        Edges of the graph (the sum of ``count``).
    """

    center: torch.Tensor
    neighbor: torch.Tensor
    edge_term: torch.Tensor
    bags: torch.Tensor
    rows: torch.Tensor
    count: Optional[torch.Tensor] = None
    n_edges: int = 0

    @classmethod
    def build(cls, edge_index, n_nodes, edge_term=None):
        """Index vectors from ``edge_index`` (2, n_edges).

        Parameters
        ----------
        edge_index : LongTensor, shape (2, n_edges)
        n_nodes : int
        edge_term : LongTensor, shape (n_edges,), optional
            Each edge's row in the edge-term table (default: its own row).
        """
        center, neighbor = edge_index[0], edge_index[1]
        if edge_term is None:
            edge_term = torch.arange(center.shape[0], device=center.device)
        return cls._assemble(center, neighbor, edge_term, n_nodes)

    @classmethod
    def _assemble(cls, center, neighbor, edge_term, n_nodes, count=None, n_edges=None):
        # atom terms (n_nodes, 4d) viewed as (2 n_nodes, 2d): row 2i is atom
        # i's centre projection, row 2i + 1 its neighbour projection
        rows = torch.stack([2 * center, 2 * neighbor + 1, 2 * n_nodes + edge_term])
        return cls(center, neighbor, edge_term, rows.t().contiguous(), rows, count,
                   int(center.shape[0]) if n_edges is None else int(n_edges))

    @classmethod
    def merged(cls, edge_index, n_nodes, edge_term, n_terms):
        """Index vectors with duplicate edges merged into one row each.

        Edges with the same centre, the same neighbour atom and the same
        edge-term row (a periodic image of the neighbour at exactly the same
        distance, frequent in small cells) carry identical messages; one row
        with a ``count`` stands for all of them. When merging would leave
        more than ``_MERGE_BELOW`` of the rows, the edges are kept as they
        are (``count`` None): a merged row costs more than a plain one.

        Parameters
        ----------
        edge_index : LongTensor, shape (2, n_edges)
        n_nodes : int
        edge_term : LongTensor, shape (n_edges,)
            Each edge's row in the edge-term table.
        n_terms : int
            Rows of the edge-term table.
        """
        center, neighbor = edge_index[0], edge_index[1]
        n_edges = int(center.shape[0])
        if n_nodes * n_nodes * n_terms >= 2 ** 62:  # key would overflow int64
            return cls._assemble(center, neighbor, edge_term, n_nodes)
        key = (center * n_nodes + neighbor) * n_terms + edge_term
        key, count = torch.unique(key, return_counts=True)
        if key.shape[0] > _MERGE_BELOW * n_edges:
            # too few duplicates to pay for the weighted batch norm
            return cls._assemble(center, neighbor, edge_term, n_nodes)
        edge_term = key % n_terms
        pair = key // n_terms
        return cls._assemble(pair // n_nodes, pair % n_nodes, edge_term, n_nodes, count,
                             n_edges)


class _EdgeSum(torch.autograd.Function):
    """``z_e = pc[center_e] + pn[neighbor_e] + u[edge_term_e]`` in one pass.

    The forward is one ``embedding_bag`` (sum of three table rows per edge)
    instead of three gathers and two adds, each allocating an
    (n_edges, 2d) tensor; the backward adds the edge gradients into one
    table with three ``index_add_`` calls, several times faster on CPU than
    ``embedding_bag``'s own backward.
    """

    @staticmethod
    def forward(ctx, atom_terms, edge_terms, bags, rows):
        width = edge_terms.shape[1]
        table = torch.cat([atom_terms.reshape(-1, width), edge_terms])
        ctx.save_for_backward(rows)
        ctx.atom_shape = atom_terms.shape
        ctx.n_edge_rows = edge_terms.shape[0]
        return F.embedding_bag(bags, table, mode="sum")

    @staticmethod
    def backward(ctx, grad):
        rows, = ctx.saved_tensors
        grad = grad.contiguous()
        n_atom_rows = 2 * ctx.atom_shape[0]
        table = grad.new_zeros((n_atom_rows + ctx.n_edge_rows, grad.shape[1]))
        for k in range(3):
            table.index_add_(0, rows[k], grad)
        return table[:n_atom_rows].view(ctx.atom_shape), table[n_atom_rows:], None, None


class _GatedAggregate(torch.autograd.Function):
    """Batch norm over edges, ``sigmoid(gate) * softplus(core)``, sum per centre.

    Eq. 5 from the pre-activation ``z`` to the aggregated messages, with a
    hand-written backward: autograd would keep the same tensors but add a
    ``cat`` of the two halves' gradients and a dozen graph nodes per
    convolution; here the gate and core gradients are written straight into
    the halves of one buffer that ``native_batch_norm_backward`` reads.
    """

    @staticmethod
    def forward(ctx, z, weight, bias, running_mean, running_var, batch_stats, momentum,
                eps, center, n_nodes):
        y, mean, invstd = torch.native_batch_norm(
            z, weight, bias, running_mean, running_var, batch_stats, momentum, eps)
        gate, core = y.chunk(2, dim=1)
        sig = torch.sigmoid(gate)
        soft = F.softplus(core)
        agg = z.new_zeros((n_nodes, sig.shape[1])).index_add_(0, center, sig * soft)
        ctx.save_for_backward(z, weight, running_mean, running_var, mean, invstd, y, sig,
                              soft, center)
        ctx.batch_stats, ctx.eps = batch_stats, eps
        return agg

    @staticmethod
    def backward(ctx, grad):
        z, weight, running_mean, running_var, mean, invstd, y, sig, soft, center = \
            ctx.saved_tensors
        d = sig.shape[1]
        grad_msg = grad.index_select(0, center)
        grad_y = torch.empty_like(y)
        torch.ops.aten.sigmoid_backward.grad_input(grad_msg * soft, sig,
                                                   grad_input=grad_y[:, :d])
        torch.ops.aten.softplus_backward.grad_input(grad_msg * sig, y[:, d:], 1.0, 20.0,
                                                    grad_input=grad_y[:, d:])
        grad_z, grad_w, grad_b = torch.ops.aten.native_batch_norm_backward(
            grad_y, z, weight, running_mean, running_var, mean, invstd, ctx.batch_stats,
            ctx.eps, [ctx.needs_input_grad[0], ctx.needs_input_grad[1],
                      ctx.needs_input_grad[2]])
        return grad_z, grad_w, grad_b, None, None, None, None, None, None, None


class _MergedGatedAggregate(torch.autograd.Function):
    """:class:`_GatedAggregate` on merged edges (rows with a multiplicity).

    Row ``e`` stands for ``count[e]`` identical edges: the batch norm
    statistics weight it by its count (the mean and variance over all
    edges, as one matmul each), and its message is added ``count[e]``
    times. Same values as the per-edge computation, on fewer rows.
    """

    @staticmethod
    def forward(ctx, z, weight, bias, running_mean, running_var, batch_stats, momentum,
                eps, center, n_nodes, count, n_edges):
        if batch_stats:
            w = count.unsqueeze(0)
            mean = (w @ z).squeeze(0) / n_edges
            zc = z - mean
            var = (w @ zc.square()).squeeze(0) / n_edges
            with torch.no_grad():
                running_mean.mul_(1 - momentum).add_(mean, alpha=momentum)
                running_var.mul_(1 - momentum).add_(var * (n_edges / (n_edges - 1)),
                                                    alpha=momentum)
        else:
            mean, var = running_mean, running_var
            zc = z - mean
        invstd = torch.rsqrt(var + eps)
        y = torch.addcmul(bias, zc, invstd * weight)
        gate, core = y.chunk(2, dim=1)
        sig = torch.sigmoid(gate)
        soft = F.softplus(core)
        msg = sig * soft
        msg.mul_(count.unsqueeze(1))
        agg = z.new_zeros((n_nodes, sig.shape[1])).index_add_(0, center, msg)
        ctx.save_for_backward(zc, weight, invstd, y, sig, soft, center, count)
        ctx.batch_stats, ctx.n_edges = batch_stats, n_edges
        return agg

    @staticmethod
    def backward(ctx, grad):
        zc, weight, invstd, y, sig, soft, center, count = ctx.saved_tensors
        d = sig.shape[1]
        w = count.unsqueeze(1)
        # gradient of one row = the sum over the edges it stands for
        grad_msg = grad.index_select(0, center).mul_(w)
        grad_y = torch.empty_like(y)
        torch.ops.aten.sigmoid_backward.grad_input(grad_msg * soft, sig,
                                                   grad_input=grad_y[:, :d])
        torch.ops.aten.softplus_backward.grad_input(grad_msg * sig, y[:, d:], 1.0, 20.0,
                                                    grad_input=grad_y[:, d:])
        grad_bias = grad_y.sum(0)
        grad_weight = (grad_y * zc).sum(0) * invstd
        scale = weight * invstd
        if not ctx.batch_stats:
            return (grad_y * scale, grad_weight, grad_bias, None, None, None, None, None,
                    None, None, None, None)
        # d/dz of the normalisation through the batch mean and variance; a
        # row's share of the mean and variance terms is its count
        n = ctx.n_edges
        shift = torch.addcmul(scale * grad_bias / n, zc, scale * invstd * grad_weight / n)
        grad_z = torch.addcmul(shift.mul_(w).neg_(), grad_y, scale)
        return (grad_z, grad_weight, grad_bias, None, None, None, None, None, None, None,
                None, None)


def _batch_norm_args(bn, n_rows):
    """``(batch_stats, momentum)`` for ``native_batch_norm``, as ``bn`` would use.

    Counts the batch in ``num_batches_tracked`` when its statistics are
    used; a single row in training is normalised with the running
    statistics, as :class:`~skcrystal.nn.common.BatchNorm` does.
    """
    batch_stats = bn.training and n_rows > 1
    momentum = 0.0
    if batch_stats:
        bn.num_batches_tracked.add_(1)
        momentum = bn.momentum if bn.momentum is not None else \
            1.0 / float(bn.num_batches_tracked)
    return batch_stats, momentum


def _autocast_enabled():
    """Whether autocast is on for the CPU or CUDA."""
    try:
        return torch.is_autocast_enabled("cpu") or torch.is_autocast_enabled("cuda")
    except TypeError:  # older torch: no device argument
        return torch.is_autocast_enabled() or torch.is_autocast_cpu_enabled()


class CGCNNConv(nn.Module):
    """Gated convolution, paper Eq. 5 (the reference code's ``ConvLayer``).

    ``v_i' = softplus(v_i + BN(sum_(j,k) sigmoid(z W_f + b_f) * softplus(z W_s + b_s)))``
    with ``z = v_i (+) v_j (+) u_(i,j)k`` and a batch norm on ``z W``.

    The Linear layer on the concatenation ``z`` is computed as the sum of
    three projections (centre, neighbour, edge), identical in value; the
    atom projections are done once per atom instead of once per edge,
    which is where most of the speed over the padded reference layout
    comes from. The edge projection can be done once per distinct edge
    feature row (:meth:`update`).

    Parameters
    ----------
    atom_dim : int
        Atom feature length.
    edge_dim : int
        Edge feature length (number of Gaussians).

    Shapes
    ------
    x (n_nodes, atom_dim), edge_attr (n_edges, edge_dim),
    edge_index (2, n_edges) -> (n_nodes, atom_dim)
    """

    def __init__(self, atom_dim, edge_dim):
        super().__init__()
        self.atom_dim = atom_dim
        # rows [0, 2d): centre part of W, rows [2d, 4d): neighbour part; one
        # matmul per atom for both, the bias lives in edge_proj
        self.atom_proj = nn.Linear(atom_dim, 4 * atom_dim, bias=False)
        self.edge_proj = nn.Linear(edge_dim, 2 * atom_dim)
        self.bn_edge = BatchNorm(2 * atom_dim)
        self.bn_node = BatchNorm(atom_dim)

    def forward(self, x, edge_attr, edge_index):
        edges = EdgeIndex.build(edge_index, x.shape[0])
        return self.update(x, self.edge_proj(edge_attr), edges)

    def fused(self):
        """Whether :meth:`update` can take the fused path.

        Not under autocast, and only with the plain
        :class:`~skcrystal.nn.common.BatchNorm` (a distributed fit swaps
        in a synchronised one) with its default affine, tracked statistics
        and no forward hooks (fine-tuning freezes a batch norm with one):
        the fused path reads its parameters without calling it.
        """
        bn = self.bn_edge
        return (type(bn) is BatchNorm and bn.affine and bn.track_running_stats
                and not (bn._forward_pre_hooks or bn._forward_hooks)
                and not _autocast_enabled())

    def update(self, x, edge_terms, edges):
        """The convolution from projected edge terms.

        Parameters
        ----------
        x : Tensor, shape (n_nodes, atom_dim)
        edge_terms : Tensor, shape (n_rows, 2 * atom_dim)
            ``edge_proj`` of the edge features (bias included), one row per
            distinct edge feature row.
        edges : EdgeIndex
            Index vectors of the batch; ``edges.edge_term`` maps edges to
            rows of ``edge_terms``.

        Returns
        -------
        Tensor, shape (n_nodes, atom_dim)
        """
        atom_terms = self.atom_proj(x)
        n = x.shape[0]
        if self.fused():
            z = _EdgeSum.apply(atom_terms, edge_terms, edges.bags, edges.rows)
            bn = self.bn_edge
            batch_stats, momentum = _batch_norm_args(bn, edges.n_edges)
            if edges.count is None:
                agg = _GatedAggregate.apply(z, bn.weight, bn.bias, bn.running_mean,
                                            bn.running_var, batch_stats, momentum, bn.eps,
                                            edges.center, n)
            else:
                agg = _MergedGatedAggregate.apply(
                    z, bn.weight, bn.bias, bn.running_mean, bn.running_var, batch_stats,
                    momentum, bn.eps, edges.center, n, edges.count.to(z.dtype),
                    edges.n_edges)
        else:
            if edges.count is not None:
                raise ValueError("merged edges need the fused path (see fused())")
            pc, pn = atom_terms.chunk(2, dim=1)
            z = pc.index_select(0, edges.center) + pn.index_select(0, edges.neighbor) \
                + edge_terms.index_select(0, edges.edge_term)
            gate, core = self.bn_edge(z).chunk(2, dim=1)
            agg = scatter_sum(torch.sigmoid(gate) * F.softplus(core), edges.center, n)
        return F.softplus(x + self.bn_node(agg))


class CGCNNSimpleConv(nn.Module):
    """Shared-weight convolution, paper Eq. 4.

    ``v_i' = softplus(sum_(j,k) (v_j (+) u_(i,j)k) W_c + v_i W_s + b)``.
    """

    def __init__(self, atom_dim, edge_dim):
        super().__init__()
        self.neighbor_proj = nn.Linear(atom_dim, atom_dim, bias=False)
        self.edge_proj = nn.Linear(edge_dim, atom_dim, bias=False)
        self.self_proj = nn.Linear(atom_dim, atom_dim)

    def forward(self, x, edge_attr, edge_index):
        center, neighbor = edge_index[0], edge_index[1]
        msg = self.neighbor_proj(x).index_select(0, neighbor) + self.edge_proj(edge_attr)
        return F.softplus(scatter_sum(msg, center, x.shape[0]) + self.self_proj(x))


_CONVS = {"gated": CGCNNConv, "simple": CGCNNSimpleConv}


class CGCNN(CrystalModel):
    """Crystal graph convolutional neural network.

    Defaults follow the paper and the reference code: atom feature length
    64, 3 gated convolutions, one hidden layer of 128 after pooling,
    softplus activations, Gaussian distance expansion 0-8 Å step 0.2 Å,
    width 0.2 Å.

    Parameters
    ----------
    n_outputs : int
        Targets or classes (set by the estimator from the data).
    atom_features, extra_atom_features
        Atom feature scheme, see :class:`~skcrystal.nn.embedding.AtomEmbedding`.
    hidden : int
        Length of the learned atom vectors (the paper's and reference
        code's ``atom_fea_len``).
    n_conv : int
        Number of convolutions.
    h_fea_len : int
        Width of the hidden layers after pooling.
    n_h : int
        Number of hidden layers after pooling.
    conv : {"gated", "simple"}
        Eq. 5 (default) or Eq. 4.
    pooling : {"mean", "sum", "site"}
        ``mean``: normalised sum (intensive targets, supercell invariant);
        ``sum``: plain sum of atom vectors (the pooled representation
        scales with the cell; for extensive targets, noting that the MLP
        after it is not linear); ``site``: supplement Eqs. S14-S15, an MLP
        maps each atom to its own contribution and the prediction is their
        mean (interpretable per-site values).
    cutoff, gaussian_step, gaussian_width : float
        Gaussian centres from 0 to ``cutoff`` Å every ``gaussian_step`` Å,
        width ``gaussian_width`` Å (defaults to the step); the estimator sets
        ``cutoff`` to its graph ``radius``.
    n_descriptors : int
        Descriptor-vector length for hybrid models (0: none).
    dropout : float
        Dropout in the head.
    """

    #: measured training memory (7.8 KB per edge at the default width and depth;
    #: see CrystalModel.training_memory)
    _training_memory = {"edge": 7_800, "at": {"hidden": 64, "n_conv": 3}}

    _parameter_constraints = {
        **COMMON_CONSTRAINTS,
        "hidden": [Interval(numbers.Integral, 1, None, closed="left")],
        "n_conv": [Interval(numbers.Integral, 0, None, closed="left")],
        "h_fea_len": [Interval(numbers.Integral, 1, None, closed="left")],
        "n_h": [Interval(numbers.Integral, 0, None, closed="left")],
        "conv": [StrOptions(set(_CONVS))],
        "pooling": [StrOptions({"mean", "sum", "site", "max"})],
        "gaussian_step": [Interval(numbers.Real, 0, None, closed="neither")],
        "gaussian_width": [Interval(numbers.Real, 0, None, closed="neither"), None],
    }

    def __init__(self, n_outputs=1, atom_features="cgcnn", extra_atom_features=None,
                 hidden=64, n_conv=3, h_fea_len=128, n_h=1, conv="gated",
                 pooling="mean", cutoff=8.0, gaussian_step=0.2, gaussian_width=None,
                 n_descriptors=0, dropout=0.0):
        super().__init__()
        if pooling == "site" and n_descriptors:
            raise ValueError("pooling='site' predicts from atoms alone and cannot "
                             "take crystal descriptors; use pooling='mean'")
        self.pooling = pooling
        self.embedding = AtomEmbedding(hidden, atom_features, extra_atom_features)
        self.rbf = GaussianExpansion(0.0, cutoff, step=gaussian_step,
                                     width=gaussian_width or gaussian_step)
        self.convs = nn.ModuleList(
            _CONVS[conv](hidden, self.rbf.n_centers) for _ in range(n_conv))
        head_widths = (h_fea_len,) * n_h
        if pooling == "site":
            self.site_mlp = nn.Sequential(
                activation("softplus"),
                MLP((hidden, *head_widths, n_outputs), act="softplus", dropout=dropout))
            self.head = None
        else:
            self.head = ReadoutHead(hidden, n_outputs, head_widths, act="softplus",
                                    n_descriptors=n_descriptors, input_act=True,
                                    dropout=dropout)

    def atom_features(self, batch):
        """Atom vectors after the convolutions, shape (n_nodes, hidden)."""
        x = self.embedding(batch.atomic_numbers)
        if not self.convs or not isinstance(self.convs[0], CGCNNConv):
            edge_attr = self.rbf(batch.distances)
            for conv in self.convs:
                x = conv(x, edge_attr, batch.edge_index)
            return x
        # symmetry repeats bond lengths (every bond is also seen from its
        # other end): the Gaussians and the edge projections of all the
        # convolutions, one matmul, are computed once per distinct length
        lengths, edge_term = torch.unique(batch.distances, return_inverse=True)
        if all(conv.fused() for conv in self.convs):
            edges = EdgeIndex.merged(batch.edge_index, x.shape[0], edge_term,
                                     lengths.shape[0])
        else:
            edges = EdgeIndex.build(batch.edge_index, x.shape[0], edge_term)
        weight = torch.cat([conv.edge_proj.weight for conv in self.convs])
        bias = torch.cat([conv.edge_proj.bias for conv in self.convs])
        terms = F.linear(self.rbf(lengths), weight, bias).chunk(len(self.convs), dim=1)
        for conv, edge_terms in zip(self.convs, terms):
            x = conv.update(x, edge_terms, edges)
        return x

    def embed(self, batch):
        """Pooled crystal vectors, shape (n_graphs, hidden)."""
        how = "mean" if self.pooling == "site" else self.pooling
        return pool(self.atom_features(batch), batch.node_graph, batch.n_graphs, how)

    def site_contributions(self, batch):
        """Per-atom outputs whose crystal mean is the prediction (``site`` pooling).

        Returns
        -------
        Tensor, shape (n_nodes, n_outputs)
        """
        if self.pooling != "site":
            raise ValueError("site contributions need pooling='site'")
        return self.site_mlp(self.atom_features(batch))

    def readout_modules(self):
        return [self.site_mlp] if self.pooling == "site" else [self.head]

    def forward(self, batch):
        if self.pooling == "site":
            return scatter_mean(self.site_contributions(batch), batch.node_graph,
                                batch.n_graphs)
        return super().forward(batch)
