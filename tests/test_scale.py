"""Scale-out: the graph store, lazy datasets, DDP on 2 processes, Dask searches.

The DDP test starts ``torchrun --nproc-per-node 2`` (gloo backend, CPU) and
the Dask test a ``dask.distributed.LocalCluster`` of 2 single-threaded
workers; both are skipped with the reason when the engine is missing.
"""
import os
import pickle
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch

from skcrystal import CGCNNClassifier, CGCNNRegressor
from skcrystal.datasets import load_perovskites
from skcrystal.graphs import (GraphBuilder, GraphStore, LazyStructures, build_graph,
                              default_cache, structure_key)
from skcrystal.graphs.cache import BadCacheEntry, entry_key, graph_from_bytes, graph_to_bytes
from skcrystal.graphs.store import structure_from_bytes, structure_to_bytes

pytest.importorskip("lmdb")

ROOT = Path(__file__).resolve().parents[1]
FAST = dict(max_epochs=2, batch_size=8, random_state=0, module__n_conv=2,
            module__hidden=16, module__h_fea_len=16)


@pytest.fixture(scope="module")
def data():
    return load_perovskites(n=48)


def same_graph(a, b):
    return (np.array_equal(a.center, b.center) and np.array_equal(a.neighbor, b.neighbor)
            and np.allclose(a.distances, b.distances) and np.array_equal(a.offsets, b.offsets))


@pytest.fixture(scope="module")
def store(data, tmp_path_factory):
    X, y = data
    path = tmp_path_factory.mktemp("store") / "graphs.store"
    return GraphStore(path, shards=3).add_structures(X, y, builder=GraphBuilder(), n_jobs=2,
                                                     chunk_size=16)


def write_files(X, folder):
    folder.mkdir(exist_ok=True)
    paths = []
    for i, s in enumerate(X):
        p = folder / f"s{i:03d}.cif"
        s.to(filename=str(p))
        paths.append(p)
    return paths


# ---------------------------------------------------------------- the store
def test_entry_bytes_round_trip_and_checks(nacl):
    g = build_graph(nacl)
    key = entry_key(structure_key(nacl), GraphBuilder().key())
    assert same_graph(graph_from_bytes(graph_to_bytes(g, key), key), g)
    with pytest.raises(BadCacheEntry, match="another entry"):
        graph_from_bytes(graph_to_bytes(g, key), key + "x")
    data = bytearray(graph_to_bytes(g, key))
    data[-200] ^= 0xFF
    with pytest.raises(BadCacheEntry):
        graph_from_bytes(bytes(data), key)


def test_entry_bytes_fast_reader_and_numpy_reader_agree(nacl):
    import io

    from skcrystal.graphs import cache as cache_mod

    g = build_graph(nacl)
    key = entry_key(structure_key(nacl), GraphBuilder().key())
    data = graph_to_bytes(g, key)
    fast = cache_mod._stored_npz_arrays(data)
    with np.load(io.BytesIO(data), allow_pickle=False) as z:
        assert sorted(fast) == sorted(z.files)
        assert all(np.array_equal(fast[k], z[k]) and fast[k].dtype == z[k].dtype
                   for k in z.files)
    # a compressed archive (not what the store writes) goes through np.load
    buf = io.BytesIO()
    with np.load(io.BytesIO(data), allow_pickle=False) as z:
        np.savez_compressed(buf, **{k: z[k] for k in z.files})
    assert cache_mod._stored_npz_arrays(buf.getvalue()) is None
    assert same_graph(graph_from_bytes(buf.getvalue(), key), g)
    # object arrays are never read by the fast path
    buf = io.BytesIO()
    np.savez(buf, a=np.array([{"x": 1}], dtype=object))
    assert cache_mod._stored_npz_arrays(buf.getvalue()) is None
    with pytest.raises(BadCacheEntry):
        graph_from_bytes(buf.getvalue(), key)


def test_structure_bytes_keep_the_content_key(data):
    for s in data[0][:10]:
        assert structure_key(structure_from_bytes(structure_to_bytes(s))) == structure_key(s)


def test_store_holds_the_cache_keys_graphs_and_targets(store, data):
    X, y = data
    assert len(store) == len(X) and store.shards == 3
    np.testing.assert_array_equal(store.targets, y)
    assert store.keys() == [structure_key(s) for s in X]
    stats = store.stats()
    assert stats["structures"] == stats["graphs"] == len({structure_key(s) for s in X})
    assert sorted(f for f in os.listdir(store.path) if f.endswith(".mdb")) == [
        "index.mdb", "shard-000.mdb", "shard-001.mdb", "shard-002.mdb"]
    for i in (0, 17, 47):
        assert same_graph(store.graph(i, GraphBuilder()), build_graph(X[i]))
    # pickles as its path, not its data
    assert len(pickle.dumps(store)) < 500
    assert len(pickle.loads(pickle.dumps(store))) == len(X)


