"""Graph cache: each graph is built once per (structure content, parameters).

Cross-validation folds, grid-search candidates, refits and ``predict`` calls
all ask the cache first, so a structure's graph is built once per process.
The key is a SHA-256 of everything the graph depends on -- the structure's
lattice, periodic directions (``pbc``), atomic numbers and fractional
coordinates, plus the builder's parameters and the graph format version --
not the structure's identity, so a structure parsed twice from the same CIF
hits the cache too.

* Memory: a process-wide LRU, bounded by ``SKCRYSTAL_CACHE_BYTES``
  (default 4 GiB of graph arrays). Extras attached to a graph after it was
  cached (line graphs, positional encodings) are counted once the attaching
  code calls :meth:`GraphCache.refresh_nbytes` or
  :meth:`GraphCache.refresh_graphs`; the sizes of cache hits are recounted
  by every :func:`get_graphs` call.
* Disk (optional): ``cache_dir`` holds one numpy ``.npz`` file per graph
  under a folder per parameter set, for datasets larger than memory or
  reused across sessions. See "Disk format" below.
* Parallel: misses are built with joblib (``n_jobs``), in chunks so the
  per-task overhead stays small.

Disk format
-----------
An entry is an uncompressed ``.npz`` read with ``allow_pickle=False``, so a
crafted file cannot execute code: at worst it is reported as unusable. It
holds the graph's arrays (and its extras with a plain-number dtype), plus a
JSON header with the format version (:data:`GRAPH_FORMAT_VERSION`), the
entry's full key and a SHA-256 checksum of the arrays' names, dtypes,
shapes and bytes. An entry that is empty, truncated, bit-flipped, of another
format, or holds another key's graph (a swapped or copied file) is reported
with a :class:`GraphCacheWarning` naming its path, and rebuilt.

Writes go to a unique temporary file in the same folder
(:func:`tempfile.mkstemp`), renamed over the entry with :func:`os.replace`,
which is atomic: readers see the old entry or the new one, never half of
one, and any number of threads and processes may write one folder. A writer
killed mid-write leaves only its temporary file (``.<name>.*.tmp``); those
older than an hour are deleted the first time a process uses the folder.
Entries are not fsync'ed: after a power loss an entry may be empty or
partial, which the checksum detects.
"""
from __future__ import annotations

import hashlib
import io
import json
import os
import re
import tempfile
import threading
import time
import warnings
from collections import OrderedDict

import numpy as np

from .._parallel import imap_chunks_shared, shared_processes
from .._validation import _arrays_key, _lattices_pass, check_n_jobs, structure_key
from .builder import _structure_arrays, check_builder
from .collate import pack_records, unpack_records
from .graph import CrystalGraph

__all__ = ["structure_key", "GraphCache", "get_graphs", "attach_extras", "clear_cache",
           "default_cache",
           "save_graph", "load_graph", "graph_to_bytes", "graph_from_bytes", "entry_key",
           "GraphCacheWarning", "BadCacheEntry", "GRAPH_FORMAT_VERSION"]

#: Version of the on-disk graph format; entries of another version are rebuilt.
#: (Version 1 was a pickle per graph, never read by this release.)
GRAPH_FORMAT_VERSION = 2

#: Temporary files older than this (seconds) are orphans of killed writers.
ORPHAN_AGE = 3600.0

_ARRAY_FIELDS = {
    # name: (dtype, trailing shape)
    "atomic_numbers": (np.int64, ()),
    "positions": (np.float64, (3,)),
    "lattice": (np.float64, (3,)),
    "center": (np.int64, ()),
    "neighbor": (np.int64, ()),
    "distances": (np.float64, ()),
    "offsets": (np.int64, (3,)),
    "vectors": (np.float64, (3,)),
}
_META = "__meta__"
_TMP_SUFFIX = ".tmp"


class GraphCacheWarning(UserWarning):
    """A disk cache entry was unusable (and rebuilt) or could not be written."""


class BadCacheEntry(Exception):
    """Raised by :func:`load_graph` for an unusable entry; the message says why."""


