"""Symmetrized k-nearest-neighbour graph (the reference ALIGNN atom graph).

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
"""
from __future__ import annotations

import numpy as np

from .graph import CrystalGraph
from .reverse_edges import reverse_edges

__all__ = ["symmetrize_graph"]


def symmetrize_graph(graph, duplicate_self_images=False):
    """The graph with the missing reverse of every edge added.

    Parameters
    ----------
    graph : CrystalGraph
    duplicate_self_images : bool, default False
        Store every bond of an atom to its own periodic image twice, as the
        reference ALIGNN graph does (see the module docstring).

    Returns
    -------
    CrystalGraph
        A new graph (no memoised extras), edges sorted by centre atom, then
        distance; ``graph`` itself when every edge already has its reverse
        (and no self-image bond is to be duplicated).
    """
    rev = reverse_edges(graph)
    missing = np.flatnonzero(~rev["rev_edge_ok"])
    center = np.concatenate([graph.center, graph.neighbor[missing]])
    neighbor = np.concatenate([graph.neighbor, graph.center[missing]])
    offsets = np.concatenate([graph.offsets, -graph.offsets[missing]])
    vectors = np.concatenate([graph.vectors, -graph.vectors[missing]])
    distances = np.concatenate([graph.distances, graph.distances[missing]])
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
