"""Two cores: torch threads in one process, or two processes?

Times the same fit in fresh processes, side by side in one run:

``1 process x 1 thread``     the baseline
``1 process x 2 threads``    ``torch.set_num_threads(2)``: one fit, both cores
``2 processes x 1 thread``   two fits at once (what ``cross_val_score(n_jobs=2)``
                             or ``GridSearchCV(n_jobs=2)`` run: joblib's
                             workers get one thread each)
``2 processes x 2 threads``  two fits at once, each with 2 threads: the
                             oversubscribed case (4 threads on 2 cores)

and prints, for each, the wall time of one fit and the throughput in fits
per minute relative to the baseline. The fits: each registered model's
regressor at its defaults on bundled perovskites (graphs, line graphs and
other graph extras built before the timer starts), sized so that one fit
takes a few seconds.

Usage::

    python benchmarks/bench_threads.py [--models cgcnn alignn ...] \\
        [--fit cgcnn=800x4 ...] [--repeats 2]

``--fit NAME=NxE`` sets a model's structures and epochs.
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import time


def child(model, n, epochs, threads):
    """One timed fit in this process; prints its wall time (JSON)."""
    import warnings

    import torch

    torch.set_num_threads(threads)
    # fits of a few batches: the stale batch-norm warning is expected here
    warnings.filterwarnings("ignore", message=".*batch norm")
    from skcrystal.datasets import load_perovskites
    from skcrystal.estimators.registry import get
    from skcrystal.graphs import attach_extras, get_graphs

    structures, y = load_perovskites(n=n)
    est = get(model).regressor(max_epochs=epochs, random_state=0, verbose=0, progress=False,
                               train_split=None)
    # graphs (and line graphs) built into the process cache before the timer
    attach_extras(get_graphs(list(structures), est._builder()), est.graph_extras)
    t0 = time.perf_counter()
    est.fit(structures, y)
    print(json.dumps({"seconds": time.perf_counter() - t0,
                      "threads": torch.get_num_threads()}))


def run(model, n, epochs, threads, processes):
    """Wall time of each of ``processes`` simultaneous fits, and the whole wall time."""
    env = dict(os.environ, OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads))
    cmd = [sys.executable, __file__, "--child", model, str(n), str(epochs), str(threads)]
    t0 = time.perf_counter()
    procs = [subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, text=True)
             for _ in range(processes)]
    outs = [p.communicate()[0] for p in procs]
    wall = time.perf_counter() - t0
    if any(p.returncode for p in procs):
        raise RuntimeError(f"a child failed: {cmd}")
    fits = [json.loads(o.strip().splitlines()[-1])["seconds"] for o in outs]
    return fits, wall


CONFIGS = [(1, 1), (2, 1), (1, 2), (2, 2)]  # (threads, processes)
#: (structures, epochs) per model: one fit of a few seconds at the model's defaults
#: (a model not listed: 64 x 1)
FITS = {"cgcnn": (800, 4), "alignn": (64, 1), "crystalnet": (64, 1),
        "crystograph": (64, 1), "megnet": (400, 2)}


def parse_fit(text):
    """``NAME=NxE`` -> (name, (N, E))."""
    name, _, size = text.partition("=")
    n, _, epochs = size.partition("x")
    try:
        return name, (int(n), int(epochs))
    except ValueError:
        raise argparse.ArgumentTypeError(f"--fit {text!r}: expected NAME=NxE, "
                                         "e.g. cgcnn=800x4") from None


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    from skcrystal.estimators.registry import names

    p.add_argument("--models", nargs="+", default=names(), choices=names())
    p.add_argument("--fit", type=parse_fit, action="append", default=[],
                   help="NAME=NxE: structures and epochs of a model's fit")
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument("--child", nargs=4)
    args = p.parse_args()
    unknown = sorted(set(dict(args.fit)) - set(names()))
    if unknown:
        p.error(f"--fit: no model named {', '.join(map(repr, unknown))} "
                f"(known: {', '.join(names())})")
    if args.child:
        model, n, epochs, threads = args.child
        return child(model, int(n), int(epochs), int(threads))
    print(f"load average before: {os.getloadavg()}")
    sizes = dict(FITS, **dict(args.fit))
    for model in args.models:
        n, epochs = sizes.get(model, (64, 1))
        results = {}
        for _ in range(args.repeats):  # configurations interleaved per repeat
            for threads, procs in CONFIGS:
                fits, _ = run(model, n, epochs, threads, procs)
                results.setdefault((threads, procs), []).extend(fits)
        base = statistics.median(results[(1, 1)])
        print(f"\n{model}: {n} perovskites, {epochs} epoch(s), defaults; fit time median "
              f"over {args.repeats} repeats (load average now {os.getloadavg()[0]:.2f})")
        print("| processes x threads | one fit (s) | fits per minute | vs 1 x 1 |")
        print("| --- | ---: | ---: | ---: |")
        for threads, procs in CONFIGS:
            t = statistics.median(results[(threads, procs)])
            rate = 60 * procs / t
            print(f"| {procs} x {threads} | {t:.2f} | {rate:.1f} | x{rate / (60 / base):.2f} |")


if __name__ == "__main__":
    main()
