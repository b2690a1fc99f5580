"""Graph cache: each graph is built once per (structure content, parameters).

Cross-validation folds, grid-search candidates, refits and ``predict`` calls
all ask the cache first, so a structure's graph is built once per process.
The key is a SHA-1 of the structure's content (lattice, atomic numbers,
fractional coordinates), not its identity, so a structure parsed twice from
the same CIF hits the cache too.

* Memory: a process-wide LRU, bounded by ``SKCRYSTAL_CACHE_BYTES``
  (default 4 GiB of graph arrays).
* Disk (optional): ``cache_dir`` holds one pickle per graph under a folder
  per parameter set, for datasets larger than memory or reused across
  sessions.
* Parallel: misses are built with joblib (``n_jobs``), in chunks so the
  per-task overhead stays small.
"""
from __future__ import annotations

import hashlib
import os
import pickle
from collections import OrderedDict

import numpy as np

__all__ = ["structure_key", "GraphCache", "get_graphs", "attach_extras", "clear_cache",
           "default_cache"]


def structure_key(structure):
    """Content hash of a structure (hex SHA-1).

    Two structures with the same lattice matrix, species and fractional
    coordinates (bitwise) share a key; anything else differs.
    """
    h = hashlib.sha1()
    h.update(np.ascontiguousarray(structure.lattice.matrix, dtype=np.float64).tobytes())
    h.update(np.asarray(structure.atomic_numbers, dtype=np.int64).tobytes())
    h.update(np.ascontiguousarray(structure.frac_coords, dtype=np.float64).tobytes())
    return h.hexdigest()


class GraphCache:
    """LRU memory cache of graphs with an optional on-disk layer.

    Parameters
    ----------
    max_bytes : int
        Memory bound of the cached graph arrays, bytes.
    """

    def __init__(self, max_bytes=None):
        if max_bytes is None:
            max_bytes = int(os.environ.get("SKCRYSTAL_CACHE_BYTES", 4 * 2**30))
        self.max_bytes = max_bytes
        self._store = OrderedDict()
        self._bytes = 0
        self.hits = 0
        self.misses = 0

    def __len__(self):
        return len(self._store)

    def get(self, key):
        graph = self._store.get(key)
        if graph is not None:
            self._store.move_to_end(key)
        return graph

    def put(self, key, graph):
        if key in self._store:
            return
        self._store[key] = graph
        self._bytes += graph.nbytes
        self._evict()

    def grow(self, nbytes):
        """Count ``nbytes`` more held by cached graphs (extras attached later)."""
        self._bytes += int(nbytes)
        self._evict()

    def _evict(self):
        while self._bytes > self.max_bytes and len(self._store) > 1:
            _, old = self._store.popitem(last=False)
            self._bytes -= old.nbytes

    def clear(self):
        self._store.clear()
        self._bytes = 0
        self.hits = self.misses = 0


default_cache = GraphCache()


def clear_cache():
    """Empty the process-wide in-memory graph cache."""
    default_cache.clear()


def _params_dir(cache_dir, builder):
    tag = hashlib.sha1(repr(builder.key()).encode()).hexdigest()[:16]
    path = os.path.join(cache_dir, f"graphs-{tag}")
    os.makedirs(path, exist_ok=True)
    return path


def _build_chunk(builder, items):
    return [builder.build(s, index=i) for i, s in items]


def get_graphs(structures, builder, n_jobs=None, cache_dir=None, cache=None,
               indices=None):
    """Graphs of ``structures``, from the cache where possible.

    Parameters
    ----------
    structures : list of Structure
        Already validated (see :func:`skcrystal._validation.check_structures`).
    builder : GraphBuilder
    n_jobs : int or None
        joblib workers for the graphs that must be built.
    cache_dir : str or None
        Optional on-disk cache folder.
    cache : GraphCache or None
        Memory cache; the process-wide one by default.
    indices : sequence of int, optional
        Positions of the structures in the user's input, for errors.

    Returns
    -------
    list of CrystalGraph
    """
    cache = default_cache if cache is None else cache
    builder.validate()
    pkey = builder.key()
    keys = [(structure_key(s), pkey) for s in structures]
    graphs = [cache.get(k) for k in keys]
    missing = [i for i, g in enumerate(graphs) if g is None]
    cache.hits += len(structures) - len(missing)
    disk = _params_dir(cache_dir, builder) if cache_dir else None
    if disk and missing:
        still = []
        for i in missing:
            path = os.path.join(disk, keys[i][0] + ".pkl")
            if os.path.exists(path):
                with open(path, "rb") as f:
                    graphs[i] = pickle.load(f)
                cache.put(keys[i], graphs[i])
            else:
                still.append(i)
        missing = still
    if not missing:
        return graphs
    cache.misses += len(missing)
    # duplicates within one call are built once
    first = {}
    for i in missing:
        first.setdefault(keys[i], i)
    todo = list(first.values())
    label = (lambda i: i) if indices is None else (lambda i: indices[i])
    items = [(label(i), structures[i]) for i in todo]
    if n_jobs in (None, 1) or len(items) < 64:
        built = _build_chunk(builder, items)
    else:
        from joblib import Parallel, delayed, effective_n_jobs
        n_workers = effective_n_jobs(n_jobs)
        n_chunks = min(len(items), 4 * n_workers)
        chunks = [items[j::n_chunks] for j in range(n_chunks)]
        results = Parallel(n_jobs=n_jobs)(
            delayed(_build_chunk)(builder, chunk) for chunk in chunks)
        built = [None] * len(items)
        for j, chunk_result in enumerate(results):
            built[j::n_chunks] = chunk_result
    for i, g in zip(todo, built):
        cache.put(keys[i], g)
        if disk:
            path = os.path.join(disk, keys[i][0] + ".pkl")
            tmp = path + f".{os.getpid()}.tmp"
            with open(tmp, "wb") as f:
                pickle.dump(g, f, protocol=pickle.HIGHEST_PROTOCOL)
            os.replace(tmp, path)
    for i in missing:
        graphs[i] = graphs[i] if graphs[i] is not None else cache.get(keys[i])
        if graphs[i] is None:  # evicted at once by a tiny cache bound
            graphs[i] = built[todo.index(first[keys[i]])]
    return graphs


def attach_extras(graphs, extras, cache=None, labels=None):
    """Compute the graph extras of ``graphs`` (memoised) and count their bytes.

    Parameters
    ----------
    graphs : list of CrystalGraph
        Graphs from :func:`get_graphs` (so held by ``cache``).
    extras : sequence of GraphExtra
    cache : GraphCache or None
        The cache whose memory bound must include the new arrays; the
        process-wide one by default.
    labels : sequence of str, optional
        How to name each graph in errors (e.g. ``"X[3] (NaCl)"``).
    """
    if not extras:
        return graphs
    cache = default_cache if cache is None else cache
    added = 0
    for i, g in enumerate(graphs):
        before = g.nbytes
        for extra in extras:
            try:
                g.extra(extra)
            except ValueError as exc:
                where = labels[i] if labels is not None else f"graph {i}"
                raise ValueError(f"{where}: {extra.name}: {exc}") from exc
        added += g.nbytes - before
    if added:
        cache.grow(added)
    return graphs
