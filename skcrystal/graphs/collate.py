"""Collating crystal graphs into the arrays of one disconnected graph (numpy only).

:func:`~skcrystal.graphs.batch.collate_graphs` turns these arrays into a
:class:`~skcrystal.graphs.batch.GraphBatch` of tensors. The arrays are kept
apart from torch so that worker processes that only read files and build
graphs (``skcrystal predict``) can collate whole batches without importing
torch: a collated batch is a few large arrays, far cheaper to send to the
process that runs the network than the graphs one by one.
"""
from __future__ import annotations

from typing import NamedTuple

import numpy as np

__all__ = ["CollatedArrays", "collate_arrays", "DEFAULT_BATCH_SIZE", "pack_records",
           "unpack_records"]

#: Structures per batch of the estimators (and their predictions) by default.
DEFAULT_BATCH_SIZE = 64

# the fields that become floating tensors (whatever dtype the arrays have)
FLOAT_FIELDS = frozenset(("positions", "lattice", "distances", "vectors", "descriptors"))


class CollatedArrays(NamedTuple):
    """A batch of graphs as numpy arrays: ``fields`` by
    :class:`~skcrystal.graphs.batch.GraphBatch` attribute name (``None`` for
    absent descriptors), ``extras`` by collated extra name.

    Pickled compactly (it is sent from worker processes to the one that runs
    the network): see :func:`_to_wire`.
    """

    fields: dict
    extras: dict

    def __reduce__(self):
        return _from_wire, _to_wire(self)


# the per-node and per-edge crystal index, rebuilt from the counts on arrival
_REBUILT = (("node_graph", "n_nodes_per_graph"), ("edge_graph", "n_edges_per_graph"))


def _narrow(arrays):
    """``arrays`` (a dict) with each int64 array in the smallest signed integer
    type that holds its values, and the names of those changed."""
    out, narrowed = dict(arrays), []
    for name, a in arrays.items():
        if a is None or a.dtype != np.int64 or a.size == 0:
            continue
        lo, hi = int(a.min()), int(a.max())
        for t in (np.int8, np.int16, np.int32):
            info = np.iinfo(t)
            if info.min <= lo and hi <= info.max:
                out[name] = a.astype(t)
                narrowed.append(name)
                break
    return out, tuple(narrowed)


def _to_wire(arrays):
    """The arguments of :func:`_from_wire` for ``arrays``: the same values in
    about a third of the bytes.

    The four batches of a chunk of 256 small cells are about 1 MB as
    collated (int64 indices and image offsets, two int64 crystal maps):
    sixteen times what a pipe holds, so a worker sending them waited until
    the receiving process had read them all, which it does only between its
    own work. Sent narrowed, every value arrives unchanged (the same values,
    int64 again).
    """
    fields = dict(arrays.fields)
    rebuilt = tuple(name for name, counts in _REBUILT
                    if fields.get(name) is not None and fields.get(counts) is not None)
    for name in rebuilt:
        # collate_arrays makes them as np.repeat(arange(n_graphs), counts)
        fields[name] = None
    fields, narrowed = _narrow(fields)
    extras, narrowed_extras = _narrow(arrays.extras)
    return fields, extras, rebuilt, narrowed, narrowed_extras


def _from_wire(fields, extras, rebuilt, narrowed, narrowed_extras):
    """The :class:`CollatedArrays` that :func:`_to_wire` sent."""
    for arrays, names in ((fields, narrowed), (extras, narrowed_extras)):
        for name in names:
            arrays[name] = arrays[name].astype(np.int64)
    for name, counts in _REBUILT:
        if name in rebuilt:
            n = fields[counts]
            fields[name] = np.repeat(np.arange(len(n), dtype=np.int64), n)
    return CollatedArrays(fields, extras)


def _counts_offsets(counts):
    offsets = np.zeros(len(counts), dtype=np.int64)
    np.cumsum(counts[:-1], out=offsets[1:])
    return offsets


