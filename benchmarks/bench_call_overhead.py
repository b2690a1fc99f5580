"""What an estimator call costs besides the network, once the graphs are cached.

Every ``fit``, ``predict`` and ``prepare`` checks its structures
(``check_structures``: lattice, elements, overlapping sites) and looks their
graphs up in the cache (a content key per structure) before any network
work. On a cross-validation or a grid search these run at every call, so
their cost per structure is what this script prints, on the shared
perovskites (4,811 structures of 5 atoms):

* ``check_structures(X)``;
* ``est.prepare(X)`` with every graph cached (checks, keys, cache lookups,
  graph extras);
* ``est.predict(X)`` with every graph cached (the same, plus the network).

Each figure is the fastest of ``--repeat`` passes, µs per structure. Compare
two versions of the code by running this script from each checkout in turn
(A B A B ...). Run alone on the machine::

    python benchmarks/bench_call_overhead.py
"""
from __future__ import annotations

import argparse
import os
import sys
import time
import warnings
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from skcrystal import CGCNNRegressor  # noqa: E402
from skcrystal._validation import check_structures  # noqa: E402
from skcrystal.datasets import load_csv  # noqa: E402

SHARED = Path(os.environ.get("SKCRYSTAL_SHARED_DATA", ROOT.parent / "shared" / "data"))


def best(fn, repeat):
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args(argv)

    import torch
    torch.set_num_threads(1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        parts = [load_csv(SHARED / "perovskites" / f"perovskites_part{i}.csv",
                          target="heat_all") for i in (1, 2)]
    X = [s for x, _ in parts for s in x]
    y = [v for _, t in parts for v in t]
    est = CGCNNRegressor(max_epochs=1, random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # a one-epoch fit's batch-norm warning
        est.fit(X[:256], y[:256])
    est.prepare(X)  # every graph cached from here on
    print("load average before: %.2f %.2f %.2f" % os.getloadavg())
    n = len(X)
    for name, fn in (("check_structures(X)", lambda: check_structures(X)),
                     ("est.prepare(X), graphs cached", lambda: est.prepare(X)),
                     ("est.predict(X), graphs cached", lambda: est.predict(X))):
        print(f"{name:32s} {best(fn, args.repeat) / n * 1e6:7.1f} µs/structure "
              f"({n} structures)", flush=True)
    print("load average after: %.2f %.2f %.2f" % os.getloadavg())


if __name__ == "__main__":
    main()
