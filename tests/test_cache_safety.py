"""The graph cache: complete keys, no code execution, corruption and crash safety.

Fault tests: a writer SIGKILLed mid-write, corrupted, swapped and crafted
entries, two threads and two processes writing one folder.
"""
import os
import pickle
import signal
import subprocess
import sys
import threading
import time
import warnings

import numpy as np
import pytest
from pymatgen.core import Lattice, Structure

from skcrystal.graphs import GraphBuilder, GraphCache, build_graph, get_graphs
from skcrystal.graphs import cache as cache_mod
from skcrystal.graphs.cache import (GRAPH_FORMAT_VERSION, GraphCacheWarning, load_graph,
                                    save_graph, structure_key)
from skcrystal.graphs.line_graph import line_graph_extra

FIELDS = ("atomic_numbers", "positions", "lattice", "center", "neighbor", "distances",
          "offsets", "vectors")
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def same_graph(a, b):
    return a.radius == b.radius and all(
        np.array_equal(getattr(a, f), getattr(b, f)) for f in FIELDS)


def structures(n, seed=0):
    """``n`` distinct rattled CsCl-type cells (each its own cache key)."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        frac = np.array([[0, 0, 0], [0.5, 0.5, 0.5]]) + rng.normal(scale=0.01, size=(2, 3))
        out.append(Structure(Lattice.cubic(4.1), ["Cs", "Cl"], frac))
    return out


BUILDER = GraphBuilder(radius=5.0, max_neighbors=8)


def entries(folder):
    return sorted(p for p in folder.rglob("*.npz"))


def fresh_read(folder, X, builder=BUILDER):
    """Read ``folder`` as a new process would, failing on any cache warning."""
    with warnings.catch_warnings():
        warnings.simplefilter("error", GraphCacheWarning)
        return get_graphs(X, builder, cache=GraphCache(), cache_dir=str(folder))


# ---------------------------------------------------------------- keys
def test_key_covers_pbc_whatever_the_call_order(tmp_path):
    lat = Lattice(np.diag([4.0, 4.0, 4.0]))
    slab_lat = Lattice(np.diag([4.0, 4.0, 4.0]), pbc=(True, True, False))
    bulk = Structure(lat, ["Cs", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]])
    slab = Structure(slab_lat, ["Cs", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]])
    assert structure_key(bulk) != structure_key(slab)
    ref_bulk, ref_slab = build_graph(bulk, radius=5.0), build_graph(slab, radius=5.0)
    # no periodic image along c for the slab: fewer edges
    assert ref_slab.n_edges < ref_bulk.n_edges
    for order in ([bulk, slab], [slab, bulk]):
        cache = GraphCache()
        for s in order:  # one call each: the second must not hit the first's entry
            get_graphs([s], GraphBuilder(radius=5.0), cache=cache, cache_dir=str(tmp_path))
        g_bulk, g_slab = get_graphs([bulk, slab], GraphBuilder(radius=5.0), cache=cache)
        assert same_graph(g_bulk, ref_bulk) and same_graph(g_slab, ref_slab)
        g_bulk, g_slab = fresh_read(tmp_path, [bulk, slab], GraphBuilder(radius=5.0))
        assert same_graph(g_bulk, ref_bulk) and same_graph(g_slab, ref_slab)


def test_key_covers_builder_parameters_and_format_version(tmp_path):
    X = structures(2)
    get_graphs(X, GraphBuilder(radius=5.0, max_neighbors=8), cache=GraphCache(),
               cache_dir=str(tmp_path))
    few = get_graphs(X, GraphBuilder(radius=5.0, max_neighbors=2), cache=GraphCache(),
                     cache_dir=str(tmp_path))
    assert same_graph(few[0], build_graph(X[0], radius=5.0, max_neighbors=2))
    folders = sorted(p.name for p in tmp_path.iterdir())
    assert len(folders) == 2 and all(f.startswith(f"graphs-v{GRAPH_FORMAT_VERSION}-")
                                     for f in folders)
    import json
    keys = set()
    for path in entries(tmp_path):
        with np.load(path) as z:
            meta = json.loads(bytes(z["__meta__"]).decode())
        assert meta["format"] == GRAPH_FORMAT_VERSION
        keys.add(meta["key"])
    assert keys == {cache_mod._entry_key(structure_key(s), GraphBuilder(
        radius=5.0, max_neighbors=k).key()) for s in X for k in (8, 2)}
    assert all(k.startswith(f"skcrystal-graph/v{GRAPH_FORMAT_VERSION}/") for k in keys)


def test_roundtrip_with_extras(tmp_path):
    (s,) = structures(1)
    g = build_graph(s, radius=5.0, max_neighbors=8)
    extra = line_graph_extra()
    key = extra.key
    lg = g.extra(extra)
    path = str(tmp_path / "entry.npz")
    save_graph(path, g, "k1")
    back = load_graph(path, "k1")
    assert same_graph(back, g)
    memo = back.extras["_memo"][key]
    assert set(memo) == {"lg_index", "lg_cos"}
    np.testing.assert_array_equal(memo["lg_index"], lg["lg_index"])
    np.testing.assert_array_equal(memo["lg_cos"], lg["lg_cos"])
    # memoised: asking again does not recompute
    assert back.extra(extra) is memo
    assert os.listdir(tmp_path) == ["entry.npz"]  # no temporary file left


# ---------------------------------------------------------------- corruption
def _flip_byte(path, where):
    data = bytearray(path.read_bytes())
    data[where] ^= 0x40
    path.write_bytes(bytes(data))


CORRUPTIONS = {
    "empty": (lambda p, other: p.write_bytes(b""), "unreadable"),
    "truncated": (lambda p, other: p.write_bytes(p.read_bytes()[: len(p.read_bytes()) // 2]),
                  "unreadable"),
    # a byte inside the last array's data: the zip CRC or the checksum catches it
    "bit_flip": (lambda p, other: _flip_byte(p, len(p.read_bytes()) // 2),
                 "(corrupted|unreadable|checksum)"),
    "swapped": (lambda p, other: p.write_bytes(other.read_bytes()), "holds another entry"),
    "garbage": (lambda p, other: p.write_bytes(os.urandom(500)), "unreadable"),
    "npy": (lambda p, other: np.save(open(p, "wb"), np.arange(3)), "not an .npz"),
}


@pytest.mark.parametrize("kind", sorted(CORRUPTIONS))
def test_corrupted_entry_is_reported_and_rebuilt(tmp_path, kind):
    X = structures(2)
    built = get_graphs(X, BUILDER, cache=GraphCache(), cache_dir=str(tmp_path))
    path = tmp_path / next(tmp_path.iterdir()).name / f"{structure_key(X[0])}.npz"
    other = path.with_name(f"{structure_key(X[1])}.npz")
    corrupt, reason = CORRUPTIONS[kind]
    corrupt(path, other)
    with pytest.warns(GraphCacheWarning, match=rf"{path.name} is unusable \({reason}"):
        again = get_graphs(X, BUILDER, cache=GraphCache(), cache_dir=str(tmp_path))
    assert same_graph(again[0], built[0]) and same_graph(again[1], built[1])
    # rebuilt on disk: a third reader gets it without a warning
    assert same_graph(fresh_read(tmp_path, X)[0], built[0])


def test_bit_flip_in_array_data_caught_by_checksum(tmp_path):
    """A flipped bit that the zip container does not see (CRC rewritten)."""
    (s,) = structures(1)
    g = build_graph(s, radius=5.0, max_neighbors=8)
    path = str(tmp_path / "e.npz")
    save_graph(path, g, "k")
    with np.load(path) as z:
        arrays = {name: z[name].copy() for name in z.files}
    arrays["distances"][0] += 1e-9  # a silently wrong bond length
    np.savez(path, **arrays)
    with pytest.raises(cache_mod.BadCacheEntry, match="checksum mismatch"):
        load_graph(path, "k")


def test_other_format_version_is_reported(tmp_path, monkeypatch):
    (s,) = structures(1)
    path = str(tmp_path / "e.npz")
    monkeypatch.setattr(cache_mod, "GRAPH_FORMAT_VERSION", 1)
    save_graph(path, build_graph(s, radius=5.0), "k")
    monkeypatch.undo()
    with pytest.raises(cache_mod.BadCacheEntry,
                       match=rf"graph format 1 by skcrystal .*reads format {GRAPH_FORMAT_VERSION}"):
        load_graph(path, "k")


class _Payload:
    """Unpickling this creates a directory: proof that code ran."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.mkdir, (self.marker,))