def collate_arrays(graphs, descriptors=None, extras=(), float_dtype=None):
    """Concatenate graphs into the arrays of one disconnected graph.

    Parameters
    ----------
    graphs : sequence of CrystalGraph
    descriptors : array-like, shape (n_graphs, n_descriptors), optional
    extras : sequence of GraphExtra
        Graph extras to collate: each graph's arrays (memoised in the graph,
        see :meth:`CrystalGraph.extra`) are concatenated with the offsets the
        extra declares.
    float_dtype : numpy dtype, optional
        Cast the floating arrays to it (``np.float32`` before sending a batch
        to another process: the cast the tensors would get there, half the
        bytes); by default they keep the graphs' dtype.

    Returns
    -------
    CollatedArrays
        Integer arrays are int64 (bool extras stay bool); shapes as in
        :class:`~skcrystal.graphs.batch.GraphBatch`.
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

    def fl(a):
        a = np.asarray(a)
        return a if float_dtype is None else a.astype(float_dtype, copy=False)

    def lt(a):
        return np.asarray(a, dtype=np.int64)

    center = cat("center") + edge_shift
    neighbor = cat("neighbor") + edge_shift
    fields = dict(
        atomic_numbers=lt(cat("atomic_numbers")),
        positions=fl(cat("positions")),
        lattice=fl(np.stack([g.lattice for g in graphs])),
        edge_index=lt(np.stack([center, neighbor])),
        distances=fl(cat("distances")),
        vectors=fl(cat("vectors")),
        offsets=lt(cat("offsets")),
        node_graph=lt(np.repeat(np.arange(len(graphs)), n_nodes)),
        edge_graph=lt(np.repeat(np.arange(len(graphs)), n_edges)),
        n_nodes_per_graph=lt(n_nodes),
        n_edges_per_graph=lt(n_edges),
        descriptors=None if descriptors is None else fl(descriptors),
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
                collated[name] = data
            else:
                collated[name] = fl(data)
            collated[name + "_graph"] = lt(np.repeat(np.arange(len(graphs)), lengths))
    return CollatedArrays(fields, collated)


def pack_records(records):
    """Records of arrays (tuples, all alike; None for a missing one) as one
    array per field, to send between processes.

    A list of small arrays pickles one by one (about 1-2 µs each way per
    array), which made sending the arrays of a structure, or a built graph,
    cost this process about as much as building the graph; concatenated,
    a chunk's records pickle as a few arrays. Int64 fields go narrowed (see
    :func:`_to_wire`).

    Parameters
    ----------
    records : list of tuple of ndarray or None
        Field ``f`` of every record has the same dtype and trailing shape;
        the first dimension may differ.

    Returns
    -------
    tuple
        The arguments of :func:`unpack_records`.
    """
    present = [r for r in records if r is not None]
    missing = [i for i, r in enumerate(records) if r is None]
    if not present:
        return (), np.zeros((0, 0), dtype=np.int64), (), missing, len(records)
    n_fields = len(present[0])
    lengths = np.array([[len(a) for a in r] for r in present], dtype=np.int64)
    fields = {f: np.concatenate([r[f] for r in present]) for f in range(n_fields)}
    fields, narrowed = _narrow(fields)
    return (tuple(fields[f] for f in range(n_fields)), lengths, narrowed, missing,
            len(records))


def unpack_records(fields, lengths, narrowed, missing, n_records):
    """The ``n_records`` records :func:`pack_records` packed: each field a
    view of one array, int64 fields int64 again, None where a record was
    missing."""
    fields = [a.astype(np.int64) if f in narrowed else a for f, a in enumerate(fields)]
    out = [None] * n_records
    skip = set(missing)
    present = (i for i in range(n_records) if i not in skip)
    lo = [0] * len(fields)
    for i, hi in zip(present, np.cumsum(lengths, axis=0).tolist()):
        out[i] = tuple(a[s:e] for a, s, e in zip(fields, lo, hi))
        lo = hi
    return out
