"""The one way the library spreads per-item work over joblib workers."""
from __future__ import annotations

from ._validation import check_n_jobs

__all__ = ["map_chunks", "imap_chunks", "start_workers"]


def map_chunks(fn, items, n_jobs=None, min_items=2):
    """``fn`` over contiguous chunks of ``items``, results concatenated in order.

    Parameters
    ----------
    fn : callable
        list of items -> list of results (same length); runs in a worker
        process when ``n_jobs`` asks for more than one.
    items : list
    n_jobs : int or None
        joblib's meaning; ``None`` and 1 run here.
    min_items : int
        Below this many items, run here whatever ``n_jobs`` says (starting
        workers costs more than the work).

    Returns
    -------
    list
        ``fn``'s results, one per item, in the order of ``items``.

    Notes
    -----
    Each worker gets a few chunks: the scheduling overhead stays low while
    the load stays balanced when items differ in cost.
    """
    items = list(items)
    check_n_jobs(n_jobs)  # also where there are too few items to use it
    if n_jobs in (None, 1) or len(items) < max(min_items, 2):
        return list(fn(items))
    from joblib import Parallel, delayed, effective_n_jobs
    n_workers = effective_n_jobs(n_jobs)
    if n_workers == 1:
        return list(fn(items))
    n_chunks = min(len(items), 4 * n_workers)
    step, extra = divmod(len(items), n_chunks)
    bounds = [0]
    for j in range(n_chunks):
        bounds.append(bounds[-1] + step + (j < extra))
    results = Parallel(n_jobs=n_jobs)(
        delayed(fn)(items[a:b]) for a, b in zip(bounds[:-1], bounds[1:]))
    return [r for chunk in results for r in chunk]


def imap_chunks(fn, chunks, n_jobs=None, **kwargs):
    """``fn(chunk, **kwargs)`` for each of ``chunks``, yielded in order as they finish.

    Unlike :func:`map_chunks`, results stream: joblib keeps a few chunks in
    flight (``pre_dispatch``) and the caller consumes each result before the
    next is asked for, so memory is bounded by the chunk size, not by the
    number of items (the graph store's fill).
    """
    check_n_jobs(n_jobs)
    if n_jobs in (None, 1):
        for chunk in chunks:
            yield fn(chunk, **kwargs)
        return
    from joblib import Parallel, delayed

    yield from Parallel(n_jobs=n_jobs, return_as="generator")(
        delayed(fn)(chunk, **kwargs) for chunk in chunks)


def start_workers(n_jobs, prepare, **kwargs):
    """Start the joblib workers now and have each run ``prepare()``; do not wait.

    Worker processes take about half a second to start and import what
    they need. Started before the caller's own slow start-up (importing
    torch, loading a model), they get ready meanwhile; joblib then reuses
    the same processes for the next ``Parallel`` call with these
    ``n_jobs`` (:func:`imap_chunks`).

    Parameters
    ----------
    n_jobs : int or None
        joblib's meaning; ``None`` and 1 start nothing.
    prepare : callable
        Run once in each worker (imports, tables) as ``prepare(**kwargs)``.

    Returns
    -------
    callable
        Waits until every worker has run ``prepare``. Call it before the
        real work: joblib aborts the start-up tasks if their results are
        never collected.
    """
    if n_jobs in (None, 1):
        return lambda: None
    from joblib import Parallel, delayed, effective_n_jobs
    n_workers = effective_n_jobs(n_jobs)
    if n_workers == 1:
        return lambda: None
    # the generator form returns at once, the tasks already dispatched
    pending = Parallel(n_jobs=n_jobs, return_as="generator")(
        delayed(prepare)(**kwargs) for _ in range(n_workers))
    return lambda: list(pending)
