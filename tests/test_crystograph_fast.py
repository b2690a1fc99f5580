"""CrysToGraph: the restructured eTGC forward computes the same function (outputs and
gradients) as the straightforward evaluation kept behind the private reference switch."""
import pytest
import torch

from skcrystal.graphs import GraphBuilder, collate_graphs
import skcrystal.nn.crystograph as ctg
from skcrystal.nn.crystograph import CrysToGraph, ETGCLayer, _EdgeAttention, _reference_etgc


def _random_graph(n, m, seed):
    g = torch.Generator().manual_seed(seed)
    # node n - 1 is never a centre: its attention sum and message are 0
    return torch.stack([torch.randint(0, n - 1, (m,), generator=g),
                        torch.randint(0, n, (m,), generator=g)])


def _run(module, inputs, reference, fn):
    """Outputs and the gradients of a fixed random projection of them."""
    module.zero_grad()
    inputs = [t.detach().clone().requires_grad_(t.is_floating_point()) for t in inputs]
    torch.manual_seed(123)  # the model's random eigenvector signs
    with _reference_etgc(reference):
        outs = [o for o in fn(module, *inputs) if o is not None]
    g = torch.Generator().manual_seed(7)
    loss = sum((o * torch.randn(o.shape, generator=g, dtype=o.dtype)).sum() for o in outs)
    loss.backward()
    grads = [t.grad for t in inputs if t.is_floating_point()]
    grads += [p.grad for p in module.parameters() if p.grad is not None]
    return [o.detach() for o in outs], grads


def _assert_same(module, inputs, fn, rtol, atol):
    ref_out, ref_grad = _run(module, inputs, True, fn)
    out, grad = _run(module, inputs, False, fn)
    assert len(out) == len(ref_out) and len(grad) == len(ref_grad)
    # atol relative to the largest output / gradient (a bias before a training-mode
    # BatchNorm has gradient 0 up to rounding, so a per-tensor scale is noise)
    for new, ref in ((out, ref_out), (grad, ref_grad)):
        scale = max(float(t.abs().max()) for t in ref)
        for a, b in zip(new, ref):
            torch.testing.assert_close(a, b, rtol=rtol, atol=atol * scale)


@pytest.mark.parametrize("sizes", [
    # (n_nodes, n_edges, node_dim, edge_dim, heads, head_dim): line-graph-like (many
    # narrow nodes: weight products first; narrow edges: per-head edge maps) and
    # atom-graph-like (few wide nodes: W_kv x first; wide edges: W_oe h_e)
    (60, 700, 12, 5, 3, 4),
    (9, 80, 40, 30, 2, 4),
])
@pytest.mark.parametrize("dtype, rtol, atol", [(torch.float64, 1e-9, 1e-10),
                                               (torch.float32, 1e-4, 1e-5)])
@pytest.mark.parametrize("chunked", [False, True])
def test_etgc_layer_matches_reference_forward_and_backward(sizes, dtype, rtol, atol, chunked,
                                                           monkeypatch):
    if chunked:  # 64 edges per chunk: many chunks, the last one partial
        monkeypatch.setattr(ctg, "_CHUNK_ELEMENTS", 1)
    n, m, node_dim, edge_dim, heads, head_dim = sizes
    torch.manual_seed(0)
    layer = ETGCLayer(node_dim, edge_dim, heads, head_dim, ffn_mult=2).to(dtype)
    with torch.no_grad():  # non-zero biases everywhere, so their folding is exercised
        for p in layer.parameters():
            p.add_(0.1 * torch.randn_like(p))
    x, e = torch.randn(n, node_dim, dtype=dtype), torch.randn(m, edge_dim, dtype=dtype)
    index = _random_graph(n, m, 1)
    _assert_same(layer, [x, e, index], lambda mod, *a: mod.attention(*a), rtol, atol)
    _assert_same(layer, [x, e, index], lambda mod, *a: mod(*a), rtol, atol)


def test_edge_attention_gradcheck(monkeypatch):
    """The hand-written backward of the chunked edge core against finite differences."""
    monkeypatch.setattr(ctg, "_CHUNK_ELEMENTS", 1)
    torch.manual_seed(0)
    n, m, H, dh, de = 7, 150, 2, 3, 4
    index = _random_graph(n, m, 3)
    dd = dict(dtype=torch.float64, requires_grad=True)
    args = (torch.randn(n, H * dh, **dd), torch.randn(n, H * dh, **dd),
            torch.randn(n, H * dh, **dd), torch.randn(n, H, **dd), torch.randn(m, de, **dd),
            torch.randn(H * dh, de, **dd), torch.randn(H * dh, de, **dd))
    assert torch.autograd.gradcheck(
        lambda *a: _EdgeAttention.apply(*a, index[0], index[1], H, dh ** 0.5), args)


def test_etgc_skips_an_unused_edge_update():
    torch.manual_seed(0)
    layer = ETGCLayer(12, 5, 3, 4)
    x, e, index = torch.randn(20, 12), torch.randn(90, 5), _random_graph(20, 90, 2)
    x_full, e_full = layer(x, e, index)
    x_only, e_none = layer(x, e, index, update_edges=False)
    assert e_none is None and e_full.shape == e.shape
    torch.testing.assert_close(x_only, x_full)
    with _reference_etgc():  # the reference computes every output
        assert layer(x, e, index, update_edges=False)[1] is not None


@pytest.fixture(scope="module")
def batch():
    from skcrystal.datasets import load_perovskites
    X, _ = load_perovskites(n=6)
    graphs = [GraphBuilder(max_neighbors=12, grow_radius=True).build(s) for s in X]
    return graphs


@pytest.mark.parametrize("params", [dict(), dict(n_gwt=0), dict(lg_convention="shared_center"),
                                    dict(chunk_elements=1)])
def test_model_matches_reference_forward_and_backward_float64(batch, params, monkeypatch):
    params = dict(params)
    if "chunk_elements" in params:
        monkeypatch.setattr(ctg, "_CHUNK_ELEMENTS", params.pop("chunk_elements"))
    model = CrysToGraph(hidden=32, n_heads=2, head_dim=8, edge_dim=12, angle_dim=6,
                        lg_n_heads=2, lg_head_dim=4, n_eigvec=4, n_rw=4, **params).double()
    data = collate_graphs(batch, extras=model.graph_extras, dtype=torch.float64)
    _assert_same(model, [], lambda mod: (mod(data),), 1e-9, 1e-10)


def test_default_model_matches_reference_float32(batch):
    """Table A1 size in float32: outputs and gradients to float32 rounding."""
    torch.manual_seed(0)
    model = CrysToGraph()
    data = collate_graphs(batch, extras=model.graph_extras)
    _assert_same(model, [], lambda mod: (mod(data),), 1e-4, 1e-5)
    ref_out, _ = _run(model, [], True, lambda mod: (mod(data),))
    out, _ = _run(model, [], False, lambda mod: (mod(data),))
    torch.testing.assert_close(out[0], ref_out[0], rtol=1e-5, atol=1e-5)
