"""Demo: cross-validate CGCNN on the bundled perovskites against a mean predictor.

Runs on the 1,000 Castelli perovskites that ship inside the package (no
network, no ../shared needed) and prints, per fold, the MAE of CGCNN and of
a mean predictor on the heat of formation (eV per 5-atom cell).

    python examples/demo.py                 # ~2-4 min on 2 cores
    python examples/demo.py --epochs 60 --n 1000 --folds 5
"""
import argparse
import time

import numpy as np
from sklearn.dummy import DummyRegressor
from sklearn.model_selection import KFold, cross_validate

from skcrystal import CGCNNRegressor
from skcrystal.datasets import load_perovskites


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n", type=int, default=1000, help="structures (max 1000)")
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    t0 = time.perf_counter()
    X, y = load_perovskites(n=args.n, target="heat_all")
    print(f"loaded {len(X)} perovskites (heat_all, eV/cell) in "
          f"{time.perf_counter() - t0:.1f} s")
    cv = KFold(args.folds, shuffle=True, random_state=args.seed)
    est = CGCNNRegressor(max_epochs=args.epochs, random_state=args.seed)
    t0 = time.perf_counter()
    model = cross_validate(est, X, y, cv=cv, scoring="neg_mean_absolute_error")
    t_model = time.perf_counter() - t0
    mean = cross_validate(DummyRegressor(), np.zeros((len(y), 1)), y, cv=cv,
                          scoring="neg_mean_absolute_error")
    cg, dm = -model["test_score"], -mean["test_score"]
    print(f"\n{args.folds}-fold CV, CGCNN {args.epochs} epochs "
          f"({t_model:.0f} s for all folds)\n")
    print(f"{'fold':>6} {'CGCNN MAE':>11} {'mean-predictor MAE':>20}")
    for i, (a, b) in enumerate(zip(cg, dm)):
        print(f"{i:>6} {a:>11.4f} {b:>20.4f}")
    print(f"{'mean':>6} {cg.mean():>11.4f} {dm.mean():>20.4f}")
    print(f"{'std':>6} {cg.std():>11.4f} {dm.std():>20.4f}")
    print(f"\nCGCNN MAE is {cg.mean() / dm.mean():.1%} of the mean predictor's "
          "(eV per 5-atom cell).")


if __name__ == "__main__":
    main()
