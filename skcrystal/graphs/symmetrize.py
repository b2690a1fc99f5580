"""Symmetrized k-nearest-neighbour graphs (the ALIGNN and CrystalNet reference graphs).

The builder's ``max_neighbors`` cut is per centre atom, so the graph is
directed: atom ``i`` may keep ``j`` among its nearest while ``j`` does not
keep ``i``. The reference ALIGNN graph (usnistgov/alignn,
``nearest_neighbor_edges`` + ``build_undirected_edgedata`` in
``alignn/graphs.py``, ``use_canonize=True``) takes the union of the k-NN
relations and adds both directions of every pair, so every edge has its
reverse. :func:`symmetrize_graph` does the same to a
:class:`~skcrystal.graphs.CrystalGraph`: every edge ``(c -> n, image k)``
whose reverse ``(n -> c, image -k)`` is missing gets it added.

One difference is kept by default: the reference stores each bond of an
atom to its *own* periodic image twice in each direction (its canonical
key ``(i, i)`` is reached from image ``k`` and from ``-k``, and both
directions are then added for each); here every directed bond appears
once. The duplicates weight those bonds twice in the gated sums, so the
reference's prediction for a crystal changes with the cell chosen for it
(in a supercell the same bond joins two different atoms and is stored
once); with single bonds a mean-pooled prediction is the same for every
cell. ``duplicate_self_images=True`` reproduces the reference's graph.

CrystalNet (``mode="both"``)
----------------------------
The reference CrystalNet code (Matgen-project/CrystalNet; ``MolGraph`` in
``chemprop/features/featurization.py`` of its copy jcchan23/CrystalNet)
turns *every* entry ``j`` of atom ``i``'s neighbour list into two directed
bonds, ``i -> j`` and ``j -> i``, each the other's reverse. When ``i`` and
``j`` are in each other's lists (the usual case) the bond is stored twice
in each direction; a bond only one of them lists, once. An atom then
receives about twice as many edges as its list holds, every edge has a
reverse, and mutual neighbours weigh twice in CrystalNet's sums. This does
not depend on atom order or cell choice (mutual neighbours are mutual in
every cell), so skcrystal keeps it as the reference has it;
:func:`~skcrystal.graphs.reverse_edges.reverse_edges` pairs the copies.
"""
from __future__ import annotations

import numpy as np

from .graph import CrystalGraph
from .reverse_edges import reverse_edges

__all__ = ["symmetrize_graph", "MODES"]


#: Symmetrization modes of :func:`symmetrize_graph` (and ``GraphBuilder(symmetrize=...)``).
MODES = ("union", "both")


def symmetrize_graph(graph, duplicate_self_images=False, mode="union"):
    """The graph with the reverse of its edges added.

    Parameters
    ----------
    graph : CrystalGraph
    duplicate_self_images : bool, default False
        ``mode="union"`` only: store every bond of an atom to its own
        periodic image twice, as the reference ALIGNN graph does (see the
        module docstring).
    mode : {"union", "both"}, default "union"
        ``"union"``: add the reverse of each edge that lacks one (every
        directed bond once; the ALIGNN reference); ``"both"``: add the
        reverse of *every* edge, so a bond listed by both of its atoms is
        stored twice in each direction (the CrystalNet reference).

    Returns
    -------
    CrystalGraph
        A new graph (no memoised extras), edges sorted by centre atom, then
        distance; ``graph`` itself when nothing is added.
    """
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
    if duplicate_self_images and mode != "union":
        raise ValueError("duplicate_self_images applies to mode='union'")
    if mode == "both":
        added = np.arange(graph.n_edges)
    else:
        added = np.flatnonzero(~reverse_edges(graph)["rev_edge_ok"])
    center = np.concatenate([graph.center, graph.neighbor[added]])
    neighbor = np.concatenate([graph.neighbor, graph.center[added]])
    offsets = np.concatenate([graph.offsets, -graph.offsets[added]])
    vectors = np.concatenate([graph.vectors, -graph.vectors[added]])
    distances = np.concatenate([graph.distances, graph.distances[added]])
    copies = np.arange(len(center))
    if duplicate_self_images:
        copies = np.concatenate([copies, np.flatnonzero(center == neighbor)])
    if len(copies) == graph.n_edges:
        return graph
    order = copies[np.lexsort((distances[copies], center[copies]))]
    return CrystalGraph(
        atomic_numbers=graph.atomic_numbers, positions=graph.positions,
        lattice=graph.lattice, center=center[order], neighbor=neighbor[order],
        distances=distances[order], offsets=offsets[order], vectors=vectors[order],
        radius=graph.radius)
