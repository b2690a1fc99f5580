"""The descriptor screen: how often it keeps noise, what it finds in real descriptors, its cost.

The screen (``skcrystal.estimators._screen.descriptor_signal``) decides before
training whether a hybrid's descriptors predict the targets at all. This script
measures, for 29 columns (as many as ``DescriptorBank``):

* pure noise at several sizes: how often the screen keeps it by mistake
  (nominally at most ~1 in 10: two tests at 1 in 20 each), and its time;
* a linear and a nonlinear (``abs``) signal: which test finds it;
* with ``--data``: the perovskites' ``DescriptorBank`` columns (the first
  ``--n-perov`` rows) against the heat of formation, and the same rows with
  noise columns.

Usage::

    python benchmarks/bench_descriptor_screen.py
    python benchmarks/bench_descriptor_screen.py --data DATA_FOLDER --n-perov 3848
"""
import argparse
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

from skcrystal.estimators._screen import descriptor_signal  # noqa: E402


def _z(a):
    a = np.asarray(a, dtype=np.float64).reshape(len(a), -1)
    s = a.std(axis=0)
    return (a - a.mean(axis=0)) / np.where(s > 0, s, 1.0)


def noise_rates(sizes, draws, k=29, seed=0):
    rng = np.random.default_rng(seed)
    print(f"pure noise, {k} columns: share kept by mistake (of the draws), time per screen")
    for n in sizes:
        kept, times = [], []
        for d in range(draws if n < 2000 else max(2, draws // 5)):
            D, y = rng.normal(size=(n, k)), rng.normal(size=(n, 1))
            t0 = time.perf_counter()
            kept.append(descriptor_signal(_z(D), _z(y), random_state=d)["signal"])
            times.append(time.perf_counter() - t0)
        print(f"  n={n:5d}: {np.mean(kept):5.0%} of {len(kept)} draws, "
              f"{np.mean(times):.2f} s")


def signals(n=300, seed=1):
    rng = np.random.default_rng(seed)
    D = rng.normal(size=(n, 29))
    for name, y in (("linear, y = d1 + noise", D[:, 1] + 0.5 * rng.normal(size=n)),
                    ("nonlinear, y = |d2| + noise", np.abs(D[:, 2]) + 0.2 * rng.normal(size=n))):
        r = descriptor_signal(_z(D), _z(y))
        forest = "not run" if r["forest_r2"] is None else f"{r['forest_r2']:.3f}"
        print(f"  {name} (n={n}): kept={r['signal']} by {r['test']}; ridge LOO R2 "
              f"{r['ridge_r2']:.3f} (permutations max {r['ridge_null_max']:.3f}), "
              f"forest OOB R2 {forest}")


def perovskites(data, n):
    from sklearn.impute import SimpleImputer
    from sklearn.pipeline import make_pipeline

    from skcrystal.benchmarks import perovskites_task
    from skcrystal.descriptors import DescriptorBank

    task = perovskites_task(os.path.join(data, "perovskites"), max_structures=n)
    t0 = time.perf_counter()
    D = make_pipeline(DescriptorBank(), SimpleImputer()).fit_transform(task.structures)
    print(f"  DescriptorBank on {len(D)} perovskites: {time.perf_counter() - t0:.0f} s")
    rng = np.random.default_rng(5)
    for name, X in (("DescriptorBank", D), ("29 noise columns", rng.normal(size=D.shape))):
        t0 = time.perf_counter()
        r = descriptor_signal(_z(X), _z(task.y))
        forest = "not run" if r["forest_r2"] is None else f"{r['forest_r2']:.3f}"
        print(f"  perovskites, {name}: kept={r['signal']} by {r['test']}; ridge LOO R2 "
              f"{r['ridge_r2']:.3f} (permutations max {r['ridge_null_max']:.4f}), forest "
              f"OOB R2 {forest}; screen {time.perf_counter() - t0:.2f} s")


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--sizes", type=int, nargs="+", default=[30, 100, 381, 1000, 3848])
    p.add_argument("--draws", type=int, default=20)
    p.add_argument("--data", help="shared data folder holding perovskites/")
    p.add_argument("--n-perov", type=int, default=1000)
    args = p.parse_args(argv)
    import torch
    torch.set_num_threads(1)
    print(f"load average at start: {os.getloadavg()[0]:.2f}")
    noise_rates(args.sizes, args.draws)
    print("signals:")
    signals()
    if args.data:
        perovskites(args.data, args.n_perov)
    print(f"load average at end: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
