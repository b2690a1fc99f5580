"""Stale batch-norm statistics: results with and without RecomputeBatchNorm.

    python benchmarks/bn_recompute.py chains        # 400 long chains, mean pooling
    python benchmarks/bn_recompute.py chains_sum    # the same with sum pooling
    python benchmarks/bn_recompute.py perovskites   # 1,000 bundled, 5-fold CV MAE
    python benchmarks/bn_recompute.py few_steps     # fits of 1-40 training batches

Prints train/test R2 (chains) or the CV MAE (perovskites) for each setting side
by side; few_steps prints held-out MAEs of CGCNN and a small ALIGNN trained on
40 or 200 bundled perovskites for a few epochs (1-40 batches of 64, so the
running statistics are stale) against the mean predictor. The figures are in
benchmarks/RESULTS.md ("Stale batch-norm statistics").
"""
import argparse
import time

import numpy as np


def fit(Xtr, ytr, recompute, model=None, **kw):
    """``model`` (default CGCNNRegressor) fitted with or without RecomputeBatchNorm."""
    from skcrystal.estimators import CGCNNRegressor, RecomputeBatchNorm
    cb = [("recompute_bn", RecomputeBatchNorm())] if recompute else []
    return (model or CGCNNRegressor)(random_state=0, callbacks=cb, **kw).fit(Xtr, ytr)


def chains(pooling):
    from sklearn.metrics import r2_score
    from skcrystal.datasets import make_carbon_chains
    X, a = make_carbon_chains(400, n_atoms=(37, 51), random_state=0)
    Xtr, Xte, atr, ate = X[:320], X[320:], a[:320], a[320:]
    for lr in (2e-3, 1e-3):
        for recompute in (False, True):
            t = time.time()
            est = fit(Xtr, atr, recompute, max_epochs=16, lr=lr, batch_size=32,
                      module__pooling=pooling)
            print(f"long chains, {pooling} pooling, lr {lr}, recompute={recompute}: "
                  f"R2 train {r2_score(atr, est.predict(Xtr)):.3f} "
                  f"test {r2_score(ate, est.predict(Xte)):.3f} ({time.time() - t:.0f} s)",
                  flush=True)


def perovskites():
    from sklearn.metrics import mean_absolute_error
    from sklearn.model_selection import KFold
    from skcrystal.datasets import load_perovskites
    X, y = load_perovskites()
    for recompute in (False, True):
        maes = []
        for tr, te in KFold(5, shuffle=True, random_state=0).split(X):
            est = fit([X[i] for i in tr], y[tr], recompute, max_epochs=30)
            maes.append(mean_absolute_error(y[te], est.predict([X[i] for i in te])))
        print(f"perovskites, 5-fold, 30 epochs, recompute={recompute}: MAE "
              f"{np.mean(maes):.4f} +- {np.std(maes):.4f} (folds {np.round(maes, 4).tolist()})",
              flush=True)


def few_steps():
    import warnings

    from skcrystal.datasets import load_perovskites
    from skcrystal.estimators import ALIGNNRegressor
    X, y = load_perovskites(n=400)
    models = {"CGCNN": {},
              "ALIGNN (hidden 32, 1 + 1)": dict(model=ALIGNNRegressor, module__hidden=32,
                                                module__alignn_layers=1,
                                                module__gcn_layers=1)}
    for n_train, epochs in ((40, (1, 3, 10)), (200, (3, 10))):
        Xtr, ytr, Xte, yte = X[:n_train], y[:n_train], X[200:], y[200:]
        mean = float(np.abs(yte - ytr.mean()).mean())
        for name, kw in models.items():
            for ep in epochs:
                maes = []
                for recompute in (False, True):
                    with warnings.catch_warnings():
                        warnings.simplefilter("ignore")  # the stale-statistics warning
                        est = fit(Xtr, ytr, recompute, max_epochs=ep, **kw)
                    maes.append(float(np.abs(est.predict(Xte) - yte).mean()))
                print(f"{name}, {n_train} train, {ep} epoch(s): held-out MAE, statistics "
                      f"kept {maes[0]:.3f}, recomputed {maes[1]:.3f}; mean predictor "
                      f"{mean:.3f}", flush=True)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("data", choices=("chains", "chains_sum", "perovskites", "few_steps"))
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args(argv)
    import torch
    torch.set_num_threads(args.threads)
    if args.data == "perovskites":
        perovskites()
    elif args.data == "few_steps":
        few_steps()
    else:
        chains("sum" if args.data == "chains_sum" else "mean")


if __name__ == "__main__":
    main()
