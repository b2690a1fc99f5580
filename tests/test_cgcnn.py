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
    est = CGCNNRegressor(max_epochs=2, **SMALL).fit(frame, y[:48])
    assert est.n_descriptors_ == 1 and est.descriptor_names_ == ["volume"]
    assert est.module_.head.n_descriptors == 1
    assert est.predict(frame.iloc[:4]).shape == (4,)
    with pytest.raises(ValueError, match="1 descriptor columns|0 descriptor columns"):
        est.predict(pd.DataFrame({"structure": X[:2]}))
    bad = frame.copy()
    bad.loc[3, "volume"] = np.nan
    with pytest.raises(ValueError, match=r"NaN/inf in rows \[3\]"):
        CGCNNRegressor(max_epochs=1, **SMALL).fit(bad, y[:48])
