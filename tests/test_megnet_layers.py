"""MEGNet: update equations by hand, Set2Set, reference defaults, invariance, learning."""
import inspect
import math

import numpy as np
import pytest
import torch
from torch import nn

from skcrystal.graphs import GraphBuilder, collate_graphs
from skcrystal.nn.megnet import MEGNet, MEGNetBlock, MEGNetConv, Set2Set, SoftPlus2

TINY = dict(hidden=8, node_embedding=8, n_basis=16, n_blocks=2, input_hidden=(16,),
            conv_hidden=(16,), head_hidden=(16,))


def _sp2(z):
    return np.logaddexp(0.0, z) - math.log(2.0)


def _linear(layer):
    return layer.weight.detach().double().numpy(), layer.bias.detach().double().numpy()


@pytest.fixture(scope="module")
def perovskites():
    from skcrystal.datasets import load_perovskites
    return load_perovskites(n=20)


@pytest.fixture(scope="module")
def builder():
    return GraphBuilder(radius=5.0, max_neighbors=12)


def test_softplus2():
    f = SoftPlus2()
    x = torch.tensor([0.0, 1.0, -3.0, 100.0, -100.0])
    log2 = math.log(2)
    want = [0.0, math.log1p(math.e) - log2, math.log1p(math.exp(-3)) - log2, 100 - log2, -log2]
    # no overflow at +-100, where log(1 + exp(x)) computed naively overflows
    np.testing.assert_allclose(f(x).numpy(), want, rtol=1e-6, atol=1e-7)


# a tiny two-crystal graph: crystal 0 = atoms 0, 1 with three bonds (two
# images of 1 around 0, one of 0 around 1); crystal 1 = atoms 2, 3 with one
# bond centred on 2, so atom 3 receives nothing
EDGE_INDEX = torch.tensor([[0, 0, 1, 2], [1, 1, 0, 3]])
NODE_GRAPH = torch.tensor([0, 0, 1, 1])
EDGE_GRAPH = torch.tensor([0, 0, 0, 1])


def _tiny_features(dim, seed=0):
    g = torch.Generator().manual_seed(seed)
    return (torch.randn(4, dim, generator=g), torch.randn(4, dim, generator=g),
            torch.randn(2, dim, generator=g))


def _conv_by_hand(conv, e, v, u):
    """Paper Eqs. 1-5 with explicit loops over bonds, atoms and crystals."""
    e, v, u = (t.double().numpy() for t in (e, v, u))
    (we, be), (wv, bv), (wu, bu) = (_linear(m[0]) for m in (conv.edge_mlp, conv.node_mlp,
                                                           conv.state_mlp))
    centre, neighbour = EDGE_INDEX.numpy()
    e_new = np.array([_sp2(we @ np.concatenate([v[neighbour[k]], v[centre[k]], e[k],
                                                u[EDGE_GRAPH[k]]]) + be)
                      for k in range(e.shape[0])])
    v_new = []
    for i in range(v.shape[0]):
        incoming = [k for k in range(e.shape[0]) if centre[k] == i]
        mean = e_new[incoming].mean(0) if incoming else np.zeros(e_new.shape[1])
        v_new.append(_sp2(wv @ np.concatenate([v[i], mean, u[NODE_GRAPH[i]]]) + bv))
    v_new = np.array(v_new)
    u_new = np.array([_sp2(wu @ np.concatenate([
        u[g], e_new[EDGE_GRAPH.numpy() == g].mean(0), v_new[NODE_GRAPH.numpy() == g].mean(0)])
        + bu) for g in range(u.shape[0])])
    return e_new, v_new, u_new


def test_conv_matches_equations_by_hand():
    torch.manual_seed(0)
    conv = MEGNetConv(2, (3,))  # output width 3 != input width 2: checks the input sizes
    e, v, u = _tiny_features(2)
    got = conv(e, v, u, EDGE_INDEX, NODE_GRAPH, EDGE_GRAPH)
    for g, want in zip(got, _conv_by_hand(conv, e, v, u)):
        np.testing.assert_allclose(g.detach().double().numpy(), want, rtol=1e-5, atol=1e-6)
    # atom 3 has no incoming bond: its update sees a zero bond mean
    assert got[1].shape == (4, 3) and got[2].shape == (2, 3)


