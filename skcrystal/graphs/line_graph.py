"""Line graph of a crystal graph (bond pairs and bond angles), vectorized.

The line graph has one node per edge (bond) of the crystal graph and one
edge per ordered pair of bonds that share their **centre atom**. It is what
ALIGNN convolves over (the angle feature) and what other three-body models
(CrysToGraph) reuse. It is a graph extra: compute it with
``graph.extra(line_graph_extra(...))`` or let a model declare
:func:`line_graph_extra` in its ``graph_extras``; it is then memoised inside
the (cached) graph and collated by :func:`~skcrystal.graphs.collate_graphs`
with the pair indices shifted by the edge offset of each crystal.

Pair convention
---------------
With the edge convention of :mod:`skcrystal.graphs.graph` (edge ``e`` goes
from ``center[e]`` to ``neighbor[e]``, bond vector ``vectors[e] =
r(neighbor image) - r(center)``), the line graph holds every ordered pair
``(e1, e2)`` with ``center[e1] == center[e2]`` and, by default, ``e1 !=
e2``. A centre atom with ``k`` edges contributes ``k * (k - 1)`` pairs
(``k * k`` with ``include_self=True``). The pair set is symmetric: ``(e2,
e1)`` is present whenever ``(e1, e2)`` is.

Angle: ``lg_cos = vectors[e1] . vectors[e2] / (|vectors[e1]| |vectors[e2]|)``,
the cosine of the bond angle *at the shared centre atom* (180 degrees,
cos = -1, for a linear A-B-A arrangement centred on B). This is the angle
ALIGNN's ``compute_bond_cosines`` gives for its DGL line-graph edge
``(u -> v, v -> w)``: the angle at ``v`` between ``v -> u`` and ``v -> w``.
ALIGNN's DGL line graph also holds the "backtracking" pair ``(u -> v, v ->
u)`` (cos = 1 always); in the centre-sharing convention that is the pair
``e1 == e2``, excluded by default (it carries no geometry, and a bond
already keeps its own state in the gated convolution's self term) and
included with ``include_self=True``. Two edges to *different images* of
the same neighbour are different bonds and do pair.

Rocksalt NaCl (primitive cell, 2 atoms) with ``max_neighbors=6`` has 6
edges per atom, so 2 * 6 * 5 = 60 line-graph edges (72 with
``include_self=True``); cosines are -1 (trans, 6 pairs per atom) and 0
(cis, 24 pairs per atom).

Message direction: ``lg_index[:, 0]`` is the receiving bond ``e1``,
``lg_index[:, 1]`` the sending bond ``e2`` (as for atoms, where row 0 of
``edge_index`` is the centre); rows are sorted by ``e1``.

Memory
------
``T = sum_i k_i^2`` pairs (``k_i`` the edges of atom ``i``), i.e. it grows as
atoms x neighbours^2: ~``n_atoms * 132`` for 12 neighbours, ~``n_atoms *
306`` for 18 (ties in the 12-nearest cut). Stored: 24 bytes per pair
(two int64 indices + one float64 cosine); building peaks at about 5 int64
arrays of ``T`` entries (~40 bytes per pair). In a batch the collated
tensors are 20 bytes per pair (int64 indices, float32 cosine). A 100-atom
cell with 12 neighbours: 13,200 pairs, ~0.3 MB.

The bound ``max_triplets`` (pairs per structure) turns a structure whose
line graph would be too large into a ``ValueError`` before any array of
size ``T`` is allocated; use :func:`count_line_graph_pairs` to check a
dataset up front.
"""
from __future__ import annotations

import numpy as np

from .extras import GraphExtra

__all__ = ["line_graph", "line_graph_extra", "count_line_graph_pairs",
           "check_line_graph_sizes", "DEFAULT_MAX_TRIPLETS"]


#: Default bound on the line-graph pairs of one structure (~48 MB stored,
#: ~80 MB peak while building).
DEFAULT_MAX_TRIPLETS = 2_000_000


def _formula(graph):
    """Reduced formula of a graph (for error messages), from its atomic numbers."""
    try:
        from pymatgen.core import Composition, Element
        counts = np.bincount(graph.atomic_numbers)
        comp = Composition({Element.from_Z(int(z)): int(c)
                            for z, c in enumerate(counts) if c})
        return comp.reduced_formula
    except Exception:  # pragma: no cover - message only
        return f"{graph.n_atoms} atoms"


