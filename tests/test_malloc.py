"""Large training tensors stay on the heap while fitting (``skcrystal._malloc``)."""
import platform
import resource

import numpy as np
import pytest
import torch

from skcrystal import _malloc
from skcrystal._malloc import heap_allocation, heap_allocation_active
from skcrystal.nn.alignn import EdgeGatedGraphConv

glibc = pytest.mark.skipif(platform.libc_ver()[0] != "glibc" or _malloc._user_tuned(),
                           reason="needs glibc with its default allocator settings")

_BIG = 48 * 2**20 // 4  # float32 elements in 48 MB: above glibc's 32 MB mmap ceiling


def _step():
    """A training step's large temporaries: three 48 MB tensors, touched, freed."""
    tensors = [torch.empty(_BIG) for _ in range(3)]
    for t in tensors:
        t.fill_(1.0)


def _faults(steps=5):
    """Minor page faults of ``steps`` steps after a first one."""
    _step()
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    for _ in range(steps):
        _step()
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before


@glibc
def test_large_allocations_reuse_the_heap_inside_and_not_outside(monkeypatch):
    monkeypatch.delenv("SKCRYSTAL_HEAP_ALLOCATION", raising=False)
    pages = 3 * 48 * 2**20 // resource.getpagesize()
    default = _faults()
    assert default > pages  # mmap'd afresh at every step
    with heap_allocation():
        assert heap_allocation_active()
        inside = _faults()
    assert inside < default / 2  # freed blocks are reused
    assert not heap_allocation_active()
    # mmap is back and the kept memory was returned: faults again
    assert _faults() > max(inside, pages / 2)


@glibc
def test_switch_off_and_nesting(monkeypatch):
    monkeypatch.setenv("SKCRYSTAL_HEAP_ALLOCATION", "0")
    with heap_allocation():
        assert not heap_allocation_active()
    monkeypatch.delenv("SKCRYSTAL_HEAP_ALLOCATION")
    with heap_allocation():
        with heap_allocation():
            assert heap_allocation_active()
        assert heap_allocation_active()  # the outer block still holds
    assert not heap_allocation_active()


def test_user_tunables_win(monkeypatch):
    monkeypatch.setenv("GLIBC_TUNABLES", "glibc.malloc.mmap_max=0")
    with heap_allocation():
        assert not heap_allocation_active()


@glibc
def test_fit_runs_inside_heap_allocation():
    from skcrystal.datasets import load_perovskites
    from skcrystal.estimators.cgcnn import CGCNNRegressor

    seen = []
    structures, y = load_perovskites(n=16)
    est = CGCNNRegressor(max_epochs=1, batch_size=8, verbose=0, progress=False,
                         module__hidden=8, module__n_conv=1)
    original = est.train_step

    def spy(*args, **kwargs):
        seen.append(heap_allocation_active())
        return original(*args, **kwargs)

    est.train_step = spy
    est.fit(structures, y)
    assert seen and all(seen)
    assert not heap_allocation_active()


@pytest.mark.parametrize("norm", ["layer", "batch"])
def test_edge_chunks_give_the_same_outputs_and_gradients(norm):
    """Chunked edges (outside a fit's heap block) == one chunk, values and gradients."""
    gen = torch.Generator().manual_seed(0)
    n, n_edges, dim = 40, 3000, 16
    conv = EdgeGatedGraphConv(dim, norm=norm).train()
    x = torch.randn(n, dim, generator=gen, requires_grad=True)
    e = torch.randn(n_edges, dim, generator=gen, requires_grad=True)
    receiver = torch.randint(0, n, (n_edges,), generator=gen)
    sender = torch.randint(0, n, (n_edges,), generator=gen)

    def run(chunk_bytes):
        conv.chunk_bytes = chunk_bytes
        x.grad = e.grad = None
        conv.zero_grad()
        xo, eo = conv(x, e, receiver, sender)
        (xo.square().sum() + eo.sin().sum()).backward()
        return [t.detach().clone() for t in (xo, eo, x.grad, e.grad,
                                              conv.edge_gate.weight.grad)]

    whole = run(2**40)
    chunked = run(dim * 4 * 700)  # 5 chunks of 700 rows
    for a, b in zip(whole, chunked):
        # sums over 3000 edges: float32 rounding relative to the largest value
        np.testing.assert_allclose(b.numpy(), a.numpy(), rtol=0,
                                   atol=1e-5 * max(1.0, float(a.abs().max())))
