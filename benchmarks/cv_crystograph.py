"""5-fold CV MAE of CrysToGraphRegressor beside CGCNNRegressor and the mean predictor.

Datasets (from ../shared/data):

* supercon: ``supercon/supercon_train.csv`` (846 JARVIS superconductors,
  target ``prop`` = minus Tc in K; MAE is in K either way), the UnconvBench
  ``supercon`` task source (the paper's Table 2 uses all 1,058);
* jdft2d: ``jdft2d/matbench_jdft2d_fold0_train.json.gz`` (508 of the 636
  matbench structures; ``exfoliation_en`` in meV/atom).

Folds: ``KFold(5, shuffle=True, random_state=0)`` over the loaded rows,
identical for every model. All models see the same structures; graphs are
built once per graph setting (content-keyed cache).

The paper trains 256-wide models for 300-2000 epochs; this script runs on
2 shared CPU cores in ~20-30 minutes, so the CrysToGraph model is shrunk
(``--hidden``, ``--heads``, ``--etgc``) and trained for ``--epochs`` with
lr ``--lr`` (higher than the paper's 1e-4 because of the few epochs). The
printed table says which sizes were used.

Usage::

    python benchmarks/cv_crystograph.py --epochs 30 --cgcnn-epochs 30 \
        --hidden 64 --heads 4 --etgc 2 --threads 1
"""
import argparse
import time
import warnings

import numpy as np
import torch
from sklearn.dummy import DummyRegressor
from sklearn.model_selection import KFold

from skcrystal.datasets import load_csv, load_matbench_json, shared_data_path
from skcrystal.estimators.cgcnn import CGCNNRegressor
from skcrystal.estimators.crystograph import CrysToGraphRegressor

DATA = shared_data_path()
PAPER = {"supercon": "CrysToGraph 2.64, ALIGNN 2.74, CGCNN 2.93, mean 3.47 K "
                     "(UnconvBench, 1,058 structures, 5-fold CV)",
         "jdft2d": "CrysToGraph 32.4, ALIGNN 43.4, CGCNN 49.2, mean 67.3 meV/atom "
                   "(matbench, 636 structures)"}


def load(name, n):
    if name == "supercon":
        X, y = load_csv(f"{DATA}/supercon/supercon_train.csv", target="prop")
    else:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            X, y = load_matbench_json(f"{DATA}/jdft2d/matbench_jdft2d_fold0_train.json.gz")[:2]
    return list(X)[:n], np.asarray(y, dtype=float)[:n]


def models(args):
    ctg = CrysToGraphRegressor(
        max_epochs=args.epochs, lr=args.lr, batch_size=32, random_state=0,
        module__hidden=args.hidden, module__n_heads=args.heads,
        module__head_dim=args.hidden // args.heads, module__n_etgc=args.etgc)
    cg = CGCNNRegressor(max_epochs=args.cgcnn_epochs, random_state=0)
    return {"mean": DummyRegressor(), "CGCNN": cg, "CrysToGraph": ctg}


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--datasets", default="supercon,jdft2d")
    p.add_argument("--n", type=int, default=100000, help="rows per dataset (first n)")
    p.add_argument("--folds", type=int, default=5, help="folds actually run (of 5)")
    p.add_argument("--epochs", type=int, default=30)
    p.add_argument("--cgcnn-epochs", type=int, default=30)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--hidden", type=int, default=64)
    p.add_argument("--heads", type=int, default=4)
    p.add_argument("--etgc", type=int, default=2)
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    print(f"# args: {vars(args)}", flush=True)
    for name in args.datasets.split(","):
        X, y = load(name, args.n)
        folds = list(KFold(5, shuffle=True, random_state=0).split(y))[:args.folds]
        maes = {}
        for label, est in models(args).items():
            errs, t0 = [], time.time()
            for k, (tr, te) in enumerate(folds):
                from sklearn.base import clone
                m = clone(est)
                m.fit([X[i] for i in tr] if label != "mean" else np.zeros((len(tr), 1)), y[tr])
                pred = m.predict([X[i] for i in te] if label != "mean"
                                 else np.zeros((len(te), 1)))
                errs.append(float(np.mean(np.abs(pred - y[te]))))
                print(f"{name} {label} fold {k}: MAE {errs[-1]:.3f} "
                      f"({time.time() - t0:.0f} s so far)", flush=True)
            maes[label] = (np.mean(errs), np.std(errs), time.time() - t0)
        print(f"\n## {name}: {len(y)} structures, {len(folds)} folds")
        for label, (m, s, t) in maes.items():
            print(f"{name:9s} {label:12s} MAE {m:8.3f} +- {s:6.3f}   ({t:6.0f} s)")
        print(f"paper: {PAPER[name]}\n", flush=True)


if __name__ == "__main__":
    main()
