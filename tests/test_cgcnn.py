"""CGCNN: layers against the paper's equations, pooling modes, learning on real data."""
import numpy as np
import pytest
import torch
from sklearn.dummy import DummyClassifier
from sklearn.model_selection import train_test_split

from skcrystal import CGCNNClassifier, CGCNNRegressor
from skcrystal.graphs import build_graph, collate_graphs
from skcrystal.nn import GaussianExpansion
from skcrystal.nn.cgcnn import CGCNN, CGCNNConv
from skcrystal.nn.scatter import scatter_max, scatter_mean, scatter_softmax, scatter_sum

SMALL = dict(module__hidden=16, module__h_fea_len=16, module__n_conv=2,
             batch_size=16, random_state=0)


@pytest.fixture(scope="module")
def perovskites():
    from skcrystal.datasets import load_perovskites
    df = load_perovskites(n=400, as_frame=True)
    return list(df.structure), df.heat_all.to_numpy(), df.ind_gap.to_numpy()


def test_gaussian_expansion_defaults_and_values():
    rbf = GaussianExpansion(0.0, 8.0, step=0.2)
    assert rbf.n_centers == 41 and rbf.width == pytest.approx(0.2)
    out = rbf(torch.tensor([1.0, 2.1]))
    # exp(-((d - mu)/0.2)^2) at mu = 1.0 is 1; at mu = 2.0, d = 2.1: exp(-0.25)
    assert out[0, 5].item() == pytest.approx(1.0)
    assert out[1, 10].item() == pytest.approx(np.exp(-0.25), rel=1e-5)
    # far tails are exactly zero (no float32 denormals)
    assert out[0, -1].item() == 0.0


def test_scatter_ops():
    src = torch.tensor([[1.0], [3.0], [-2.0], [5.0]])
    idx = torch.tensor([0, 0, 2, 2])
    assert scatter_sum(src, idx, 3).flatten().tolist() == [4.0, 0.0, 3.0]
    assert scatter_mean(src, idx, 3).flatten().tolist() == [2.0, 0.0, 1.5]
    assert scatter_max(src, idx, 3).flatten().tolist() == [3.0, 0.0, 5.0]
    w = scatter_softmax(src, idx, 3).flatten()
    assert w[:2].sum().item() == pytest.approx(1.0)
    assert w[1].item() == pytest.approx(np.exp(3) / (np.exp(1) + np.exp(3)))


def test_gated_conv_matches_eq5_by_hand(nacl):
    """The split projections equal one Linear on z = v_i + v_j + u_ij (Eq. 5)."""
    torch.manual_seed(0)
    g = build_graph(nacl, max_neighbors=6)
    batch = collate_graphs([g])
    conv = CGCNNConv(4, 3).eval()
    x = torch.randn(g.n_atoms, 4)
    e = torch.randn(g.n_edges, 3)
    out = conv(x, e, batch.edge_index)
    W_center, W_neighbor = conv.atom_proj.weight.chunk(2, dim=0)
    W = torch.cat([W_center, W_neighbor, conv.edge_proj.weight], dim=1)
    c, n = batch.edge_index
    z = torch.cat([x[c], x[n], e], dim=1) @ W.T + conv.edge_proj.bias
    z = conv.bn_edge(z)
    msg = torch.sigmoid(z[:, :4]) * torch.nn.functional.softplus(z[:, 4:])
    expected = torch.nn.functional.softplus(
        x + conv.bn_node(torch.zeros_like(x).index_add_(0, c, msg)))
    torch.testing.assert_close(out, expected)


def _per_edge_atom_features(model, batch):
    """The convolutions as computed before the fused path: every edge on its
    own row, autograd through BatchNorm1d, sigmoid, softplus and index_add."""
    x = model.embedding(batch.atomic_numbers)
    e = model.rbf(batch.distances)
    c, n = batch.edge_index
    for conv in model.convs:
        pc, pn = conv.atom_proj(x).chunk(2, dim=1)
        z = pc.index_select(0, c) + pn.index_select(0, n) + conv.edge_proj(e)
        gate, core = conv.bn_edge(z).chunk(2, dim=1)
        msg = torch.sigmoid(gate) * torch.nn.functional.softplus(core)
        x = torch.nn.functional.softplus(x + conv.bn_node(scatter_sum(msg, c, x.shape[0])))
    return x


