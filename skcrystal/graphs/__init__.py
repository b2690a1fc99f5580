"""Structures -> graphs: building, atom features, batching and caching.

This layer is numpy + pymatgen only (batching produces torch tensors); it
knows nothing of models or scikit-learn.
"""
from .graph import CrystalGraph, register_extra, EXTRA_OFFSETS
from .builder import GraphBuilder, build_graph
from .batch import GraphBatch, collate_graphs
from .cache import GraphCache, get_graphs, clear_cache, structure_key, default_cache
from .line_graph import line_graph
from .positional import positional_encodings
from .reverse_edges import reverse_edges
from .atom_features import atom_feature_table, supported_elements, feature_names, load_atom_init

__all__ = [
    "CrystalGraph", "register_extra", "EXTRA_OFFSETS", "GraphBuilder", "build_graph",
    "GraphBatch", "collate_graphs", "GraphCache", "get_graphs", "clear_cache",
    "structure_key", "default_cache", "atom_feature_table", "supported_elements",
    "feature_names", "load_atom_init", "line_graph", "positional_encodings",
    "reverse_edges",
]