def _graph_nbytes(graph):
    try:
        return int(graph.nbytes)
    except Exception:  # noqa: BLE001 - a foreign object in a user cache counts as empty
        return 0


class GraphCache:
    """LRU memory cache of graphs; thread-safe.

    Parameters
    ----------
    max_bytes : int
        Memory bound of the cached graph arrays (extras included once
        counted), bytes.
    """

    def __init__(self, max_bytes=None):
        if max_bytes is None:
            max_bytes = int(os.environ.get("SKCRYSTAL_CACHE_BYTES", 4 * 2**30))
        self.max_bytes = max_bytes
        self._store = OrderedDict()
        self._sizes = {}
        self._key_of = {}  # id(graph) -> key, for refresh_graphs
        self._bytes = 0
        self._lock = threading.RLock()
        self.hits = 0
        self.misses = 0

    def __len__(self):
        return len(self._store)

    @property
    def nbytes(self):
        """Bytes currently counted for the cached graphs."""
        return self._bytes

    def get(self, key):
        with self._lock:
            graph = self._store.get(key)
            if graph is not None:
                self._store.move_to_end(key)
            return graph

    def put(self, key, graph):
        """Add ``graph`` under ``key`` (an existing key is only recounted)."""
        with self._lock:
            if key in self._store:
                self._resize(key)
                return
            self._store[key] = graph
            self._key_of[id(graph)] = key
            size = _graph_nbytes(graph)
            self._sizes[key] = size
            self._bytes += size
            self._evict()

    def refresh_nbytes(self, key):
        """Recount the memory of the graph under ``key`` (after extras were attached).

        Evicts least recently used graphs if the bound is now exceeded.
        Unknown keys are ignored.

        Returns
        -------
        int
            The graph's size in bytes now (0 for an unknown key).
        """
        with self._lock:
            if key not in self._store:
                return 0
            size = self._resize(key)
            self._evict()
            return size

    def refresh_graphs(self, graphs):
        """:meth:`refresh_nbytes` for graphs given by object, not key.

        For code that attaches extras to the graphs :func:`get_graphs`
        returned; graphs not (or no longer) in this cache are ignored.
        """
        with self._lock:
            for g in graphs:
                key = self._key_of.get(id(g))
                if key is not None and self._store.get(key) is g:
                    self._resize(key)
            self._evict()

    def _resize(self, key):
        size = _graph_nbytes(self._store[key])
        self._bytes += size - self._sizes[key]
        self._sizes[key] = size
        return size

    def _evict(self):
        while self._bytes > self.max_bytes and len(self._store) > 1:
            key, old = self._store.popitem(last=False)
            self._bytes -= self._sizes.pop(key)
            if self._key_of.get(id(old)) == key:
                del self._key_of[id(old)]

    def clear(self):
        with self._lock:
            self._store.clear()
            self._sizes.clear()
            self._key_of.clear()
            self._bytes = 0
            self.hits = self.misses = 0


default_cache = GraphCache()


def clear_cache():
    """Empty the process-wide in-memory graph cache."""
    default_cache.clear()


# ---------------------------------------------------------------- disk format
def _encode_memo_key(key):
    """JSON form of an extras memo key (str, number, None or nested tuples)."""
    if key is None or isinstance(key, (str, bool, int, float)):
        return key
    if isinstance(key, tuple):
        return {"tuple": [_encode_memo_key(k) for k in key]}
    raise TypeError(f"cannot store a memo key of type {type(key).__name__}")


def _decode_memo_key(obj):
    if isinstance(obj, dict):
        return tuple(_decode_memo_key(k) for k in obj["tuple"])
    return obj


def _checksum(arrays):
    h = hashlib.sha256()
    for name in sorted(arrays):
        a = np.ascontiguousarray(arrays[name])
        h.update(json.dumps([name, a.dtype.str, list(a.shape)]).encode())
        h.update(a.tobytes())
    return h.hexdigest()


