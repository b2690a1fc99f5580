"""Collating many crystal graphs into one disconnected graph (torch).

All per-graph work happens once per batch, in numpy
(:func:`~skcrystal.graphs.collate.collate_arrays`, which worker processes
run without torch); the models' ``forward`` only sees flat tensors and
index vectors and never loops over crystals.
"""
from __future__ import annotations

import numpy as np
import torch

from .collate import FLOAT_FIELDS, collate_arrays

__all__ = ["GraphBatch", "batch_from_arrays", "collate_graphs"]


class GraphBatch:
    """A batch of crystal graphs as one disconnected graph.

    Attributes
    ----------
    atomic_numbers : LongTensor, shape (n_nodes,)
    positions : Tensor, shape (n_nodes, 3)
        Cartesian coordinates, Å.
    lattice : Tensor, shape (n_graphs, 3, 3)
        Lattice vectors as rows, Å.
    edge_index : LongTensor, shape (2, n_edges)
        Row 0 the centre atom, row 1 the neighbour atom (batch-global node
        indices); messages flow neighbour -> centre.
    distances : Tensor, shape (n_edges,)
        Bond lengths, Å.
    vectors : Tensor, shape (n_edges, 3)
        Bond vectors ``r(neighbour image) - r(centre)``, Å.
    offsets : LongTensor, shape (n_edges, 3)
        Lattice image of the neighbour.
    node_graph : LongTensor, shape (n_nodes,)
        Index of the crystal each node belongs to.
    edge_graph : LongTensor, shape (n_edges,)
        Index of the crystal each edge belongs to.
    n_nodes_per_graph, n_edges_per_graph : LongTensor, shape (n_graphs,)
    descriptors : Tensor, shape (n_graphs, n_descriptors) or None
        Standardised per-crystal descriptors for hybrid models.
    extras : dict of str -> Tensor
        Collated graph extras (line graphs, reverse edges, encodings).
    index : ndarray of int or None
        Positions of the batch's crystals in the estimator's input (set by
        the estimator's collate function; names structures in errors).
    """

    _tensor_fields = (
        "atomic_numbers", "positions", "lattice", "edge_index", "distances",
        "vectors", "offsets", "node_graph", "edge_graph",
        "n_nodes_per_graph", "n_edges_per_graph", "descriptors")

    def __init__(self, **fields):
        extras = fields.pop("extras", None) or {}
        self.index = fields.pop("index", None)
        for name in self._tensor_fields:
            setattr(self, name, fields.pop(name, None))
        if fields:
            raise TypeError(f"unknown GraphBatch fields: {sorted(fields)}")
        self.extras = extras

    @property
    def n_graphs(self):
        return int(self.n_nodes_per_graph.shape[0])

    @property
    def n_nodes(self):
        return int(self.atomic_numbers.shape[0])

    @property
    def n_edges(self):
        return int(self.edge_index.shape[1])

    @property
    def center(self):
        return self.edge_index[0]

    @property
    def neighbor(self):
        return self.edge_index[1]

    def _map(self, fn):
        fields = {name: (None if getattr(self, name) is None else fn(getattr(self, name)))
                  for name in self._tensor_fields}
        extras = {k: fn(v) for k, v in self.extras.items()}
        return GraphBatch(extras=extras, index=self.index, **fields)

    def to(self, device, non_blocking=False):
        """Move every tensor to ``device`` (what skorch calls).

        ``non_blocking=True`` overlaps the copy with computation when the
        batch is in pinned memory (see :meth:`pin_memory`).
        """
        return self._map(lambda t: t.to(device, non_blocking=non_blocking))

    def pin_memory(self):
        """A copy in page-locked memory (called by a DataLoader with ``pin_memory=True``)."""
        return self._map(lambda t: t.pin_memory())

    def __len__(self):
        return self.n_graphs

    def __repr__(self):
        return (f"GraphBatch(n_graphs={self.n_graphs}, n_nodes={self.n_nodes}, "
                f"n_edges={self.n_edges}, extras={sorted(self.extras)})")


def collate_graphs(graphs, descriptors=None, extras=(), dtype=torch.float32):
    """Concatenate graphs into one :class:`GraphBatch`.

    Parameters
    ----------
    graphs, descriptors, extras
        See :func:`~skcrystal.graphs.collate.collate_arrays`.
    dtype : torch.dtype
        Floating dtype of the float tensors.

    Returns
    -------
    GraphBatch
    """
    return batch_from_arrays(collate_arrays(graphs, descriptors, extras), dtype=dtype)


def batch_from_arrays(arrays, dtype=torch.float32):
    """The :class:`GraphBatch` of :func:`~skcrystal.graphs.collate.collate_arrays`'
    output (arrays of the final dtype become tensors without a copy).

    Parameters
    ----------
    arrays : CollatedArrays
    dtype : torch.dtype
        Floating dtype of the float tensors.

    Returns
    -------
    GraphBatch
    """
    def tensor(a, floating):
        if a is None:
            return None
        return torch.as_tensor(a, dtype=dtype) if floating else torch.as_tensor(a)

    return GraphBatch(
        extras={k: tensor(v, np.issubdtype(v.dtype, np.floating))
                for k, v in arrays.extras.items()},
        **{k: tensor(v, k in FLOAT_FIELDS) for k, v in arrays.fields.items()})
