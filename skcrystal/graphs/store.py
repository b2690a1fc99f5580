"""Graph store: structures and graphs of datasets larger than memory, in LMDB.

A :class:`GraphStore` is a folder of a few `LMDB <https://www.symas.com/lmdb>`_
files (the memory-mapped key-value store the ALIGNN code uses for the
same purpose), not one file per structure, so a million structures are a
handful of inodes on a cluster file system:

* ``index.mdb``: the dataset's order (item ``i`` -> structure key and
  source file), its targets and a small JSON header;
* ``shard-NNN.mdb`` (``shards`` of them, chosen once at creation): each
  structure (lattice, periodic directions, atomic numbers, fractional
  coordinates) under its content key, and its graphs under the graph
  cache's entry keys (:func:`~skcrystal.graphs.cache.entry_key`: structure
  content + builder parameters), in the cache's pickle-free, checksummed
  ``.npz`` format (:func:`~skcrystal.graphs.cache.graph_to_bytes`).

Graphs of several parameter sets (radius, ``max_neighbors``...) live side by
side. A graph the store does not hold is built from the stored structure
when it is read (in the reading process, e.g. a DataLoader worker) unless
the store was opened with ``build_missing=False``.

Filling and reading
-------------------
:meth:`GraphStore.add_files`, :meth:`~GraphStore.add_folder` and
:meth:`~GraphStore.add_structures` parse and build in parallel with joblib
(``n_jobs``; chunks stream through the workers, so the filling process
holds a few chunks at a time, never the dataset) and write each chunk in one
transaction from the calling process. Structures are checked as the
estimators check theirs (overlapping atoms, degenerate lattices...); the
first bad one stops the fill with an error naming it, and the chunks
written before it stay. :meth:`~GraphStore.build_graphs` adds the graphs
of another parameter set.

Readers open each LMDB file lazily, once per process, read-only and without
the lock file (``lock=False``): any number of processes (DataLoader workers
with ``iterator_train__num_workers``, joblib or Dask workers) read the store
at once. A store object pickles as its path and options, never its data.
Fill first, then read: a writer and ``lock=False`` readers must not overlap.

:class:`LazyStructures` is the lazy sequence the estimators train and
predict on: over a store, a list of structure files, a folder, or any
sequence of structures, with optional targets.
"""
from __future__ import annotations

import io
import json
import os
import threading
from pathlib import Path

import numpy as np

from .._parallel import imap_chunks
from .._validation import structure_key
from .cache import BadCacheEntry, entry_key, graph_from_bytes, graph_to_bytes
from .builder import check_builder

__all__ = ["GraphStore", "LazyStructures", "STORE_FORMAT_VERSION"]

#: Version of the store layout; another version is refused with the reason.
STORE_FORMAT_VERSION = 1

_INDEX = "index.mdb"
_MAX_DBS = 4
_DEFAULT_MAP_SIZE = 64 * 2**30


def _lmdb():
    try:
        import lmdb
    except ImportError:  # pragma: no cover - exercised without the extra only
        raise ImportError("the graph store needs the lmdb package: "
                          "pip install 'skcrystal[store]' (or pip install lmdb)") from None
    return lmdb


_REGISTRY = {}
_REGISTRY_LOCK = threading.RLock()


def _item_key(i):
    return int(i).to_bytes(8, "big")


# ---------------------------------------------------------------- structures
def structure_to_bytes(structure):
    """What a graph depends on, as pickle-free ``.npz`` bytes.

    Lattice, periodic directions, atomic numbers and fractional coordinates
    (site properties, oxidation states and disorder are not kept);
    :func:`structure_from_bytes` gives back a structure with the same
    :func:`~skcrystal.graphs.cache.structure_key`.
    """
    buf = io.BytesIO()
    np.savez(buf, lattice=np.ascontiguousarray(structure.lattice.matrix, dtype=np.float64),
             pbc=np.asarray(structure.lattice.pbc, dtype=np.uint8),
             numbers=np.asarray(structure.atomic_numbers, dtype=np.int64),
             frac=np.ascontiguousarray(structure.frac_coords, dtype=np.float64))
    return buf.getvalue()