def test_crafted_pickle_entry_does_not_run(tmp_path):
    X = structures(1)
    get_graphs(X, BUILDER, cache=GraphCache(), cache_dir=str(tmp_path / "cache"))
    (folder,) = (tmp_path / "cache").iterdir()
    marker = tmp_path / "pwned"
    payload = pickle.dumps(_Payload(str(marker)))
    entry = folder / f"{structure_key(X[0])}.npz"
    entry.write_bytes(payload)
    # where the previous release kept pickles, too
    (folder / f"{structure_key(X[0])}.pkl").write_bytes(payload)
    old = tmp_path / "cache" / f"graphs-{folder.name.rsplit('-', 1)[1]}"
    old.mkdir()
    (old / f"{structure_key(X[0])}.pkl").write_bytes(payload)
    with pytest.warns(GraphCacheWarning, match="unusable"):
        (g,) = get_graphs(X, BUILDER, cache=GraphCache(), cache_dir=str(tmp_path / "cache"))
    assert not marker.exists()
    assert same_graph(g, build_graph(X[0], radius=5.0, max_neighbors=8))
    # the payload is live: unpickling it would have run it
    pickle.loads(payload)
    assert marker.exists()


# ---------------------------------------------------------------- temporary files
def test_orphaned_temporary_files_are_cleaned(tmp_path, monkeypatch):
    X = structures(1)
    get_graphs(X, BUILDER, cache=GraphCache(), cache_dir=str(tmp_path))
    (folder,) = tmp_path.iterdir()
    old = folder / ".abc.npz.k1l2.tmp"
    new = folder / ".abc.npz.m3n4.tmp"
    old.write_bytes(b"partial")
    new.write_bytes(b"partial")
    long_ago = time.time() - 2 * cache_mod.ORPHAN_AGE
    os.utime(old, (long_ago, long_ago))
    monkeypatch.setattr(cache_mod, "_cleaned", set())  # as in a new process
    get_graphs(X, BUILDER, cache=GraphCache(), cache_dir=str(tmp_path))
    # the old one is an orphan; the recent one may belong to a live writer
    assert not old.exists() and new.exists()