def test_block_is_dense_conv_residual():
    torch.manual_seed(1)
    e, v, u = _tiny_features(4, seed=1)
    args = (EDGE_INDEX, NODE_GRAPH, EDGE_GRAPH)
    first = MEGNetBlock(4, None, (6,))
    want = [x + y for x, y in zip((e, v, u), first.conv(e, v, u, *args))]
    for g, w in zip(first(e, v, u, *args), want):
        torch.testing.assert_close(g, w)
    later = MEGNetBlock(4, (5,), (6,))
    dense = later.edge_dense(e), later.node_dense(v), later.state_dense(u)
    # the residual adds the block's inputs, not the dense outputs
    want = [x + y for x, y in zip((e, v, u), later.conv(*dense, *args))]
    for g, w in zip(later(e, v, u, *args), want):
        torch.testing.assert_close(g, w)
    assert isinstance(later.node_dense[0], nn.Linear) and later.node_dense[0].out_features == 5


def test_set2set_one_step_by_hand():
    """From q* = 0 and a zero LSTM state the query depends on the biases only."""
    torch.manual_seed(2)
    s2s = Set2Set(3, n_iters=1)
    x = torch.randn(5, 3)
    index = torch.tensor([0, 0, 0, 1, 1])
    out = s2s(x, index, 2).detach().double().numpy()
    b = (s2s.lstm.bias_ih_l0 + s2s.lstm.bias_hh_l0).detach().double().numpy()
    b_i, _, b_g, b_o = np.split(b, 4)  # torch gate order: input, forget, cell, output
    sig = lambda z: 1 / (1 + np.exp(-z))
    q = sig(b_o) * np.tanh(sig(b_i) * np.tanh(b_g))
    xs = x.double().numpy()
    for g, rows in ((0, [0, 1, 2]), (1, [3, 4])):
        score = xs[rows] @ q
        a = np.exp(score - score.max()) / np.exp(score - score.max()).sum()
        np.testing.assert_allclose(out[g], np.concatenate([q, a @ xs[rows]]), rtol=1e-5)


def test_set2set_batch_equals_each_graph_alone():
    torch.manual_seed(3)
    s2s = Set2Set(4, n_iters=3, n_layers=2)
    x = torch.randn(7, 4)
    index = torch.tensor([0, 0, 0, 1, 1, 1, 1])
    together = s2s(x, index, 2)
    alone = torch.cat([s2s(x[:3], torch.zeros(3, dtype=torch.long), 1),
                       s2s(x[3:], torch.zeros(4, dtype=torch.long), 1)])
    torch.testing.assert_close(together, alone)
    # and the order of the rows within a crystal does not matter
    perm = torch.tensor([2, 0, 1, 6, 4, 3, 5])
    torch.testing.assert_close(s2s(x[perm], index, 2), together)
    # a crystal without rows (no bonds) reads out zeros after its query
    empty = s2s(x[:3], torch.zeros(3, dtype=torch.long), 2)
    assert torch.all(empty[1, 4:] == 0)


def test_reference_defaults():
    m = MEGNet()
    assert m.embedding.embedding.embedding_dim == 16
    rbf = m.bond_expansion
    assert rbf.n_centers == 100 and float(rbf.centers[0]) == 0.0
    assert float(rbf.centers[-1]) == pytest.approx(5.0)
    # matgl's Gaussian: exp(-0.5 (d - mu)^2)
    d = torch.tensor([1.3])
    np.testing.assert_allclose(rbf(d)[0].numpy(), np.exp(-0.5 * (1.3 - rbf.centers.numpy()) ** 2),
                               rtol=1e-5)
    sizes = lambda mlp: [(layer.in_features, layer.out_features) for layer in mlp
                         if isinstance(layer, nn.Linear)]
    assert sizes(m.edge_encoder) == [(100, 64), (64, 32)]
    assert sizes(m.node_encoder) == [(16, 64), (64, 32)]
    assert sizes(m.state_encoder) == [(2, 64), (64, 32)]
    assert all(isinstance(mod, SoftPlus2) for mod in (m.edge_encoder[1], m.edge_encoder[3]))
    assert len(m.blocks) == 3 and isinstance(m.blocks[0].edge_dense, nn.Identity)
    assert sizes(m.blocks[1].state_dense) == [(32, 64), (64, 32)]
    assert sizes(m.blocks[1].conv.edge_mlp) == [(128, 64), (64, 64), (64, 32)]
    assert sizes(m.blocks[1].conv.node_mlp)[0] == (96, 64)
    assert isinstance(m.blocks[1].conv.edge_mlp[-1], SoftPlus2)  # activate_last
    for s2s in (m.node_set2set, m.edge_set2set):
        assert (s2s.n_iters, s2s.lstm.num_layers, s2s.lstm.input_size, s2s.lstm.hidden_size) \
            == (2, 1, 64, 32)
    assert sizes(m.head.mlp) == [(160, 32), (32, 16), (16, 1)]
    assert isinstance(m.head.mlp[1], SoftPlus2) and isinstance(m.head.mlp[-1], nn.Linear)