def structure_from_bytes(data):
    """Inverse of :func:`structure_to_bytes`."""
    from pymatgen.core import Lattice, Structure

    with np.load(io.BytesIO(data), allow_pickle=False) as z:
        lattice = Lattice(z["lattice"], pbc=tuple(bool(p) for p in z["pbc"]))
        return Structure(lattice, z["numbers"].tolist(), z["frac"],
                         coords_are_cartesian=False)


def read_structure(path):
    """One structure file (CIF by extension, else VASP POSCAR), as the loaders read it."""
    from ..datasets._files import _parse_files

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"structure file {path} not found")
    structures, _ = _parse_files([path], [str(path)], "", on_error="raise")
    return structures[0]


def folder_files(folder):
    """(files, targets or None) of a folder.

    A CGCNN or ALIGNN folder (``id_prop.csv``) gives its files in the
    table's order with its targets; any other folder its structure files
    (``.cif``, ``.vasp``, ``POSCAR*``...) sorted by name, without targets.
    """
    from ..datasets._files import _folder_kind, _folder_structure_files, _read_id_prop

    folder = Path(folder)
    if not folder.is_dir():
        raise NotADirectoryError(f"{folder} is not a folder")
    if (folder / "id_prop.csv").exists():
        kind = _folder_kind(folder)
        _, ids, y = _read_id_prop(folder, targets=False)
        files = [folder / (f"{i}.cif" if kind == "cgcnn" else i) for i in ids]
        return files, y
    files = _folder_structure_files(folder)
    if not files:
        raise ValueError(f"{folder} holds no structure file (.cif, .vasp, .poscar, "
                         "POSCAR*, CONTCAR*) and no id_prop.csv")
    return files, None


def _build_records(items, builder, extras, read):
    """Worker task: (position, source, item) -> (skey, structure bytes, graph key, graph bytes, source).

    Structures are checked as the estimators check theirs (errors name the
    position in the call and the file).
    """
    from .._validation import check_structures

    out = []
    for pos, source, item in items:
        s = read_structure(item) if read else item
        try:
            check_structures([s], sources=None if source is None else [source])
        except (ValueError, TypeError) as exc:
            raise type(exc)(str(exc).replace("X[0]", f"X[{pos}]", 1)) from None
        skey = structure_key(s)
        sbytes = structure_to_bytes(s)
        gkey = gbytes = None
        if builder is not None:
            g = builder.build(s, index=pos if source is None else source)
            for extra in extras:
                g.extra(extra)
            gkey = entry_key(skey, builder.key())
            gbytes = graph_to_bytes(g, gkey)
        out.append((skey, sbytes, gkey, gbytes, None if source is None else str(source)))
    return out


def _graph_records(items, builder, extras):
    """Worker task: (skey, structure bytes) -> (graph key, graph bytes)."""
    out = []
    for skey, sbytes in items:
        g = builder.build(structure_from_bytes(sbytes), index=skey[:12])
        for extra in extras:
            g.extra(extra)
        gkey = entry_key(skey, builder.key())
        out.append((skey, gkey, graph_to_bytes(g, gkey)))
    return out


def _chunks(seq, size):
    for j in range(0, len(seq), size):
        yield seq[j:j + size]