def test_store_from_files_and_folders(data, tmp_path):
    X, y = data
    paths = write_files(X[:12], tmp_path / "cifs")
    st = GraphStore(tmp_path / "a").add_files(paths, y[:12], builder=GraphBuilder(),
                                              n_jobs=2, chunk_size=4)
    assert st.source(3) == str(paths[3])
    assert same_graph(st.graph(5, GraphBuilder()), build_graph(X[5]))
    # a CGCNN folder gives its targets
    folder = tmp_path / "cgcnn"
    folder.mkdir()
    for i, s in enumerate(X[:6]):
        s.to(filename=str(folder / f"id{i}.cif"))
    (folder / "id_prop.csv").write_text("".join(f"id{i},{y[i]}\n" for i in range(6)))
    st2 = GraphStore(tmp_path / "b").add_folder(folder)
    np.testing.assert_allclose(st2.targets, y[:6])
    assert st2.missing_graphs(GraphBuilder()) == st2.keys()
    assert st2.build_graphs(GraphBuilder(radius=6.0)) == 6
    assert st2.missing_graphs(GraphBuilder(radius=6.0)) == []
    # appending keeps targets all-or-none
    with pytest.raises(ValueError, match="with targets"):
        st2.add_structures(X[6:8])


def test_readonly_store_without_a_graph_raises_or_builds(store, data):
    ro = GraphStore(store.path, readonly=True, build_missing=False)
    with pytest.raises(KeyError, match="build_missing=False"):
        ro.graph(0, GraphBuilder(radius=5.0))
    built = GraphStore(store.path, readonly=True).graph(0, GraphBuilder(radius=5.0))
    assert same_graph(built, build_graph(data[0][0], radius=5.0))
    with pytest.raises(ValueError, match="read-only"):
        ro.add_structures(data[0][:1])


def test_dataloader_workers_read_the_store(store, data):
    X, _ = data
    est = CGCNNRegressor(**FAST).fit(store)
    ds = est.get_dataset(LazyStructures(GraphStore(store.path, readonly=True)))
    loader = torch.utils.data.DataLoader(ds, batch_size=None, num_workers=2)
    graphs = [item[0] for item in loader]
    assert all(same_graph(g, build_graph(s)) for g, s in zip(graphs, X))


# ---------------------------------------------------------------- lazy fit/predict
def test_lazy_fit_equals_in_memory_fit(store, data):
    X, y = data
    n_cached = len(default_cache)
    a = CGCNNRegressor(**FAST).fit(X, y)
    default_cache.clear()
    b = CGCNNRegressor(**FAST).fit(LazyStructures(store))   # targets of the store
    c = CGCNNRegressor(**FAST, iterator_train__num_workers=2).fit(store, y)
    assert len(default_cache) == 0  # the lazy path keeps no graph in memory
    ref = a.predict(X)
    np.testing.assert_allclose(b.predict(store), ref, rtol=1e-6)
    np.testing.assert_allclose(c.predict(LazyStructures(store)), ref, rtol=1e-6)
    np.testing.assert_allclose(b.predict(LazyStructures(store)[5:9]), ref[5:9], rtol=1e-4)
    assert n_cached >= 0


def test_lazy_paths_and_folder(data, tmp_path):
    X, y = data
    paths = write_files(X[:16], tmp_path / "cifs")
    a = CGCNNRegressor(**FAST).fit(paths, y[:16])
    b = CGCNNRegressor(**FAST).fit([str(p) for p in paths], y[:16])
    np.testing.assert_allclose(a.predict(paths), b.predict(tmp_path / "cifs"), rtol=1e-6)
    with pytest.raises(ValueError, match="got no targets"):
        CGCNNRegressor(**FAST).fit(paths)


def test_lazy_descriptors_one_streaming_pass(store, data, monkeypatch):
    from sklearn.preprocessing import FunctionTransformer

    from skcrystal.estimators import _lazy

    X, y = data

    def volume(structures):
        return np.array([[s.volume / len(s), s.density] for s in structures])

    desc = FunctionTransformer(volume)
    monkeypatch.setattr(_lazy, "DESCRIPTOR_CHUNK", 10)  # several chunks
    a = CGCNNRegressor(**FAST, descriptors=desc).fit(X, y)
    b = CGCNNRegressor(**FAST, descriptors=desc).fit(store)
    np.testing.assert_allclose(b.descriptor_scaler_.mean_, a.descriptor_scaler_.mean_)
    np.testing.assert_allclose(b.descriptor_scaler_.scale_, a.descriptor_scaler_.scale_)
    np.testing.assert_allclose(b.predict(store), a.predict(X), rtol=1e-5)