def _graph_to_arrays(graph):
    arrays = {name: np.ascontiguousarray(getattr(graph, name), dtype=dtype)
              for name, (dtype, _) in _ARRAY_FIELDS.items()}
    arrays["radius"] = np.asarray(float(graph.radius), dtype=np.float64)
    index = []
    memo = graph.extras.get("_memo", {}) if isinstance(graph.extras, dict) else {}
    for memo_key, named in memo.items():
        try:
            encoded = _encode_memo_key(memo_key)
        except TypeError:
            continue  # recomputed when needed
        values = {}
        for name, value in named.items():
            a = np.asarray(value)
            if a.dtype.kind not in "biuf":
                break
            values[name] = np.ascontiguousarray(a)
        else:
            for name, a in values.items():
                field = f"x{len(index)}"
                index.append([encoded, name, field])
                arrays[field] = a
    return arrays, index


def graph_to_bytes(graph, key):
    """The pickle-free ``.npz`` entry of ``graph`` as bytes (the disk format).

    :func:`save_graph` writes these bytes to a file; the graph store
    (:class:`~skcrystal.graphs.store.GraphStore`) keeps them in LMDB.

    Parameters
    ----------
    graph : CrystalGraph
    key : str
        The entry's full key (:func:`entry_key`), checked by
        :func:`graph_from_bytes`.

    Returns
    -------
    bytes
    """
    buf = io.BytesIO()
    np.savez(buf, **_entry_arrays(graph, key))
    return buf.getvalue()


def _entry_arrays(graph, key):
    """The named arrays of an entry: the graph's, its extras', and the header."""
    from .. import __version__

    arrays, index = _graph_to_arrays(graph)
    meta = {"format": GRAPH_FORMAT_VERSION, "key": key, "sha256": _checksum(arrays),
            "extras": index, "skcrystal": __version__}
    return {_META: np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8), **arrays}


def save_graph(path, graph, key):
    """Write ``graph`` to ``path`` atomically, as a pickle-free ``.npz`` entry.

    Parameters
    ----------
    path : str
        Entry file; its folder must exist.
    graph : CrystalGraph
    key : str
        The entry's full key, checked by :func:`load_graph`.
    """
    arrays = _entry_arrays(graph, key)
    folder, base = os.path.split(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=f".{base}.", suffix=_TMP_SUFFIX)
    try:
        with os.fdopen(fd, "wb") as f:
            np.savez(f, **arrays)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


def load_graph(path, key):
    """Read an entry written by :func:`save_graph`; never unpickles.

    Raises
    ------
    BadCacheEntry
        The file is missing, empty, truncated, corrupted (checksum), of
        another format version, or holds another key's graph.
    """
    return _load_entry(path, key)


def graph_from_bytes(data, key):
    """Read the bytes of :func:`graph_to_bytes`; never unpickles.

    Raises
    ------
    BadCacheEntry
        As :func:`load_graph`.
    """
    arrays = _stored_npz_arrays(data)
    if arrays is None:  # not the layout np.savez writes: numpy's own reader decides
        return _load_entry(io.BytesIO(data), key)
    try:
        meta = json.loads(bytes(arrays.pop(_META)).decode())
    except (KeyError, ValueError) as exc:
        raise BadCacheEntry(f"no usable header ({type(exc).__name__})") from None
    if not isinstance(meta, dict):
        raise BadCacheEntry("no usable header")
    return _check_entry(arrays, meta, key)


_NPY_HEADER = re.compile(
    r"\{'descr': '([<>|=]?[a-zA-Z]\d*)', 'fortran_order': False, "
    r"'shape': \(((?:\d+, ?)*\d*)\), \}\s*$")


