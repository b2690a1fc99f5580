"""map_chunks: the library's one joblib pattern keeps order and runs small work here."""
import os

import pytest

from skcrystal._parallel import map_chunks


def _square_with_pid(chunk):
    return [(x * x, os.getpid()) for x in chunk]


def test_results_in_item_order_across_workers():
    items = list(range(23))
    out = map_chunks(_square_with_pid, items, n_jobs=2)
    assert [v for v, _ in out] == [x * x for x in items]
    assert os.getpid() not in {pid for _, pid in out}  # really ran in workers


def test_small_or_serial_work_runs_in_this_process():
    for n_jobs, items, min_items in ((None, range(10), 2), (1, range(10), 2),
                                     (2, range(5), 64), (2, [], 2)):
        out = map_chunks(_square_with_pid, items, n_jobs=n_jobs, min_items=min_items)
        assert [v for v, _ in out] == [x * x for x in items]
        assert {pid for _, pid in out} <= {os.getpid()}


def test_imap_chunks_streams_in_order():
    from skcrystal._parallel import imap_chunks

    chunks = [list(range(j, j + 3)) for j in range(0, 15, 3)]
    for n_jobs in (None, 2):
        out = imap_chunks(_square_with_pid, chunks, n_jobs=n_jobs)
        assert not isinstance(out, list)  # a generator: consumed chunk by chunk
        got = [r for chunk in out for r in chunk]
        assert [v for v, _ in got] == [x * x for x in range(15)]


def _pid():
    import time

    time.sleep(0.2)  # long enough for the workers to take one each
    return os.getpid()


def _slow_pids(chunk):
    import time

    time.sleep(0.05)
    return [os.getpid() for _ in chunk]


def test_shared_chunks_run_here_and_in_the_started_workers_in_order():
    from skcrystal._parallel import imap_chunks_shared, start_workers

    assert start_workers(None, _pid)() is None  # nothing to start
    ready = start_workers(2, _pid)  # 2 processes in all: 1 worker beside this one
    warmed = set(ready())
    assert len(warmed) == 1 and os.getpid() not in warmed
    chunks = [[k] * 3 for k in range(12)]
    out = imap_chunks_shared(_slow_pids, chunks, n_jobs=2)
    assert not isinstance(out, list)  # a generator
    pids = [chunk for chunk in out]
    assert len(pids) == 12 and all(len(set(c)) == 1 for c in pids)
    used = {c[0] for c in pids}
    # this process took a share, the started worker the rest
    assert used == warmed | {os.getpid()}
    # in order, whoever computed them
    squares = [c for chunk in imap_chunks_shared(_square_with_pid, chunks, n_jobs=2)
               for c in chunk]
    assert [v for v, _ in squares] == [k * k for k in range(12) for _ in range(3)]


@pytest.mark.parametrize("kill", [True, False])
def test_stopped_workers_are_gone_and_the_next_call_starts_new_ones(kill):
    import time

    from skcrystal._parallel import stop_workers, start_workers

    old = set(start_workers(2, _pid)())
    stop_workers(kill=kill)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and _alive(old):
        time.sleep(0.05)
    assert not _alive(old)
    new = set(start_workers(2, _pid)())
    assert new and not new & old


def _alive(pids):
    alive = set()
    for pid in pids:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            continue
        # a killed child not yet reaped is a zombie: gone for every purpose here
        try:
            with open(f"/proc/{pid}/stat") as fh:
                if fh.read().split()[2] == "Z":
                    continue
        except OSError:
            continue
        alive.add(pid)
    return alive


def _fail_on_seven(chunk):
    if 7 in chunk:
        raise ValueError(f"chunk {chunk} is bad")
    return chunk


def test_shared_chunks_raise_the_error_of_a_chunk_wherever_it_ran():
    import pytest

    from skcrystal._parallel import imap_chunks_shared

    for n_jobs in (None, 2):
        got = []
        with pytest.raises(ValueError, match=r"chunk \[7\] is bad"):
            for chunk in imap_chunks_shared(_fail_on_seven, [[k] for k in range(12)],
                                            n_jobs=n_jobs):
                got.extend(chunk)
        assert got == list(range(7))


def _kill_in_a_worker(chunk, parent):
    import signal
    import time

    if os.getpid() != parent:  # never the test's own process
        os.kill(os.getpid(), signal.SIGKILL)
    time.sleep(0.1)  # so that this process does not take back every chunk
    return chunk