# ---------------------------------------------------------------- the store
class GraphStore:
    """LMDB-backed store of structures and their graphs (see the module docstring).

    Parameters
    ----------
    path : str or PathLike
        The store's folder (created by a writable store).
    readonly : bool, default False
        Open for reading only (no lock file, any number of processes).
    shards : int, default 1
        Number of LMDB data files, fixed when the store is created (an
        existing store keeps its own). Structures go to a shard by their
        content key.
    build_missing : bool, default True
        Build a graph the store does not hold from the stored structure
        when it is read (not written back); ``False`` raises ``KeyError``
        instead (to check that a store is complete).
    map_size : int, default 64 GiB
        Initial LMDB map size of a writer, bytes (grown when full; the
        files hold only what is written).

    Examples
    --------
    >>> from skcrystal.graphs import GraphBuilder, GraphStore, LazyStructures
    >>> store = GraphStore("graphs.store")                      # doctest: +SKIP
    >>> store.add_folder("cifs/", builder=GraphBuilder(), n_jobs=8)   # doctest: +SKIP
    >>> X = LazyStructures(store)                                # doctest: +SKIP
    """

    def __init__(self, path, readonly=False, shards=1, build_missing=True,
                 map_size=_DEFAULT_MAP_SIZE):
        self.path = os.fspath(path)
        self.readonly = bool(readonly)
        self.build_missing = bool(build_missing)
        self.map_size = int(map_size)
        if int(shards) < 1:
            raise ValueError(f"shards must be >= 1, got {shards}")
        if os.path.exists(self.path) and not os.path.isdir(self.path):
            raise NotADirectoryError(f"{self.path} is a file, not a graph store (a folder)")
        index = os.path.join(self.path, _INDEX)
        if not os.path.exists(index):
            if self.readonly:
                raise FileNotFoundError(f"{self.path} is not a graph store (no {_INDEX})")
            os.makedirs(self.path, exist_ok=True)
            self._put_meta({"format": "skcrystal-graph-store",
                            "version": STORE_FORMAT_VERSION, "shards": int(shards),
                            "n": 0, "targets": None})
        self._meta_cache = None
        self.shards = self._meta()["shards"]

    # ------------------------------------------------------------ environments
    def __getstate__(self):
        return {"path": self.path, "readonly": self.readonly,
                "build_missing": self.build_missing, "map_size": self.map_size}

    def __setstate__(self, state):
        self.__dict__.update(state)
        self._meta_cache = None
        self.shards = self._meta()["shards"]

    def __repr__(self):
        return (f"GraphStore({self.path!r}, n={len(self)}, shards={self.shards}"
                f"{', readonly=True' if self.readonly else ''})")

    def _env(self, name):
        """(env, named dbs) of one LMDB file, from the process-wide registry.

        LMDB allows one handle per file and process: every store object of
        a process shares it. A reader reuses a writer's handle; a writer
        replaces a read-only one.
        """
        path = os.path.abspath(os.path.join(self.path, name))
        with _REGISTRY_LOCK:
            if _REGISTRY.get("pid") != os.getpid():  # forked: the parent's handles are not ours
                _REGISTRY.clear()
                _REGISTRY["pid"] = os.getpid()
            entry = _REGISTRY.get(path)
            if entry is not None and (self.readonly or not entry[2]):
                return entry[0], entry[1]
            if entry is not None:
                entry[0].close()
            lmdb = _lmdb()
            if self.readonly:
                kwargs = dict(readonly=True, lock=False, readahead=False, max_readers=1024)
            else:
                kwargs = dict(map_size=self.map_size, readahead=False, max_readers=1024)
            env = lmdb.open(path, subdir=False, max_dbs=_MAX_DBS, **kwargs)
            names = ("meta", "items") if name == _INDEX else ("structures", "graphs")
            dbs = {db: env.open_db(db.encode(), create=not self.readonly) for db in names}
            _REGISTRY[path] = (env, dbs, self.readonly)
            return env, dbs

    def _index_env(self):
        return self._env(_INDEX)

    def _shard_name(self, skey):
        return f"shard-{int(skey[:8], 16) % self.shards:03d}.mdb"

    def _shard_env(self, skey):
        return self._env(self._shard_name(skey))

    def close(self):
        """Close this process's LMDB handles of the store (reopened on the next use)."""
        root = os.path.abspath(self.path) + os.sep
        with _REGISTRY_LOCK:
            for path in [p for p in _REGISTRY if p != "pid" and p.startswith(root)]:
                _REGISTRY.pop(path)[0].close()

    def _write(self, env_dbs, puts):
        """Write ``{db: [(key, value), ...]}`` in one transaction; grows a full map."""
        lmdb = _lmdb()
        env, dbs = env_dbs
        while True:
            try:
                with env.begin(write=True) as txn:
                    for db, pairs in puts.items():
                        for k, v in pairs:
                            txn.put(k, v, db=dbs[db])
                return
            except lmdb.MapFullError:
                env.set_mapsize(env.info()["map_size"] * 2)

    # ------------------------------------------------------------ header
    def _meta(self):
        if self._meta_cache is None or not self.readonly:
            env, dbs = self._index_env()
            with env.begin() as txn:
                raw = txn.get(b"header", db=dbs["meta"])
            if raw is None:
                raise ValueError(f"{self.path} is not a graph store (no header)")
            meta = json.loads(raw)
            if meta.get("format") != "skcrystal-graph-store":
                raise ValueError(f"{self.path} is not a skcrystal graph store")
            if meta.get("version", 0) > STORE_FORMAT_VERSION:
                raise ValueError(
                    f"{self.path} was written in store format {meta['version']}; this "
                    f"skcrystal reads up to {STORE_FORMAT_VERSION}: upgrade skcrystal")
            self._meta_cache = meta
        return self._meta_cache

    def _put_meta(self, meta, extra=()):
        self._write(self._index_env(), {"meta": [(b"header", json.dumps(meta).encode()),
                                                    *extra]})
        self._meta_cache = None

    def _check_writable(self):
        if self.readonly:
            raise ValueError(f"{self!r} was opened read-only")

    # ------------------------------------------------------------ reading
    def __len__(self):
        return int(self._meta()["n"])

    @property
    def targets(self):
        """The targets given when filling (ndarray), or None."""
        if self._meta()["targets"] is None:
            return None
        env, dbs = self._index_env()
        with env.begin() as txn:
            raw = txn.get(b"targets", db=dbs["meta"])
        return np.load(io.BytesIO(raw), allow_pickle=False)

    def _item(self, i):
        n = len(self)
        if not -n <= i < n:
            raise IndexError(f"item {i} out of range for a store of {n}")
        env, dbs = self._index_env()
        with env.begin() as txn:
            return json.loads(txn.get(_item_key(i % n), db=dbs["items"]))

    def key(self, i):
        """Structure content key of item ``i``."""
        return self._item(i)["key"]

    def source(self, i):
        """File item ``i`` was read from (str), or None."""
        return self._item(i).get("source")

    def keys(self):
        """Structure content keys of all items, in order (list of str)."""
        env, dbs = self._index_env()
        with env.begin() as txn:
            return [json.loads(v)["key"] for _, v in txn.cursor(db=dbs["items"])]

    def structure(self, i):
        """Structure of item ``i`` (see :func:`structure_to_bytes` for what is kept)."""
        return self.structure_by_key(self.key(i))

    def structure_by_key(self, skey):
        env, dbs = self._shard_env(skey)
        with env.begin() as txn:
            raw = txn.get(skey.encode(), db=dbs["structures"])
        if raw is None:
            raise KeyError(f"structure {skey} is not in {self.path}")
        return structure_from_bytes(raw)

    def graph(self, i, builder, extras=()):
        """Graph of item ``i`` with ``builder``'s parameters (and ``extras`` attached)."""
        return self.graph_by_key(self.key(i), builder, extras)

    def graph_by_key(self, skey, builder, extras=()):
        gkey = entry_key(skey, check_builder(builder, validate=False).key())
        env, dbs = self._shard_env(skey)
        with env.begin() as txn:
            raw = txn.get(gkey.encode(), db=dbs["graphs"])
            graph = None if raw is None else self._decode(raw, gkey)
        if graph is None:
            if not self.build_missing:
                raise KeyError(f"{self.path} holds no graph of structure {skey} with "
                               f"{builder!r} (opened with build_missing=False); "
                               "fill it with GraphStore.build_graphs")
            graph = builder.build(self.structure_by_key(skey), index=skey[:12])
        for extra in extras:
            graph.extra(extra)
        return graph

    def _decode(self, raw, gkey):
        try:
            return graph_from_bytes(bytes(raw), gkey)
        except BadCacheEntry as exc:
            raise ValueError(f"graph {gkey} in {self.path} is unusable ({exc}); "
                             "rebuild it with GraphStore.build_graphs") from None

    def missing_graphs(self, builder):
        """Structure keys without a graph of ``builder``'s parameters (list of str)."""
        pkey = check_builder(builder).key()
        missing = []
        for skey in dict.fromkeys(self.keys()):
            env, dbs = self._shard_env(skey)
            with env.begin() as txn:
                if txn.get(entry_key(skey, pkey).encode(), db=dbs["graphs"]) is None:
                    missing.append(skey)
        return missing

    # ------------------------------------------------------------ writing
    def _append(self, records, y=None):
        """Write records of one chunk (shards first, then the index)."""
        by_shard = {}
        for skey, sbytes, gkey, gbytes, _ in records:
            puts = by_shard.setdefault(skey, {"structures": [], "graphs": []})
            puts["structures"].append((skey.encode(), sbytes))
            if gkey is not None:
                puts["graphs"].append((gkey.encode(), gbytes))
        grouped = {}
        for skey, puts in by_shard.items():
            g = grouped.setdefault(self._shard_name(skey), {"structures": [], "graphs": []})
            for db in puts:
                g[db] += puts[db]
        for name, puts in grouped.items():
            self._write(self._env(name), puts)
        meta = self._meta()
        n = meta["n"]
        items = [(_item_key(n + j), json.dumps({"key": r[0], "source": r[4]}).encode())
                 for j, r in enumerate(records)]
        self._write(self._index_env(), {"items": items})
        return n + len(records)

    def _fill(self, items, y, builder, extras, n_jobs, chunk_size, read):
        self._check_writable()
        if builder is not None:
            check_builder(builder)
        start = len(self)
        if y is not None:
            y = np.asarray(y)
            if len(y) != len(items):
                raise ValueError(f"y has {len(y)} rows for {len(items)} structures")
            old = self.targets
            if start and old is None:
                raise ValueError("this store was filled without targets; pass y=None")
            if old is not None:
                y = np.concatenate([old, y])
        elif start and self.targets is not None:
            raise ValueError("this store was filled with targets; pass y too")
        n = start
        for records in imap_chunks(_build_records, list(_chunks(items, chunk_size)),
                                     n_jobs, builder=builder, extras=tuple(extras),
                                     read=read):
            n = self._append(records)
            meta = self._meta()
            meta["n"] = n
            self._put_meta(meta)
        meta = self._meta()
        extra = ()
        if y is not None:
            buf = io.BytesIO()
            np.save(buf, y, allow_pickle=False)
            meta["targets"] = {"dtype": y.dtype.str, "shape": list(y.shape)}
            extra = ((b"targets", buf.getvalue()),)
        self._put_meta(meta, extra)
        return self

    def add_structures(self, structures, y=None, builder=None, extras=(), n_jobs=None,
                       chunk_size=256):
        """Append structures (and their graphs when ``builder`` is given).

        Parameters
        ----------
        structures : sequence of Structure
        y : array-like, optional
            Their targets (a store holds targets for all items or none).
        builder : GraphBuilder, optional
            Build and store the graphs with these parameters.
        extras : sequence of GraphExtra
            Graph extras to compute and store with each graph.
        n_jobs : int or None
            joblib workers.
        chunk_size : int
            Structures per task and per write transaction.

        Returns
        -------
        self
        """
        items = [(i, None, s) for i, s in enumerate(structures)]
        return self._fill(items, y, builder, extras, n_jobs, chunk_size, read=False)

    def add_files(self, paths, y=None, builder=None, extras=(), n_jobs=None, chunk_size=256):
        """Append structure files, parsed (and built) in parallel.

        Parameters are those of :meth:`add_structures`, with ``paths`` the
        files (CIF by extension, otherwise VASP POSCAR); each item
        remembers its file (:meth:`source`).
        """
        items = [(i, os.fspath(p), os.fspath(p)) for i, p in enumerate(paths)]
        return self._fill(items, y, builder, extras, n_jobs, chunk_size, read=True)

    def add_folder(self, folder, builder=None, extras=(), n_jobs=None, chunk_size=256):
        """Append the structures of a folder (with the targets of its ``id_prop.csv``).

        A CGCNN or ALIGNN folder gives its targets; any other folder its
        structure files sorted by name, without targets (see
        :func:`folder_files`).
        """
        files, y = folder_files(folder)
        return self.add_files(files, y=y, builder=builder, extras=extras, n_jobs=n_jobs,
                              chunk_size=chunk_size)

    def build_graphs(self, builder, extras=(), n_jobs=None, chunk_size=256):
        """Build and store the graphs of ``builder``'s parameters that are missing.

        Returns
        -------
        int
            The number of graphs built.
        """
        self._check_writable()
        check_builder(builder)
        missing = self.missing_graphs(builder)
        items = []
        for skey in missing:
            env, dbs = self._shard_env(skey)
            with env.begin() as txn:
                items.append((skey, bytes(txn.get(skey.encode(), db=dbs["structures"]))))
        for records in imap_chunks(_graph_records, list(_chunks(items, chunk_size)),
                                     n_jobs, builder=builder, extras=tuple(extras)):
            grouped = {}
            for skey, gkey, gbytes in records:
                grouped.setdefault(self._shard_name(skey), []).append((gkey.encode(), gbytes))
            for name, pairs in grouped.items():
                self._write(self._env(name), {"graphs": pairs})
        return len(missing)

    def stats(self):
        """Entries and bytes on disk (dict)."""
        out = {"items": len(self), "structures": 0, "graphs": 0, "bytes": 0}
        for k in range(self.shards):
            name = f"shard-{k:03d}.mdb"
            if not os.path.exists(os.path.join(self.path, name)):
                continue
            env, dbs = self._shard_env(f"{k:08x}")
            with env.begin() as txn:
                out["structures"] += txn.stat(dbs["structures"])["entries"]
                out["graphs"] += txn.stat(dbs["graphs"])["entries"]
        for f in os.listdir(self.path):
            if f.endswith(".mdb"):
                out["bytes"] += os.path.getsize(os.path.join(self.path, f))
        return out