def test_parameter_constraints_cover_the_constructor():
    names = set(inspect.signature(MEGNet.__init__).parameters) - {"self"}
    assert names == set(MEGNet._parameter_constraints)
    for bad, match in ((dict(hidden=0), "hidden"), (dict(act="nope"), "act"),
                       (dict(dropout=1.0), "dropout"), (dict(cutoff=-1.0), "cutoff"),
                       (dict(conv_hidden=(64, 0)), "conv_hidden"),
                       (dict(head_hidden=8), "head_hidden")):
        with pytest.raises(ValueError, match=match):
            MEGNet(**bad)


def test_shapes_descriptors_and_atom_tables(perovskites, builder):
    structures, _ = perovskites
    batch = collate_graphs([builder.build(s) for s in structures[:3]],
                           descriptors=np.ones((3, 4)))
    m = MEGNet(n_outputs=2, n_descriptors=4, **TINY)
    assert m.embed(batch).shape == (3, 5 * 8)
    assert m(batch).shape == (3, 2)
    from skcrystal.atom_features import atom_feature_table
    m = MEGNet(atom_features="cgcnn", **TINY)
    assert m.embedding.n_table_features == atom_feature_table("cgcnn").shape[1]
    assert m(batch).shape == (3, 1)


def test_dropout_only_in_training(perovskites, builder):
    structures, _ = perovskites
    batch = collate_graphs([builder.build(s) for s in structures[:3]])
    torch.manual_seed(0)
    m = MEGNet(dropout=0.5, **TINY)
    torch.testing.assert_close(m.eval()(batch), m(batch))
    m.train()
    assert not torch.allclose(m(batch), m(batch))


def test_forward_invariant_to_atom_order(perovskites, builder):
    from pymatgen.core import Structure
    structures, _ = perovskites
    rng = np.random.default_rng(0)
    picked = structures[:4]
    shuffled = [Structure.from_sites([s[i] for i in rng.permutation(len(s))]) for s in picked]
    torch.manual_seed(0)
    m = MEGNet(**TINY).eval()
    with torch.no_grad():
        a = m(collate_graphs([builder.build(s) for s in picked]))
        b = m(collate_graphs([builder.build(s) for s in shuffled]))
    torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)


def test_gradient_reaches_every_parameter(perovskites, builder):
    structures, _ = perovskites
    batch = collate_graphs([builder.build(s) for s in structures[:4]])
    torch.manual_seed(0)
    m = MEGNet(**TINY)
    m(batch).sum().backward()
    # the state encoder's first weights multiply the all-zero input state
    # (as in matgl): their gradient is exactly zero, its bias learns instead
    frozen = {"state_encoder.0.weight"}
    for name, p in m.named_parameters():
        assert p.grad is not None, name
        assert (p.grad.abs().sum() > 0) == (name not in frozen), name


def test_tiny_model_overfits_20_perovskites(perovskites, builder):
    structures, y = perovskites
    batch = collate_graphs([builder.build(s) for s in structures])
    target = torch.as_tensor((y - y.mean()) / y.std(), dtype=torch.float32).unsqueeze(1)
    torch.manual_seed(0)
    m = MEGNet(**TINY)
    opt = torch.optim.Adam(m.parameters(), lr=3e-3)
    losses = []
    for _ in range(150):
        opt.zero_grad()
        loss = nn.functional.mse_loss(m(batch), target)
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < losses[0] / 5, (losses[0], losses[-1])