def _stored_npz_arrays(data):
    """The arrays of an uncompressed ``.npz`` held in memory, or None.

    A fast path for the store's reads (numpy's reader parses each array
    header with ``ast``): plain-number dtypes only (never an object array,
    so nothing can be unpickled), views of one writable copy of ``data``.
    Anything unexpected returns None, and :func:`np.load` reads the entry.
    """
    import zipfile

    try:
        buf = bytearray(data)
        zf = zipfile.ZipFile(io.BytesIO(buf))
        out = {}
        for info in zf.infolist():
            if info.compress_type != zipfile.ZIP_STORED or not info.filename.endswith(".npy"):
                return None
            h = info.header_offset
            start = h + 30 + int.from_bytes(buf[h + 26:h + 28], "little") + \
                int.from_bytes(buf[h + 28:h + 30], "little")
            member = memoryview(buf)[start:start + info.file_size]
            if bytes(member[:6]) != b"\x93NUMPY":
                return None
            if member[6] == 1:
                hlen, hstart = int.from_bytes(member[8:10], "little"), 10
            else:
                hlen, hstart = int.from_bytes(member[8:12], "little"), 12
            m = _NPY_HEADER.match(bytes(member[hstart:hstart + hlen]).decode("latin1"))
            if m is None:
                return None
            dtype = np.dtype(m.group(1))
            if dtype.hasobject or dtype.kind not in "biuf":
                return None
            shape = tuple(int(x) for x in m.group(2).replace(" ", "").split(",") if x)
            count = int(np.prod(shape, dtype=np.int64))
            body = member[hstart + hlen:]
            if len(body) != count * dtype.itemsize:
                return None
            out[info.filename[:-4]] = np.frombuffer(body, dtype=dtype).reshape(shape)
        return out
    except Exception:  # noqa: BLE001 - the careful reader reports what is wrong
        return None


def _load_entry(source, key):
    try:
        z = np.load(source, allow_pickle=False)
    except Exception as exc:  # noqa: BLE001 - any unreadable file is one kind of failure
        raise BadCacheEntry(f"unreadable ({type(exc).__name__}: {exc})") from None
    if not isinstance(z, np.lib.npyio.NpzFile):
        raise BadCacheEntry("not an .npz archive")
    try:
        with z:
            if _META not in z.files:
                raise BadCacheEntry("no header")
            meta = json.loads(bytes(z[_META]).decode())
            arrays = {name: z[name] for name in z.files if name != _META}
    except BadCacheEntry:
        raise
    except Exception as exc:  # noqa: BLE001 - bad CRC, truncated member, bad JSON...
        raise BadCacheEntry(f"corrupted ({type(exc).__name__}: {exc})") from None
    return _check_entry(arrays, meta, key)


def _check_entry(arrays, meta, key):
    fmt = meta.get("format")
    if fmt != GRAPH_FORMAT_VERSION:
        raise BadCacheEntry(
            f"written in graph format {fmt!r} by skcrystal "
            f"{meta.get('skcrystal')}, this release reads format "
            f"{GRAPH_FORMAT_VERSION}")
    if meta.get("key") != key:
        raise BadCacheEntry(f"holds another entry (key {meta.get('key')!r})")
    if _checksum(arrays) != meta.get("sha256"):
        raise BadCacheEntry("checksum mismatch (corrupted)")
    try:
        return _arrays_to_graph(arrays, meta)
    except BadCacheEntry:
        raise
    except Exception as exc:  # noqa: BLE001 - a well-formed archive of wrong content
        raise BadCacheEntry(f"malformed ({type(exc).__name__}: {exc})") from None


def _arrays_to_graph(arrays, meta):
    try:
        fields = {name: arrays[name] for name in _ARRAY_FIELDS}
        radius = float(arrays["radius"])
    except KeyError as exc:
        raise BadCacheEntry(f"missing array {exc}") from None
    n = len(fields["atomic_numbers"])
    n_edges = len(fields["center"])
    for name, (dtype, tail) in _ARRAY_FIELDS.items():
        a = fields[name]
        rows = 3 if name == "lattice" else (n if name in ("atomic_numbers", "positions")
                                            else n_edges)
        if a.dtype != dtype or a.shape != (rows,) + tail:
            raise BadCacheEntry(f"array {name} has dtype {a.dtype} and shape {a.shape}")
    for name in ("center", "neighbor"):
        if n_edges and not (0 <= fields[name].min() and fields[name].max() < n):
            raise BadCacheEntry(f"array {name} indexes atoms outside 0..{n - 1}")
    graph = CrystalGraph(radius=radius, **fields)
    memo = {}
    for encoded, name, field in meta.get("extras", []):
        memo.setdefault(_decode_memo_key(encoded), {})[name] = arrays[field]
    if memo:
        graph.extras["_memo"] = memo
    return graph


