"""Keep large training tensors on the heap while fitting (glibc only).

glibc's ``malloc`` serves every request of 32 MB or more (its largest
dynamic mmap threshold) with a fresh ``mmap`` and returns it with
``munmap`` on free. A training step of a model with many line-graph pairs
(ALIGNN at its defaults, CrysToGraph) allocates and frees several such
tensors (a batch's angle features are ``n_pairs x 256`` float32), so every
step faults in and zeroes their pages again (thousands of minor page
faults per structure and epoch). With mmap disabled the process reuses
the freed heap memory instead; ``benchmarks/bench_alignn.py`` measures
both (figures in ``benchmarks/RESULTS.md``). The price is a somewhat
higher peak memory: freed blocks are kept for reuse, and glibc does not
always find a freed block large enough for an aligned request of the
same size.

:func:`heap_allocation` does that for the duration of a fit:
``mallopt(M_MMAP_MAX, 0)`` (no mmap for large blocks) and a high
``M_TRIM_THRESHOLD`` (freed memory is kept for the next step instead of
being handed back). On exit it restores glibc's defaults and calls
``malloc_trim(0)``, so the memory the fit kept is returned to the system.

It does nothing when

* the C library is not glibc (musl, macOS, Windows: other allocators);
* the user has tuned glibc's allocator already (``GLIBC_TUNABLES`` with a
  ``glibc.malloc`` setting, or a ``MALLOC_*_`` variable): their choice wins;
* ``SKCRYSTAL_HEAP_ALLOCATION=0`` is set in the environment (the switch
  back to the C library's default behaviour).

Side effect: setting either parameter turns off glibc's dynamic mmap
threshold for the rest of the process (it stays at the value it had
reached, at most 32 MB); allocations below it behave as before.
"""
from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import os
import threading

__all__ = ["heap_allocation", "heap_allocation_active"]

_M_TRIM_THRESHOLD = -1
_M_MMAP_MAX = -4
# glibc's documented defaults, restored on exit
_DEFAULT_MMAP_MAX = 65536
_DEFAULT_TRIM_THRESHOLD = 128 * 1024
# keep up to this much freed memory for reuse while fitting
_FIT_TRIM_THRESHOLD = 2**30

_lock = threading.Lock()
_depth = 0
_libc = None


def _glibc():
    """The glibc handle with ``mallopt`` and ``malloc_trim``, or ``None``."""
    global _libc
    if _libc is None:
        _libc = False
        try:
            import platform
            if platform.libc_ver()[0] == "glibc":
                lib = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
                lib.mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
                lib.malloc_trim.argtypes = [ctypes.c_size_t]
                _libc = lib
        except (OSError, AttributeError):
            _libc = False
    return _libc or None


def _user_tuned():
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
def heap_allocation():
    """Serve large allocations from the reused heap inside the block.

    Re-entrant (nested fits apply the setting once); a no-op where the
    module docstring says so.
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
                libc.mallopt(_M_TRIM_THRESHOLD, _DEFAULT_TRIM_THRESHOLD)
                libc.malloc_trim(0)
