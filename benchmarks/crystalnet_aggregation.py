"""CrystalNet node messages: the paper's sum x max against mean x max.

Trains :class:`~skcrystal.estimators.crystalnet.CrystalNetRegressor` at its
defaults (the reference graph: 5 Å, up to 32 neighbours, both directions of
every pair) with each ``module__aggregation`` on the same perovskites and
reports the test MAE, the mean predictor's MAE and the training loss.

Usage::

    python benchmarks/crystalnet_aggregation.py --n-train 400 --n-test 200 \\
        --epochs 30 --aggregation sum_max --out agg.jsonl

Results are appended to ``--out`` as JSON lines.
"""
import argparse
import json
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--n-train", type=int, default=400)
    p.add_argument("--n-test", type=int, default=200)
    p.add_argument("--epochs", type=int, default=30)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--hidden", type=int, default=512)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--aggregation", default="sum_max")
    p.add_argument("--warmup", type=int, default=0,
                   help="linear warm-up epochs of the learning rate (the reference has 2)")
    p.add_argument("--init", default="reference")
    p.add_argument("--max-neighbors", type=int, default=None,
                   help="neighbour cap of the graph (default: the estimator's)")
    p.add_argument("--out", default="crystalnet_aggregation.jsonl")
    args = p.parse_args(argv)

    import torch

    from skcrystal.datasets import load_perovskites
    from skcrystal.estimators.base import CosineAnnealing
    from skcrystal.estimators.crystalnet import CrystalNetRegressor

    torch.set_num_threads(1)
    X, y = load_perovskites(n=args.n_train + args.n_test, random_state=args.seed,
                            target="heat_all")
    Xtr, ytr = X[:args.n_train], y[:args.n_train]
    Xte, yte = X[args.n_train:], y[args.n_train:]
    graph = {} if args.max_neighbors is None else {"max_neighbors": args.max_neighbors}
    est = CrystalNetRegressor(**graph, max_epochs=args.epochs, batch_size=args.batch_size,
                              lr=args.lr, module__hidden=args.hidden,
                              module__aggregation=args.aggregation,
                              module__init=args.init,
                              callbacks__lr_schedule=CosineAnnealing(args.warmup),
                              random_state=args.seed)
    t0 = time.time()
    est.fit(Xtr, ytr)
    seconds = time.time() - t0
    pred = est.predict(Xte)
    loss = [float(v) for v in est.history[:, "train_loss"]]
    row = dict(aggregation=args.aggregation, init=args.init, warmup=args.warmup,
               max_neighbors=est.max_neighbors,
               hidden=args.hidden, epochs=args.epochs,
               n_train=args.n_train, n_test=args.n_test, lr=args.lr, seed=args.seed,
               test_mae=float(np.mean(np.abs(pred - yte))),
               mean_predictor_mae=float(np.mean(np.abs(np.mean(ytr) - yte))),
               train_loss_first=loss[0], train_loss_max=max(loss), train_loss_last=loss[-1],
               finite=bool(np.all(np.isfinite(pred))), seconds=round(seconds, 1),
               load=os.getloadavg()[0])
    print(json.dumps(row))
    with open(args.out, "a") as f:
        f.write(json.dumps(row) + "\n")


if __name__ == "__main__":
    main()
