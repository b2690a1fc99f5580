"""Graph extras: model-specific additions to a crystal graph.

Some models need more than the bare neighbour graph: ALIGNN a line graph
of bond pairs, CrystalNet the index of each edge's reverse, CrysToGraph
positional encodings. A :class:`GraphExtra` describes one such addition:
the function that computes its arrays from a
:class:`~skcrystal.graphs.CrystalGraph`, its parameters, and how each array
is shifted when graphs are concatenated into a batch. A model declares the
extras it reads (its ``graph_extras`` property); the graph layer computes
them once per graph, memoises them inside the cached graph and counts
their bytes in the cache's memory bound.
"""
from __future__ import annotations

__all__ = ["GraphExtra", "OFFSET_KINDS"]

#: How an extra array is shifted when graphs are batched: ``None`` (features,
#: concatenated unchanged), ``"node"`` (node indices), ``"edge"`` (edge
#: indices), or the name of another array of the same extra (indices into
#: that array's items).
OFFSET_KINDS = (None, "node", "edge")


class GraphExtra:
    """One model-specific addition to a crystal graph.

    Parameters
    ----------
    name : str
        Short name, e.g. ``"line_graph"``.
    func : callable
        ``func(graph, **params) -> dict[str, ndarray]``, each array with its
        items along axis 0.
    offsets : mapping of str -> None, "node", "edge" or str
        For every array ``func`` returns, how its values shift in a batch
        (see :data:`OFFSET_KINDS`).
    params : mapping
        Keyword arguments of ``func``; part of the memo key, so two models
        asking for different versions of one extra never collide.
    """

    def __init__(self, name, func, offsets, params=None):
        self.name = str(name)
        self.func = func
        self.offsets = dict(offsets)
        self.params = tuple(sorted((params or {}).items()))
        for array, kind in self.offsets.items():
            if kind not in OFFSET_KINDS and kind not in self.offsets:
                raise ValueError(
                    f"graph extra {name!r}: offset of {array!r} must be one of "
                    f"{OFFSET_KINDS} or another array of the extra, got {kind!r}")

    def __repr__(self):
        return f"GraphExtra({self.key})"

    def __hash__(self):
        return hash(self.key)

    def __eq__(self, other):
        return isinstance(other, GraphExtra) and other.key == self.key

    @property
    def key(self):
        """Memo key: the name and the parameters."""
        args = ",".join(f"{k}={v!r}" for k, v in self.params)
        return f"{self.name}({args})"

    def compute(self, graph):
        """The extra's arrays for ``graph`` (not memoised; see ``CrystalGraph.extra``)."""
        arrays = self.func(graph, **dict(self.params))
        unknown = set(arrays).difference(self.offsets)
        if unknown:
            raise KeyError(f"graph extra {self.key} returned arrays {sorted(unknown)} "
                           "that its offsets do not declare")
        return arrays
