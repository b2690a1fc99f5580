"""Can CGCNN learn the period of a 1D chain? (periodicity paper, Fig. 3e-h, Fig. S3)

Trains CGCNN to predict the lattice length ``a`` of random quasi-1D carbon
chains (:func:`skcrystal.datasets.synthetic.make_carbon_chains`) and prints
the held-out R2 for

* short chains (2-8 atoms) and long chains (37-50 atoms),
* CGCNN variants: default (mean pooling, 3 convolutions, 12 neighbours
  within 8 Å), sum pooling, 8 convolutions, 18 neighbours within 12 Å
  (Fig. 3g-h),
* single chains vs. a 50/50 mix of single and double chains, with mean
  and sum pooling (Fig. S3).

The paper's findings to compare with: short chains R2 > 0.8 with default
CGCNN; long chains poorly predicted with mean pooling; sum pooling markedly
better on long chains; mixing in double chains erodes the sum-pooling gain.

Protocol: one random 80/20 train/test split per data set, the same split
for every model. Results are appended to a CSV as each model finishes, so
an interrupted run keeps what it measured.

Early stopping (``--patience N``, off by default): the paper keeps a 10%
validation split for model selection and trains up to 300 epochs. With
``--patience`` each estimator holds out ``--valid-fraction`` of its
training chains (skorch ``train_split=ValidSplit``, seeded, so the same
chains for every model of a data set), stops when ``valid_loss`` has not
improved for N epochs (skorch ``EarlyStopping``) and restores the weights
of the best validation epoch (skorch ``Checkpoint(load_best=True)`` in a
temporary directory). The test chains are untouched by this. The cosine
learning-rate schedule still runs over ``--epochs``/``--epochs-long``, so
a run that stops early stops at a higher learning rate.

Usage::

    python examples/periodicity.py --n-samples 1400 --epochs 30 --epochs-long 8
    python examples/periodicity.py --lengths long --configs mean --epochs-long 60 \
        --patience 10

Run ``--lengths short`` and ``--lengths long`` as two processes to use two
cores (each sets ``torch.set_num_threads(--threads)``).
"""
from __future__ import annotations

import argparse
import csv
import os
import shutil
import tempfile
import time

import numpy as np

#: name -> (data set kind, estimator parameters); order = order of importance
CONFIGS = {
    "mean": ("single", {}),
    "sum": ("single", {"module__pooling": "sum"}),
    "mean, single+double": ("mixed", {}),
    "sum, single+double": ("mixed", {"module__pooling": "sum"}),
    "8 conv": ("single", {"module__n_conv": 8}),
    "18 nbrs / 12 A": ("single", {"max_neighbors": 18, "radius": 12.0,
                                  "module__cutoff": 12.0}),
}
LENGTHS = {"short": (2, 9), "long": (37, 51)}


HEADER = ["chains", "data", "model", "n_train", "n_test", "epochs", "r2_test",
          "mae_test", "r2_train", "fit_seconds", "patience", "epochs_run", "best_epoch",
          "best_valid_loss"]


def early_stopping_params(patience, valid_fraction, seed, dirname):
    """skorch parameters for validation-split early stopping.

    Parameters
    ----------
    patience : int
        Epochs without a new best ``valid_loss`` before training stops.
    valid_fraction : float
        Fraction of the training structures held out for validation.
    seed : int
        Seed of the validation split (same chains for every model).
    dirname : str
        Directory for the best-epoch checkpoint (one per estimator).

    Returns
    -------
    dict
        Keyword arguments for a skcrystal estimator.
    """
    from skorch.callbacks import Checkpoint, EarlyStopping
    from skorch.dataset import ValidSplit

    return {
        "train_split": ValidSplit(valid_fraction, random_state=seed),
        "callbacks": [
            ("early_stopping", EarlyStopping(monitor="valid_loss", patience=patience)),
            # only the weights: restoring them is all load_best needs
            ("best", Checkpoint(monitor="valid_loss_best", load_best=True,
                                dirname=dirname, f_optimizer=None, f_criterion=None,
                                f_history=None)),
        ],
    }


