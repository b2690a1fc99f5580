"""CGCNN layers (Xie & Grossman, PRL 120, 145301 (2018)).

Pure torch; operates on a :class:`~skcrystal.graphs.GraphBatch`.
"""
import numbers

import torch
from sklearn.utils._param_validation import Interval, StrOptions
from torch import nn
from torch.nn import functional as F

from .basis import GaussianExpansion
from .common import MLP, BatchNorm, activation
from .embedding import AtomEmbedding
from .head import ReadoutHead
from .model import COMMON_CONSTRAINTS, CrystalModel
from .pooling import pool
from .scatter import scatter_mean, scatter_sum

__all__ = ["CGCNNConv", "CGCNNSimpleConv", "CGCNN"]


class CGCNNConv(nn.Module):
    """Gated convolution, paper Eq. 5 (the reference code's ``ConvLayer``).

    ``v_i' = softplus(v_i + BN(sum_(j,k) sigmoid(z W_f + b_f) * softplus(z W_s + b_s)))``
    with ``z = v_i (+) v_j (+) u_(i,j)k`` and a batch norm on ``z W``.

    The Linear layer on the concatenation ``z`` is computed as the sum of
    three projections (centre, neighbour, edge), identical in value; the
    atom projections are done once per atom instead of once per edge,
    which is where most of the speed over the padded reference layout
    comes from.

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
        center, neighbor = edge_index[0], edge_index[1]
        pc, pn = self.atom_proj(x).chunk(2, dim=1)
        # summed in place: index_select does not keep its output for backward
        z = pc.index_select(0, center)
        z.add_(pn.index_select(0, neighbor)).add_(self.edge_proj(edge_attr))
        gate, core = self.bn_edge(z).chunk(2, dim=1)
        msg = torch.sigmoid(gate) * F.softplus(core)
        agg = scatter_sum(msg, center, x.shape[0])
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
        edge_attr = self.rbf(batch.distances)
        for conv in self.convs:
            x = conv(x, edge_attr, batch.edge_index)
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
