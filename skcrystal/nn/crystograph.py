"""CrysToGraph (Wang et al., "CrysToGraph: a comprehensive predictive model
for crystal materials properties"): edge-engaged transformer graph
convolutions (eTGC) on the atom graph and its line graph, then graph-wise
transformer (GwT) layers over all atoms of each crystal.

Pure torch; operates on a :class:`~skcrystal.graphs.GraphBatch` that
carries the line graph (see :mod:`skcrystal.graphs.line_graph`) and the
positional encodings (``pe_lap``, ``pe_rw``, see
:mod:`skcrystal.graphs.positional`) as extras when the model uses them.

Reference
---------
The authors' code (howardwang1997/CrysToGraph and its matbench runner
howardwang1997/CrysToGraph_matbench: ``TransformerConvLayer`` in
``model/bert_transformer.py``, ``GlobalTransformerLayer`` in
``model/transformer.py``, the graph in ``data/crystal.py``) fixes what the
paper leaves open; the defaults follow it:

* Line graph (paper §2.1.3: bond ``(n_u, n_v)`` and bond ``(n_v, n_w)``
  are joined): DGL's ``line_graph(shared=True)`` of the directed 12-NN
  graph, backtracking pair included, the angle taken at ``n_v``. That is
  ``convention="alignn"`` of :func:`~skcrystal.graphs.line_graph.line_graph`
  (a bond into atom ``v`` feeds every bond out of ``v``), the default
  ``lg_convention``; ``"shared_center"`` pairs bonds into the same atom.
* Widths: atoms ``hidden`` = 256 wide; bonds ``edge_dim`` = 76 (the
  reference's raw bond features, 41 + 17 + 17 Gaussians and a flag, kept at
  that width); angles ``angle_dim`` = 30 (30 Gaussians of the cosine). The
  atom-graph eTGC attends with 8 heads of 32, the line-graph eTGC (bonds as
  nodes) with 8 heads of 24 (``lg_n_heads``, ``lg_head_dim``).
* Feed-forward widths: 4x the stream width in eTGC (atoms 4 x 256, bonds
  4 x 76 in the atom-graph layer; bonds 4 x 76, angles 4 x 30 in the
  line-graph layer), 2x ``hidden`` in GwT.

The documentation's fidelity table lists the remaining differences.
"""
from __future__ import annotations

import contextlib
import math

import numbers

import torch
from sklearn.utils._param_validation import Interval, StrOptions
from torch import nn
from torch.nn import functional as F

from ..graphs.line_graph import CONVENTIONS, DEFAULT_MAX_TRIPLETS, line_graph_extra
from ..graphs.positional import positional_extra
from .basis import GaussianExpansion
from .common import BatchNorm
from .embedding import AtomEmbedding
from .head import ReadoutHead
from .model import COMMON_CONSTRAINTS, CrystalModel
from .pooling import pool
from .scatter import scatter_softmax, scatter_sum

__all__ = ["ETGCLayer", "GwTLayer", "CrysToGraph", "graph_wise_attention",
           "EDGE_FEATURES", "POSITIONAL_ENCODINGS"]

EDGE_FEATURES = ("distance", "spherical")
POSITIONAL_ENCODINGS = ("lap+rw", "lap", "rw", "none")


#: Private switch: True routes every eTGC layer through
#: :meth:`ETGCLayer._attention_reference` and computes every output, as
#: before the restructured forward; benchmarks and tests compare the two.
_REFERENCE = False


@contextlib.contextmanager
def _reference_etgc(on=True):
    """Run eTGC layers through the straightforward reference forward (tests, benchmarks)."""
    global _REFERENCE
    previous, _REFERENCE = _REFERENCE, bool(on)
    try:
        yield
    finally:
        _REFERENCE = previous


