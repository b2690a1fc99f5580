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


# ----------------------------------------------------------------- line-graph blocks
def _line_graph(convention, seed, n_atoms=12, max_degree=21):
    """Bonds of a random directed atom graph (varied degrees) and their bond pairs.

    Atom 0 receives bonds but sends none, so the bonds into it have no pairs in the
    ALIGNN convention; atom 1 sends one bond, which has no pair in the shared-centre
    convention (the self pair is excluded).
    """
    from skcrystal.graphs.line_graph import _pairs
    g = torch.Generator().manual_seed(seed)
    degree = torch.randint(1, max_degree + 1, (n_atoms,), generator=g)
    degree[0], degree[1] = 0, 1
    center = torch.repeat_interleave(torch.arange(n_atoms), degree)
    neighbor = torch.randint(0, n_atoms, (center.shape[0],), generator=g)
    neighbor[:3] = 0  # bonds into atom 0
    c, nb = center.numpy(), neighbor.numpy()
    if convention == "alignn":
        e1, e2 = _pairs(nb, c, n_atoms)
    else:
        e1, e2 = _pairs(c, c, n_atoms)
        e1, e2 = e1[e1 != e2], e2[e1 != e2]
    index = torch.stack([torch.as_tensor(e1), torch.as_tensor(e2)])
    return center, index


@pytest.mark.parametrize("convention", ["alignn", "shared_center"])
@pytest.mark.parametrize("dtype, rtol, atol", [(torch.float64, 1e-9, 1e-10),
                                               (torch.float32, 1e-4, 1e-5)])
@pytest.mark.parametrize("seed", [0, 1])
def test_block_attention_matches_reference(convention, dtype, rtol, atol, seed):
    """Padded per-atom blocks (several buckets, receivers without pairs, the shared-centre
    convention's missing diagonal) give the reference's outputs and gradients."""
    center, index = _line_graph(convention, seed)
    blocks = ctg._pair_blocks(index, center.index_select(0, index[1]), center.shape[0])
    assert len(blocks.sizes) > 1 and not bool(blocks.has_edges.all())
    torch.manual_seed(seed)
    layer = ETGCLayer(10, 6, 3, 4, ffn_mult=2).to(dtype)
    with torch.no_grad():
        for p in layer.parameters():
            p.add_(0.1 * torch.randn_like(p))
    x = torch.randn(center.shape[0], 10, dtype=dtype)
    e = torch.randn(index.shape[1], 6, dtype=dtype)
    _assert_same(layer, [x, e, index],
                 lambda mod, *a: mod.attention(*a, blocks=blocks), rtol, atol)
    _assert_same(layer, [x, e, index], lambda mod, *a: mod(*a, blocks=blocks), rtol, atol)


def test_block_attention_without_pairs():
    """A line graph without any pair (an isolated bond): zero messages, no attention."""
    layer = ETGCLayer(10, 6, 3, 4)
    x = torch.randn(2, 10, requires_grad=True)
    e, index = torch.zeros(0, 6), torch.zeros(2, 0, dtype=torch.long)
    blocks = ctg._pair_blocks(index, index[1], 2)
    attn, h_x, _ = layer.attention(x, e, index, blocks=blocks)
    assert attn.shape == (0, 3) and bool((h_x == 0).all())
    out, t = layer(x, e, index, blocks=blocks)
    torch.testing.assert_close(out, layer(x, e, index)[0])
    out.sum().backward()


def test_pair_blocks_rejects_non_block_graphs():
    index = torch.tensor([[0, 0, 1], [1, 2, 0]])
    with pytest.raises(ValueError, match="more than one block"):
        ctg._pair_blocks(index, torch.tensor([0, 1, 0]), 3)
    with pytest.raises(ValueError, match="repeated"):
        ctg._pair_blocks(torch.tensor([[0, 0], [1, 1]]), torch.tensor([0, 0]), 2)


def test_edge_projection_and_chunked_ffn_gradcheck(monkeypatch):
    """The hand-written backward passes of the chunked per-pair projection and FFN."""
    monkeypatch.setattr(ctg, "_CHUNK_ELEMENTS", 1)
    torch.manual_seed(0)
    dd = dict(dtype=torch.float64, requires_grad=True)
    n, H, de, out, hidden = 150, 3, 4, 5, 7
    assert torch.autograd.gradcheck(ctg._EdgeProjection.apply, (
        torch.randn(n, de, **dd), torch.rand(n, H, **dd), torch.randn(H * de, out, **dd),
        torch.randn(H, out, **dd)))
    assert torch.autograd.gradcheck(ctg._ChunkedFFN.apply, (
        torch.randn(n, de, **dd), torch.randn(hidden, de, **dd), torch.randn(hidden, **dd),
        torch.randn(out, hidden, **dd), torch.randn(out, **dd)))


@pytest.mark.parametrize("lg_convention", ["alignn", "shared_center"])
def test_model_matches_reference_on_mixed_structures(lg_convention):
    """A batch of unlike crystals (one atom per cell, perovskites, a low-symmetry
    supercell): per-atom blocks of many sizes, float64 against the reference."""
    from pymatgen.core import Lattice, Structure
    from skcrystal.datasets import load_perovskites
    X, _ = load_perovskites(n=2)
    fe = Structure(Lattice.cubic(2.87), ["Fe"], [[0, 0, 0]])
    nacl = Structure.from_spacegroup("Fm-3m", Lattice.cubic(5.64), ["Na", "Cl"],
                                     [[0, 0, 0], [0.5, 0.5, 0.5]])
    nacl.make_supercell([2, 1, 1])
    nacl.translate_sites([0], [0.3, 0.1, 0.0], frac_coords=False)
    builder = GraphBuilder(max_neighbors=12, grow_radius=True)
    graphs = [builder.build(s) for s in (fe, *X, nacl)]
    model = CrysToGraph(hidden=32, n_heads=2, head_dim=8, edge_dim=12, angle_dim=6,
                        lg_n_heads=2, lg_head_dim=4, n_eigvec=2, n_rw=4,
                        lg_convention=lg_convention).double()
    data = collate_graphs(graphs, extras=model.graph_extras, dtype=torch.float64)
    _assert_same(model, [], lambda mod: (mod(data),), 1e-9, 1e-10)


def test_block_core_gradcheck():
    """The hand-written backward of the per-block attention core, against finite differences."""
    center, index = _line_graph("shared_center", 3, n_atoms=6, max_degree=6)
    blocks = ctg._pair_blocks(index, center.index_select(0, index[1]), center.shape[0])
    assert len(blocks.sizes) > 1
    n, m, H, dh, de = center.shape[0], index.shape[1], 2, 3, 4
    torch.manual_seed(0)
    dd = dict(dtype=torch.float64, requires_grad=True)
    args = (torch.randn(n, H * dh, **dd), torch.randn(n, H * de, **dd), torch.randn(n, H, **dd),
            torch.randn(n, 2 * H * dh, **dd), torch.randn(m, de, **dd))
    assert torch.autograd.gradcheck(
        lambda *a: ctg._BlockCore.apply(*a, blocks, dh ** -0.5), args)