# ---------------------------------------------------------------- lazy sequence
class _ILoc:
    def __init__(self, owner):
        self._owner = owner

    def __getitem__(self, key):
        return self._owner._subset(key)


class LazyStructures:
    """A sequence of structures read on demand, with optional targets.

    The estimators train and predict on it batch by batch
    (``est.fit(LazyStructures(...))``) without holding the dataset in memory;
    scikit-learn's cross-validation and searches split it into lazy subsets
    (it has the ``take``/``iloc`` interface they use for pandas objects),
    which pickle small to joblib and Dask workers.

    Parameters
    ----------
    source : GraphStore, str, PathLike, or sequence
        A store (or its folder), a folder of structure files (a CGCNN or
        ALIGNN folder gives its targets), or a sequence whose items are
        structure file paths or pymatgen Structures.
    y : array-like, optional
        Targets; by default those of the store or folder, if any.

    Examples
    --------
    >>> X = LazyStructures(GraphStore("graphs.store", readonly=True))   # doctest: +SKIP
    >>> est = CGCNNRegressor().fit(X)            # targets of the store   # doctest: +SKIP
    """

    def __init__(self, source, y=None, *, _indices=None):
        self.source = source
        self.y = y
        self._store = None
        self._items = None
        self._targets = None
        if isinstance(source, GraphStore):
            self._store = source
        elif isinstance(source, (str, os.PathLike)):
            if os.path.exists(os.path.join(source, _INDEX)):
                self._store = GraphStore(source, readonly=True)
            else:
                files, targets = folder_files(source)
                self._items = [os.fspath(f) for f in files]
                self._targets = targets
        else:
            if not hasattr(source, "__len__") or isinstance(source, (bytes, dict)):
                raise TypeError(f"source must be a GraphStore, a folder or store path, or a "
                                f"sequence of structure files, got {type(source).__name__}")
            self._items = source
            self._targets = getattr(source, "targets", None)
        if self._store is not None:
            self._targets = self._store.targets
        if y is not None:
            self._targets = None  # y given: it wins
        self._indices = _indices
        n = len(self._store) if self._store is not None else len(self._items)
        self._n_source = n
        if y is not None and _indices is None and len(y) != n:
            raise ValueError(f"y has {len(y)} rows for {n} structures")

    # ------------------------------------------------------------ sequence
    def __len__(self):
        return self._n_source if self._indices is None else len(self._indices)

    def _pos(self, i):
        n = len(self)
        if not -n <= i < n:
            raise IndexError(f"index {i} out of range for {n} structures")
        i %= n
        return i if self._indices is None else int(self._indices[i])

    def __getitem__(self, key):
        if isinstance(key, (int, np.integer)):
            return self.structure(int(key))
        return self._subset(key)

    def __iter__(self):
        for i in range(len(self)):
            yield self.structure(i)

    def _subset(self, key):
        positions = np.arange(len(self))[key]
        if np.ndim(positions) == 0:
            return self.structure(int(positions))
        base = np.arange(self._n_source) if self._indices is None else self._indices
        out = LazyStructures.__new__(LazyStructures)
        out.__dict__.update(self.__dict__)
        out._indices = np.asarray(base)[positions]
        return out

    def take(self, indices, axis=0):
        """Lazy subset at ``indices`` (what scikit-learn's splitters call)."""
        if axis != 0:
            raise ValueError("LazyStructures has one axis")
        return self._subset(np.asarray(indices, dtype=np.int64))

    @property
    def iloc(self):
        """Positional indexer (``X.iloc[rows]`` -> lazy subset)."""
        return _ILoc(self)

    @property
    def shape(self):
        return (len(self),)

    def __repr__(self):
        what = repr(self._store) if self._store is not None else f"{self._n_source} items"
        return f"LazyStructures({what}, n={len(self)})"

    # ------------------------------------------------------------ contents
    @property
    def store(self):
        """The :class:`GraphStore` read, or None."""
        return self._store

    @property
    def targets(self):
        """Targets of the items (ndarray), or None."""
        y = self.y if self.y is not None else self._targets
        if y is None:
            return None
        y = np.asarray(y)
        return y if self._indices is None else y[self._indices]

    def structure(self, i):
        """The structure at position ``i`` (parsed or read now)."""
        j = self._pos(i)
        if self._store is not None:
            return self._store.structure(j)
        item = self._items[j]
        if isinstance(item, tuple):  # (structure, target) items of a torch Dataset
            item = item[0]
        if isinstance(item, (str, os.PathLike)):
            return read_structure(item)
        return item

    def source_name(self, i):
        """How errors name item ``i``: its file, or None."""
        j = self._pos(i)
        if self._store is not None:
            return self._store.source(j)
        item = self._items[j]
        return os.fspath(item) if isinstance(item, (str, os.PathLike)) else None

    def graph(self, i, builder, extras=()):
        """The graph of item ``i``: from the store, else built now."""
        if self._store is not None:
            return self._store.graph(self._pos(i), builder, extras)
        graph = builder.build(self.structure(i), index=i)
        for extra in extras:
            graph.extra(extra)
        return graph