def _fused_vs_per_edge(batch, training, dtype=torch.float64, steps=2):
    """Outputs, gradients and batch-norm buffers of the fused module and of a
    copy running :func:`_per_edge_atom_features`, over ``steps`` passes."""
    import copy
    import types

    torch.manual_seed(0)
    fused = CGCNN(hidden=8, h_fea_len=8).to(dtype).train(training)
    per_edge = copy.deepcopy(fused)
    per_edge.atom_features = types.MethodType(_per_edge_atom_features, per_edge)
    target = torch.randn(batch.n_graphs, 1, dtype=dtype)
    for _ in range(steps):
        outs = []
        for m in (fused, per_edge):
            m.zero_grad()
            out = m(batch)
            torch.nn.functional.mse_loss(out, target).backward()
            outs.append(out.detach())
        torch.testing.assert_close(outs[0], outs[1], rtol=1e-5, atol=1e-8)
        for (name, p), q in zip(fused.named_parameters(), per_edge.parameters()):
            # edge_proj.bias feeds a batch norm: its true gradient is 0 and
            # both computations leave only rounding noise there
            atol = 1e-8 if not name.endswith("edge_proj.bias") else 1e-6 * float(
                q.grad.abs().max() + 1)
            torch.testing.assert_close(p.grad, q.grad, rtol=1e-5, atol=atol, msg=name)
    for (name, b1), b2 in zip(fused.named_buffers(), per_edge.buffers()):
        torch.testing.assert_close(b1, b2, rtol=1e-5, atol=1e-8, msg=name)
    return fused


@pytest.mark.parametrize("training", [True, False])
@pytest.mark.parametrize("merged", [True, False])
def test_fused_cgcnn_equals_per_edge_computation(nacl, training, merged):
    """The fused convolutions (merged duplicate edges, one row per distinct bond
    length, hand-written backward) compute the per-edge function: outputs,
    every parameter gradient and the running statistics agree (float64)."""
    from skcrystal.datasets import load_perovskites
    from skcrystal.nn.cgcnn import EdgeIndex

    # a distorted cell: few bonds of equal length, too little to merge
    rattled = (nacl * (2, 2, 1)).copy()
    rattled.perturb(0.05, min_distance=0.01)
    structures = [rattled]
    if merged:
        structures += list(load_perovskites(n=24)[0]) + [nacl, nacl * (2, 1, 1)]
    graphs = [build_graph(s) for s in structures]
    batch = collate_graphs(graphs, dtype=torch.float64)
    lengths, term = torch.unique(batch.distances, return_inverse=True)
    edges = EdgeIndex.merged(batch.edge_index, batch.n_nodes, term, len(lengths))
    assert (edges.count is not None) == merged
    fused = _fused_vs_per_edge(batch, training)
    if training:
        assert int(fused.convs[0].bn_edge.num_batches_tracked) == 2


def test_fused_cgcnn_merges_duplicate_edges_and_uses_fused_functions():
    """Small cells repeat (centre, neighbour, length) through periodic images:
    the module trains on fewer rows than edges, counts adding up to the edges,
    through the merged autograd Function."""
    from skcrystal.datasets import load_perovskites
    from skcrystal.nn.cgcnn import EdgeIndex

    graphs = [build_graph(s) for s in load_perovskites(n=16)[0]]
    batch = collate_graphs(graphs)
    lengths, term = torch.unique(batch.distances, return_inverse=True)
    assert len(lengths) < batch.n_edges / 2
    edges = EdgeIndex.merged(batch.edge_index, batch.n_nodes, term, len(lengths))
    assert edges.n_edges == batch.n_edges and int(edges.count.sum()) == batch.n_edges
    assert len(edges.center) < 0.6 * batch.n_edges
    # every original edge is one of the merged rows
    key = lambda c, n, t: set(zip(c.tolist(), n.tolist(), t.tolist()))  # noqa: E731
    assert key(edges.center, edges.neighbor, edges.edge_term) == key(
        batch.edge_index[0], batch.edge_index[1], term)

    model = CGCNN().train()
    names, todo = set(), [model(batch).grad_fn]
    # (a batch without duplicates goes through _GatedAggregateBackward)
    while todo:
        fn = todo.pop()
        if fn is not None:
            names.add(type(fn).__name__)
            todo.extend(f for f, _ in fn.next_functions)
    assert {"_MergedGatedAggregateBackward", "_EdgeSumBackward"} <= names


