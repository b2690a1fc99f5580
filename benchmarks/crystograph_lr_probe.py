"""Do the learning rate or the width explain CrysToGraph "small" trailing CGCNN on perovskites?

One quick probe on the shared perovskites task (``skcrystal.benchmarks.
perovskites_task``): fold 0's test rows (962), a fixed random 1,000 of its
3,849 training rows, ``--epochs`` epochs; CGCNN at its defaults beside
CrysToGraph at each of the matbench runner's ``--sizes`` ("small": hidden
64, 4 x 16 heads; "medium": 128, 4 x 32; "full": Table A1, 256, 8 x 32)
with each learning rate of ``--lrs`` (Table A1: 1e-4). Prints the test MAE
of each (eV/cell) and the test set's MAD. The errors are deterministic (one torch
thread, ``random_state=0``); the times are not a speed benchmark.

Usage::

    python benchmarks/crystograph_lr_probe.py --data ../shared/data [--epochs 30]
    python benchmarks/crystograph_lr_probe.py --data ../shared/data --sizes full --lrs 1e-4
"""
import argparse
import time

import numpy as np
import torch

from run_matbench import SIZES as _RUNNER_SIZES, task_source  # this folder is on sys.path

#: the matbench runner's CrysToGraph sizes ("full": the model's Table A1 defaults)
SIZES = _RUNNER_SIZES["crystograph"]


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--data", required=True, help="shared data folder (holding perovskites/)")
    p.add_argument("--epochs", type=int, default=30)
    p.add_argument("--n-train", type=int, default=1000)
    p.add_argument("--lrs", type=float, nargs="+", default=[1e-4, 3e-4, 1e-3])
    p.add_argument("--sizes", nargs="+", default=["small"], choices=sorted(SIZES))
    p.add_argument("--no-cgcnn", action="store_true")
    args = p.parse_args()
    torch.set_num_threads(1)

    from skcrystal.estimators.cgcnn import CGCNNRegressor
    from skcrystal.estimators.crystograph import CrysToGraphRegressor
    from skcrystal.metrics import mae

    task = task_source("perovskites", args.data)(None)
    train, test = task.folds[0]
    train = np.random.default_rng(0).choice(train, args.n_train, replace=False)
    y = np.asarray(task.y)
    X_train = [task.structures[i] for i in train]
    X_test = [task.structures[i] for i in test]
    print(f"perovskites fold 0: {len(train)} training rows (random subset), {len(test)} test "
          f"rows, {args.epochs} epochs; test MAD {np.mean(np.abs(y[test] - y[train].mean())):.4f}"
          " eV/cell", flush=True)
    common = dict(max_epochs=args.epochs, random_state=0, verbose=0, progress=False)
    runs = [] if args.no_cgcnn else [("CGCNN, defaults", CGCNNRegressor(**common))]
    for size in args.sizes:
        for lr in args.lrs:
            runs.append((f"CrysToGraph {size}, lr {lr:g}",
                         CrysToGraphRegressor(lr=lr, **SIZES[size], **common)))
    print("| model | test MAE (eV/cell) | fit + predict |")
    print("| --- | ---: | ---: |")
    for name, est in runs:
        t0 = time.perf_counter()
        est.fit(X_train, y[train])
        error = mae(y[test], est.predict(X_test))
        print(f"| {name} | {error:.4f} | {time.perf_counter() - t0:.0f} s |", flush=True)


if __name__ == "__main__":
    main()
