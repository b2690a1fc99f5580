"""The crystal graph container (numpy, one structure).

A :class:`CrystalGraph` is what the builder makes from one pymatgen
``Structure`` and what the cache stores. It is plain numpy so it pickles
small, can be built in worker processes and cached on disk. Conversion to
torch happens only when graphs are collated into a
:class:`~skcrystal.graphs.batch.GraphBatch`.

Edge convention (used by every model in :mod:`skcrystal.nn`)
-------------------------------------------------------------
Edge ``e`` goes from a *centre* atom ``center[e]`` to one of its neighbours
``neighbor[e]`` (an atom index of the same cell, possibly a periodic image,
possibly the centre itself in another cell). Messages flow neighbour ->
centre and are aggregated over the centre index. ``vectors[e]`` is the
Cartesian bond vector ``r(neighbor image) - r(center)`` in Å and
``offsets[e]`` the integer lattice image of the neighbour.

Extras
------
Models that need more than the bare graph (a line graph, a reverse-edge
index, positional encodings) declare *graph extras*
(:class:`~skcrystal.graphs.extras.GraphExtra`): computed once per graph by
:meth:`CrystalGraph.extra` and memoised inside the graph, so the cache keeps
(and counts) them with the graph.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

__all__ = ["CrystalGraph"]


@dataclass
class CrystalGraph:
    """Periodic multigraph of one crystal.

    Attributes
    ----------
    atomic_numbers : ndarray of int64, shape (n_atoms,)
    positions : ndarray of float64, shape (n_atoms, 3)
        Cartesian coordinates in Å.
    lattice : ndarray of float64, shape (3, 3)
        Lattice vectors as rows, Å.
    center, neighbor : ndarray of int64, shape (n_edges,)
        Edge end points (see the module docstring for the direction).
    distances : ndarray of float64, shape (n_edges,)
        Bond lengths in Å.
    offsets : ndarray of int64, shape (n_edges, 3)
        Lattice image of the neighbour.
    vectors : ndarray of float64, shape (n_edges, 3)
        Bond vectors ``r(neighbor image) - r(center)`` in Å.
    radius : float
        Cut-off actually used, Å (larger than asked for when the builder
        grew it).
    extras : dict of str -> ndarray
        Memoised model-specific additions (see :meth:`extra`).
    """

    atomic_numbers: np.ndarray
    positions: np.ndarray
    lattice: np.ndarray
    center: np.ndarray
    neighbor: np.ndarray
    distances: np.ndarray
    offsets: np.ndarray
    vectors: np.ndarray
    radius: float
    extras: dict = field(default_factory=dict)

    @property
    def n_atoms(self):
        return int(self.atomic_numbers.shape[0])

    @property
    def n_edges(self):
        return int(self.center.shape[0])

    def neighbor_counts(self):
        """Number of edges of each centre atom, shape (n_atoms,)."""
        return np.bincount(self.center, minlength=self.n_atoms)

    def extra(self, extra):
        """The arrays of graph extra ``extra``, computed once and memoised.

        Parameters
        ----------
        extra : GraphExtra

        Returns
        -------
        dict of str -> ndarray
        """
        memo = self.extras.setdefault("_memo", {})
        arrays = memo.get(extra.key)
        if arrays is None:
            arrays = memo[extra.key] = extra.compute(self)
        return arrays

    @property
    def nbytes(self):
        """Memory held by the arrays of this graph, bytes."""
        total = sum(a.nbytes for a in (
            self.atomic_numbers, self.positions, self.lattice, self.center,
            self.neighbor, self.distances, self.offsets, self.vectors))
        for arrays in self.extras.get("_memo", {}).values():
            total += sum(np.asarray(a).nbytes for a in arrays.values())
        return total


def _check_graph(graph, name="graph"):
    """``TypeError`` naming ``name`` unless ``graph`` is a :class:`CrystalGraph`."""
    if not isinstance(graph, CrystalGraph):
        raise TypeError(f"{name} must be a CrystalGraph (from skcrystal.graphs.build_graph), "
                        f"got {type(graph).__name__}")