_cleaned = set()
_cleaned_lock = threading.Lock()


def _clean_orphans(folder, max_age=ORPHAN_AGE):
    """Delete temporary files of killed writers (older than ``max_age`` s)."""
    now = time.time()
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return
    for entry in entries:
        if not (entry.name.startswith(".") and entry.name.endswith(_TMP_SUFFIX)):
            continue
        try:
            if now - entry.stat().st_mtime > max_age:
                os.unlink(entry.path)
        except OSError:  # another process removed or renamed it first
            pass


def check_cache_dir(cache_dir):
    """Raise ``NotADirectoryError`` naming ``cache_dir`` if it is an existing file."""
    if cache_dir is not None and os.path.exists(cache_dir) and not os.path.isdir(cache_dir):
        raise NotADirectoryError(f"cache_dir={os.fspath(cache_dir)!r} is a file, not a "
                                 "folder (the on-disk graph cache is a folder)")


def _params_dir(cache_dir, builder):
    tag = hashlib.sha256(repr(builder.key()).encode()).hexdigest()[:16]
    path = os.path.join(cache_dir, f"graphs-v{GRAPH_FORMAT_VERSION}-{tag}")
    try:
        os.makedirs(path, exist_ok=True)
    except OSError as e:  # os names only the subfolder, not the parameter
        check_cache_dir(cache_dir)
        raise OSError(e.errno, f"cache_dir={os.fspath(cache_dir)!r}: cannot create the "
                               f"graph cache folder {path!r}: {e.strerror}") from None
    with _cleaned_lock:
        first = path not in _cleaned
        _cleaned.add(path)
    if first:
        _clean_orphans(path)
    return path


def entry_key(skey, pkey):
    """Full key of a graph entry: structure content key + builder parameters.

    Parameters
    ----------
    skey : str
        :func:`structure_key` of the structure.
    pkey : tuple
        ``GraphBuilder.key()`` of the builder.

    Returns
    -------
    str
    """
    return f"skcrystal-graph/v{GRAPH_FORMAT_VERSION}/{skey}/{pkey!r}"


_entry_key = entry_key


class _StructureChunk:
    """(index, Structure) pairs whose graphs a worker builds.

    Pickled (to go to a worker) as the structures' arrays rather than the
    ``Structure``: pickling and unpickling a ``Structure`` costs more than
    building its graph from the arrays (figures in ``benchmarks/RESULTS.md``),
    and what this process builds itself is never converted. The arrays of
    the whole chunk go as one array per field (:func:`pack_records`).
    """

    __slots__ = ("items", "read")

    def __init__(self, items, read=None):
        self.items = items
        self.read = read

    def __reduce__(self):
        read = self.read or [None] * len(self.items)
        sent = [_arrays_or_structure(s) if a is None else a
                for (_, s), a in zip(self.items, read)]
        # a structure whose arrays could not be read goes whole
        whole = {j: s for j, s in enumerate(sent) if not isinstance(s, tuple)}
        packed = pack_records([None if j in whole else s for j, s in enumerate(sent)])
        return _unpacked_chunk, ([i for i, _ in self.items], packed, whole)


def _unpacked_chunk(indices, packed, whole):
    arrays = unpack_records(*packed)
    return _StructureChunk([(i, whole[j] if j in whole else a)
                            for j, (i, a) in enumerate(zip(indices, arrays))])


def _arrays_or_structure(s):
    if isinstance(s, tuple):
        return s
    try:
        return _structure_arrays(s)
    except Exception:  # noqa: BLE001 - pickled whole: build() names what is wrong
        return s