def test_lazy_fit_screens_descriptors_as_in_memory(store, data):
    """Noise descriptors on a store: set aside as in memory, predict reads none."""
    import zlib

    from sklearn.preprocessing import FunctionTransformer

    X, y = data

    def noise(structures):
        return np.array([np.random.default_rng(zlib.crc32(
            np.round(s.frac_coords, 5).tobytes() + np.round(s.lattice.matrix, 5).tobytes())
        ).normal(size=3) for s in structures])

    desc = FunctionTransformer(noise)
    with pytest.warns(UserWarning, match="do not predict"):
        a = CGCNNRegressor(**FAST, descriptors=desc).fit(X, y)
    with pytest.warns(UserWarning, match="do not predict"):
        b = CGCNNRegressor(**FAST, descriptors=desc).fit(store)
    assert a.descriptors_used_ is False and b.descriptors_used_ is False
    assert b.descriptor_screen_ == pytest.approx(a.descriptor_screen_)
    plain = CGCNNRegressor(**FAST).fit(X, y)
    np.testing.assert_allclose(b.predict(store), plain.predict(X), rtol=1e-5)


def test_torch_dataset_needs_visible_targets(data):
    X, y = data
    with pytest.raises(TypeError, match="targets it cannot see"):
        CGCNNRegressor(**FAST).fit(torch.utils.data.TensorDataset(torch.zeros(4)))

    class Structures(torch.utils.data.Dataset):
        targets = y[:16]

        def __len__(self):
            return 16

        def __getitem__(self, i):
            return X[i]

    est = CGCNNRegressor(**FAST).fit(Structures())
    np.testing.assert_allclose(est.predict(Structures()),
                               CGCNNRegressor(**FAST).fit(X[:16], y[:16]).predict(X[:16]),
                               rtol=1e-6)


def test_classifier_on_a_store(store, data):
    X, y = data
    labels = np.where(y > np.median(y), "high", "low")
    est = CGCNNClassifier(**FAST).fit(store, labels)
    assert set(est.predict(store)) <= {"high", "low"}
    assert est.predict_proba(LazyStructures(store)).shape == (len(X), 2)


def test_cv_splits_stay_lazy(store, data):
    from sklearn.model_selection import cross_val_score

    X, y = data
    seen = []

    class Recording(CGCNNRegressor):
        def fit(self, X, y=None, **kw):
            seen.append(type(X))
            return super().fit(X, y, **kw)

    lazy = LazyStructures(store)
    scores = cross_val_score(Recording(**FAST), lazy, lazy.targets, cv=2)
    assert seen == [LazyStructures, LazyStructures] and np.isfinite(scores).all()


# ---------------------------------------------------------------- options
def test_new_options_clone_and_pickle():
    from sklearn.base import clone

    est = CGCNNRegressor(distributed=True, mixed_precision="bf16")
    assert clone(est).get_params()["distributed"] is True
    assert pickle.loads(pickle.dumps(est)).mixed_precision == "bf16"
    with pytest.raises(ValueError, match="mixed_precision"):
        CGCNNRegressor(mixed_precision="fp8", **FAST).fit(*load_perovskites(n=8))


def test_distributed_alone_is_plain_training(data):
    X, y = data
    a = CGCNNRegressor(**FAST).fit(X, y).predict(X)
    b = CGCNNRegressor(**FAST, distributed=True).fit(X, y).predict(X)
    np.testing.assert_array_equal(a, b)


def test_bf16_autocast_trains(data):
    X, y = data
    est = CGCNNRegressor(**FAST, mixed_precision="bf16").fit(X, y)
    p = est.predict(X)
    assert p.dtype == np.float64 and np.isfinite(p).all()
    ref = CGCNNRegressor(**FAST).fit(X, y).predict(X)
    assert np.abs(p - ref).mean() < 0.2 * np.abs(ref - ref.mean()).mean() + 0.05


@pytest.mark.skipif(not torch.cuda.is_available(), reason="pinned memory needs a GPU")
def test_pinned_batches(data):  # pragma: no cover - no GPU on CI
    X, y = data
    est = CGCNNRegressor(**FAST, device="cuda", iterator_train__pin_memory=True).fit(X, y)
    assert np.isfinite(est.predict(X)).all()


