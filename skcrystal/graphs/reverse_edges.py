"""Reverse-edge index of a directed crystal multigraph (a graph extra).

Used by CrystalNet's communicative message passing, where each edge's
message subtracts what travelled along its reverse edge. Computed once per
graph in numpy and memoised in the cached graph.
"""
import numpy as np

from .graph import _check_graph
from .extras import GraphExtra

__all__ = ["reverse_edges", "REVERSE_EDGES_EXTRA"]


def reverse_edges(graph):
    """Index of each edge's reverse edge, vectorized (sorts + searchsorted).

    Parameters
    ----------
    graph : CrystalGraph
        May be a multigraph: when one directed bond ``(c -> n, image k)`` is
        stored several times (the CrystalNet reference graph, see
        :func:`skcrystal.graphs.symmetrize.symmetrize_graph` with
        ``mode="both"``), its ``r``-th copy (in edge order) is paired with
        the ``r``-th copy of the reverse bond.

    Returns
    -------
    dict
        ``"rev_edge"``: int64 array, shape (n_edges,): for edge ``(c -> n,
        image k)`` the edge ``(n -> c, image -k)``, or the edge itself when
        the graph lacks it; ``"rev_edge_ok"``: bool array, shape (n_edges,),
        whether the reverse exists. ``rev_edge[rev_edge] == arange(n_edges)``.
    """
    _check_graph(graph)
    c = np.asarray(graph.center, dtype=np.int64)
    n = np.asarray(graph.neighbor, dtype=np.int64)
    off = np.asarray(graph.offsets, dtype=np.int64)
    n_edges = c.shape[0]
    if n_edges == 0:
        return {"rev_edge": np.zeros(0, np.int64), "rev_edge_ok": np.zeros(0, bool)}
    span = int(np.abs(off).max()) if off.size else 0
    base = 2 * span + 1
    n_atoms = max(graph.n_atoms, 1)

    def key(a, b, o):
        # mixed-radix code of (a, b, image); unique per directed bond
        s = o + span
        return ((a * n_atoms + b) * base + s[:, 0]) * base * base + s[:, 1] * base + s[:, 2]

    if n_atoms * n_atoms * base ** 3 >= 2 ** 62:  # pragma: no cover - absurd sizes
        raise ValueError(f"graph too large for the reverse-edge code ({n_atoms} atoms, "
                         f"images up to {span})")
    fwd = key(c, n, off)
    rev = key(n, c, -off)
    order = np.argsort(fwd, kind="stable")
    sorted_fwd = fwd[order]
    # copy number of each edge among the edges of its bond (0 for a simple graph)
    first = np.searchsorted(sorted_fwd, sorted_fwd, side="left")
    copy = np.empty(n_edges, np.int64)
    copy[order] = np.arange(n_edges) - first
    # the same copy of the reverse bond
    start = np.searchsorted(sorted_fwd, rev, side="left")
    stop = np.searchsorted(sorted_fwd, rev, side="right")
    ok = copy < stop - start
    pos = np.minimum(start + copy, n_edges - 1)
    cand = order[pos]
    return {"rev_edge": np.where(ok, cand, np.arange(n_edges)), "rev_edge_ok": ok}


#: The reverse-edge index as a graph extra.
REVERSE_EDGES_EXTRA = GraphExtra("reverse_edges", reverse_edges,
                                 {"rev_edge": "edge", "rev_edge_ok": None})