class _BuiltGraphs(list):
    """The graphs a worker built for a chunk (None where one failed), sent
    back as one array per field (:func:`pack_records`): one by one, their
    unpickling cost this process ~70 µs a graph, about what building it does."""

    def __reduce__(self):
        records = [None if g is None else tuple(getattr(g, name) for name in _ARRAY_FIELDS)
                   for g in self]
        return _unpacked_graphs, (pack_records(records),
                                  [None if g is None else g.radius for g in self])


def _unpacked_graphs(packed, radii):
    return [None if r is None else CrystalGraph(**dict(zip(_ARRAY_FIELDS, r)), radius=radius)
            for r, radius in zip(unpack_records(*packed), radii)]


def _build_chunk(chunk, builder, read=None):
    """Graphs of ``(index, Structure)`` pairs (a list or a :class:`_StructureChunk`).

    The chunk's graphs are cut in one pass (:meth:`GraphBuilder._build_many`).
    ``read`` (or the chunk's own) holds each structure's arrays where the
    caller has already read them (:func:`~skcrystal.graphs.builder._structure_arrays`),
    else None. A structure that arrives as arrays (in a worker) and whose
    graph fails gives None: the caller then builds it from the
    ``Structure``, whose error names it as :meth:`GraphBuilder.build` does.
    """
    items = getattr(chunk, "items", chunk)
    read = getattr(chunk, "read", None) if read is None else read
    arrays_list, where = [], []
    for j, (_, s) in enumerate(items):
        try:
            arrays_list.append(s if isinstance(s, tuple) else
                               read[j] if read is not None and read[j] is not None else
                               _structure_arrays(s))
        except Exception:  # noqa: BLE001 - build() below names what is wrong
            continue
        where.append(j)
    # build()'s own guard, on the same arrays, for the whole chunk at once
    passed = _lattices_pass(arrays_list)
    arrays_list = [a for a, p in zip(arrays_list, passed.tolist()) if p]
    where = [j for j, p in zip(where, passed.tolist()) if p]
    out = [None] * len(items)
    for j, graph in zip(where, builder._build_many(arrays_list)):
        out[j] = graph
    guarded = set(where)
    for j, (i, s) in enumerate(items):
        if out[j] is not None:
            continue
        if not isinstance(s, tuple):
            # in input order: the first failing structure is the one named
            out[j] = builder.build(s, index=i)
        elif j in guarded:
            try:  # a grown radius, or the error the caller then names
                out[j] = builder._build(s, "", str, str)
            except ValueError:
                pass
    return _BuiltGraphs(out)


