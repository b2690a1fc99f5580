"""Masked-atom pretraining (CrysToGraph appendix A.1)."""
import numpy as np
import pytest
import torch
from pymatgen.core import Lattice, Structure

from skcrystal.pretrain import (MaskedAtomPretrainer, choose_masked_atoms,
                                expand_small_cells, pretrain_atom_embeddings)


@pytest.fixture(scope="module")
def perovskites():
    from skcrystal.datasets import load_perovskites
    X, y = load_perovskites(n=160)
    return list(X), np.asarray(y)


def test_small_cells_are_expanded_so_the_rate_holds(nacl, diamond):
    one = Structure(Lattice.cubic(3.0), ["Po"], [[0, 0, 0]])
    big = Structure(Lattice.cubic(9.0), ["Si"] * 8, np.random.default_rng(0).random((8, 3)))
    out = expand_small_cells([one, nacl, big], 0.15)
    assert [len(s) for s in out] == [8, 8, 8]  # 1 atom -> 2x2x2; conventional NaCl has 8
    assert out[1] is nacl and out[2] is big
    assert len(expand_small_cells([nacl.get_primitive_structure()])[0]) == 2 * 8
    # 1/0.15 = 6.67: 7 atoms suffice, 6 do not
    six = Structure(Lattice.cubic(9.0), ["Si"] * 6, np.random.default_rng(1).random((6, 3)))
    assert len(expand_small_cells([six])[0]) == 48


def test_choose_masked_atoms_per_crystal_count():
    sizes = torch.tensor([7, 20, 8, 100])
    node_graph = torch.repeat_interleave(torch.arange(4), sizes)
    gen = torch.Generator().manual_seed(0)
    masks = [choose_masked_atoms(node_graph, sizes, 0.15, gen) for _ in range(50)]
    for m in masks:
        counts = torch.bincount(node_graph[m], minlength=4)
        assert counts.tolist() == [1, 3, 1, 15]  # floor(0.15 n), at least 1
    # every atom gets masked sometimes (the choice is random, not fixed)
    assert torch.stack(masks).any(0).all()


def test_pretraining_beats_frequency_baseline_and_table_plugs_in(perovskites):
    X, y = perovskites
    pre = MaskedAtomPretrainer(embedding_dim=8, hidden=32, n_conv=2, max_epochs=8, lr=3e-3,
                               batch_size=16, max_neighbors=6, random_state=0).fit(X[:120])
    table = pre.embedding_table_
    assert table.shape == (119, 8)
    seen = set(pre.elements_.tolist())
    assert np.isfinite(table[sorted(seen)]).all()
    assert np.isnan(table[0]).all() and np.isnan(table[[z for z in range(1, 119)
                                                         if z not in seen]]).all()
    loss = pre.history[:, "train_loss"]
    assert loss[-1] < loss[0]
    acc, base = pre.score(X[120:]), pre.baseline_score(X[120:])
    assert acc > base + 0.05, (acc, base)
    # the table is usable as extra atom features of any skcrystal model
    from skcrystal.estimators.cgcnn import CGCNNRegressor
    keep = [i for i, s in enumerate(X) if {el.Z for el in s.composition} <= seen]
    est = CGCNNRegressor(max_epochs=1, module__hidden=8, module__n_conv=1,
                         module__extra_atom_features=table, max_neighbors=6,
                         random_state=0).fit([X[i] for i in keep[:30]], y[keep[:30]])
    from skcrystal.nn.embedding import resolve_atom_table
    assert est.module_.embedding.n_table_features == resolve_atom_table("cgcnn").shape[1] + 8


def test_function_is_deterministic_with_random_state(nacl, diamond):
    kw = dict(embedding_dim=4, hidden=8, n_conv=1, max_epochs=2, max_neighbors=4,
              random_state=3)
    a = pretrain_atom_embeddings([nacl, diamond], **kw)
    b = pretrain_atom_embeddings([nacl, diamond], **kw)
    np.testing.assert_array_equal(a, b)
    assert np.isfinite(a[[6, 11, 17]]).all() and np.isnan(a[8]).all()


def test_bad_structures_are_named_before_training():
    bad = Structure(Lattice.cubic(4.0), [{"Fe": 0.5, "Ni": 0.5}, "O"],
                    [[0, 0, 0], [0.5, 0.5, 0.5]])
    good = Structure(Lattice.cubic(4.0), ["Fe", "O"], [[0, 0, 0], [0.5, 0.5, 0.5]])
    with pytest.raises(ValueError, match=r"X\[1\] .*disordered"):
        MaskedAtomPretrainer(max_epochs=1).fit([good, bad])
