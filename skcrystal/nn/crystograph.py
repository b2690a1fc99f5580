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
from torch import nn
from torch.nn import functional as F

from ..graphs.line_graph import CONVENTIONS, DEFAULT_MAX_TRIPLETS, line_graph_extra
from ..graphs.positional import positional_extra
from ._constraints import Interval, StrOptions
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
    * on the line graph (``blocks``, see :func:`_pair_blocks`) it runs
      instead as dense products over padded per-atom blocks (all bonds
      into an atom x all bonds out of it), with the edge parts taken
      through the edge features (:func:`_block_attention`), and Eq. 7's
      projection and the edge FFN run in chunks of edges
      (:class:`_EdgeProjection`, :class:`_ChunkedFFN`);
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

    def attention(self, x, e, edge_index, edge_output=True, blocks=None):
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
        blocks : PairBlocks, optional
            The block structure of ``edge_index`` (:func:`_pair_blocks`; the
            line graph's); the per-edge core then runs as dense per-block
            products (:func:`_block_attention`). The outputs are the same.

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
        q, kc_k, kc_v, kn = self._node_projections(x).split([d, d, d, 2 * d], dim=1)
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
        if blocks is None:
            kn_k, kn_v = kn.split(d, dim=1)
            attn, msg = _EdgeAttention.apply(q, kn_k, kn_v, s_node, e, wk_e, wv_e, center,
                                             neighbor, H, math.sqrt(dh))
            weight = scatter_sum(attn, center, n) @ heads.t()  # 1, or 0 without incoming edges
        else:
            attn, msg = _block_attention(q, kn, s_node, e, wk_e, wv_e, blocks, H)
            # the attention sum is 1 or 0 whatever the scores (its gradient is 0)
            weight = blocks.has_edges.to(q.dtype).unsqueeze(1)
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

    def forward(self, x, e, edge_index, update_edges=True, blocks=None):
        """Updated node and edge features (Eqs. 6-9).

        ``update_edges=False`` (the edges' update is not used downstream)
        returns None for the edges and skips their update, unless the
        reference switch is on. ``blocks``: see :meth:`attention`.
        """
        if _REFERENCE:
            _, h_x, h_e = self._attention_reference(x, e, edge_index)
            edge_in = self.out_edge(h_e)
        else:
            attn, h_x, _ = self.attention(x, e, edge_index, edge_output=False, blocks=blocks)
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
        multiply-adds and narrower per-edge tensors than ``h_e``; it runs
        in chunks of edges (:class:`_EdgeProjection`).
        """
        H, dh = self.n_heads, self.head_dim
        d, de = H * dh, e.shape[1]
        if H * de * (de + 2) >= d * (2 * de + 3):
            return self.out_edge((attn @ _head_matrix(H, dh, e).t()) * self.e_proj(e))
        w_out = self.out_edge.weight.view(de, H, dh)
        w_in = self.e_proj.weight.view(H, dh, de)
        m = torch.einsum("ohk,hki->hio", w_out, w_in).reshape(H * de, de)
        b = torch.einsum("ohk,hk->ho", w_out, self.e_proj.bias.view(H, dh))
        return _EdgeProjection.apply(e, attn, m, b) + self.out_edge.bias


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


class _EdgeProjection(torch.autograd.Function):
    """``out = sum_h a^h (M_h e + m_h)`` per edge (Eq. 7's ``W_oe h_e``), in chunks of edges.

    Evaluated as ``(a (x) e) @ M + a @ m`` with ``a (x) e`` the per-edge
    outer product (n_heads x edge_dim), which exists one cache-sized chunk
    at a time and is recomputed in the backward pass: evaluated whole it
    was several (n_edges, n_heads * edge_dim) tensors written to and read
    from memory, the line-graph layer's largest cost after the attention.

    Parameters (of ``apply``)
    -------------------------
    e : Tensor, shape (n_edges, edge_dim)
    attn : Tensor, shape (n_edges, n_heads)
    m : Tensor, shape (n_heads * edge_dim, out_dim)
        Row ``h * edge_dim + i`` is column ``i`` of ``M_h``.
    b : Tensor, shape (n_heads, out_dim)
        ``m_h`` per head.

    Returns
    -------
    Tensor, shape (n_edges, out_dim)
    """

    @staticmethod
    def forward(ctx, e, attn, m, b):
        (n, de), H = e.shape, attn.shape[1]
        chunk = max(64, _CHUNK_ELEMENTS // (H * de))
        out = torch.mm(attn, b)
        outer = e.new_empty((min(chunk, n), H, de))  # one buffer for every chunk
        for lo in range(0, n, chunk):
            a, ec = attn[lo:lo + chunk], e[lo:lo + chunk]
            o = torch.mul(a.unsqueeze(2), ec.unsqueeze(1), out=outer[:a.shape[0]])
            out[lo:lo + chunk].addmm_(o.view(-1, H * de), m)
        ctx.save_for_backward(e, attn, m, b)
        ctx.chunk = chunk
        return out

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, g):
        e, attn, m, b = ctx.saved_tensors
        (n, de), H, chunk = e.shape, attn.shape[1], ctx.chunk
        g_e, g_m = torch.empty_like(e), torch.zeros_like(m)
        g_attn = torch.mm(g, b.t())
        outer, g_outer, prod = (e.new_empty((min(chunk, n), H, de)) for _ in range(3))
        for lo in range(0, n, chunk):
            a, ec, gc = attn[lo:lo + chunk], e[lo:lo + chunk], g[lo:lo + chunk]
            rows = a.shape[0]
            o = torch.mul(a.unsqueeze(2), ec.unsqueeze(1), out=outer[:rows])
            g_m.addmm_(o.view(-1, H * de).t(), gc)
            go = torch.mm(gc, m.t(), out=g_outer[:rows].view(rows, H * de)).view(rows, H, de)
            g_attn[lo:lo + chunk] += torch.bmm(go, ec.unsqueeze(2)).squeeze(2)
            torch.mul(go, a.unsqueeze(2), out=prod[:rows])
            torch.sum(prod[:rows], 1, out=g_e[lo:lo + chunk])
        return g_e, g_attn, g_m, attn.t() @ g


class _PairBlocks:
    """Block structure of a graph's edges (built by :func:`_pair_blocks`).

    Blocks are padded to a few sizes (buckets); bucket after bucket, each
    block holds ``rows`` receivers and ``cols`` senders, and its padded
    edge positions are (receiver, sender) row-major.

    Attributes
    ----------
    sizes : list of (int, int, int)
        ``(n_blocks, rows, cols)`` per bucket.
    row_node, col_node : LongTensor, shape (n_rows,), (n_cols,)
        The node of each padded receiver row and sender column (padding:
        node 0, masked or never read).
    missing : list of BoolTensor, shape (n_blocks, rows, 1, cols)
        Per bucket: True where a real receiver has no edge from the
        column's sender (padded columns, pairs absent from the graph).
    edge_position : LongTensor, shape (n_edges,)
        Each edge's padded position.
    node_row : LongTensor, shape (n_nodes,)
        Each node's padded receiver row; ``n_rows`` (one past the last) for
        nodes without incoming edges.
    n_positions, n_rows : int
    pad_rows : LongTensor
        The padded rows without a receiver, and ``n_rows``.
    has_edges : BoolTensor, shape (n_nodes,)
        Nodes with incoming edges.
    """

    def __init__(self, sizes, row_node, col_node, missing, edge_position, node_row,
                 n_positions, pad_rows):
        self.sizes, self.row_node, self.col_node = sizes, row_node, col_node
        self.pad_rows = pad_rows
        self.missing, self.edge_position, self.node_row = missing, edge_position, node_row
        self.n_positions, self.n_rows = n_positions, row_node.shape[0]
        self.has_edges = node_row < self.n_rows


def _size_class(n):
    """Padded-size class of block sizes ``n`` (>= 1): 1, 2, 3, 4, 6, 8, 12, 16, 24, ...

    Consecutive classes differ by at most 1.5x, so padding a block to the
    largest of its class wastes at most a third of it, with two classes per
    doubling of the size (few buckets, each one Python-level pass).
    """
    p = torch.pow(2, torch.floor(torch.log2(n.to(torch.float64)))).to(torch.long)
    return torch.where(n == p, p, torch.where(2 * n <= 3 * p, (3 * p + 1) // 2, 2 * p))


#: Fewest padded senders per block: torch's CPU softmax over a last dimension shorter
#: than one AVX-512 vector of floats (16) takes a scalar path ~15x slower per element.
_MIN_COLS = 16


def _pair_blocks(edge_index, block, n_nodes):
    """Group a graph's edges into dense blocks: the receivers of a block x its senders.

    A line graph is block-structured: the bonds into an atom send to the
    bonds out of it (or, in the shared-centre convention, to the other
    bonds at that atom), so an atom's pairs are all, or all but the
    diagonal, of (its receiving bonds) x (its sending bonds). Laid out as
    padded dense blocks, :class:`ETGCLayer`'s attention is batched matrix
    products per block instead of gathers of wide rows per pair
    (:func:`_block_attention`); positions without an edge are masked.
    Blocks are bucketed by the size class of their receiver count
    (:func:`_size_class`), each bucket padded to its largest block.

    Parameters
    ----------
    edge_index : LongTensor, shape (2, n_edges)
        Row 0 the receiving node, row 1 the sending node.
    block : LongTensor, shape (n_edges,)
        Block of each edge (for a line graph: the atom where its two bonds
        meet). All edges into one node must be in one block.
    n_nodes : int

    Returns
    -------
    _PairBlocks

    Raises
    ------
    ValueError
        If a node receives edges in two blocks or an edge is repeated.
    """
    recv, send = edge_index[0], edge_index[1]
    device, n_edges = recv.device, recv.shape[0]
    empty = recv.new_zeros(0)
    if n_edges == 0:
        return _PairBlocks([], empty, empty, [], empty, recv.new_zeros(n_nodes), 0,
                           recv.new_zeros(1))
    n_blocks = int(block.max()) + 1
    node_block = torch.full((n_nodes,), -1, dtype=torch.long, device=device)
    node_block.scatter_(0, recv, block)
    if bool((node_block.index_select(0, recv) != block).any()):
        raise ValueError("a node receives edges in more than one block")
    arange = torch.arange(max(n_nodes, n_edges), device=device)

    # rows: the receivers of each block (in node order); columns: its distinct senders
    receivers = torch.nonzero(node_block >= 0).flatten()
    r_block, order = torch.sort(node_block.index_select(0, receivers), stable=True)
    receivers = receivers.index_select(0, order)
    n_rows = torch.bincount(r_block, minlength=n_blocks)
    row = arange[:receivers.shape[0]] - (torch.cumsum(n_rows, 0) - n_rows).index_select(0, r_block)
    senders, edge_col = torch.unique(block * n_nodes + send, return_inverse=True)
    s_block, senders = senders // n_nodes, senders % n_nodes
    n_cols = torch.bincount(s_block, minlength=n_blocks)
    col = arange[:senders.shape[0]] - (torch.cumsum(n_cols, 0) - n_cols).index_select(0, s_block)
    edge_col = col.index_select(0, edge_col)

    used = torch.nonzero(n_rows).flatten()
    size = _size_class(n_rows.index_select(0, used))
    cols_pad, row_start, col_start, pos_start = (
        torch.zeros(n_blocks, dtype=torch.long, device=device) for _ in range(4))
    sizes, n_pos, n_row, n_col = [], 0, 0, 0
    for c in torch.unique(size).tolist():  # a handful of size classes
        members = used[size == c]
        nb = members.shape[0]
        R = int(n_rows.index_select(0, members).max())
        C = max(int(n_cols.index_select(0, members).max()), _MIN_COLS)
        k = arange[:nb]
        cols_pad[members] = C
        row_start[members], col_start[members] = n_row + k * R, n_col + k * C
        pos_start[members] = n_pos + k * R * C
        sizes.append((nb, R, C))
        n_pos, n_row, n_col = n_pos + nb * R * C, n_row + nb * R, n_col + nb * C

    node_row = torch.full((n_nodes,), n_row, dtype=torch.long, device=device)
    node_row[receivers] = row_start.index_select(0, r_block) + row
    edge_row = node_row.index_select(0, recv) - row_start.index_select(0, block)
    edge_position = (pos_start.index_select(0, block)
                     + edge_row * cols_pad.index_select(0, block) + edge_col)
    count = torch.zeros(n_pos, dtype=torch.long, device=device)
    count.index_add_(0, edge_position, torch.ones_like(edge_position))
    if int(count.max()) > 1:
        raise ValueError("an edge is repeated")
    row_node = torch.zeros(n_row, dtype=torch.long, device=device)
    row_node[node_row[receivers]] = receivers
    real_row = torch.zeros(n_row + 1, dtype=torch.bool, device=device)
    real_row[node_row[receivers]] = True
    pad_rows = torch.nonzero(~real_row).flatten()
    col_node = torch.zeros(n_col, dtype=torch.long, device=device)
    col_node[col_start.index_select(0, s_block) + col] = senders
    missing = [(c == 0).view(nb, R, 1, C) & r.view(nb, R, 1, 1) for (nb, R, C), c, r in zip(
        sizes, count.split([nb * R * C for nb, R, C in sizes]),
        real_row[:n_row].split([nb * R for nb, R, _ in sizes]))]
    return _PairBlocks(sizes, row_node, col_node, missing, edge_position, node_row, n_pos,
                       pad_rows)


def _block_attention(q, kv_node, s_node, e, w_k, w_v, blocks, n_heads):
    """The per-edge part of :meth:`ETGCLayer.attention` on a block-structured graph.

    The same function as :class:`_EdgeAttention` (``score_ji = (s_i + q_i .
    (kn_j + W_k e_ji)) / sqrt(d_h)``, ``attn = softmax_j(score)``, ``msg_i
    = sum_j attn_ji (vn_j + W_v e_ji)``, per head), evaluated per padded
    block (:func:`_pair_blocks`):

    * ``q_i . kn_j`` of a block is one (receivers x d_h) @ (d_h x senders)
      product per head, and ``sum_j attn_ji vn_j`` one (receivers x
      senders) @ (senders x d_h): node rows are gathered once per block,
      not once per edge;
    * the edge parts go through the edge features, not their projections:
      ``q_i . W_k e_ji = (W_k^T q_i) . e_ji`` (``W_k^T q_i`` per node and
      head, edge_dim wide) and ``sum_j attn_ji W_v e_ji = W_v sum_j
      attn_ji e_ji``, so per edge and head it is an edge_dim-long dot
      product and sum, not an edge_dim x head_dim projection;
    * the softmax is dense over each receiver's row, absent pairs masked.

    Parameters
    ----------
    q : Tensor, shape (n_nodes, width)
    kv_node : Tensor, shape (n_nodes, 2 * width)
        Neighbour key and value parts side by side.
    s_node : Tensor, shape (n_nodes, n_heads)
    e : Tensor, shape (n_edges, edge_dim)
    w_k, w_v : Tensor, shape (width, edge_dim)
    blocks : _PairBlocks
    n_heads : int

    Returns
    -------
    attn : Tensor, shape (n_edges, n_heads)
    msg : Tensor, shape (n_nodes, width)
    """
    n, width = q.shape
    H, de = n_heads, e.shape[1]
    dh = width // H
    if not blocks.sizes:
        return q.new_zeros((0, H)), q.new_zeros((n, width))
    u = torch.einsum("nhd,hdc->nhc", q.view(n, H, dh), w_k.view(H, dh, de))
    attn, m_node, m_edge = _BlockCore.apply(q, u.reshape(n, H * de), s_node, kv_node, e,
                                            blocks, 1.0 / math.sqrt(dh))
    m_edge = torch.einsum("nhc,hdc->nhd", m_edge.view(n, H, de), w_v.view(H, dh, de))
    return attn, m_node + m_edge.reshape(n, width)


def _bucket_slices(sizes):
    """Per bucket: its slices of the padded receiver rows, sender columns and positions."""
    r = c = p = 0
    for nb, R, C in sizes:
        yield slice(r, r + nb * R), slice(c, c + nb * C), slice(p, p + nb * R * C)
        r, c, p = r + nb * R, c + nb * C, p + nb * R * C


class _BlockCore(torch.autograd.Function):
    """Attention and messages of :func:`_block_attention`, bucket by bucket.

    A hand-written backward pass: autograd over the per-bucket products
    zero-filled, split and concatenated (n_nodes, width)-sized gradients
    once per bucket and operation, as much traffic as the products; here
    every gradient goes straight into one buffer.

    Parameters (of ``apply``)
    -------------------------
    q : Tensor, shape (n_nodes, width)
    u : Tensor, shape (n_nodes, n_heads * edge_dim)
        ``W_k^T q`` per head.
    s : Tensor, shape (n_nodes, n_heads)
    kv : Tensor, shape (n_nodes, 2 * width)
    e : Tensor, shape (n_edges, edge_dim)
    blocks : _PairBlocks
    scale : float
        ``1 / sqrt(head_dim)``.

    Returns
    -------
    attn : Tensor, shape (n_edges, n_heads)
    m_node : Tensor, shape (n_nodes, width)
        ``sum_j attn_ji vn_j``.
    m_edge : Tensor, shape (n_nodes, n_heads * edge_dim)
        ``sum_j attn_ji e_ji`` per head.
    """

    @staticmethod
    def forward(ctx, q, u, s, kv, e, blocks, scale):
        (n, width), H, de = q.shape, s.shape[1], e.shape[1]
        dh = width // H
        qr, ur, sr = (t.index_select(0, blocks.row_node) for t in (q, u, s))
        kvc = kv.index_select(0, blocks.col_node)
        e_pad = e.new_zeros((blocks.n_positions, de))
        e_pad[blocks.edge_position] = e
        a_pad = e.new_empty((blocks.n_positions * H,))  # per bucket (nb, R, H, C)
        # padded receiver rows; the last one is read by the nodes without edges
        rows_n = q.new_empty((blocks.n_rows + 1, width))
        rows_e = q.new_empty((blocks.n_rows + 1, H * de))
        rows_n[blocks.pad_rows], rows_e[blocks.pad_rows] = 0, 0
        attn = []
        for (nb, R, C), (rs, cs, ps), missing in zip(
                blocks.sizes, _bucket_slices(blocks.sizes), blocks.missing):
            q_b = qr[rs].view(nb, R, H, dh).transpose(1, 2)
            k_b, v_b = kvc[cs].view(nb, C, 2, H, dh).permute(2, 0, 3, 1, 4)  # (nb, H, C, dh)
            e_b = e_pad[ps].view(nb * R, C, de)
            a = torch.bmm(ur[rs].view(nb * R, H, de), e_b.transpose(1, 2)).view(nb, R, H, C)
            a += torch.matmul(q_b, k_b.transpose(2, 3)).transpose(1, 2)
            a.add_(sr[rs].view(nb, R, H, 1)).mul_(scale).masked_fill_(missing, float("-inf"))
            a = torch.softmax(a, dim=-1, out=a_pad[ps.start * H:ps.stop * H].view(nb, R, H, C))
            rows_n[rs].view(nb, R, H, dh).copy_(torch.matmul(a.transpose(1, 2), v_b)
                                                .transpose(1, 2))
            torch.bmm(a.view(nb * R, H, C), e_b, out=rows_e[rs].view(nb * R, H, de))
            attn.append(a.transpose(2, 3).reshape(nb * R * C, H))
        attn = torch.cat(attn)  # (position, head), bucket after bucket
        ctx.save_for_backward(qr, ur, kvc, e_pad, a_pad)
        ctx.blocks, ctx.scale, ctx.n = blocks, scale, n
        return (attn.index_select(0, blocks.edge_position),
                rows_n.index_select(0, blocks.node_row), rows_e.index_select(0, blocks.node_row))

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, g_attn, g_node, g_edge):
        qr, ur, kvc, e_pad, a_pad = ctx.saved_tensors
        blocks, n = ctx.blocks, ctx.n
        width, de = qr.shape[1], e_pad.shape[1]
        H = ur.shape[1] // de
        dh = width // H
        # gradients of the padded rows: only real receivers' rows were read
        g_rows_n = g_node.new_zeros((blocks.n_rows + 1, width)).index_add_(
            0, blocks.node_row, g_node)
        g_rows_e = g_edge.new_zeros((blocks.n_rows + 1, H * de)).index_add_(
            0, blocks.node_row, g_edge)
        g_a_pos = g_attn.new_zeros((blocks.n_positions, H))
        g_a_pos[blocks.edge_position] = g_attn
        g_qr, g_ur, g_kvc = torch.empty_like(qr), torch.empty_like(ur), torch.empty_like(kvc)
        g_sr = qr.new_empty((qr.shape[0], H))
        g_e_pad = torch.empty_like(e_pad)
        for (nb, R, C), (rs, cs, ps) in zip(blocks.sizes, _bucket_slices(blocks.sizes)):
            a = a_pad[ps.start * H:ps.stop * H].view(nb, R, H, C)
            q_b = qr[rs].view(nb, R, H, dh).transpose(1, 2)
            k_b, v_b = kvc[cs].view(nb, C, 2, H, dh).permute(2, 0, 3, 1, 4)
            g_kb, g_vb = g_kvc[cs].view(nb, C, 2, H, dh).permute(2, 0, 3, 1, 4)
            e_b = e_pad[ps].view(nb * R, C, de)
            g_mn = g_rows_n[rs].view(nb, R, H, dh).transpose(1, 2)  # (nb, H, R, dh)
            g_me = g_rows_e[rs].view(nb * R, H, de)
            a_t = a.transpose(1, 2)  # (nb, H, R, C)
            g_a = torch.bmm(g_me, e_b.transpose(1, 2)).view(nb, R, H, C)
            g_a += torch.matmul(g_mn, v_b.transpose(2, 3)).transpose(1, 2)
            g_a += g_a_pos[ps].view(nb, R, C, H).transpose(2, 3)
            g_vb.copy_(torch.matmul(a_t.transpose(2, 3), g_mn))
            g_eb = torch.bmm(a.view(nb * R, H, C).transpose(1, 2), g_me)  # (nb R, C, de)
            # softmax: d score = a (g_a - sum_c a g_a), times the score scale
            g_s = g_a.sub_((a * g_a).sum(-1, keepdim=True)).mul_(a).mul_(ctx.scale)
            g_st = g_s.transpose(1, 2)  # (nb, H, R, C)
            g_qr[rs].view(nb, R, H, dh).copy_(torch.matmul(g_st, k_b).transpose(1, 2))
            g_kb.copy_(torch.matmul(g_st.transpose(2, 3), q_b))
            g_s2 = g_s.view(nb * R, H, C)
            g_ur[rs].view(nb * R, H, de).copy_(torch.bmm(g_s2, e_b))
            g_eb.baddbmm_(g_s2.transpose(1, 2), ur[rs].view(nb * R, H, de))
            g_e_pad[ps].view(nb * R, C, de).copy_(g_eb)
            torch.sum(g_s, -1, out=g_sr[rs].view(nb, R, H))
        # padded rows and columns carry zero gradients (no output read them)
        g_q = qr.new_zeros((n, width)).index_add_(0, blocks.row_node, g_qr)
        g_u = ur.new_zeros((n, ur.shape[1])).index_add_(0, blocks.row_node, g_ur)
        g_s = g_sr.new_zeros((n, H)).index_add_(0, blocks.row_node, g_sr)
        g_kv = kvc.new_zeros((n, kvc.shape[1])).index_add_(0, blocks.col_node, g_kvc)
        return g_q, g_u, g_s, g_kv, g_e_pad[blocks.edge_position], None, None


class _BNFFN(nn.Module):
    """``BN(W_2 GELU(W_1 x + b_1) + b_2)`` (Eqs. 8-9 without the residual).

    On many rows (the line graph's bond pairs) the two Linear layers and
    the GELU run in chunks of rows (:class:`_ChunkedFFN`).
    """

    def __init__(self, dim, hidden):
        super().__init__()
        self.lin1 = nn.Linear(dim, hidden)
        self.lin2 = nn.Linear(hidden, dim)
        self.bn = BatchNorm(dim)

    def forward(self, x):
        if _REFERENCE or x.shape[0] * self.lin1.out_features <= 2 * _CHUNK_ELEMENTS:
            return self.bn(self.lin2(F.gelu(self.lin1(x))))
        return self.bn(_ChunkedFFN.apply(x, self.lin1.weight, self.lin1.bias,
                                         self.lin2.weight, self.lin2.bias))


class _ChunkedFFN(torch.autograd.Function):
    """``W_2 GELU(W_1 x + b_1) + b_2`` in chunks of rows, the hidden layer recomputed.

    The (rows, hidden) pre-activation and activation exist one cache-sized
    chunk at a time, in forward and backward, instead of two
    (n_rows, hidden) tensors stored between them (12 MB each for the 25k
    bond pairs of a 32-crystal batch, hidden 120): the GELU and its
    gradient run in cache, and the backward pass recomputes ``W_1 x + b_1``
    (one narrow matmul per chunk).

    Parameters (of ``apply``)
    -------------------------
    x : Tensor, shape (n_rows, dim)
    w1, b1, w2, b2 : Tensor
        The two Linear layers' weights, shapes (hidden, dim), (hidden,),
        (dim_out, hidden), (dim_out,).

    Returns
    -------
    Tensor, shape (n_rows, dim_out)
    """

    @staticmethod
    def forward(ctx, x, w1, b1, w2, b2):
        n, hidden = x.shape[0], w1.shape[0]
        chunk = max(64, _CHUNK_ELEMENTS // hidden)
        out = x.new_empty((n, w2.shape[0]))
        h = x.new_empty((min(chunk, n), hidden))  # one buffer for every chunk
        for lo in range(0, n, chunk):
            xc = x[lo:lo + chunk]
            hc = torch.addmm(b1, xc, w1.t(), out=h[:xc.shape[0]])
            torch.addmm(b2, F.gelu(hc), w2.t(), out=out[lo:lo + chunk])
        ctx.save_for_backward(x, w1, b1, w2)
        ctx.chunk = chunk
        return out

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, g):
        x, w1, b1, w2 = ctx.saved_tensors
        n, hidden, chunk = x.shape[0], w1.shape[0], ctx.chunk
        g_x, g_w1, g_b1, g_w2 = (torch.empty_like(x), torch.zeros_like(w1),
                                 torch.zeros_like(b1), torch.zeros_like(w2))
        h, g_a = (x.new_empty((min(chunk, n), hidden)) for _ in range(2))
        for lo in range(0, n, chunk):
            xc, gc = x[lo:lo + chunk], g[lo:lo + chunk]
            rows = xc.shape[0]
            hc = torch.addmm(b1, xc, w1.t(), out=h[:rows])
            g_w2.addmm_(gc.t(), F.gelu(hc))
            g_h = torch.ops.aten.gelu_backward(torch.mm(gc, w2, out=g_a[:rows]), hc)
            g_w1.addmm_(g_h.t(), xc)
            g_b1 += g_h.sum(0)
            torch.mm(g_h, w1, out=g_x[lo:lo + chunk])
        return g_x, g_w1, g_b1, g_w2, g.sum(0)


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

    #: measured training memory (7.7 KB per angle pair at the default widths and depth,
    #: benchmarks/bench_training_memory.py; see CrystalModel.training_memory)
    _training_memory = {"edge": 0, "angle": 7_750, "at": {"hidden": 256, "n_etgc": 3}}

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
            # both conventions pair bonds meeting at one atom, the sending bond's centre
            blocks = _pair_blocks(lg_index, batch.edge_index[0].index_select(0, lg_index[1]),
                                  e.shape[0])
        last = len(self.atom_layers) - 1
        for i, atom_layer in enumerate(self.atom_layers):
            # the last block's angle update is never read, nor its bond update without
            # GwT (Eq. 11 reads the bonds): skip them (None)
            if self.use_line_graph:
                # line graph: bonds are its nodes, bond pairs its edges
                e, t = self.lg_layers[i](e, t, lg_index, update_edges=i < last, blocks=blocks)
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
