"""Line graph of a crystal graph (bond pairs and bond angles), vectorized.

The line graph has one node per edge (bond) of the crystal graph and one
edge per ordered pair of bonds meeting at an atom. Two conventions are
built (``convention``):

* ``"shared_center"`` (the default; CrysToGraph): pairs of bonds that share
  their **centre atom** (below).
* ``"alignn"``: the reference ALIGNN line graph (DGL's ``line_graph`` of the
  directed atom graph, see "ALIGNN convention" below): bond ``u -> v`` feeds
  bond ``v -> w``.

The line graph is a graph extra: compute it with
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
cos = -1, for a linear A-B-A arrangement centred on B). These are the
angles of the reference ALIGNN line graph too, but its pairs differ (the
receiving bond is the one *leaving* the shared atom, and each bond is
paired with its reverse): use ``convention="alignn"`` for those. The pair
``e1 == e2`` (cos = 1) carries no geometry and is excluded by default
(``include_self=True`` includes it). Two edges to *different images* of
the same neighbour are different bonds and do pair.

Rocksalt NaCl (primitive cell, 2 atoms) with ``max_neighbors=6`` has 6
edges per atom, so 2 * 6 * 5 = 60 line-graph edges (72 with
``include_self=True``); cosines are -1 (trans, 6 pairs per atom) and 0
(cis, 24 pairs per atom).

Message direction: ``lg_index[:, 0]`` is the receiving bond ``e1``,
``lg_index[:, 1]`` the sending bond ``e2`` (as for atoms, where row 0 of
``edge_index`` is the centre); rows are grouped by the centre atom of ``e1``
(sorted by ``e1`` for the builder's centre-sorted edges).

ALIGNN convention
-----------------
The reference (usnistgov/alignn: ``g.line_graph(shared=True)`` in
``alignn/graphs.py``, ``_line_graph_edges`` in
``alignn/torch_graph_builder.py``) directs atom-graph edges ``src -> dst``,
aggregates messages at ``dst`` and connects parent edge ``A = (u -> v)`` to
every ``B = (v -> w)``, *including* the backtracking ``B = (v -> u)``; the
angle message flows from ``A`` into ``B``, so the angle at ``v`` updates the
bond *leaving* ``v``. In the edge convention here (messages flow neighbour
-> centre, so a reference edge ``u -> v`` is the edge with ``center == v``,
``neighbor == u``) that is every ordered pair ``(B, A)`` with
``neighbor[B] == center[A]``: ``lg_index[:, 0] = B`` receives,
``lg_index[:, 1] = A`` sends (rows grouped by ``neighbor[B]``). A centre atom ``v`` with ``k_in`` edges (as
centre) and ``k_out`` edges (as neighbour) contributes ``k_in * k_out``
pairs, ``k**2`` in a symmetric graph (the reference's k-NN graph is
symmetric). ``lg_cos`` is the reference's ``compute_bond_cosines``: the
cosine at ``v`` between ``v -> u`` and ``v -> w``, i.e. ``-vectors[A] .
vectors[B] / (|vectors[A]| |vectors[B]|)``; the backtracking pair has cos =
1. In a symmetric graph, the pair ``(B, A)`` corresponds to the
shared-centre pair ``(reverse(B), A)``: the same angles, but the message
updates a different directed bond.

Rocksalt NaCl (primitive, ``max_neighbors=6``, symmetric) has 2 * 6 * 6 = 72
ALIGNN pairs: per atom 6 backtracking (cos 1), 24 at 90 degrees (cos 0)
and 6 straight through (cos -1).

Memory
------
``T = sum_i k_i^2`` pairs (``k_i`` the edges of atom ``i``), i.e. it grows as
atoms x neighbours^2: ~``n_atoms * 132`` for 12 neighbours, ~``n_atoms *
306`` for 18 (ties in the 12-nearest cut); the ALIGNN convention makes
``sum_i k_in_i k_out_i`` (``n_atoms * 144`` for 12 symmetric neighbours;
the symmetrized 12-nearest graph averages a few more than 12). Stored: 24 bytes per pair
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

from .._validation import check_positive
from .graph import _check_graph
from .extras import GraphExtra

__all__ = ["line_graph", "line_graph_extra", "count_line_graph_pairs",
           "check_line_graph_sizes", "DEFAULT_MAX_TRIPLETS", "CONVENTIONS"]


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


CONVENTIONS = ("shared_center", "alignn")


def _check_convention(convention, include_self, max_triplets=None):
    """The line-graph parameters' checks (``max_triplets``: a positive int or None)."""
    if max_triplets is not None:
        check_positive(max_triplets, "max_triplets", integer=True)
    if convention not in CONVENTIONS:
        raise ValueError(f"convention must be one of {CONVENTIONS}, got {convention!r}")
    if convention == "alignn" and include_self:
        raise ValueError("include_self applies to the shared_center convention; the "
                         "alignn line graph always holds the backtracking pairs")