def count_line_graph_pairs(graph, include_self=False):
    """Number of line-graph edges :func:`line_graph` would make (cheap).

    Parameters
    ----------
    graph : CrystalGraph
    include_self : bool
        Count the ``e1 == e2`` pairs too.

    Returns
    -------
    int
        ``sum_i k_i^2`` (``include_self``) or ``sum_i k_i (k_i - 1)``.
    """
    k = np.bincount(graph.center, minlength=graph.n_atoms).astype(np.int64)
    return int((k * (k if include_self else k - 1)).sum())


def check_line_graph_sizes(graphs, max_triplets=DEFAULT_MAX_TRIPLETS,
                           include_self=False):
    """Raise before training if some structure's line graph exceeds the bound.

    Parameters
    ----------
    graphs : sequence of CrystalGraph
        In the order of the user's input (the error names the position).
    max_triplets : int or None
    include_self : bool

    Raises
    ------
    ValueError
        Naming the first offending structure's index, formula, pair count
        and the bound.
    """
    if max_triplets is None:
        return
    for i, g in enumerate(graphs):
        # cheap (one bincount); building is left to the memoised extra
        if count_line_graph_pairs(g, include_self) > max_triplets:
            line_graph(g, max_triplets, include_self, where=f"structure {i}")


def line_graph(graph, max_triplets=DEFAULT_MAX_TRIPLETS, include_self=False,
               where=None):
    """Bond pairs sharing a centre atom and their bond-angle cosines.

    Parameters
    ----------
    graph : CrystalGraph
    max_triplets : int or None
        Largest number of pairs allowed for one structure (``None``: no
        bound); see the module docstring for bytes per pair.
    include_self : bool, default False
        Also pair each bond with itself (cos = 1; ALIGNN's backtracking
        pair).
    where : str, optional
        How to name the structure in errors (e.g. ``"structure 17"``).

    Returns
    -------
    dict
        ``"lg_index"``: int64 array, shape (T, 2), edge ids ``(e1, e2)``
        (graph-local; batched with the edge offset), row 0 receiving;
        ``"lg_cos"``: float64 array, shape (T,), cosine of the angle at the
        shared centre atom between the two bond vectors.

    Raises
    ------
    ValueError
        When ``T > max_triplets``; names the structure, ``T`` and the bound.
    """
    center = np.asarray(graph.center, dtype=np.int64)
    k = np.bincount(center, minlength=graph.n_atoms).astype(np.int64)
    n_pairs = int((k * (k if include_self else k - 1)).sum())
    if max_triplets is not None and n_pairs > max_triplets:
        name = where or "structure"
        raise ValueError(
            f"{name} ({_formula(graph)}, {graph.n_atoms} atoms, {graph.n_edges} "
            f"edges, up to {int(k.max())} per atom) would have {n_pairs} line-graph "
            f"pairs, more than max_triplets={max_triplets} (~{24 * n_pairs / 1e6:.0f} "
            "MB); lower max_neighbors/radius or raise max_triplets")
    if graph.n_edges == 0:
        return {"lg_index": np.zeros((0, 2), np.int64), "lg_cos": np.zeros(0)}
    # group edges by centre atom; every edge is paired with each edge of its group
    order = np.argsort(center, kind="stable")
    group_start = np.zeros_like(k)
    np.cumsum(k[:-1], out=group_start[1:])
    reps = k[center[order]]
    e1 = np.repeat(order, reps)
    block_start = np.zeros_like(reps)
    np.cumsum(reps[:-1], out=block_start[1:])
    within = np.arange(e1.shape[0], dtype=np.int64) - np.repeat(block_start, reps)
    e2 = order[group_start[center[e1]] + within]
    del within
    if not include_self:
        keep = e1 != e2
        e1, e2 = e1[keep], e2[keep]
    v = np.asarray(graph.vectors, dtype=np.float64)
    norm = np.linalg.norm(v, axis=1)
    cos = np.einsum("ij,ij->i", v[e1], v[e2]) / (norm[e1] * norm[e2])
    np.clip(cos, -1.0, 1.0, out=cos)
    return {"lg_index": np.stack([e1, e2], axis=1), "lg_cos": cos}


def line_graph_extra(max_triplets=DEFAULT_MAX_TRIPLETS, include_self=False):
    """The line graph as a :class:`~skcrystal.graphs.extras.GraphExtra`.

    Its memo key encodes the parameters, so models asking for different
    line graphs of the same cached graph do not collide.

    Examples
    --------
    >>> extra = line_graph_extra()
    >>> lg = graph.extra(extra)                          # doctest: +SKIP
    >>> lg["lg_index"].shape, lg["lg_cos"].shape        # doctest: +SKIP
    """
    return GraphExtra("line_graph", line_graph, {"lg_index": "edge", "lg_cos": None},
                      {"max_triplets": max_triplets, "include_self": bool(include_self)})