def test_fused_cgcnn_falls_back_without_plain_batchnorm(nacl):
    """A swapped batch-norm class (distributed fit), a batch-norm hook or
    autocast take the per-edge path, with the same values."""
    from skcrystal.nn.common import BatchNorm

    class OtherBatchNorm(BatchNorm):
        pass

    batch = collate_graphs([build_graph(nacl), build_graph(nacl * (2, 1, 1))])
    torch.manual_seed(0)
    model = CGCNN(hidden=8, h_fea_len=8).eval()
    expected = model(batch)
    conv = model.convs[0]
    assert conv.fused()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert not conv.fused()
    # a hook (fine-tuning freezes batch norms with one) must run: per-edge path
    hook = conv.bn_edge.register_forward_pre_hook(lambda module, inputs: None)
    assert not conv.fused()
    hook.remove()
    for conv in model.convs:
        conv.bn_edge.__class__ = OtherBatchNorm
        assert not conv.fused()
    torch.testing.assert_close(model(batch), expected, rtol=1e-5, atol=1e-6)


def test_fused_conv_single_edge_uses_running_statistics():
    """One edge in training mode: normalised with the running statistics, not
    updated (as BatchNorm does for a single row), in both fused Functions."""
    from skcrystal.nn.cgcnn import EdgeIndex

    torch.manual_seed(0)
    conv = CGCNNConv(4, 3).train()
    with torch.no_grad():
        conv.bn_edge.running_mean.normal_()
        conv.bn_edge.running_var.uniform_(0.5, 2.0)
    x = torch.randn(2, 4)
    e = torch.randn(1, 3)
    ei = torch.tensor([[0], [1]])
    before = conv.bn_edge.running_mean.clone()
    z = torch.cat([x[0:1], x[1:2], e], dim=1) @ torch.cat(
        [*conv.atom_proj.weight.chunk(2, dim=0), conv.edge_proj.weight], dim=1).T \
        + conv.edge_proj.bias
    z = conv.bn_edge(z)  # BatchNorm's own single-row path
    msg = torch.sigmoid(z[:, :4]) * torch.nn.functional.softplus(z[:, 4:])
    agg = torch.zeros_like(x).index_add_(0, ei[0], msg)
    expected = torch.nn.functional.softplus(x + conv.bn_node(agg))
    torch.testing.assert_close(conv(x, e, ei), expected)
    merged = EdgeIndex.merged(ei, 2, torch.tensor([0]), 1)
    torch.testing.assert_close(conv.update(x, conv.edge_proj(e), merged), expected)
    assert torch.equal(conv.bn_edge.running_mean, before)
    assert int(conv.bn_edge.num_batches_tracked) == 0


def test_module_pooling_modes_supercell(nacl):
    torch.manual_seed(0)
    prim = nacl.get_primitive_structure()
    b1 = collate_graphs([build_graph(prim)])
    b8 = collate_graphs([build_graph(prim * (2, 2, 2))])
    for pooling, factor in (("mean", 1.0), ("sum", 8.0)):
        m = CGCNN(pooling=pooling, hidden=8, h_fea_len=8).eval()
        torch.testing.assert_close(m.embed(b8), factor * m.embed(b1), rtol=1e-4, atol=1e-5)
    m = CGCNN(pooling="mean", hidden=8, h_fea_len=8).eval()
    torch.testing.assert_close(m(b8), m(b1), rtol=1e-4, atol=1e-5)


def test_bad_module_params():
    with pytest.raises(ValueError, match="'conv' parameter of CGCNN must be a str among"):
        CGCNN(conv="fancy")
    with pytest.raises(ValueError, match="'pooling' parameter of CGCNN"):
        CGCNN(pooling="median")
    # the estimator checks module__ parameters at fit, naming them with the prefix
    with pytest.raises(ValueError, match="'module__hidden' parameter of CGCNN"):
        CGCNNRegressor(module__hidden=0).fit([], [])
    with pytest.raises(TypeError, match="invalid module__ parameter for CGCNN"):
        CGCNNRegressor(module__n_convs=3).initialize()


def test_classifier_dropout_is_the_references(nacl):
    """txie-93/cgcnn: classification applies nn.Dropout() (p = 0.5) after the first
    hidden layer, before the output layer; regression has none."""
    assert CGCNNClassifier().get_params()["module__dropout"] == 0.5
    assert "module__dropout" not in CGCNNRegressor().get_params()  # the module default, 0
    labels = np.array(["a", "b"])
    clf = CGCNNClassifier(max_epochs=1, random_state=0, **{
        k: v for k, v in SMALL.items() if k != "random_state"}).fit([nacl, nacl * (1, 1, 2)],
                                                                    labels)
    layers = list(clf.module_.head.mlp)
    kinds = [type(m).__name__ for m in layers]
    assert kinds == ["Linear", "Softplus", "Dropout", "Linear"]
    assert layers[2].p == 0.5
    reg = CGCNNRegressor(max_epochs=1, **SMALL).fit([nacl, nacl * (1, 1, 2)], [0.0, 1.0])
    assert not any(isinstance(m, torch.nn.Dropout) for m in reg.module_.modules())
    # active in training only: eval predictions are deterministic
    batch = collate_graphs([build_graph(nacl)])
    clf.module_.train()
    torch.manual_seed(0)
    draws = torch.stack([clf.module_(batch) for _ in range(8)])
    assert draws.std(0).max() > 0
    clf.module_.eval()
    torch.testing.assert_close(clf.module_(batch), clf.module_(batch))