def _degrees(graph, convention):
    """Per atom: (edges received at it, edges sent from it) in the pair rule."""
    center = np.asarray(graph.center, dtype=np.int64)
    k_in = np.bincount(center, minlength=graph.n_atoms).astype(np.int64)
    if convention == "shared_center":
        return k_in, k_in
    k_out = np.bincount(np.asarray(graph.neighbor, dtype=np.int64),
                        minlength=graph.n_atoms).astype(np.int64)
    return k_in, k_out


def count_line_graph_pairs(graph, include_self=False, convention="shared_center"):
    """Number of line-graph edges :func:`line_graph` would make (cheap).

    Parameters
    ----------
    graph : CrystalGraph
    include_self : bool
        Count the ``e1 == e2`` pairs too (``"shared_center"`` only).
    convention : {"shared_center", "alignn"}

    Returns
    -------
    int
        ``"shared_center"``: ``sum_i k_i^2`` (``include_self``) or ``sum_i
        k_i (k_i - 1)``; ``"alignn"``: ``sum_i k_in_i k_out_i`` (edges with
        atom ``i`` as centre times edges with ``i`` as neighbour).
    """
    _check_convention(convention, include_self)
    k_in, k_out = _degrees(graph, convention)
    if convention == "alignn" or include_self:
        return int((k_in * k_out).sum())
    return int((k_in * (k_in - 1)).sum())


def check_line_graph_sizes(graphs, max_triplets=DEFAULT_MAX_TRIPLETS,
                           include_self=False, convention="shared_center"):
    """Raise before training if some structure's line graph exceeds the bound.

    Parameters
    ----------
    graphs : sequence of CrystalGraph
        In the order of the user's input (the error names the position).
    max_triplets : int or None
    include_self : bool
    convention : {"shared_center", "alignn"}

    Raises
    ------
    ValueError
        Naming the first offending structure's index, formula, pair count
        and the bound.
    """
    _check_convention(convention, include_self)
    if max_triplets is None:
        return
    for i, g in enumerate(graphs):
        # cheap (one bincount); building is left to the memoised extra
        if count_line_graph_pairs(g, include_self, convention) > max_triplets:
            line_graph(g, max_triplets, include_self, where=f"structure {i}",
                       convention=convention)


def _pairs(recv_key, send_key, n_atoms):
    """Every (e1, e2) with ``send_key[e2] == recv_key[e1]``, grouped by ``recv_key``.

    Vectorized: edges are bucketed by their key once, then each receiving
    edge is repeated once per sending edge of its bucket.
    """
    k_send = np.bincount(send_key, minlength=n_atoms).astype(np.int64)
    send_order = np.argsort(send_key, kind="stable")
    send_start = np.zeros_like(k_send)
    np.cumsum(k_send[:-1], out=send_start[1:])
    recv_order = np.argsort(recv_key, kind="stable")
    reps = k_send[recv_key[recv_order]]
    e1 = np.repeat(recv_order, reps)
    block_start = np.zeros_like(reps)
    np.cumsum(reps[:-1], out=block_start[1:])
    within = np.arange(e1.shape[0], dtype=np.int64) - np.repeat(block_start, reps)
    e2 = send_order[send_start[recv_key[e1]] + within]
    return e1, e2