class ETGCLayer(nn.Module):
    """Edge-engaged transformer graph convolution, paper Eqs. 2-9.

    For each edge ``(i <- j)`` (centre ``i``, neighbour ``j``)::

        q = W_q x, k = W_k x, v = W_v x, e' = W_e e                 (2)
        k_ji = W_ke [k_i, k_j, e'_ji],  v_ji = W_ve [v_i, v_j, e'_ji] (3)
        a_ji = softmax_j(q_i . k_ji / sqrt(d_k))   per head          (4)
        h_x,i = sum_j a_ji v_ji,  h_e,ji = a_ji e'_ji                (5)
        x^ = x + LN(W_on h_x),  e^ = e + LN(W_oe h_e)                (6, 7)
        x' = x^ + BN(W_2 GELU(W_1 x^)),  e' likewise                (8, 9)

    The softmax runs over each centre's incoming edges (scatter softmax, no
    loop over nodes). ``W_ke`` on the concatenation is three projections
    summed (the same linear map), and ``[k | v]`` of a node goes through
    one Linear (``W_ke W_k`` and ``W_ve W_v`` are both linear maps of
    ``x``, so this is a reparametrisation, not a different model class).

    How it is computed
    ------------------
    The function above is evaluated without forming ``k_ji`` and ``v_ji``
    per edge (on the line graph, an edge is a bond pair: ~150 per atom, so
    per-edge work dominates training). Products of linear maps are taken
    on the weights, and sums over an edge's parts are split by what they
    depend on:

    * ``W_ke W_e`` and ``W_ve W_e`` are multiplied once per forward, so
      the edge part of ``k_ji``, ``v_ji`` is one ``edge_dim``-wide
      projection of ``e`` per edge (not ``e -> e' -> [k | v]``);
    * ``q_i . (kc_i + b)`` (the centre's own key part and the biases) is a
      per-node score, gathered per edge; only ``q_i . (kn_j + W e_ji)``
      is a per-edge dot product;
    * ``sum_j a_ji vc_i = vc_i sum_j a_ji`` (the centre's value part is
      weighted by the per-node attention sum, 1 or 0), so only
      ``vn_j + W e_ji`` is weighted and scattered per edge;
    * the per-node projections ``W_q``, ``W_c W_kv``, ``W_n W_kv`` are one
      matmul, associated whichever way costs fewer multiply-adds;
    * the remaining per-edge work (gathered rows, the per-edge key and
      value parts, the products) runs in cache-sized chunks of edges and
      is recomputed in the backward pass rather than stored
      (:class:`_EdgeAttention`);
    * ``forward(..., update_edges=False)`` skips the edge update (Eqs. 7,
      9) when nothing reads it: the model's last line-graph layer (the
      angles are not used after it) and, without GwT, its last atom-graph
      layer. That FFN's BatchNorm then keeps its initial running
      statistics, which nothing reads either.

    The outputs equal the straightforward evaluation (kept as
    :meth:`_attention_reference`) to float32 rounding; the parameters are
    the same, so gradients, optimiser state and checkpoints are too.

    Parameters
    ----------
    node_dim, edge_dim : int
        Node and edge feature lengths.
    n_heads, head_dim : int
        Attention heads and their width (Table A1: 8 of 32).
    ffn_mult : int
        Hidden width of each FFN as a multiple of its stream's width (the
        reference's 4: ``4 * node_dim`` for nodes, ``4 * edge_dim`` for
        edges).

    Shapes
    ------
    x (n_nodes, node_dim), e (n_edges, edge_dim), edge_index (2, n_edges)
    -> x (n_nodes, node_dim), e (n_edges, edge_dim)
    """

    def __init__(self, node_dim, edge_dim, n_heads=8, head_dim=32, ffn_mult=4):
        super().__init__()
        d = n_heads * head_dim
        self.n_heads, self.head_dim = n_heads, head_dim
        self.q = nn.Linear(node_dim, d)
        self.kv = nn.Linear(node_dim, 2 * d)
        self.e_proj = nn.Linear(edge_dim, d)
        # W_ke and W_ve of Eq. 3, split by the part of the concatenation
        self.kv_center = nn.Linear(2 * d, 2 * d)
        self.kv_neighbor = nn.Linear(2 * d, 2 * d, bias=False)
        self.kv_edge = nn.Linear(d, 2 * d, bias=False)
        self.out_node = nn.Linear(d, node_dim)
        self.out_edge = nn.Linear(d, edge_dim)
        self.ln_node = nn.LayerNorm(node_dim)
        self.ln_edge = nn.LayerNorm(edge_dim)
        self.ffn_node = _BNFFN(node_dim, ffn_mult * node_dim)
        self.ffn_edge = _BNFFN(edge_dim, ffn_mult * edge_dim)

    def attention(self, x, e, edge_index, edge_output=True):
        """Attention weights and the MHNA outputs.

        Parameters
        ----------
        x : Tensor, shape (n_nodes, node_dim)
        e : Tensor, shape (n_edges, edge_dim)
        edge_index : LongTensor, shape (2, n_edges)
            Row 0 the centre (receiving) node, row 1 the neighbour.
        edge_output : bool
            False skips ``h_e`` (returned as None) when the caller does not
            update the edges.

        Returns
        -------
        attn : Tensor, shape (n_edges, n_heads)
            Sums to 1 over the incoming edges of each centre node.
        h_x : Tensor, shape (n_nodes, n_heads * head_dim)
        h_e : Tensor, shape (n_edges, n_heads * head_dim), or None
        """
        if _REFERENCE:
            return self._attention_reference(x, e, edge_index)
        center, neighbor = edge_index[0], edge_index[1]
        n = x.shape[0]
        H, dh = self.n_heads, self.head_dim
        d = H * dh
        q, kc_k, kc_v, kn_k, kn_v = self._node_projections(x).split(d, dim=1)
        # edge part of [k | v]: W_kve (W_e e + b_e), the weights multiplied first
        w_edge = self.kv_edge.weight @ self.e_proj.weight  # (2d, edge_dim)
        b_edge = self.kv_edge.weight @ self.e_proj.bias  # (2d,)
        (wk_e, wv_e), (bk_e, bv_e) = w_edge.split(d), b_edge.split(d)
        # per-head sums and broadcasts outside the edge core as matmuls with the 0/1
        # head-membership matrix (d, H): their backward passes stay contiguous (a
        # broadcast view's gradient is an expanded tensor that the next view copies
        # strided, several times slower on (n_edges, d) tensors)
        heads = _head_matrix(H, dh, x)
        # q_i . k_ji = q_i . (kc_i + b) [per node] + q_i . (kn_j + W e_ji) [per edge];
        # sum_j a_ji v_ji = (vc_i + b) sum_j a_ji [per node] + sum_j a_ji (vn_j + W e_ji)
        s_node = (q * (kc_k + bk_e)) @ heads
        attn, msg = _EdgeAttention.apply(q, kn_k, kn_v, s_node, e, wk_e, wv_e, center,
                                         neighbor, H, math.sqrt(dh))
        weight = scatter_sum(attn, center, n) @ heads.t()  # 1, or 0 without incoming edges
        h_x = msg + (kc_v + bv_e) * weight
        h_e = (attn @ heads.t()) * self.e_proj(e) if edge_output else None
        return attn, h_x, h_e

    def _node_projections(self, x):
        """``[q | kc | kn]`` of every node, shape (n_nodes, 5 * n_heads * head_dim).

        ``kc = W_c (W_kv x + b_kv) + b_c`` and ``kn = W_n (W_kv x + b_kv)``
        (the centre and neighbour parts of Eq. 3), in one matmul either on
        ``x`` with the weight products (when nodes outnumber the input
        width, as on the line graph) or on ``W_kv x``.
        """
        n, d_in = x.shape
        d2 = self.kv.out_features
        w_cn = torch.cat([self.kv_center.weight, self.kv_neighbor.weight])  # (2 d2, d2)
        b_cn = torch.cat([self.kv_center.bias, self.kv_center.bias.new_zeros(d2)])
        fused = 2 * d2 * d2 * d_in + n * d_in * (d2 // 2 + 2 * d2)
        chained = n * d_in * (d2 // 2 + d2) + n * d2 * 2 * d2
        if fused < chained:
            w = torch.cat([self.q.weight, w_cn @ self.kv.weight])
            b = torch.cat([self.q.bias, w_cn @ self.kv.bias + b_cn])
            return F.linear(x, w, b)
        q, kv = F.linear(x, torch.cat([self.q.weight, self.kv.weight]),
                         torch.cat([self.q.bias, self.kv.bias])).split([d2 // 2, d2], dim=1)
        return torch.cat([q, F.linear(kv, w_cn, b_cn)], dim=1)

    def _attention_reference(self, x, e, edge_index):
        """:meth:`attention` evaluated as written (per-edge ``k_ji``, ``v_ji``)."""
        center, neighbor = edge_index[0], edge_index[1]
        H, dh = self.n_heads, self.head_dim
        d = H * dh
        kv = self.kv(x)
        e_p = self.e_proj(e)
        kv_c, kv_n = self.kv_center(kv), self.kv_neighbor(kv)
        kv_e = (kv_c.index_select(0, center) + kv_n.index_select(0, neighbor)
                + self.kv_edge(e_p))
        k_ji, v_ji = kv_e[:, :d].view(-1, H, dh), kv_e[:, d:].view(-1, H, dh)
        q_i = self.q(x).index_select(0, center).view(-1, H, dh)
        score = (q_i * k_ji).sum(-1) / math.sqrt(dh)
        attn = scatter_softmax(score, center, x.shape[0])
        h_x = scatter_sum(attn.unsqueeze(-1) * v_ji, center, x.shape[0]).reshape(-1, d)
        h_e = (attn.unsqueeze(-1) * e_p.view(-1, H, dh)).reshape(-1, d)
        return attn, h_x, h_e

    def forward(self, x, e, edge_index, update_edges=True):
        """Updated node and edge features (Eqs. 6-9).

        ``update_edges=False`` (the edges' update is not used downstream)
        returns None for the edges and skips their update, unless the
        reference switch is on.
        """
        if _REFERENCE:
            _, h_x, h_e = self._attention_reference(x, e, edge_index)
            edge_in = self.out_edge(h_e)
        else:
            attn, h_x, _ = self.attention(x, e, edge_index, edge_output=False)
            edge_in = self._edge_projection(e, attn) if update_edges else None
        x = x + self.ln_node(self.out_node(h_x))
        x = x + self.ffn_node(x)
        if edge_in is None:
            return x, None
        e = e + self.ln_edge(edge_in)
        return x, e + self.ffn_edge(e)

    def _edge_projection(self, e, attn):
        """``W_oe h_e + b_oe`` of Eq. 7 from the attention weights, shape (n_edges, edge_dim).

        ``W_oe (a * (W_e e + b_e)) = sum_h a^h (M_h e + m_h)`` with ``M_h =
        W_oe^h W_e^h`` (edge_dim x edge_dim per head): on narrow edges (the
        line graph's angles, 30 wide, 8 heads of 24) that is fewer
        multiply-adds and narrower per-edge tensors than ``h_e``.
        """
        H, dh = self.n_heads, self.head_dim
        d, de = H * dh, e.shape[1]
        if H * de * (de + 2) >= d * (2 * de + 3):
            return self.out_edge((attn @ _head_matrix(H, dh, e).t()) * self.e_proj(e))
        w_out = self.out_edge.weight.view(de, H, dh)
        w_in = self.e_proj.weight.view(H, dh, de)
        m = torch.einsum("ohk,hki->hoi", w_out, w_in).reshape(H * de, de)
        b = torch.einsum("ohk,hk->ho", w_out, self.e_proj.bias.view(H, dh)).reshape(H * de)
        z = F.linear(e, m, b).view(-1, H, de)
        return (z * attn.unsqueeze(-1)).sum(1) + self.out_edge.bias


def _head_matrix(n_heads, head_dim, like):
    """0/1 membership of each of the ``n_heads * head_dim`` channels in its head,
    shape (n_heads * head_dim, n_heads)."""
    eye = torch.eye(n_heads, dtype=like.dtype, device=like.device)
    return torch.repeat_interleave(eye, head_dim, 0)


#: Edges per chunk of the eTGC edge core: ``2**18 / width`` rows keeps each chunk's
#: (rows, width) temporaries at ~1 MB, inside the per-core cache.
_CHUNK_ELEMENTS = 1 << 18


class _EdgeAttention(torch.autograd.Function):
    """The per-edge part of :meth:`ETGCLayer.attention`, in chunks of edges.

    ``score_ji = (s_i + q_i . (kn_j + W_k e_ji)) / sqrt(d_h)`` per head,
    ``attn = softmax_j(score)``, ``msg_i = sum_j attn_ji (kn'_j + W_v e_ji)``.
    The (n_edges, width) tensors (gathered rows, keys, values, products)
    exist one chunk at a time and are recomputed in the backward pass
    instead of stored: each chunk's temporaries stay in cache, where the
    whole-edge-set tensors went to memory several times per layer (the
    layer's cost on the line graph), and training stores per edge only
    ``attn`` (n_heads floats) besides the inputs.

    Parameters (of ``apply``)
    -------------------------
    q, k_node, v_node : Tensor, shape (n_nodes, width)
        Centre query, neighbour key part, neighbour value part.
    s_node : Tensor, shape (n_nodes, n_heads)
        Per-node score part (``q_i . (kc_i + b)``).
    e : Tensor, shape (n_edges, edge_dim)
    w_k, w_v : Tensor, shape (width, edge_dim)
        Edge parts of the key and value maps.
    center, neighbor : LongTensor, shape (n_edges,)
    n_heads : int
        Heads; each owns ``width / n_heads`` consecutive channels.
    sqrt_dh : float

    Returns
    -------
    attn : Tensor, shape (n_edges, n_heads)
    msg : Tensor, shape (n_nodes, width)
    """

    @staticmethod
    def forward(ctx, q, k_node, v_node, s_node, e, w_k, w_v, center, neighbor, n_heads,
                sqrt_dh):
        n, width = q.shape
        H = n_heads
        chunk = max(64, _CHUNK_ELEMENTS // width)
        score = e.new_empty((e.shape[0], H))
        for lo in range(0, e.shape[0], chunk):
            c, nb, ec = center[lo:lo + chunk], neighbor[lo:lo + chunk], e[lo:lo + chunk]
            k = torch.addmm(k_node.index_select(0, nb), ec, w_k.t())
            k.mul_(q.index_select(0, c))
            score[lo:lo + chunk] = k.view(-1, H, width // H).sum(-1).add_(s_node[c])
        attn = scatter_softmax(score.div_(sqrt_dh), center, n)
        msg = q.new_zeros((n, width))
        for lo in range(0, e.shape[0], chunk):
            c, nb, ec = center[lo:lo + chunk], neighbor[lo:lo + chunk], e[lo:lo + chunk]
            v = torch.addmm(v_node.index_select(0, nb), ec, w_v.t())
            v.view(-1, H, width // H).mul_(attn[lo:lo + chunk, :, None])
            msg.index_add_(0, c, v)
        ctx.save_for_backward(q, k_node, v_node, e, w_k, w_v, center, neighbor, attn)
        ctx.sqrt_dh, ctx.chunk = sqrt_dh, chunk
        return attn, msg

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, g_attn, g_msg):
        q, k_node, v_node, e, w_k, w_v, center, neighbor, attn = ctx.saved_tensors
        (n, width), chunk, H = q.shape, ctx.chunk, attn.shape[1]
        g_a = torch.zeros_like(attn) if g_attn is None else g_attn.clone()
        g_v_node, g_w_v, g_e = torch.zeros_like(v_node), torch.zeros_like(w_v), torch.zeros_like(e)
        if g_msg is not None:
            for lo in range(0, e.shape[0], chunk):
                c, nb, ec = center[lo:lo + chunk], neighbor[lo:lo + chunk], e[lo:lo + chunk]
                g = g_msg.index_select(0, c)
                v = torch.addmm(v_node.index_select(0, nb), ec, w_v.t())
                g_a[lo:lo + chunk] += v.mul_(g).view(-1, H, width // H).sum(-1)
                g.view(-1, H, width // H).mul_(attn[lo:lo + chunk, :, None])  # d msg / d value
                g_v_node.index_add_(0, nb, g)
                g_w_v.addmm_(g.t(), ec)
                g_e[lo:lo + chunk].addmm_(g, w_v)
        # softmax: d score = attn * (g_a - sum_j attn_j g_a_j), per centre and head
        g_s = attn * (g_a - scatter_sum(attn * g_a, center, n).index_select(0, center))
        g_s.div_(ctx.sqrt_dh)
        g_s_node = scatter_sum(g_s, center, n)
        g_q, g_k_node, g_w_k = torch.zeros_like(q), torch.zeros_like(k_node), torch.zeros_like(w_k)
        for lo in range(0, e.shape[0], chunk):
            c, nb, ec = center[lo:lo + chunk], neighbor[lo:lo + chunk], e[lo:lo + chunk]
            gs = g_s[lo:lo + chunk, :, None]
            k = torch.addmm(k_node.index_select(0, nb), ec, w_k.t())
            k.view(-1, H, width // H).mul_(gs)
            g_q.index_add_(0, c, k)
            g = q.index_select(0, c)
            g.view(-1, H, width // H).mul_(gs)  # d score / d key
            g_k_node.index_add_(0, nb, g)
            g_w_k.addmm_(g.t(), ec)
            g_e[lo:lo + chunk].addmm_(g, w_k)
        return g_q, g_k_node, g_v_node, g_s_node, g_e, g_w_k, g_w_v, None, None, None, None


class _BNFFN(nn.Module):
    """``BN(W_2 GELU(W_1 x + b_1) + b_2)`` (Eqs. 8-9 without the residual)."""

    def __init__(self, dim, hidden):
        super().__init__()
        self.lin1 = nn.Linear(dim, hidden)
        self.lin2 = nn.Linear(hidden, dim)
        self.bn = BatchNorm(dim)

    def forward(self, x):
        return self.bn(self.lin2(F.gelu(self.lin1(x))))


def _size_buckets(n_per_graph, min_size=8):
    """Padded length of each crystal: the next power of two >= its atom count.

    Crystals are attended in buckets of equal padded length, so the
    attention memory is at most 4 x sum(n_g^2) (plus ``min_size^2`` per
    small crystal) instead of n_graphs x max(n_g)^2 (pad to the largest)
    or (sum n_g)^2 (one batch-wide masked attention).
    """
    n = n_per_graph.clamp(min=1).to(torch.float64)
    return torch.clamp(2 ** torch.ceil(torch.log2(n)), min=min_size).to(torch.long)


def graph_wise_attention(q, k, v, node_graph, n_per_graph, bucket_min=8):
    """Multi-head self-attention among the atoms of each crystal, batched.

    Nodes are scattered into dense ``(b, P, H, d)`` blocks, one per size
    bucket (see :func:`_size_buckets`; at most ~log2(largest crystal)
    buckets, so the Python loop is over buckets, never over crystals or
    atoms), padded positions are masked out as keys, and
    :func:`torch.nn.functional.scaled_dot_product_attention` does the rest.
    Atoms never attend to atoms of another crystal.

    Parameters
    ----------
    q, k, v : Tensor, shape (n_nodes, n_heads, head_dim)
    node_graph : LongTensor, shape (n_nodes,)
        Crystal of each node; nodes of a crystal are contiguous (as
        :func:`~skcrystal.graphs.collate_graphs` makes them).
    n_per_graph : LongTensor, shape (n_graphs,)

    Returns
    -------
    Tensor, shape (n_nodes, n_heads, head_dim)
    """
    n_nodes, H, dh = q.shape
    device = q.device
    start = torch.zeros_like(n_per_graph)
    start[1:] = torch.cumsum(n_per_graph, 0)[:-1]
    pos = torch.arange(n_nodes, device=device) - start.index_select(0, node_graph)
    padded = _size_buckets(n_per_graph, bucket_min)
    node_pad = padded.index_select(0, node_graph)
    out = q.new_zeros(q.shape)
    for P in torch.unique(padded).tolist():
        graphs = torch.nonzero(padded == P).flatten()
        rank = torch.full_like(n_per_graph, -1)
        rank[graphs] = torch.arange(graphs.numel(), device=device)
        nodes = torch.nonzero(node_pad == P).flatten()
        row, col = rank.index_select(0, node_graph.index_select(0, nodes)), pos[nodes]
        b = graphs.numel()
        dense = q.new_zeros((3, b, P, H, dh))
        dense[:, row, col] = torch.stack([q[nodes], k[nodes], v[nodes]])
        valid = torch.arange(P, device=device) < n_per_graph[graphs].unsqueeze(1)
        qd, kd, vd = dense.transpose(2, 3).unbind(0)  # (b, H, P, dh)
        o = F.scaled_dot_product_attention(qd, kd, vd,
                                           attn_mask=valid[:, None, None, :])
        out[nodes] = o.transpose(1, 2)[row, col]
    return out


class GwTLayer(nn.Module):
    """Graph-wise transformer layer, paper Eqs. 12-15.

    ``H = X + LN(W_o MHA(X))``, ``X' = H + LN(W_2 GELU(W_1 H))``, where the
    multi-head self-attention runs over all atoms of each crystal
    (:func:`graph_wise_attention`). Positional encodings and summed edge
    features (Eq. 11) are added once by :class:`CrysToGraph` before the
    first GwT layer.

    Parameters
    ----------
    dim : int
        Atom feature length.
    n_heads, head_dim : int
        Attention heads and their width.
    ffn_mult : int
        FFN hidden width as a multiple of ``dim`` (the reference's 2).

    Shapes
    ------
    x (n_nodes, dim), node_graph (n_nodes,), n_per_graph (n_graphs,)
    -> (n_nodes, dim)
    """

    def __init__(self, dim, n_heads=8, head_dim=32, ffn_mult=2):
        super().__init__()
        self.n_heads, self.head_dim = n_heads, head_dim
        d = n_heads * head_dim
        self.qkv = nn.Linear(dim, 3 * d)
        self.out = nn.Linear(d, dim)
        self.ln1 = nn.LayerNorm(dim)
        self.ffn = nn.Sequential(nn.Linear(dim, ffn_mult * dim), nn.GELU(),
                                 nn.Linear(ffn_mult * dim, dim))
        self.ln2 = nn.LayerNorm(dim)

    def forward(self, x, node_graph, n_per_graph):
        q, k, v = self.qkv(x).view(x.shape[0], 3, self.n_heads, self.head_dim).unbind(1)
        a = graph_wise_attention(q, k, v, node_graph, n_per_graph)
        h = x + self.ln1(self.out(a.reshape(x.shape[0], -1)))
        return h + self.ln2(self.ffn(h))


class CrysToGraph(CrystalModel):
    """CrysToGraph: eTGC blocks, GwT layers, mean pooling, LayerNorm, Softplus MLP.

    Defaults follow Table A1 of the paper and the reference code (see the
    module docstring): 3 eTGC blocks, 1 GwT layer, atoms 256 wide, bonds
    76, angles 30, 8 heads of 32 on the atom graph and of 24 on the line
    graph, FFN widths 4x (eTGC) and 2x (GwT), one hidden FFNN layer, the
    line graph of §2.1.3; 12 nearest neighbours come from the estimator's
    graph parameters.

    Edge features
    -------------
    ``edge_features="distance"`` (default): Gaussian expansion of the bond
    length plus a flag for bonds longer than ``long_bond`` (8 Å). Together
    with the bond-angle cosines of the line graph and the positional
    encodings (functions of connectivity only), every input is invariant
    to rotations of the crystal, so predictions are too.
    ``edge_features="spherical"`` reproduces the paper: the bond vector in
    spherical coordinates (r, theta, phi), each expanded in Gaussians, plus
    the flag. theta and phi are measured in the Cartesian frame of the
    given cell, so the same crystal rotated (or written with another
    lattice setting) gives other features and other predictions; use it to
    reproduce published numbers, or with rotation augmentation.

    Positional encodings and invariance
    -----------------------------------
    The encodings are functions of the finite (quotient) graph of the given
    cell, so, unlike the other skcrystal models, predictions with them are
    not exactly invariant to the choice of supercell (a 2x2x2 supercell has
    other Laplacian eigenvectors, and a random walk that reaches a periodic
    image of its start counts as a return only in the smaller cell), and
    Laplacian eigenvectors of repeated eigenvalues make them depend
    slightly on atom order (measured: ~1e-4 relative on perovskites).
    ``positional_encoding="none"`` restores exact permutation and supercell
    invariance; rotation invariance holds either way.

    Parameters
    ----------
    n_outputs : int
        Targets or classes (set by the estimator).
    atom_features, extra_atom_features
        See :class:`~skcrystal.nn.embedding.AtomEmbedding`; pretrained
        element embeddings (:func:`skcrystal.pretrain.pretrain_atom_embeddings`)
        go in ``extra_atom_features``.
    hidden : int
        Atom feature width (256).
    edge_dim, angle_dim : int
        Bond and bond-angle feature widths (the reference's 76 and 30).
    n_heads, head_dim : int
        Attention heads and width per head of the atom-graph eTGC and the
        GwT (8, 32).
    lg_n_heads, lg_head_dim : int
        Attention heads and width per head of the line-graph eTGC (8, 24).
    etgc_ffn_mult, gwt_ffn_mult : int
        FFN hidden widths as multiples of the stream widths (4 and 2).
    n_etgc : int
        eTGC blocks (each: line-graph layer, then atom-graph layer).
    n_gwt : int
        GwT layers (0 disables the graph-wise transformer).
    n_ffnn : int
        Hidden layers of the readout MLP.
    use_line_graph : bool
        False drops the line-graph layers (ablation "w/o line graph").
    lg_convention : {"alignn", "shared_center"}
        Line-graph pairs (see the module docstring; ``"alignn"`` is the
        paper's §2.1.3 and the reference's).
    positional_encoding : {"lap+rw", "lap", "rw", "none"}
        Encodings added before the GwT layers (ablation Fig. A9).
    n_eigvec, n_rw : int
        Laplacian eigenvectors and random-walk steps (20, 20).
    edge_features : {"distance", "spherical"}
        See above.
    n_basis : int
        Gaussians per expanded quantity (distance 0-``cutoff`` Å, angles
        over their range, bond-angle cosine -1..1).
    cutoff, long_bond : float
        Last distance centre (the estimator sets it to its graph
        ``radius``) and the long-bond flag threshold, Å.
    max_triplets : int or None
        Largest line graph (bond pairs) of one structure; a larger one
        raises naming the structure (see :mod:`skcrystal.graphs.line_graph`).
    n_descriptors : int
        Descriptor length for hybrid models (set by the estimator).
    dropout : float
        Dropout in the readout MLP.
    """

    #: measured training memory (25 KB per angle pair at the default widths and depth,
    #: benchmarks/bench_training_memory.py; see CrystalModel.training_memory)
    _training_memory = {"edge": 0, "angle": 25_400, "at": {"hidden": 256, "n_etgc": 3}}

    _parameter_constraints = {
        **COMMON_CONSTRAINTS,
        **{name: [Interval(numbers.Integral, 1, None, closed="left")]
           for name in ("hidden", "n_heads", "head_dim", "n_basis", "edge_dim",
                        "angle_dim", "lg_n_heads", "lg_head_dim", "etgc_ffn_mult",
                        "gwt_ffn_mult")},
        **{name: [Interval(numbers.Integral, 0, None, closed="left")]
           for name in ("n_etgc", "n_gwt", "n_ffnn", "n_eigvec", "n_rw")},
        "use_line_graph": ["boolean"],
        "lg_convention": [StrOptions(set(CONVENTIONS))],
        "positional_encoding": [StrOptions(set(POSITIONAL_ENCODINGS))],
        "edge_features": [StrOptions(set(EDGE_FEATURES))],
        "long_bond": [Interval(numbers.Real, 0, None, closed="neither")],
        "max_triplets": [Interval(numbers.Integral, 1, None, closed="left"), None],
    }

    def __init__(self, n_outputs=1, atom_features="cgcnn", extra_atom_features=None,
                 hidden=256, edge_dim=76, angle_dim=30, n_heads=8, head_dim=32,
                 lg_n_heads=8, lg_head_dim=24, etgc_ffn_mult=4, gwt_ffn_mult=2, n_etgc=3,
                 n_gwt=1, n_ffnn=1, use_line_graph=True, lg_convention="alignn",
                 positional_encoding="lap+rw",
                 n_eigvec=20, n_rw=20, edge_features="distance", n_basis=40,
                 cutoff=8.0, long_bond=8.0, max_triplets=DEFAULT_MAX_TRIPLETS,
                 n_descriptors=0, dropout=0.0):
        super().__init__()
        self.max_triplets = max_triplets
        self.n_gwt = int(n_gwt)
        self.edge_features = edge_features
        self.use_line_graph = bool(use_line_graph) and n_etgc > 0
        self.positional_encoding = positional_encoding
        self.n_eigvec, self.n_rw = int(n_eigvec), int(n_rw)
        self.long_bond = float(long_bond)
        self.lg_convention = lg_convention

        self.embedding = AtomEmbedding(hidden, atom_features, extra_atom_features)
        self.rbf_dist = GaussianExpansion(0.0, cutoff, n_centers=n_basis)
        n_edge_in = n_basis + 1
        if edge_features == "spherical":
            self.rbf_theta = GaussianExpansion(0.0, math.pi, n_centers=n_basis)
            self.rbf_phi = GaussianExpansion(-math.pi, math.pi, n_centers=n_basis)
            n_edge_in += 2 * n_basis
        self.edge_in = nn.Linear(n_edge_in, edge_dim)
        if self.use_line_graph:
            self.rbf_angle = GaussianExpansion(-1.0, 1.0, n_centers=n_basis)
            self.angle_in = nn.Linear(n_basis, angle_dim)
        # line graph: bonds are its nodes (edge_dim), angles its edges (angle_dim)
        self.lg_layers = nn.ModuleList(
            ETGCLayer(edge_dim, angle_dim, lg_n_heads, lg_head_dim, etgc_ffn_mult)
            for _ in range(n_etgc if self.use_line_graph else 0))
        self.atom_layers = nn.ModuleList(
            ETGCLayer(hidden, edge_dim, n_heads, head_dim, etgc_ffn_mult)
            for _ in range(n_etgc))
        self.n_pe = (self.n_eigvec if "lap" in positional_encoding else 0) + \
            (self.n_rw if "rw" in positional_encoding else 0)
        if n_gwt:
            self.pe_in = nn.Linear(self.n_pe, hidden, bias=False) if self.n_pe else None
            self.gwt_edge = nn.Linear(edge_dim, hidden, bias=False)
        self.gwt_layers = nn.ModuleList(
            GwTLayer(hidden, n_heads, head_dim, gwt_ffn_mult) for _ in range(n_gwt))
        self.norm = nn.LayerNorm(hidden)
        self.head = ReadoutHead(hidden, n_outputs, (hidden,) * n_ffnn, act="softplus",
                                n_descriptors=n_descriptors, dropout=dropout)

    @property
    def graph_extras(self):
        """The line graph when eTGC uses it; encodings when the GwT uses them."""
        extras = []
        if self.use_line_graph:
            extras.append(line_graph_extra(self.max_triplets, convention=self.lg_convention))
        if self.n_gwt and self.n_pe:
            extras.append(positional_extra(self.n_eigvec, self.n_rw))
        return tuple(extras)

    # ----------------------------------------------------------------- inputs
    def edge_inputs(self, batch):
        """Initial edge features before the projection, shape (n_edges, n_in)."""
        d = batch.distances
        parts = [self.rbf_dist(d), (d > self.long_bond).to(d.dtype).unsqueeze(1)]
        if self.edge_features == "spherical":
            v = batch.vectors
            theta = torch.acos(torch.clamp(v[:, 2] / d.clamp_min(1e-8), -1.0, 1.0))
            phi = torch.atan2(v[:, 1], v[:, 0])
            parts += [self.rbf_theta(theta), self.rbf_phi(phi)]
        return torch.cat(parts, dim=1)

    def positional_inputs(self, batch):
        """Positional encodings of the atoms, shape (n_nodes, n_pe).

        In training mode the sign of every Laplacian eigenvector of every
        crystal is flipped at random (the sign is arbitrary).
        """
        parts = []
        if "lap" in self.positional_encoding and self.n_eigvec:
            lap = _need(batch, "pe_lap")[:, :self.n_eigvec]
            if self.training:
                flips = torch.randint(0, 2, (batch.n_graphs, lap.shape[1]),
                                      device=lap.device).to(lap.dtype) * 2 - 1
                lap = lap * flips.index_select(0, batch.node_graph)
            parts.append(lap)
        if "rw" in self.positional_encoding and self.n_rw:
            parts.append(_need(batch, "pe_rw")[:, :self.n_rw])
        return torch.cat(parts, dim=1)

    # ----------------------------------------------------------------- model
    def atom_features(self, batch):
        """Atom vectors after eTGC and GwT, shape (n_nodes, hidden)."""
        x = self.embedding(batch.atomic_numbers)
        e = self.edge_in(self.edge_inputs(batch))
        if self.use_line_graph:
            index, cos = (("lg_index", "lg_cos") if self.lg_convention == "shared_center"
                          else ("lg_alignn_index", "lg_alignn_cos"))
            # column 0 the receiving bond, column 1 the sending one, in both conventions
            lg_index = _need(batch, index).t()
            t = self.angle_in(self.rbf_angle(_need(batch, cos)))
        last = len(self.atom_layers) - 1
        for i, atom_layer in enumerate(self.atom_layers):
            # the last block's angle update is never read, nor its bond update without
            # GwT (Eq. 11 reads the bonds): skip them (None)
            if self.use_line_graph:
                # line graph: bonds are its nodes, bond pairs its edges
                e, t = self.lg_layers[i](e, t, lg_index, update_edges=i < last)
            x, e = atom_layer(x, e, batch.edge_index,
                              update_edges=i < last or bool(len(self.gwt_layers)))
        if len(self.gwt_layers):
            # Eq. 11: positional encodings and summed incoming edge features
            x = x + scatter_sum(self.gwt_edge(e), batch.center, x.shape[0])
            if self.pe_in is not None:
                x = x + self.pe_in(self.positional_inputs(batch))
            for layer in self.gwt_layers:
                x = layer(x, batch.node_graph, batch.n_nodes_per_graph)
        return x

    def embed(self, batch):
        """Layer-normalised mean of the atom vectors, shape (n_graphs, hidden)."""
        return self.norm(pool(self.atom_features(batch), batch.node_graph,
                              batch.n_graphs, "mean"))


def _need(batch, name):
    try:
        return batch.extras[name]
    except KeyError:
        raise ValueError(
            f"the batch has no graph extra {name!r}; collate the graphs with "
            "extras=model.graph_extras (the estimator does this)") from None
