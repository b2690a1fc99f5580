"""The one way the library spreads per-item work over worker processes.

:func:`map_chunks` and :func:`imap_chunks` hand chunks to joblib's workers
while this process waits; :func:`imap_chunks_shared` (with
:func:`start_workers`) has this process compute its share beside them, where
sending the work and its results costs about as much as doing it
(``skcrystal predict``'s files, :func:`skcrystal.graphs.get_graphs`'s
graphs).

Inside a joblib worker (a fit of ``cross_val_score(n_jobs=2)``) no process
is started: the cores are taken already."""
from __future__ import annotations

from ._validation import check_n_jobs

__all__ = ["map_chunks", "imap_chunks", "imap_chunks_shared", "start_workers", "stop_workers"]


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


# the thread-pool variables joblib limits in its workers
_THREAD_VARS = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS",
                "BLIS_NUM_THREADS", "VECLIB_MAXIMUM_THREADS", "NUMEXPR_NUM_THREADS")


def shared_processes(n_jobs):
    """How :func:`imap_chunks_shared` splits ``n_jobs``: (processes in all,
    threads per process); 1 process means none is started."""
    check_n_jobs(n_jobs)
    if n_jobs in (None, 1):
        return 1, None
    from joblib import cpu_count, effective_n_jobs
    from joblib.parallel import get_active_backend
    if getattr(get_active_backend()[0], "nesting_level", 0):
        # already in a joblib worker (a fit of cross_val_score(n_jobs=2)):
        # the cores are taken, and joblib itself would nest threads only
        return 1, None
    n = effective_n_jobs(n_jobs)
    return n, max(cpu_count() // max(n, 1), 1)


_SHARED = {}


def _shared_executor(n_jobs):
    """The process pool of :func:`imap_chunks_shared` (``n_jobs - 1`` workers),
    kept from call to call as joblib keeps its own (a pool of its own: joblib's
    reusable one is joblib's to configure)."""
    import os

    from joblib.externals.loky import ProcessPoolExecutor
    n, threads = shared_processes(n_jobs)
    # as joblib does: the workers' thread pools share the cores, unless the
    # user set a variable himself
    env = {var: os.environ.get(var, str(threads)) for var in _THREAD_VARS}
    key = (n - 1, tuple(sorted(env.items())))
    executor = _SHARED.get(key)
    flags = getattr(executor, "_flags", None)
    if executor is None or (flags is not None and (flags.broken or flags.shutdown)):
        # none yet, or a worker died (a crash, a kill): a fresh pool
        for old in _SHARED.values():
            old.shutdown(wait=False)
        _SHARED.clear()
        executor = _SHARED[key] = ProcessPoolExecutor(max_workers=n - 1, env=env)
    return executor


#: Chunks handed to each worker of :func:`imap_chunks_shared` at a time: the
#: worker never waits for this process to hand it more (this process takes
#: back those not begun when it has nothing else to do)
QUEUED_PER_WORKER = 4


class _Raised:
    """The error of a chunk computed ahead of its turn."""

    def __init__(self, exc):
        self.exc = exc


class StartedChunks:
    """The first chunks of an :func:`imap_chunks_shared` call, handed to the
    workers ahead of it by :func:`start_chunks`."""

    def __init__(self, fn, chunks, n_jobs, kwargs, futures):
        self.fn, self.chunks, self.n_jobs = fn, chunks, n_jobs
        self.kwargs, self.futures = kwargs, futures

    def matches(self, fn, chunks, n_jobs, kwargs):
        """Whether these are the first of ``chunks`` for that call (same
        function, processes and arguments)."""
        return (self.fn is fn and self.n_jobs == n_jobs and self.kwargs.keys() == kwargs.keys()
                and all(_same(self.kwargs[k], kwargs[k]) for k in kwargs)
                and _same(self.chunks, chunks[:len(self.chunks)]))

    def cancel(self):
        """Give up those not begun (one a worker has begun runs to its end)."""
        for future in self.futures:
            future.cancel()
        self.futures = []


def _same(a, b):
    try:
        return bool(a == b)
    except (TypeError, ValueError):  # arrays and the like: not compared
        return a is b


def start_chunks(fn, chunks, n_jobs, **kwargs):
    """Hand ``chunks`` (the first ones of a later :func:`imap_chunks_shared`
    call with the same ``fn``, ``n_jobs`` and ``kwargs``) to the workers now,
    so that they compute while this process gets ready (imports torch, loads
    a model); the later call uses their results.

    Returns
    -------
    StartedChunks or None
        None where ``n_jobs`` starts no worker.
    """
    n, _ = shared_processes(n_jobs)
    if n == 1:
        return None
    executor = _shared_executor(n_jobs)
    chunks = list(chunks)
    return StartedChunks(fn, chunks, n_jobs, dict(kwargs),
                         [executor.submit(fn, chunk, **kwargs) for chunk in chunks])


def imap_chunks_shared(fn, chunks, n_jobs=None, started=None, then=None, **kwargs):
    """:func:`imap_chunks` where this process computes its share of the chunks.

    ``n_jobs`` processes in all: ``n_jobs - 1`` workers and this one, which
    takes the next chunk nobody has started whenever the chunk it must yield
    next is still in a worker. This spares a core that would otherwise only
    wait, on 2 cores a second worker process (its start-up, its share of the
    cores), and the pickling of what this process computes. ``fn`` must not
    depend on the process it runs in.

    ``started``: the first chunks, handed to the workers earlier by
    :func:`start_chunks` (ignored, and those not begun cancelled, unless
    they were started with this ``fn``, ``n_jobs`` and ``kwargs``).

    ``then(chunk, result)``: what this process does with each result (yielded
    instead of the result). A result is taken up as soon as it is there, in
    any order: while the chunk it must yield next is still in a worker, this
    process first finishes the results that came back, and only then takes
    a chunk of its own, so that its own work (``then`` of every chunk) does
    not leave the workers waiting.
    """
    n, _ = shared_processes(n_jobs)
    chunks = list(chunks)
    early = []
    if started is not None:
        if started.matches(fn, chunks, n_jobs, kwargs):
            early = started.futures
        else:
            started.cancel()
    if then is None:
        def then(chunk, result):
            return result
    if (n == 1 or len(chunks) < 2) and not early:
        for chunk in chunks:
            yield then(chunk, fn(chunk, **kwargs))
        return
    n_workers = n - 1
    executor = _shared_executor(n_jobs)
    results, running = {}, dict(enumerate(early))
    nxt = len(early)

    def top_up():
        nonlocal nxt
        while len(running) < QUEUED_PER_WORKER * n_workers and nxt < len(chunks):
            running[nxt] = executor.submit(fn, chunks[nxt], **kwargs)
            nxt += 1

    def take_back(i):
        # the first chunk from i on still waiting for a worker, cancelled
        # there (chunks handed over early can be many: this process takes
        # them in order instead of leaving them all to one worker)
        for k in sorted(running):
            if k >= i and running[k].cancel():
                del running[k]
                return k
        return None

    def finish(k, compute):
        # ``then`` of chunk k; an error of a chunk ahead of its turn is
        # raised in its turn (after the results of the chunks before it)
        try:
            results[k] = then(chunks[k], compute())
        except Exception as exc:  # noqa: BLE001 - raised in its turn
            results[k] = _Raised(exc)

    try:
        top_up()
        for i in range(len(chunks)):
            while i not in results:
                if i in running and not running[i].done():
                    back = [k for k in running if running[k].done()]
                    if back:  # results that came back first
                        for k in back:
                            finish(k, running.pop(k).result)
                        top_up()
                        continue
                    j = take_back(i)
                    if j is None and nxt < len(chunks):
                        j = nxt
                else:
                    j = None if i in running else i
                if j is None:  # i is done, or all that is left is in workers
                    finish(i, running.pop(i).result)
                else:  # i is still in a worker (or nobody's yet): work here
                    nxt = max(nxt, j + 1)
                    finish(j, lambda: fn(chunks[j], **kwargs))
                top_up()
            result = results.pop(i)
            if isinstance(result, _Raised):
                raise result.exc
            yield result
    finally:
        for future in running.values():
            future.cancel()


def start_workers(n_jobs, prepare, **kwargs):
    """Start the workers of :func:`imap_chunks_shared` now and have each run
    ``prepare(**kwargs)``; do not wait.

    Worker processes take about half a second to start and import what
    they need (more with torch). Started before the caller's own slow
    start-up (importing torch, loading a model), they get ready meanwhile;
    the next :func:`imap_chunks_shared` with these ``n_jobs`` uses the same
    processes.

    Parameters
    ----------
    n_jobs : int or None
        Processes in all (this one included); ``None`` and 1 start nothing.
    prepare : callable
        Run once in each worker (imports, tables).

    Returns
    -------
    callable
        Waits until every worker has run ``prepare``.
    """
    n, _ = shared_processes(n_jobs)
    if n == 1:
        return lambda: None
    executor = _shared_executor(n_jobs)
    pending = [executor.submit(prepare, **kwargs) for _ in range(n - 1)]
    return lambda: [f.result() for f in pending]


def stop_workers(kill=True):
    """Stop the workers :func:`start_workers` and :func:`imap_chunks_shared`
    started; the next call starts new ones.

    Parameters
    ----------
    kill : bool
        Kill them (work still queued is dropped: after an error or an
        interrupt), else let them finish what they hold and exit. Killed
        workers leave loky's resource tracker a semaphore it counts as
        leaked now and then (its warning at exit, ~2% of commands, measured
        over 150 runs each); workers that exit cleanly did not (0 of 150), at
        the same cost.
    """
    for executor in _SHARED.values():
        executor.shutdown(wait=True, kill_workers=kill)
    _SHARED.clear()