def line_graph(graph, max_triplets=DEFAULT_MAX_TRIPLETS, include_self=False,
               where=None, convention="shared_center"):
    """Bond pairs meeting at an atom and their bond-angle cosines.

    Parameters
    ----------
    graph : CrystalGraph
    max_triplets : int or None
        Largest number of pairs allowed for one structure (``None``: no
        bound); see the module docstring for bytes per pair.
    include_self : bool, default False
        ``"shared_center"`` only: also pair each bond with itself (cos = 1).
    where : str, optional
        How to name the structure in errors (e.g. ``"structure 17"``).
    convention : {"shared_center", "alignn"}, default "shared_center"
        Which pairs (see the module docstring): bonds sharing their centre
        atom, or the reference ALIGNN pairs ``(B, A)`` with ``neighbor[B] ==
        center[A]`` (backtracking included).

    Returns
    -------
    dict
        ``"lg_index"``: int64 array, shape (T, 2), edge ids ``(e1, e2)``
        (graph-local; batched with the edge offset), column 0 the receiving
        bond, column 1 the sending bond; ``"lg_cos"``: float64 array,
        shape (T,), cosine of the bond angle at the atom where the two
        bonds meet (module docstring). With ``convention="alignn"`` the
        keys are ``"lg_alignn_index"`` and ``"lg_alignn_cos"``.

    Raises
    ------
    ValueError
        When ``T > max_triplets``; names the structure, ``T`` and the bound.
    """
    _check_graph(graph)
    _check_convention(convention, include_self, max_triplets)
    k_in, _ = _degrees(graph, convention)
    n_pairs = count_line_graph_pairs(graph, include_self, convention)
    if max_triplets is not None and n_pairs > max_triplets:
        name = where or "structure"
        raise ValueError(
            f"{name} ({_formula(graph)}, {graph.n_atoms} atoms, {graph.n_edges} "
            f"edges, up to {int(k_in.max())} per atom) would have {n_pairs} line-graph "
            f"pairs, more than max_triplets={max_triplets} (~{24 * n_pairs / 1e6:.0f} "
            "MB); lower max_neighbors/radius or raise max_triplets")
    names = ("lg_index", "lg_cos") if convention == "shared_center" else \
        ("lg_alignn_index", "lg_alignn_cos")
    if graph.n_edges == 0:
        return {names[0]: np.zeros((0, 2), np.int64), names[1]: np.zeros(0)}
    center = np.asarray(graph.center, dtype=np.int64)
    v = np.asarray(graph.vectors, dtype=np.float64)
    norm = np.linalg.norm(v, axis=1)
    if convention == "shared_center":
        e1, e2 = _pairs(center, center, graph.n_atoms)
        if not include_self:
            keep = e1 != e2
            e1, e2 = e1[keep], e2[keep]
        sign = 1.0
    else:
        # receiving bond B leaves atom v = neighbor[B]; sending bond A ends at v
        e1, e2 = _pairs(np.asarray(graph.neighbor, dtype=np.int64), center,
                        graph.n_atoms)
        # A points v -> u, B points w -> v; the angle at v is between v -> u
        # and v -> w = -vectors[B]
        sign = -1.0
    cos = sign * np.einsum("ij,ij->i", v[e1], v[e2]) / (norm[e1] * norm[e2])
    np.clip(cos, -1.0, 1.0, out=cos)
    return {names[0]: np.stack([e1, e2], axis=1), names[1]: cos}


def line_graph_extra(max_triplets=DEFAULT_MAX_TRIPLETS, include_self=False,
                     convention="shared_center"):
    """The line graph as a :class:`~skcrystal.graphs.extras.GraphExtra`.

    Its memo key encodes the parameters, so models asking for different
    line graphs of the same cached graph do not collide.

    Examples
    --------
    >>> extra = line_graph_extra()
    >>> lg = graph.extra(extra)                          # doctest: +SKIP
    >>> lg["lg_index"].shape, lg["lg_cos"].shape        # doctest: +SKIP
    """
    _check_convention(convention, include_self, max_triplets)
    if convention == "alignn":
        # the ALIGNN pairs under their own names, so a model can never be
        # handed the other convention's arrays by mistake
        return GraphExtra("line_graph", line_graph,
                          {"lg_alignn_index": "edge", "lg_alignn_cos": None},
                          {"max_triplets": max_triplets, "convention": "alignn"})
    return GraphExtra("line_graph", line_graph, {"lg_index": "edge", "lg_cos": None},
                      {"max_triplets": max_triplets, "include_self": bool(include_self)})