def test_unwritable_cache_warns_and_still_returns_graphs(tmp_path, monkeypatch):
    def refuse(*args, **kwargs):
        raise PermissionError(13, "Permission denied")
    monkeypatch.setattr(cache_mod.tempfile, "mkstemp", refuse)
    X = structures(3)
    with pytest.warns(GraphCacheWarning, match="could not write graph cache entry"):
        graphs = get_graphs(X, BUILDER, cache=GraphCache(), cache_dir=str(tmp_path))
    assert all(same_graph(g, build_graph(s, radius=5.0, max_neighbors=8))
               for g, s in zip(graphs, X))


def test_cache_dir_that_cannot_be_a_folder_is_named(tmp_path):
    from skcrystal.estimators.cgcnn import CGCNNRegressor
    a_file = tmp_path / "graphs.txt"
    a_file.write_text("not a folder")
    # the estimator checks before reading any structure
    with pytest.raises(NotADirectoryError, match=r"cache_dir='.*graphs.txt' is a file, not a "
                                                 r"folder"):
        CGCNNRegressor(cache_dir=str(a_file)).fit(["never read.cif"], [0.0])
    # below a file: os's error with the parameter and the folder it could not create
    with pytest.raises(OSError, match=r"cache_dir='.*graphs.txt/sub': cannot create the graph "
                                      r"cache folder '.*graphs-v\d+-[0-9a-f]+'"):
        get_graphs(structures(1), BUILDER, cache=GraphCache(), cache_dir=str(a_file / "sub"))


