"""Structures -> graphs: building, batching, caching and graph extras.

This layer is numpy + pymatgen only (batching produces torch tensors); it
knows nothing of models or scikit-learn. Names are imported on first use,
so a worker process that only builds graphs (:mod:`skcrystal.graphs.files`)
does not pay for importing torch.
"""
import importlib

# numpy only; imported now because two of them share their module's name
# (an attribute lookup would otherwise find the submodule once imported)
from .graph import CrystalGraph
from .extras import GraphExtra
from .builder import GraphBuilder, build_graph
from .line_graph import line_graph
from .reverse_edges import reverse_edges
from .positional import positional_encodings

# these import torch (batching) or the cache machinery: on first use
_LAZY = {
    "GraphBatch": "batch", "collate_graphs": "batch",
    "GraphCache": "cache", "get_graphs": "cache", "attach_extras": "cache",
    "clear_cache": "cache", "structure_key": "cache", "default_cache": "cache",
    "GraphStore": "store", "LazyStructures": "store",
}

__all__ = [
    "CrystalGraph", "GraphExtra", "GraphBuilder", "build_graph",
    "GraphBatch", "collate_graphs", "GraphCache", "get_graphs", "attach_extras", "clear_cache",
    "structure_key", "default_cache", "line_graph", "positional_encodings",
    "reverse_edges", "GraphStore", "LazyStructures",
]


def __getattr__(name):
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{module}"), name)
    globals()[name] = value
    return value


def __dir__():
    return sorted(set(globals()) | set(__all__))
