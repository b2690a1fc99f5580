"""Structures -> graphs: building, batching, caching and graph extras.

This layer is numpy + pymatgen only (batching produces torch tensors); it
knows nothing of models or scikit-learn.
"""
from .graph import CrystalGraph
from .extras import GraphExtra
from .builder import GraphBuilder, build_graph
from .batch import GraphBatch, collate_graphs
from .cache import GraphCache, get_graphs, attach_extras, clear_cache, structure_key, default_cache
from .line_graph import line_graph
from .store import GraphStore, LazyStructures
from .positional import positional_encodings
from .reverse_edges import reverse_edges

__all__ = [
    "CrystalGraph", "GraphExtra", "GraphBuilder", "build_graph",
    "GraphBatch", "collate_graphs", "GraphCache", "get_graphs", "attach_extras", "clear_cache",
    "structure_key", "default_cache", "line_graph", "positional_encodings",
    "reverse_edges", "GraphStore", "LazyStructures",
]
