"""Fits keep freed memory for reuse and give it back at the end (``skcrystal._malloc``)."""
import platform
import resource

import pytest
import torch

from skcrystal import _malloc
from skcrystal._malloc import heap_allocation, heap_allocation_active
from skcrystal.nn.alignn import EdgeGatedGraphConv

glibc = pytest.mark.skipif(platform.libc_ver()[0] != "glibc" or _malloc._user_tuned(),
                           reason="needs glibc with its default allocator settings")

_MB = 2**20
_PAGES = 3 * 47 * _MB // resource.getpagesize()  # pages of three pair tensors


def _faults_now():
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt


_MODEL = {}


def _step():
    """A training step whose large tensors are freed at its end.

    An ALIGNN bond-pair convolution's forward and backward on 48,000 pairs
    of width 256: each pair tensor is 47 MB, above glibc's 32 MB mmap ceiling.
    """
    if not _MODEL:
        gen = torch.Generator().manual_seed(0)
        _MODEL["conv"] = EdgeGatedGraphConv(256, norm="layer")
        _MODEL["x"] = torch.randn(4000, 256, generator=gen)
        _MODEL["e"] = torch.randn(48_000, 256, generator=gen)
        _MODEL["idx"] = torch.randint(0, 4000, (2, 48_000), generator=gen)
    x = _MODEL["x"].requires_grad_()
    e = _MODEL["e"].requires_grad_()
    xo, eo = _MODEL["conv"](x, e, *_MODEL["idx"])
    (xo.sum() + eo.sum()).backward()
    x.grad = e.grad = None


def _faults(steps=5):
    """Minor page faults of ``steps`` steps after a first one."""
    _step()
    before = _faults_now()
    for _ in range(steps):
        _step()
    return _faults_now() - before


@pytest.fixture
def default_env(monkeypatch):
    monkeypatch.delenv("SKCRYSTAL_HEAP_ALLOCATION", raising=False)


def _in_fresh_process(fn):
    """Run ``fn`` of this module in a new interpreter.

    glibc's thresholds depend on what the process allocated and set before
    (every fit sets them), so the allocator tests start from a fresh one, as
    a user's script does.
    """
    import os
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items() if k != "SKCRYSTAL_HEAP_ALLOCATION"}
    code = (f"import sys; sys.path.insert(0, {os.path.dirname(__file__)!r}); "
            f"import test_malloc; test_malloc.{fn}()")
    subprocess.run([sys.executable, "-c", code], check=True, env=env, timeout=300)


def _rss():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * resource.getpagesize()


def _check_reuse_inside_and_not_outside():
    default = _faults()
    # mapped afresh and faulted in, step after step: 1.9-7 times the three pair
    # tensors' pages over the five steps in 12 fresh processes (glibc reuses
    # some of it at times), so the bound is once
    assert default > _PAGES, default
    with heap_allocation():
        assert heap_allocation_active()
        inside = _faults()
        kept = _rss()
    assert not heap_allocation_active()
    # five steps on memory faulted in once (glibc may not fit every aligned
    # request into a freed block: up to a few tensors' pages more)
    assert inside < default / 2, (inside, default)
    # the freed tensors were kept while the block ran and handed back at its end
    assert kept - _rss() > 2 * 48 * _MB, (kept, _rss())


@glibc
def test_large_allocations_reuse_the_heap_inside_and_not_outside():
    _in_fresh_process("_check_reuse_inside_and_not_outside")


def _first_step_after(release):
    """Faults of a step in a block that follows a block with ``release``."""
    with heap_allocation(release=release):
        for _ in range(3):
            _step()
    with heap_allocation():
        before = _faults_now()
        _step()
        return _faults_now() - before


def _check_partial_fit_keeps():
    released = _first_step_after(release=True)
    kept = _first_step_after(release=False)
    assert released > _PAGES * 0.9, released  # handed back: faulted in again
    assert kept < released / 2, (kept, released)


@glibc
def test_partial_fit_blocks_keep_their_memory_for_the_next():
    _in_fresh_process("_check_partial_fit_keeps")


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
    monkeypatch.delenv("GLIBC_TUNABLES")
    monkeypatch.setenv("MALLOC_TRIM_THRESHOLD_", "1000000000")
    with heap_allocation():
        assert not heap_allocation_active()


@glibc
@pytest.mark.parametrize("method", ["fit", "partial_fit"])
def test_training_runs_inside_heap_allocation(default_env, method):
    from skcrystal.datasets import load_perovskites
    from skcrystal.estimators.cgcnn import CGCNNRegressor

    seen = []
    structures, y = load_perovskites(n=16)
    est = CGCNNRegressor(max_epochs=1, batch_size=8, verbose=0, progress=False,
                         module__hidden=8, module__n_conv=1, random_state=0)
    original = est.train_step

    def spy(*args, **kwargs):
        seen.append(heap_allocation_active())
        return original(*args, **kwargs)

    est.train_step = spy
    getattr(est, method)(structures, y)
    assert seen and all(seen)
    assert not heap_allocation_active()


@glibc
@pytest.mark.parametrize("method", ["predict", "transform", "graph predictor"])
def test_inference_runs_inside_heap_allocation(default_env, monkeypatch, method):
    from skcrystal import inference
    from skcrystal.datasets import load_perovskites
    from skcrystal.estimators import base
    from skcrystal.estimators.cgcnn import CGCNNRegressor
    from skcrystal.inference import GraphPredictor

    structures, y = load_perovskites(n=16)
    est = CGCNNRegressor(max_epochs=1, batch_size=8, verbose=0, progress=False,
                         module__hidden=8, module__n_conv=1, random_state=0)
    est.fit(structures, y)
    seen = []
    module = est.module_
    original = module.embed  # under forward too

    def spy(*args, **kwargs):
        seen.append(heap_allocation_active())
        return original(*args, **kwargs)

    module.embed = spy
    releases = []

    def recording(release=True):
        releases.append(release)
        return heap_allocation(release=release)

    # inference keeps its memory for the next call (skcrystal._malloc)
    monkeypatch.setattr(base, "heap_allocation", recording)
    monkeypatch.setattr(inference, "heap_allocation", recording)
    if method == "graph predictor":
        predictor = GraphPredictor.from_estimator(est)
        predictor.predict(est.prepare(structures))
    else:
        getattr(est, method)(structures)
    assert seen and all(seen)
    assert releases == [False]
    assert not heap_allocation_active()