# ---------------------------------------------------------------- DDP
DDP_SCRIPT = """
import sys
import torch
sys.path.insert(0, {root!r})
torch.set_num_threads(1)
import torch.distributed as dist
from skcrystal import CGCNNRegressor
from skcrystal.datasets import load_perovskites

X, y = load_perovskites(n=32)
est = CGCNNRegressor(**{params!r}, optimizer=torch.optim.SGD, distributed=True).fit(X, y)
assert dist.get_world_size() == 2
if dist.get_rank() == 0:
    torch.save(est.module_.state_dict(), {out!r})
"""

# SGD: with Adam, biases that feed a batch norm (gradient zero in exact
# arithmetic, float noise in practice) take +-lr steps from noise of either sign
DDP_PARAMS = dict(max_epochs=3, batch_size=8, random_state=0, module__n_conv=2,
                  iterator_train__shuffle=False, optimizer=torch.optim.SGD, lr=0.05)


@pytest.mark.slow
def test_ddp_two_processes_equal_one_process(tmp_path):
    out = tmp_path / "weights.pt"
    script = tmp_path / "train.py"
    params = {k: v for k, v in DDP_PARAMS.items() if k != "optimizer"}
    script.write_text(textwrap.dedent(DDP_SCRIPT.format(
        root=str(ROOT), params=params, out=str(out))))
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone",
                           "--nproc-per-node", "2", str(script)], capture_output=True,
                          text=True, env=env, timeout=300, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    ddp = torch.load(out)
    X, y = load_perovskites(n=32)
    single = CGCNNRegressor(**DDP_PARAMS).fit(X, y).module_.state_dict()
    assert set(ddp) == set(single)
    for k in single:
        torch.testing.assert_close(ddp[k].double(), single[k].double(), rtol=1e-5,
                                   atol=1e-5, msg=k)


# ---------------------------------------------------------------- Dask
@pytest.mark.slow
def test_dask_grid_search_reuses_the_store(store, data):
    distributed = pytest.importorskip("distributed")
    import joblib
    from sklearn.model_selection import GridSearchCV, KFold

    X, y = data
    # complete for the searched parameters; workers may not build anything
    ro = GraphStore(store.path, readonly=True, build_missing=False)
    lazy = LazyStructures(ro)
    before = store.stats()
    grid = {"lr": [1e-3, 3e-3]}
    cv = KFold(2)
    serial = GridSearchCV(CGCNNRegressor(**FAST), grid, cv=cv).fit(lazy, y)
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                  dashboard_address=None) as cluster, \
            distributed.Client(cluster) as client:
        client.run(torch.set_num_threads, 1)
        with joblib.parallel_backend("dask"):
            par = GridSearchCV(CGCNNRegressor(**FAST), grid, cv=cv, n_jobs=2).fit(lazy, y)
        # each worker opened the store, not a copy of the graphs
        opened = client.run(lambda: sorted(
            p for p in __import__("skcrystal.graphs.store", fromlist=["_REGISTRY"])._REGISTRY
            if p != "pid"))
    assert all(any(p.endswith("index.mdb") for p in v) for v in opened.values())
    assert store.stats() == before
    np.testing.assert_allclose(par.cv_results_["mean_test_score"],
                               serial.cv_results_["mean_test_score"], rtol=1e-5)
    assert par.best_params_ == serial.best_params_


def test_store_checks_structures_when_filling(tmp_path, nacl):
    from pymatgen.core import Lattice, Structure

    bad = Structure(Lattice.cubic(4.0), ["Na", "Na"], [[0, 0, 0], [0.01, 0, 0]])
    with pytest.raises(ValueError, match=r"X\[1\]"):
        GraphStore(tmp_path / "s").add_structures([nacl, bad], builder=GraphBuilder())


def test_prepare_fills_a_writable_store(data, tmp_path):
    from skcrystal import ALIGNNRegressor

    X, y = data
    st = GraphStore(tmp_path / "s").add_structures(X[:6], y[:6])
    est = ALIGNNRegressor(radius=5.0, max_epochs=1)
    assert est.prepare(st) is st
    assert st.missing_graphs(est._builder()) == []
    stored = st.graph(0, est._builder())
    assert set(stored.extras["_memo"]) == {e.key for e in est.graph_extras}
    with pytest.raises(TypeError, match="writable GraphStore"):
        est.prepare(LazyStructures(GraphStore(st.path, readonly=True)))
