"""5-fold cross-validated MAE of CGCNNRegressor against a mean predictor.

Plain scikit-learn: ``cross_validate(est, structures, y, cv=folds,
scoring="neg_mean_absolute_error")`` on

* perovskites (``heat_all``, eV per 5-atom cell): the first ``--n-perov`` rows
  of ``../shared/data/perovskites/perovskites_part1.csv`` (3,787 rows at
  most), folds ``KFold(5, shuffle=True, random_state=18012019)`` (the
  matbench fold recipe, applied to these rows: they are not matbench ids);
* jdft2d (``exfoliation_en``, meV/atom): the 508 rows of the shared
  ``matbench_jdft2d_fold0_train.json.gz`` with the *official* matbench folds
  restricted to these rows (``load_matbench_json(..., folds="auto")``).
  All 508 rows are fold 0's training set, so fold 0 has no test row and is
  dropped (4 folds remain, each training on ~381 rows instead of 509).

``DummyRegressor(strategy="mean")`` is scored on the same folds. Graphs are
built once (content-keyed cache) and reused by every fold.

Usage::

    python benchmarks/cv_cgcnn.py --n-perov 3787 --epochs-perov 40 \
        --n-jdft2d 508 --epochs-jdft2d 150 --threads 2

``--measure`` times a few epochs per dataset and prints the projected total
instead of running the CV.
"""
import argparse
import os
import sys
import time
import warnings

import numpy as np
import torch
from sklearn.dummy import DummyRegressor
from sklearn.model_selection import KFold, cross_validate

from skcrystal import CGCNNRegressor
from skcrystal.datasets import load_csv, load_matbench_json, shared_data_path

PUBLISHED = {"perovskites": (0.0452, "eV/cell", "matbench v0.1, ~15.2k training structures/fold"),
             "jdft2d": (49.2, "meV/atom", "matbench v0.1, 509 training structures/fold (636 total)")}


def load_perovskites_part1(n):
    path = shared_data_path() / "perovskites" / "perovskites_part1.csv"
    X, y = load_csv(path, target="heat_all")
    X, y = X[:n], y[:n]
    cv = list(KFold(5, shuffle=True, random_state=18012019).split(np.arange(len(y))))
    return X, y, cv


def load_jdft2d(n):
    path = shared_data_path() / "jdft2d" / "matbench_jdft2d_fold0_train.json.gz"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # the dropped fold 0, said in the output
        X, y, cv = load_matbench_json(path, folds="auto")
    if n < len(y):
        X, y = X[:n], y[:n]
        cv = [(tr[tr < n], te[te < n]) for tr, te in cv]
        cv = [(tr, te) for tr, te in cv if len(te) and len(tr)]
    return X, y, cv


def estimator(epochs, seed):
    return CGCNNRegressor(max_epochs=epochs, random_state=seed)


def run(name, X, y, cv, epochs, seed, measure):
    unit = PUBLISHED[name][1]
    sizes = [(len(tr), len(te)) for tr, te in cv]
    print(f"\n== {name}: {len(y)} structures, {len(cv)} folds (train/test sizes {sizes}), "
          f"{epochs} epochs, target in {unit}", flush=True)
    if measure:
        tr = cv[0][0]
        Xs = [X[i] for i in tr]
        t = time.perf_counter()
        estimator(1, seed).fit(Xs, y[tr])  # builds graphs (cached afterwards)
        t_build = time.perf_counter() - t
        t = time.perf_counter()
        estimator(3, seed).fit(Xs, y[tr])
        per_epoch = (time.perf_counter() - t) / 3
        print(f"first fit incl. graphs {t_build:.1f} s; {per_epoch:.2f} s/epoch on "
              f"{len(tr)} structures -> projected CV {per_epoch * epochs * len(cv) / 60:.1f} min "
              f"for {epochs} epochs", flush=True)
        return None
    t = time.perf_counter()
    dummy = cross_validate(DummyRegressor(), np.zeros((len(y), 1)), y, cv=cv,
                           scoring="neg_mean_absolute_error")
    cg = cross_validate(estimator(epochs, seed), X, y, cv=cv,
                        scoring="neg_mean_absolute_error", return_train_score=True,
                        error_score="raise")
    wall = time.perf_counter() - t
    mae, mae_d, mae_tr = -cg["test_score"], -dummy["test_score"], -cg["train_score"]
    print(f"per-fold CGCNN test MAE : {np.array2string(mae, precision=4)} {unit}")
    print(f"per-fold CGCNN train MAE: {np.array2string(mae_tr, precision=4)} {unit}")
    print(f"per-fold dummy test MAE : {np.array2string(mae_d, precision=4)} {unit}")
    pub, _, note = PUBLISHED[name]
    print(f"RESULT {name}: CGCNN {mae.mean():.4f} +- {mae.std():.4f} {unit} | dummy "
          f"{mae_d.mean():.4f} | ratio {mae.mean() / mae_d.mean():.3f} | published CGCNN "
          f"{pub} ({note}) | fit time {np.mean(cg['fit_time']):.0f} s/fold, wall "
          f"{wall / 60:.1f} min", flush=True)
    return mae.mean(), mae_d.mean()


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--n-perov", type=int, default=3787)
    p.add_argument("--epochs-perov", type=int, default=40)
    p.add_argument("--n-jdft2d", type=int, default=508)
    p.add_argument("--epochs-jdft2d", type=int, default=150)
    p.add_argument("--datasets", default="jdft2d,perovskites")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--measure", action="store_true",
                   help="time a few epochs and project the CV time instead")
    a = p.parse_args(argv)
    if shared_data_path() is None:
        sys.exit("needs ../shared/data (or SKCRYSTAL_SHARED_DATA)")
    torch.set_num_threads(a.threads)
    print(f"torch {torch.__version__}, threads {torch.get_num_threads()}, "
          f"cpus {os.cpu_count()}, load avg {os.getloadavg()[0]:.1f}, seed {a.seed}")
    print("CGCNNRegressor defaults: AdamW lr 1e-3, batch 64, cosine LR to 0, MSE on "
          "standardized targets, atom_fea_len 64, n_conv 3, h_fea_len 128, n_h 1, "
          "radius 8 Å, 12 nearest + ties")
    for name in a.datasets.split(","):
        t = time.perf_counter()
        if name == "perovskites":
            X, y, cv = load_perovskites_part1(a.n_perov)
            epochs = a.epochs_perov
        elif name == "jdft2d":
            X, y, cv = load_jdft2d(a.n_jdft2d)
            epochs = a.epochs_jdft2d
        else:
            raise ValueError(f"unknown dataset {name!r}")
        print(f"loaded {name} in {time.perf_counter() - t:.1f} s", flush=True)
        run(name, X, y, cv, epochs, a.seed, a.measure)


if __name__ == "__main__":
    main()