# ---------------------------------------------------------------- crashes
_KILLED_MID_WRITE = """
import sys, time
import numpy as np
sys.path.insert(0, {root!r})
from tests.test_cache_safety import structures, BUILDER
from skcrystal.graphs import GraphCache, get_graphs

def stuck_savez(f, **arrays):
    f.write(b"PK\\x03\\x04 half an entry")
    f.flush()
    open({marker!r}, "w").close()
    time.sleep(120)

np.savez = stuck_savez
get_graphs(structures(3), BUILDER, cache=GraphCache(), cache_dir={folder!r})
"""


def _spawn(code):
    return subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, env={**os.environ, "OMP_NUM_THREADS": "1"})


def _wait_for(predicate, proc, timeout=120):
    t0 = time.time()
    while not predicate():
        if proc.poll() is not None:
            raise AssertionError(f"child exited early: {proc.communicate()[1][-2000:]}")
        if time.time() - t0 > timeout:
            proc.kill()
            raise AssertionError("child did not get there in time")
        time.sleep(0.02)


def test_writer_killed_mid_write_leaves_no_entry(tmp_path, monkeypatch):
    marker = tmp_path / "writing"
    folder = tmp_path / "cache"
    proc = _spawn(_KILLED_MID_WRITE.format(root=ROOT, marker=str(marker),
                                           folder=str(folder)))
    _wait_for(marker.exists, proc)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL
    (params,) = folder.iterdir()
    leftovers = os.listdir(params)
    # the half-written temporary file is there, no entry under a real name
    assert len(leftovers) == 1 and leftovers[0].endswith(".tmp"), leftovers
    X = structures(3)
    graphs = fresh_read(folder, X)
    assert all(same_graph(g, build_graph(s, radius=5.0, max_neighbors=8))
               for g, s in zip(graphs, X))
    assert len(entries(folder)) == 3
    # once old, the orphan is removed by the next process to use the folder
    orphan = params / leftovers[0]
    long_ago = time.time() - 2 * cache_mod.ORPHAN_AGE
    os.utime(orphan, (long_ago, long_ago))
    monkeypatch.setattr(cache_mod, "_cleaned", set())
    fresh_read(folder, X)
    assert not orphan.exists()


_WRITER = """
import sys, time, warnings
sys.path.insert(0, {root!r})
from tests.test_cache_safety import structures, BUILDER
from skcrystal.graphs import GraphCache, get_graphs
from skcrystal.graphs.cache import GraphCacheWarning
warnings.simplefilter("error", GraphCacheWarning)
X = structures({n})
order = list(range(len(X)))
if {reverse}:
    order.reverse()
for _ in range({rounds}):
    # a fresh memory cache each round: reads the entries the other writes
    for j in range(0, len(order), {chunk}):
        get_graphs([X[i] for i in order[j:j + {chunk}]], BUILDER, cache=GraphCache(),
                   cache_dir={folder!r})
        time.sleep({pause})
print("done", flush=True)
"""


def test_writer_killed_at_a_random_time(tmp_path):
    # the writer pauses 5 ms per entry, so it is still writing when killed
    folder = tmp_path / "cache"
    proc = _spawn(_WRITER.format(root=ROOT, n=1000, reverse=False, rounds=1, chunk=1, pause=0.005,
                                 folder=str(folder)))
    _wait_for(lambda: folder.exists() and len(entries(folder)) >= 20, proc)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    n_written = len(entries(folder))
    assert 20 <= n_written < 1000
    # written in order: the first n_written entries and a few never written
    X = structures(1000)[:n_written + 5]
    graphs = fresh_read(folder, X)
    for i in (0, n_written - 1, n_written + 4):
        assert same_graph(graphs[i], build_graph(X[i], radius=5.0, max_neighbors=8))