def test_a_killed_worker_is_an_error_and_the_next_call_gets_fresh_workers():
    import pytest

    from skcrystal._parallel import imap_chunks_shared

    chunks = [[k] for k in range(8)]
    with pytest.raises(Exception) as info:
        list(imap_chunks_shared(_kill_in_a_worker, chunks, n_jobs=2, parent=os.getpid()))
    assert "terminated" in str(info.value).lower() or "broken" in str(info.value).lower()
    pids = {c for chunk in imap_chunks_shared(_slow_pids, chunks, n_jobs=2) for c in chunk}
    assert len(pids) == 2  # a fresh worker beside this process


def _slow_square(chunk, delay=0.02):
    import time

    time.sleep(delay)
    return [(x * x, os.getpid()) for x in chunk]


def test_chunks_started_early_are_used_and_this_process_takes_back_the_waiting_ones():
    """start_chunks hands the first chunks to the worker ahead of the call;
    the call uses them, in order, and this process takes back those the
    worker has not begun instead of leaving them all to it."""
    from skcrystal._parallel import imap_chunks_shared, start_chunks

    chunks = [[k, k + 100] for k in range(16)]
    started = start_chunks(_slow_square, chunks[:12], 2, delay=0.05)
    assert start_chunks(_slow_square, chunks, None, delay=0.05) is None  # no worker
    out = list(imap_chunks_shared(_slow_square, chunks, 2, started=started, delay=0.05))
    assert [v for chunk in out for v, _ in chunk] == [x * x for c in chunks for x in c]
    pids = [chunk[0][1] for chunk in out]
    assert os.getpid() in pids[:12]  # taken back (cancelled in the worker)
    assert set(pids[:12]) - {os.getpid()}  # and the worker computed the others
    cancelled = [f for f in started.futures if f.cancelled()]
    assert len(cancelled) == pids[:12].count(os.getpid())


def test_chunks_started_for_another_call_are_cancelled_not_used():
    from skcrystal._parallel import imap_chunks_shared, start_chunks

    chunks = [[k] for k in range(10)]
    for other in (dict(fn=_slow_pids, kw={}),  # another function
                  dict(fn=_slow_square, kw={"delay": 0.0}),  # other arguments
                  dict(fn=_slow_square, kw={"delay": 0.05}, chunks=[[k + 1] for k in range(4)])):
        started = start_chunks(other["fn"], other.get("chunks", chunks[:4]), 2, **other["kw"])
        out = list(imap_chunks_shared(_slow_square, chunks, 2, started=started, delay=0.05))
        assert [v for chunk in out for v, _ in chunk] == [k * k for k in range(10)]
        assert not started.futures  # given up


def _fail_on_seven_in_then(chunk, result):
    if 7 in chunk:
        raise ValueError(f"then of {chunk} failed")
    return [("then", v) for v, _ in result]


def test_then_runs_here_once_per_chunk_in_any_order_and_its_error_comes_in_turn():
    import pytest

    from skcrystal._parallel import imap_chunks_shared

    seen = []

    def then(chunk, result):
        seen.append((chunk[0], os.getpid()))
        return [v for v, _ in result]

    chunks = [[k] for k in range(14)]
    for n_jobs in (None, 2):
        seen.clear()
        out = list(imap_chunks_shared(_slow_square, chunks, n_jobs, then=then))
        assert out == [[k * k] for k in range(14)]
        assert sorted(k for k, _ in seen) == list(range(14))  # once each
        assert {pid for _, pid in seen} == {os.getpid()}  # always here
        got = []
        with pytest.raises(ValueError, match=r"then of \[7\] failed"):
            for chunk in imap_chunks_shared(_slow_square, chunks, n_jobs,
                                            then=_fail_on_seven_in_then):
                got.extend(chunk)
        assert got == [("then", k * k) for k in range(7)]


def _freeze_count():
    import gc
    return gc.get_freeze_count()


def test_a_prepared_worker_leaves_its_imports_to_no_collection():
    """prepare_worker freezes what it loaded, so a worker that imported torch
    exits (and collects during its chunks) without passing over it."""
    from skcrystal._parallel import _shared_executor, start_workers, stop_workers
    from skcrystal.graphs.files import prepare_worker

    stop_workers()
    start_workers(2, prepare_worker)()
    assert _shared_executor(2).submit(_freeze_count).result() > 10_000
    stop_workers(kill=False)
