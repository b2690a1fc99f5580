"""Collation in numpy (skcrystal.graphs.collate) and its tensors
(skcrystal.graphs.batch): hand-checked offsets, the same tensors whether the
floats are cast before (in a worker) or after, and no torch on the file path."""
import pickle
import subprocess
import sys

import numpy as np
import torch

from skcrystal.graphs import GraphBuilder, collate_graphs
from skcrystal.graphs.batch import batch_from_arrays
from skcrystal.graphs.collate import collate_arrays
from skcrystal.graphs.line_graph import line_graph_extra
from skcrystal.graphs.reverse_edges import REVERSE_EDGES_EXTRA


def _graphs(nacl, diamond):
    builder = GraphBuilder(radius=3.0, max_neighbors=12)
    return [builder.build(nacl), builder.build(diamond)]


def test_offsets_shift_the_second_graph_by_the_first_ones_sizes(nacl, diamond):
    g = _graphs(nacl, diamond)
    arrays = collate_arrays(g)
    f = arrays.fields
    n0, e0 = g[0].n_atoms, g[0].n_edges
    assert f["atomic_numbers"].tolist() == g[0].atomic_numbers.tolist() + \
        g[1].atomic_numbers.tolist()
    assert np.array_equal(f["edge_index"][:, :e0], np.stack([g[0].center, g[0].neighbor]))
    assert np.array_equal(f["edge_index"][:, e0:], np.stack([g[1].center, g[1].neighbor]) + n0)
    assert f["node_graph"].tolist() == [0] * n0 + [1] * g[1].n_atoms
    assert f["edge_graph"].tolist() == [0] * e0 + [1] * g[1].n_edges
    assert f["n_nodes_per_graph"].tolist() == [n0, g[1].n_atoms]
    assert f["lattice"].shape == (2, 3, 3) and f["descriptors"] is None
    assert all(a.dtype == np.int64 for k, a in f.items()
               if k in ("atomic_numbers", "edge_index", "offsets", "node_graph"))


def test_floats_cast_before_sending_give_the_same_tensors(nacl, diamond):
    """A worker casts to float32 and pickles the arrays; the tensors made
    from them equal collate_graphs' to the bit, extras included."""
    g = _graphs(nacl, diamond)
    extras = (line_graph_extra(), REVERSE_EDGES_EXTRA)
    descriptors = np.array([[0.1, 2.0], [1 / 3, -4.5]])
    direct = collate_graphs(g, descriptors=descriptors, extras=extras)
    sent = pickle.loads(pickle.dumps(collate_arrays(g, descriptors, extras,
                                                    float_dtype=np.float32)))
    assert all(a is None or a.dtype != np.float64 for a in sent.fields.values())
    rebuilt = batch_from_arrays(sent)
    for name in direct._tensor_fields:
        a, b = getattr(direct, name), getattr(rebuilt, name)
        assert a.dtype == b.dtype and torch.equal(a, b), name
    assert direct.extras.keys() == rebuilt.extras.keys()
    for name, a in direct.extras.items():
        assert a.dtype == rebuilt.extras[name].dtype and torch.equal(a, rebuilt.extras[name])
    assert direct.descriptors.dtype == torch.float32


def test_a_batch_is_sent_in_fewer_bytes_with_every_value_unchanged(nacl, diamond):
    """A collated batch crosses processes with narrow integers and without its
    crystal maps (rebuilt from the counts): less than half the bytes, and
    every array arrives equal, with its dtype (int64 indices, bool extras)."""
    g = _graphs(nacl, diamond) * 32
    arrays = collate_arrays(g, extras=(line_graph_extra(), REVERSE_EDGES_EXTRA),
                            float_dtype=np.float32)
    arrays.fields["offsets"][0, 0] = 2 ** 40  # a value int32 cannot hold stays exact
    sent = pickle.loads(pickle.dumps(arrays))
    for got, want in ((sent.fields, arrays.fields), (sent.extras, arrays.extras)):
        assert got.keys() == want.keys()
        for name, a in want.items():
            b = got[name]
            assert (a is None and b is None) or (a.dtype == b.dtype and np.array_equal(a, b)), \
                name
    assert any(a.dtype == bool for a in arrays.extras.values())
    plain = pickle.dumps((arrays.fields, arrays.extras))
    assert len(pickle.dumps(arrays)) < 0.5 * len(plain)


def test_records_sent_as_one_array_per_field_arrive_unchanged():
    """pack_records / unpack_records (a chunk's structures to a worker, its
    graphs back): records of different lengths, missing ones at either end
    and between, int64 beyond int32, 2-D fields; each arrives equal with its
    dtype, and the pickle is a few arrays, not one per record."""
    from skcrystal.graphs.collate import pack_records, unpack_records

    rng = np.random.default_rng(0)
    records = []
    for n in (3, 1, 7, 2):
        records.append((rng.integers(0, 90, n), rng.normal(size=(n, 3)),
                        rng.integers(-2, 3, size=(2 * n, 3)), np.arange(2 * n) * 2 ** 33))
    records = [None, records[0], records[1], None, records[2], records[3], None]
    got = unpack_records(*pickle.loads(pickle.dumps(pack_records(records))))
    assert len(got) == len(records)
    for r, g in zip(records, got):
        assert (r is None) == (g is None)
        if r is not None:
            assert all(a.dtype == b.dtype and a.shape == b.shape and np.array_equal(a, b)
                       for a, b in zip(r, g))
    assert unpack_records(*pack_records([None, None])) == [None, None]
    many = [tuple(a.copy() for a in records[1]) for _ in range(200)]
    assert len(pickle.dumps(pack_records(many))) < 0.5 * len(pickle.dumps(many))


def test_integer_descriptors_become_float_tensors(nacl, diamond):
    batch = collate_graphs(_graphs(nacl, diamond), descriptors=[[1, 2], [3, 4]])
    assert batch.descriptors.dtype == torch.float32
    assert batch.descriptors.tolist() == [[1.0, 2.0], [3.0, 4.0]]


def test_the_file_to_batch_path_imports_no_torch():
    """Workers that build and collate graphs for another process's network
    start without torch (about a second of CPU each)."""
    code = ("import sys\n"
            "from skcrystal.graphs import files\n"
            "from skcrystal import pretrained\n"
            "files.prepare_worker()\n"
            "needs = pretrained.reference_graph_needs('formation-energy-per-atom')\n"
            "print(needs is not None, 'torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout.split()
    assert out == ["True", "False"]
