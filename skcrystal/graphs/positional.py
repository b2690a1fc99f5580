"""Positional encodings of atoms as graph extras (CrysToGraph, GraphGPS).

Two encodings of each atom's place in the crystal graph, computed once per
graph in numpy and memoised inside the cached :class:`CrystalGraph` via
:meth:`CrystalGraph.extra`:

``pe_lap`` (n_atoms, n_eigvec)
    Laplacian eigenvectors (Dwivedi et al. 2020): the eigenvectors of the
    symmetric normalised Laplacian ``L = I - D^-1/2 A D^-1/2`` for the
    ``n_eigvec`` smallest eigenvalues after the first (the first belongs to
    eigenvalue 0 and, for a connected graph, only encodes the degrees).
    Graphs with fewer atoms are padded with zero columns.
``pe_rw`` (n_atoms, n_rw)
    Random-walk return probabilities (Dwivedi et al. 2022):
    ``[(P^k)_ii for k = 1..n_rw]`` with ``P = D^-1 A``.

The adjacency ``A`` counts edges (a periodic multigraph can hold several
edges between two atoms, to different images) and is symmetrised,
``(A + A^T) / 2``, because the k-nearest-neighbour relation is not
symmetric. Edges from an atom to its own periodic image stay on the
diagonal: the walk can return through them in one step.

Signs
-----
An eigenvector is defined up to its sign. The stored sign is canonical
(the entry of largest magnitude, first one on ties, is positive) so that
the same graph always gets the same encoding, e.g. after a rotation of the
cell; models should flip the signs at random during training (as
:class:`skcrystal.nn.crystograph.CrysToGraph` does) so they do not learn
the convention. Eigenvectors of repeated eigenvalues are only defined up
to a rotation of their subspace; this is a known limitation of the
encoding.

Costs
-----
One dense ``eigh`` and ``n_rw`` dense ``n x n`` products per graph:
negligible below a few hundred atoms, and done once per structure (the
cache keeps the result with the graph).
"""
from __future__ import annotations

import numpy as np

from .._validation import check_positive
from .graph import _check_graph
from .extras import GraphExtra

__all__ = ["positional_encodings", "positional_extra", "adjacency_matrix"]


def adjacency_matrix(graph):
    """Symmetrised edge-count adjacency of a graph, shape (n_atoms, n_atoms)."""
    n = graph.n_atoms
    A = np.zeros((n, n), dtype=np.float64)
    np.add.at(A, (graph.center, graph.neighbor), 1.0)
    return 0.5 * (A + A.T)


def laplacian_eigvec_pe(A, k):
    """Laplacian eigenvector encoding of a graph with adjacency ``A``.

    Parameters
    ----------
    A : ndarray, shape (n, n)
        Symmetric non-negative adjacency.
    k : int
        Number of eigenvectors.

    Returns
    -------
    ndarray, shape (n, k)
        Eigenvectors (unit norm, canonical sign) of the 2nd..(k+1)-th
        smallest eigenvalues of the normalised Laplacian, zero-padded.
    """
    n = A.shape[0]
    out = np.zeros((n, k), dtype=np.float64)
    if k == 0 or n < 2:
        return out
    deg = A.sum(axis=1)
    inv_sqrt = np.where(deg > 0, 1.0 / np.sqrt(np.where(deg > 0, deg, 1.0)), 0.0)
    L = np.eye(n) - inv_sqrt[:, None] * A * inv_sqrt[None, :]
    _, vecs = np.linalg.eigh(L)
    vecs = vecs[:, 1:k + 1]
    # canonical sign: largest-magnitude entry positive
    pivot = np.argmax(np.abs(vecs) - 1e-9 * np.arange(n)[:, None], axis=0)
    signs = np.sign(vecs[pivot, np.arange(vecs.shape[1])])
    signs[signs == 0] = 1.0
    out[:, :vecs.shape[1]] = vecs * signs
    return out


def random_walk_pe(A, k):
    """Random-walk return probabilities ``(P^t)_ii``, t = 1..k, shape (n, k)."""
    n = A.shape[0]
    out = np.zeros((n, k), dtype=np.float64)
    if k == 0:
        return out
    deg = A.sum(axis=1)
    P = A / np.where(deg > 0, deg, 1.0)[:, None]
    M = P.copy()
    for t in range(k):  # k matrix products, not a loop over atoms
        out[:, t] = np.diagonal(M)
        if t + 1 < k:
            M = M @ P
    return out


def positional_encodings(graph, n_eigvec=20, n_rw=20):
    """The ``pe_lap`` and ``pe_rw`` arrays of one graph (see the module docstring).

    Parameters
    ----------
    graph : CrystalGraph
    n_eigvec : int
        Laplacian eigenvectors per atom.
    n_rw : int
        Random-walk steps per atom.

    Returns
    -------
    dict with ``pe_lap`` (n_atoms, n_eigvec) and ``pe_rw`` (n_atoms, n_rw),
    float32.
    """
    _check_graph(graph)
    n_eigvec, n_rw = _count(n_eigvec, "n_eigvec"), _count(n_rw, "n_rw")
    A = adjacency_matrix(graph)
    return {"pe_lap": laplacian_eigvec_pe(A, n_eigvec).astype(np.float32),
            "pe_rw": random_walk_pe(A, n_rw).astype(np.float32)}


def _count(value, name):
    """``value`` as an int >= 0; a ValueError naming ``name`` otherwise."""
    return int(check_positive(value, name, integer=True, allow_zero=True))


def positional_extra(n_eigvec=20, n_rw=20):
    """Laplacian + random-walk encodings as a :class:`~skcrystal.graphs.extras.GraphExtra`."""
    return GraphExtra("positional", positional_encodings, {"pe_lap": None, "pe_rw": None},
                      {"n_eigvec": _count(n_eigvec, "n_eigvec"), "n_rw": _count(n_rw, "n_rw")})
