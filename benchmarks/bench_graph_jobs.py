"""Graph building in one process against ``n_jobs`` joblib workers.

``get_graphs(structures, GraphBuilder(), n_jobs=...)`` is what an estimator's
``n_jobs`` parameter turns on for the graphs it builds in ``fit`` and
``predict``. This script times it side by side in one run, one process
(``n_jobs=None``) against ``--n-jobs`` workers, on the shared datasets:

* the perovskites (both CSVs: 5 atoms per cell),
* carbon_24's validation CSV (6-16 atoms),
* mlearn's Si (up to 64 atoms).

Each pass builds every graph afresh into an empty memory cache (no disk
cache). The workers are started by a warm-up call before the first timed
pass, as they are after an estimator's first fit (joblib keeps its loky
workers). The two settings alternate ``--repeat`` times and each one's fastest
pass counts; the graphs of both are checked equal. One torch thread, but no
torch in the graph path anyway.

Run alone on the machine (nothing else CPU-heavy)::

    python benchmarks/bench_graph_jobs.py              # all three datasets
    python benchmarks/bench_graph_jobs.py --n 500      # first 500 of each
"""
from __future__ import annotations

import argparse
import os
import sys
import time
import warnings
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from skcrystal.datasets import load_csv, load_mlearn  # noqa: E402
from skcrystal.graphs import GraphBuilder  # noqa: E402
from skcrystal.graphs.cache import GraphCache, get_graphs  # noqa: E402

SHARED = Path(os.environ.get("SKCRYSTAL_SHARED_DATA", ROOT.parent / "shared" / "data"))


def datasets(n):
    """(name, structures) of each shared dataset found, the first ``n`` of each."""
    out = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        parts = [SHARED / "perovskites" / f"perovskites_part{i}.csv" for i in (1, 2)]
        if all(p.exists() for p in parts):
            X = [s for p in parts for s in load_csv(p, target="heat_all")[0]]
            out.append(("perovskites (both CSVs)", X[:n]))
        path = SHARED / "carbon_24" / "carbon_24_val.csv"
        if path.exists():
            out.append(("carbon_24 validation CSV",
                        load_csv(path, target="energy_per_atom")[0][:n]))
        path = SHARED / "mlearn" / "Si.id_prop.json"
        if path.exists():
            out.append(("mlearn Si", load_mlearn(path)[0][:n]))
    return out


def build(structures, builder, n_jobs):
    """Seconds to build every graph into an empty cache, and the graphs."""
    t0 = time.perf_counter()
    graphs = get_graphs(structures, builder, n_jobs=n_jobs, cache=GraphCache())
    return time.perf_counter() - t0, graphs


def same(a, b):
    return all(np.array_equal(getattr(g, f), getattr(h, f))
               for g, h in zip(a, b)
               for f in ("center", "neighbor", "distances", "offsets"))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n", type=int, default=None, help="first N structures of each")
    parser.add_argument("--n-jobs", type=int, default=2)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args(argv)

    import torch
    torch.set_num_threads(1)
    data = datasets(args.n)
    if not data:
        sys.exit(f"no shared dataset under {SHARED} (set SKCRYSTAL_SHARED_DATA)")
    builder = GraphBuilder()
    build(data[0][1][:50], builder, args.n_jobs)  # starts the workers
    print("load average before: %.2f %.2f %.2f" % os.getloadavg())
    print(f"| structures | mean atoms | one process (µs/structure) | n_jobs={args.n_jobs} "
          "(µs/structure) | speed-up |")
    print("| --- | ---: | ---: | ---: | ---: |")
    for name, X in data:
        best = {None: np.inf, args.n_jobs: np.inf}
        graphs = {}
        for _ in range(args.repeat):
            for n_jobs in best:
                seconds, graphs[n_jobs] = build(X, builder, n_jobs)
                best[n_jobs] = min(best[n_jobs], seconds)
        if not same(graphs[None], graphs[args.n_jobs]):
            sys.exit(f"{name}: the graphs differ between the two settings")
        one, many = (best[k] / len(X) * 1e6 for k in best)
        atoms = np.mean([len(s) for s in X])
        print(f"| {len(X):,} {name} | {atoms:.1f} | {one:.0f} | {many:.0f} | "
              f"x{one / many:.2f} |", flush=True)
    print("load average after: %.2f %.2f %.2f" % os.getloadavg())


if __name__ == "__main__":
    main()