def test_two_processes_write_one_folder(tmp_path):
    folder = tmp_path / "cache"
    procs = [_spawn(_WRITER.format(root=ROOT, n=60, reverse=rev, rounds=3, chunk=20, pause=0,
                                   folder=str(folder))) for rev in (False, True)]
    for p in procs:
        out, err = p.communicate(timeout=300)
        assert p.returncode == 0 and out.decode().strip() == "done", err.decode()[-2000:]
    X = structures(60)
    graphs = fresh_read(folder, X)
    assert len(entries(folder)) == 60
    assert not [n for n in os.listdir(next(folder.iterdir())) if n.endswith(".tmp")]
    assert all(same_graph(g, build_graph(s, radius=5.0, max_neighbors=8))
               for g, s in zip(graphs, X))


def test_threads_write_one_folder(tmp_path):
    X = structures(40)
    errors = []
    shared = GraphCache()

    def work(seed):
        order = np.random.default_rng(seed).permutation(len(X))
        try:
            for _ in range(3):
                # own and shared memory caches: concurrent disk writes of the
                # same keys and concurrent updates of one LRU
                get_graphs([X[i] for i in order], BUILDER, cache=GraphCache(),
                           cache_dir=str(tmp_path))
                get_graphs([X[i] for i in order], BUILDER, cache=shared,
                           cache_dir=str(tmp_path))
        except Exception as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    with warnings.catch_warnings():
        warnings.simplefilter("error", GraphCacheWarning)
        threads = [threading.Thread(target=work, args=(seed,)) for seed in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    assert not errors, errors
    graphs = fresh_read(tmp_path, X)
    assert len(entries(tmp_path)) == 40
    assert all(same_graph(g, build_graph(s, radius=5.0, max_neighbors=8))
               for g, s in zip(graphs, X))
    assert len(shared) == 40
    assert shared.nbytes == sum(g.nbytes for g in graphs)


# ---------------------------------------------------------------- memory bound
def test_memory_bound_counts_extras_attached_later():
    X = structures(4)
    graphs = [build_graph(s, radius=5.0, max_neighbors=8) for s in X]
    bare = sum(g.nbytes for g in graphs)
    cache = GraphCache(max_bytes=bare)
    for i, g in enumerate(graphs):
        cache.put(f"k{i}", g)
    assert len(cache) == 4 and cache.nbytes == bare
    extra = line_graph_extra()
    graphs[0].extra(extra)
    grown = graphs[0].nbytes
    assert grown > graphs[1].nbytes
    # by key
    assert cache.refresh_nbytes("k0") == grown
    assert cache.nbytes <= cache.max_bytes
    # k0 was the least recently used and is now over the bound: evicted
    assert cache.get("k0") is None and len(cache) == 3
    # by object, for code that holds graphs rather than keys
    for g in graphs[1:3]:
        g.extra(extra)
    cache.refresh_graphs(graphs)
    assert cache.nbytes <= cache.max_bytes
    assert cache.nbytes == sum(cache.get(k).nbytes for k in list(cache._store))
    assert cache.refresh_nbytes("unknown") == 0


def test_get_graphs_recounts_hits_with_extras():
    X = structures(3)
    cache = GraphCache()
    graphs = get_graphs(X, BUILDER, cache=cache)
    before = cache.nbytes
    extra = line_graph_extra()
    for g in graphs:
        g.extra(extra)
    assert cache.nbytes == before  # not told yet
    again = get_graphs(X, BUILDER, cache=cache)
    assert all(a is b for a, b in zip(graphs, again))
    assert cache.nbytes == sum(g.nbytes for g in graphs) > before
