"""Keep freed memory for reuse while fitting and predicting (glibc only).

glibc's ``malloc`` serves every request above its mmap threshold (at most
32 MB) with a fresh ``mmap``, unmaps it on free, and hands freed memory at
the top of the heap back to the system once more than its trim threshold
(at most 64 MB) is free there. A training step frees all its activations
at the end, so the next step faults every page in again: for ALIGNN at its
defaults (a batch's bond-pair features are ``n_pairs x 256`` float32, about
67 MB for 64 perovskites) thousands of minor page faults per structure and
epoch, each a zeroed 4 KB page. With shuffled batches of changing sizes the
estimator paid about four times the faults of a loop over fixed batches
and trained about a fifth slower; ``benchmarks/bench_alignn.py`` measures
both settings, figures in ``benchmarks/RESULTS.md``.

:func:`heap_allocation` keeps that memory for the duration of a fit, as
PyTorch's CUDA caching allocator keeps GPU memory: ``mallopt(M_MMAP_MAX,
0)`` (large blocks come from the heap and are reused) and
``M_TRIM_THRESHOLD`` -1 (no trimming: freed memory stays for the next
step; a finite threshold such as 1 GB is below a batch's activations, so
trimming goes on). On exit it
calls ``malloc_trim(0)``, so the memory the fit kept goes back to the
system, and sets the thresholds glibc's dynamic adjustment reaches in any
process that has allocated large tensors (mmap above 32 MB, trim above
64 MB; setting a threshold turns glibc's dynamic adjustment off for the
rest of the process). The price while fitting: the freed blocks are kept,
so the process holds its peak memory until the fit ends.

``predict`` and ``transform`` run in a block too, one that keeps its
memory when it ends (``release=False``): in a fresh process (a saved model
loaded and used), where glibc's thresholds still adjust themselves,
inference faulted the pages of its large tensors in afresh at every batch;
handing the memory back at the end of every call made a loop of small
calls fault it in again at each. The process holds inference's peak
memory afterwards, as glibc itself does after a fit without the setting.

It does nothing when

* the C library is not glibc (musl, macOS, Windows: other allocators);
* the user has tuned glibc's allocator already (``GLIBC_TUNABLES`` with a
  ``glibc.malloc`` setting, or a ``MALLOC_*_`` variable): their choice wins;
* ``SKCRYSTAL_HEAP_ALLOCATION=0`` is set in the environment (the switch
  back to the C library's default behaviour).
"""
from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import os
import platform
import threading

__all__ = ["heap_allocation", "heap_allocation_active"]

# mallopt parameter numbers (glibc's malloc.h)
_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
_M_MMAP_MAX = -4
_DEFAULT_MMAP_MAX = 65536  # glibc's default
# what glibc's dynamic thresholds reach once a 32 MB block has been freed
_AFTER_MMAP_THRESHOLD = 32 * 2**20
_AFTER_TRIM_THRESHOLD = 64 * 2**20
# freed memory kept for reuse while fitting
_FIT_TRIM_THRESHOLD = -1  # never (mallopt(3): -1 turns trimming off)

_lock = threading.Lock()
_depth = 0
_libc = None


def _glibc():
    """The C library with ``mallopt`` and ``malloc_trim`` if it is glibc, else ``None``."""
    global _libc
    if _libc is None:
        _libc = False
        try:
            if platform.libc_ver()[0] == "glibc":
                lib = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
                lib.mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
                lib.mallopt.restype = ctypes.c_int
                lib.malloc_trim.argtypes = [ctypes.c_size_t]
                lib.malloc_trim.restype = ctypes.c_int
                _libc = lib
        except (OSError, AttributeError):
            _libc = False
    return _libc or None


def _user_tuned():
    """Whether the environment already sets glibc's allocator."""
    if "glibc.malloc" in os.environ.get("GLIBC_TUNABLES", ""):
        return True
    return any(k.startswith("MALLOC_") and k.endswith("_") for k in os.environ)


def _enabled():
    return os.environ.get("SKCRYSTAL_HEAP_ALLOCATION", "1").strip().lower() not in (
        "0", "false", "no", "off")


def heap_allocation_active():
    """Whether a :func:`heap_allocation` block is in effect now."""
    return _depth > 0


@contextlib.contextmanager
def heap_allocation(release=True):
    """Serve large allocations from a heap that keeps freed memory, inside the block.

    Parameters
    ----------
    release : bool, default=True
        Hand the kept memory back to the system (``malloc_trim``) when the
        last block ends. ``partial_fit``, ``predict`` and ``transform``
        pass ``False``: a loop of such calls would otherwise give its
        memory back and fault it in again at every call.

    Re-entrant and thread-safe: nested or concurrent fits (threads of one
    process) apply the setting once, and the last to leave restores it. A
    no-op where the module docstring says so.
    """
    global _depth
    libc = _glibc() if _enabled() and not _user_tuned() else None
    if libc is None:
        yield
        return
    with _lock:
        _depth += 1
        if _depth == 1:
            libc.mallopt(_M_MMAP_MAX, 0)
            libc.mallopt(_M_TRIM_THRESHOLD, _FIT_TRIM_THRESHOLD)
    try:
        yield
    finally:
        with _lock:
            _depth -= 1
            if _depth == 0:
                libc.mallopt(_M_MMAP_MAX, _DEFAULT_MMAP_MAX)
                libc.mallopt(_M_MMAP_THRESHOLD, _AFTER_MMAP_THRESHOLD)
                libc.mallopt(_M_TRIM_THRESHOLD, _AFTER_TRIM_THRESHOLD)
                if release:
                    libc.malloc_trim(0)