def run(lengths, configs, n_samples, epochs, epochs_long, lr, batch_size, seed, out,
        verbose=0, patience=None, valid_fraction=0.1):
    from sklearn.metrics import mean_absolute_error, r2_score
    from sklearn.model_selection import train_test_split

    from skcrystal.datasets.synthetic import make_carbon_chains
    from skcrystal.estimators import CGCNNRegressor

    rows = []
    new_file = not os.path.exists(out) or os.path.getsize(out) == 0
    if not new_file:
        with open(out, newline="") as fh:
            old = next(csv.reader(fh), [])
        if old != HEADER:
            raise ValueError(f"out={out!r} has different columns ({old}); "
                             "pass a new --out file")
    with open(out, "a", newline="") as fh:
        writer = csv.writer(fh)
        if new_file:
            writer.writerow(HEADER)
        for length in lengths:
            data = {}
            for kind in ("single", "mixed"):
                if not any(CONFIGS[c][0] == kind for c in configs):
                    continue
                X, a = make_carbon_chains(n_samples, n_atoms=LENGTHS[length],
                                          double=False if kind == "single" else "mixed",
                                          random_state=seed)
                idx_tr, idx_te = train_test_split(np.arange(n_samples), test_size=0.2,
                                                  random_state=seed)
                data[kind] = ([X[i] for i in idx_tr], a[idx_tr],
                              [X[i] for i in idx_te], a[idx_te])
            n_ep = epochs_long if (length == "long" and epochs_long) else epochs
            for name in configs:
                kind, params = CONFIGS[name]
                Xtr, ytr, Xte, yte = data[kind]
                es, tmp = {}, None
                if patience:
                    tmp = tempfile.mkdtemp(prefix="periodicity_ckpt_")
                    es = early_stopping_params(patience, valid_fraction, seed, tmp)
                est = CGCNNRegressor(max_epochs=n_ep, lr=lr, batch_size=batch_size,
                                     random_state=seed, grow_radius=True,
                                     verbose=verbose, **es, **params)
                try:
                    t0 = time.perf_counter()
                    est.fit(Xtr, ytr)
                    dt = time.perf_counter() - t0
                finally:
                    if tmp is not None:
                        shutil.rmtree(tmp, ignore_errors=True)
                pred = est.predict(Xte)
                hist = est.history
                best_epoch = best_valid = ""
                if patience:
                    # skorch numbers epochs from 1; the restored weights are
                    # those of the last epoch that set a new best valid_loss
                    best = [h for h in hist if h.get("valid_loss_best")][-1]
                    best_epoch, best_valid = best["epoch"], round(best["valid_loss"], 4)
                # r2_train is over all training chains, validation ones included
                row = [length, kind, name, len(ytr), len(yte), n_ep,
                       round(r2_score(yte, pred), 4),
                       round(mean_absolute_error(yte, pred), 4),
                       round(r2_score(ytr, est.predict(Xtr)), 4), round(dt, 1),
                       patience or "", len(hist), best_epoch, best_valid]
                writer.writerow(row)
                fh.flush()
                rows.append(row)
                stop = (f"  stopped after {len(hist)} ep, best ep {best_epoch} "
                        f"(valid loss {best_valid})" if patience else "")
                print(f"{length:5s} {kind:6s} {name:22s} R2 test {row[6]:7.3f}  "
                      f"MAE {row[7]:6.3f} A  R2 train {row[8]:6.3f}  ({dt:.0f} s){stop}",
                      flush=True)
    return rows


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--n-samples", type=int, default=1400)
    p.add_argument("--epochs", type=int, default=30)
    p.add_argument("--epochs-long", type=int, default=None,
                   help="epochs for the long chains (default: --epochs)")
    p.add_argument("--lr", type=float, default=2e-3)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--lengths", nargs="+", choices=list(LENGTHS), default=list(LENGTHS))
    p.add_argument("--configs", nargs="+", choices=list(CONFIGS), default=list(CONFIGS))
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--out", default="periodicity_results.csv")
    p.add_argument("--verbose", type=int, default=0)
    p.add_argument("--patience", type=int, default=None,
                   help="early stopping on a validation split with this patience "
                        "(epochs); default: no validation split, train all epochs")
    p.add_argument("--valid-fraction", type=float, default=0.1,
                   help="fraction of the training chains held out for --patience")
    args = p.parse_args(argv)
    if args.patience is not None and args.patience < 1:
        p.error(f"--patience must be >= 1, got {args.patience}")
    if not 0 < args.valid_fraction < 1:
        p.error(f"--valid-fraction must be in (0, 1), got {args.valid_fraction}")

    import torch
    torch.set_num_threads(args.threads)
    t0 = time.perf_counter()
    run(args.lengths, args.configs, args.n_samples, args.epochs, args.epochs_long,
        args.lr, args.batch_size, args.seed, args.out, args.verbose, args.patience,
        args.valid_fraction)
    print(f"total {time.perf_counter() - t0:.0f} s; results appended to {args.out}")


if __name__ == "__main__":
    main()
