"""map_chunks: the library's one joblib pattern keeps order and runs small work here."""
import os

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

    time.sleep(0.2)  # long enough for both workers to take one
    return os.getpid()


def _pids(chunk):
    return [os.getpid() for _ in chunk]


def test_started_workers_are_the_ones_imap_chunks_uses():
    from skcrystal._parallel import imap_chunks, start_workers

    assert start_workers(None, _pid)() is None  # nothing to start
    ready = start_workers(2, _pid)
    warmed = set(ready())
    assert warmed and os.getpid() not in warmed
    # the same processes (joblib reuses its workers), started already
    used = {pid for chunk in imap_chunks(_pids, [[0, 1]] * 6, n_jobs=2) for pid in chunk}
    assert used & warmed and os.getpid() not in used