def test_classifier_on_real_binary_target(perovskites):
    # metals are 96% of these perovskites, too few non-metals for a quick
    # test; stable (heat of formation below the median) vs unstable is balanced
    X, heat, _ = perovskites
    labels = np.where(heat < np.median(heat), "stable", "unstable")
    Xtr, Xte, ytr, yte = train_test_split(X, labels, test_size=0.25, random_state=0,
                                          stratify=labels)
    clf = CGCNNClassifier(max_epochs=25, **SMALL).fit(Xtr, ytr)
    acc = (clf.predict(Xte) == yte).mean()
    majority = DummyClassifier().fit(Xtr, ytr).score(Xte, yte)
    assert acc > majority + 0.15, (acc, majority)


def test_site_pooling_contributions_average_to_prediction(perovskites):
    X, y, _ = perovskites
    est = CGCNNRegressor(max_epochs=3, module__pooling="site", **SMALL).fit(X[:64], y[:64])
    contrib = est.predict_site_contributions(X[:5])
    assert [c.shape for c in contrib] == [(5,)] * 5
    np.testing.assert_allclose([c.mean() for c in contrib], est.predict(X[:5]), rtol=1e-5)
    plain = CGCNNRegressor(max_epochs=1, **SMALL).fit(X[:16], y[:16])
    with pytest.raises(ValueError, match="pooling='site'"):
        plain.predict_site_contributions(X[:2])


def test_simple_convolution_eq4_trains(perovskites):
    X, y, _ = perovskites
    est = CGCNNRegressor(max_epochs=4, module__conv="simple", **SMALL).fit(X[:64], y[:64])
    assert np.isfinite(est.predict(X[:4])).all()


def test_learnable_embedding_and_extra_atom_features(perovskites):
    X, y, _ = perovskites
    est = CGCNNRegressor(max_epochs=2, module__atom_features="embedding", **SMALL)
    assert est.fit(X[:32], y[:32]).predict(X[:3]).shape == (3,)
    extra = np.full((119, 3), np.nan)
    for z in {z for s in X[:32] for z in s.atomic_numbers}:
        extra[z] = [z, z ** 0.5, 1.0]
    est = CGCNNRegressor(max_epochs=2, module__extra_atom_features=extra, **SMALL)
    assert est.fit(X[:32], y[:32]).module_.embedding.n_table_features == 93 + 3
    # an element that the extra table lacks is rejected up front, by name
    lacking = next(s for s in X[32:] if set(s.atomic_numbers) - set(np.flatnonzero(
        np.isfinite(extra[:, 0]))))
    with pytest.raises(ValueError, match="no atom features"):
        est.predict([lacking])


def test_graph_cache_reused_across_fits(perovskites):
    from skcrystal.graphs import default_cache
    X, y, _ = perovskites
    est = CGCNNRegressor(max_epochs=1, **SMALL)
    est.fit(X[:40], y[:40])
    misses = default_cache.misses
    est.fit(X[:40], y[:40])
    est.predict(X[:40])
    assert default_cache.misses == misses


def test_precomputed_descriptor_columns(perovskites):
    import pandas as pd
    X, y, _ = perovskites
    frame = pd.DataFrame({"structure": X[:48], "volume": [s.volume for s in X[:48]]})
    # the screen off: volume does not predict these targets (see test_hybrid)
    est = CGCNNRegressor(max_epochs=2, descriptor_screen=False, **SMALL).fit(frame, y[:48])
    assert est.n_descriptors_ == 1 and est.descriptor_names_ == ["volume"]
    assert est.module_.head.n_descriptors == 1
    assert est.predict(frame.iloc[:4]).shape == (4,)
    with pytest.raises(ValueError, match="1 descriptor columns|0 descriptor columns"):
        est.predict(pd.DataFrame({"structure": X[:2]}))
    bad = frame.copy()
    bad.loc[3, "volume"] = np.nan
    with pytest.raises(ValueError, match=r"NaN/inf in rows \[3\]"):
        CGCNNRegressor(max_epochs=1, **SMALL).fit(bad, y[:48])
