"""Collating many crystal graphs into one disconnected graph (torch).

All per-graph work happens here, in numpy, once per batch; the models'
``forward`` only sees flat tensors and index vectors and never loops over
crystals.
"""
from __future__ import annotations

import numpy as np
import torch

__all__ = ["GraphBatch", "collate_graphs"]


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


def _counts_offsets(counts):
    offsets = np.zeros(len(counts), dtype=np.int64)
    np.cumsum(counts[:-1], out=offsets[1:])
    return offsets


def collate_graphs(graphs, descriptors=None, extras=(), dtype=torch.float32):
    """Concatenate graphs into one :class:`GraphBatch`.

    Parameters
    ----------
    graphs : sequence of CrystalGraph
    descriptors : array-like, shape (n_graphs, n_descriptors), optional
    extras : sequence of GraphExtra
        Graph extras to collate: each graph's arrays (memoised in the graph,
        see :meth:`CrystalGraph.extra`) are concatenated with the offsets the
        extra declares.
    dtype : torch.dtype
        Floating dtype of the float tensors.

    Returns
    -------
    GraphBatch
    """
    if len(graphs) == 0:
        raise ValueError("cannot collate an empty list of graphs")
    try:
        n_nodes = np.fromiter((g.n_atoms for g in graphs), np.int64, len(graphs))
    except AttributeError:  # not the "'NoneType' object has no attribute" of a bad item
        from .graph import CrystalGraph
        i, bad = next((i, g) for i, g in enumerate(graphs) if not isinstance(g, CrystalGraph))
        raise TypeError(f"graphs[{i}] is a {type(bad).__name__}, not a CrystalGraph") from None
    n_edges = np.fromiter((g.n_edges for g in graphs), np.int64, len(graphs))
    node_off = _counts_offsets(n_nodes)
    edge_off = _counts_offsets(n_edges)
    edge_shift = np.repeat(node_off, n_edges)

    def cat(attr):
        return np.concatenate([getattr(g, attr) for g in graphs])

    def ft(a):
        return torch.as_tensor(np.asarray(a), dtype=dtype)

    def lt(a):
        return torch.as_tensor(np.asarray(a, dtype=np.int64))

    center = cat("center") + edge_shift
    neighbor = cat("neighbor") + edge_shift
    batch = dict(
        atomic_numbers=lt(cat("atomic_numbers")),
        positions=ft(cat("positions")),
        lattice=ft(np.stack([g.lattice for g in graphs])),
        edge_index=lt(np.stack([center, neighbor])),
        distances=ft(cat("distances")),
        vectors=ft(cat("vectors")),
        offsets=lt(cat("offsets")),
        node_graph=lt(np.repeat(np.arange(len(graphs)), n_nodes)),
        edge_graph=lt(np.repeat(np.arange(len(graphs)), n_edges)),
        n_nodes_per_graph=lt(n_nodes),
        n_edges_per_graph=lt(n_edges),
        descriptors=None if descriptors is None else ft(descriptors),
    )
    collated = {}
    for extra in extras:
        per_graph = [g.extra(extra) for g in graphs]
        for name in per_graph[0]:
            arrays = [d[name] for d in per_graph]
            lengths = np.fromiter((len(a) for a in arrays), np.int64, len(arrays))
            offset_kind = extra.offsets[name]
            data = np.concatenate(arrays)
            if offset_kind is not None:
                if offset_kind == "node":
                    base = node_off
                elif offset_kind == "edge":
                    base = edge_off
                else:
                    other = np.fromiter(
                        (len(d[offset_kind]) for d in per_graph), np.int64,
                        len(per_graph))
                    base = _counts_offsets(other)
                shift = np.repeat(base, lengths)
                data = data + shift.reshape((-1,) + (1,) * (data.ndim - 1))
                collated[name] = lt(data)
            elif np.issubdtype(data.dtype, np.integer) or data.dtype == bool:
                collated[name] = torch.as_tensor(data)
            else:
                collated[name] = ft(data)
            collated[name + "_graph"] = lt(np.repeat(np.arange(len(graphs)), lengths))
    return GraphBatch(extras=collated, **batch)