def get_graphs(structures, builder, n_jobs=None, cache_dir=None, cache=None,
               indices=None, progress=False):
    """Graphs of ``structures``, from the cache where possible.

    Parameters
    ----------
    structures : list of Structure
        Already validated (see :func:`skcrystal._validation.check_structures`).
    builder : GraphBuilder
    n_jobs : int or None
        Processes building the graphs that must be built, this one included
        (joblib's meaning: -1 is one per core; see
        :func:`skcrystal._parallel.imap_chunks_shared`). None and 1 build
        them here, as does any value inside a joblib worker.
    cache_dir : str or None
        Optional on-disk cache folder (see the module docstring).
    cache : GraphCache or None
        Memory cache; the process-wide one by default.
    indices : sequence of int, optional
        Positions of the structures in the user's input, for errors.
    progress : bool, default False
        Show a progress bar (tqdm, on stderr) while graphs are built.

    Returns
    -------
    list of CrystalGraph
    """
    cache = default_cache if cache is None else cache
    check_builder(builder)
    check_n_jobs(n_jobs)
    pkey = builder.key()
    # each structure read once, for its key and, if it must be built, its graph
    read, keys = [], []
    for s in structures:
        try:
            arrays = _structure_arrays(s)
        except Exception:  # noqa: BLE001 - structure_key names what is wrong
            arrays = None
        read.append(arrays)
        keys.append((structure_key(s) if arrays is None else
                     _arrays_key(len(arrays[0]), arrays[3], arrays[4], arrays[0], arrays[1]),
                     pkey))
    graphs = [cache.get(k) for k in keys]
    missing = [i for i, g in enumerate(graphs) if g is None]
    with cache._lock:
        cache.hits += len(structures) - len(missing)
        # extras attached since these graphs were counted
        for i, g in enumerate(graphs):
            if g is not None and cache._store.get(keys[i]) is g:
                cache._resize(keys[i])
        cache._evict()
    disk = _params_dir(cache_dir, builder) if cache_dir else None
    if disk and missing:
        still = []
        for i in missing:
            path = os.path.join(disk, keys[i][0] + ".npz")
            if not os.path.exists(path):
                still.append(i)
                continue
            try:
                graphs[i] = load_graph(path, _entry_key(*keys[i]))
            except BadCacheEntry as exc:
                warnings.warn(f"graph cache entry {path} is unusable ({exc}); "
                              "rebuilding it", GraphCacheWarning, stacklevel=2)
                still.append(i)
                continue
            cache.put(keys[i], graphs[i])
        missing = still
    if not missing:
        return graphs
    with cache._lock:
        cache.misses += len(missing)
    # duplicates within one call are built once
    first = {}
    for i in missing:
        first.setdefault(keys[i], i)
    todo = list(first.values())
    label = (lambda i: i) if indices is None else (lambda i: indices[i])
    items = [(label(i), structures[i]) for i in todo]
    read = [read[i] for i in todo]
    bar = None
    if progress:
        from tqdm.auto import tqdm
        bar = tqdm(total=len(items), desc="building graphs", unit="structure",
                   leave=False)
    n_processes, _ = shared_processes(n_jobs)
    try:
        if n_processes == 1 or len(items) < 64:
            if bar is None:
                built = _build_chunk(items, builder, read)
            else:
                built = []
                for j in range(0, len(items), 16):
                    built += _build_chunk(items[j:j + 16], builder, read[j:j + 16])
                    bar.update(len(items[j:j + 16]))
        else:
            # this process builds its share beside n_jobs - 1 workers: what
            # it builds needs no pickling, and it would otherwise only wait
            # on its workers (see benchmarks/bench_graph_jobs.py)
            size = min(max(len(items) // (8 * n_processes), 16), 256)
            chunks = [_StructureChunk(items[j:j + size], read[j:j + size])
                      for j in range(0, len(items), size)]
            built = []
            for result in imap_chunks_shared(_build_chunk, chunks, n_jobs, builder=builder):
                built += result
                if bar is not None:
                    bar.update(len(result))
            for j, g in enumerate(built):
                if g is None:  # raises the error naming the structure
                    built[j] = _build_chunk(items[j:j + 1], builder)[0]
    finally:
        if bar is not None:
            bar.close()
    write_error = None
    for i, g in zip(todo, built):
        cache.put(keys[i], g)
        if disk and write_error is None:
            path = os.path.join(disk, keys[i][0] + ".npz")
            try:
                save_graph(path, g, _entry_key(*keys[i]))
            except OSError as exc:  # read-only or full disk: the memory cache still works
                write_error = exc
                warnings.warn(f"could not write graph cache entry {path} ({exc}); "
                              "continuing without writing to the disk cache",
                              GraphCacheWarning, stacklevel=2)
    built_of = dict(zip(todo, built))
    for i in missing:
        if graphs[i] is None:
            # from the cache so duplicates share one object; the built one if a
            # tiny bound evicted it at once
            graphs[i] = cache.get(keys[i])
            if graphs[i] is None:
                graphs[i] = built_of[first[keys[i]]]
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
    labels : sequence of str or callable, optional
        How to name each graph in errors (e.g. ``"X[3] (NaCl)"``), or a
        function of the graph's position making that name (called for an
        error only).
    """
    if not extras:
        return graphs
    cache = default_cache if cache is None else cache
    for i, g in enumerate(graphs):
        for extra in extras:
            try:
                g.extra(extra)
            except ValueError as exc:
                where = (f"graph {i}" if labels is None else
                         labels(i) if callable(labels) else labels[i])
                raise ValueError(f"{where}: {extra.name}: {exc}") from exc
    cache.refresh_graphs(graphs)
    return graphs
