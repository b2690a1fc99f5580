"""Which human-designed descriptors can CGCNN learn? (periodicity paper, Fig. 2)

Cross-validates CGCNN (and ALIGNN, when ``skcrystal.estimators.alignn`` is
available and asked for) on predicting each descriptor of
:class:`skcrystal.descriptors.DescriptorBank` from the structure, next to
the composition-only baseline (Magpie statistics + random forest, standing
in for the paper's ROOST), prints the table and saves the Fig. 2-style bar
charts (R2 per descriptor; crystal-system accuracy).

The structures are real ones from the project's shared data folder
(default: the first ``--n`` structures of the JARVIS superconductor set,
1-14 atoms, all seven crystal systems), not the paper's 47,862 Materials
Project structures, so absolute numbers differ; the comparison between
models and descriptors is the point.

Usage::

    python examples/probe_descriptors.py --n 150 --epochs 20 --cv 3 --out probe.png
    python examples/probe_descriptors.py --models cgcnn alignn   # ALIGNN too
"""
from __future__ import annotations

import argparse
import os
import time

import numpy as np


def load_structures(name, n, seed):
    from skcrystal.datasets import load, shared_data_path
    root = shared_data_path()
    if root is None:
        raise SystemExit("the shared data folder (../shared/data) was not found")
    paths = {
        "supercon": (os.path.join(root, "supercon", "supercon_train.csv"), "prop"),
        "perovskites": (os.path.join(root, "perovskites", "perovskites_part1.csv"), "heat_all"),
        "carbon_24": (os.path.join(root, "carbon_24", "carbon_24_val.csv"), "energy_per_atom"),
        "jdft2d": (os.path.join(root, "jdft2d", "matbench_jdft2d_fold0_train.json.gz"), None),
    }
    path, target = paths[name]
    X, _ = load(path, target=target) if target else load(path)
    rng = np.random.default_rng(seed)
    idx = np.sort(rng.permutation(len(X))[:n])
    return [X[i] for i in idx]


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--data", default="supercon",
                   choices=["supercon", "perovskites", "carbon_24", "jdft2d"])
    p.add_argument("--n", type=int, default=150, help="structures (random subset)")
    p.add_argument("--epochs", type=int, default=20)
    p.add_argument("--lr", type=float, default=3e-3)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--cv", type=int, default=3)
    p.add_argument("--models", nargs="+", default=["cgcnn"], choices=["cgcnn", "alignn"])
    p.add_argument("--no-baseline", action="store_true")
    p.add_argument("--descriptors", nargs="+", default=None,
                   help="DescriptorBank names (default: all)")
    p.add_argument("--n-jobs", type=int, default=None, help="folds in parallel")
    p.add_argument("--threads", type=int, default=1, help="torch threads per process")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default="probe_descriptors.png")
    p.add_argument("--csv", default=None, help="also write the table here")
    args = p.parse_args(argv)

    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import pandas as pd
    import torch

    from skcrystal.baselines import CompositionBaseline
    from skcrystal.descriptors import DescriptorBank
    from skcrystal.estimators import CGCNNRegressor
    from skcrystal.plotting import plot_probe_scores
    from skcrystal.probes import probe_learnability

    torch.set_num_threads(args.threads)
    t0 = time.perf_counter()
    X = load_structures(args.data, args.n, args.seed)
    common = dict(max_epochs=args.epochs, lr=args.lr, batch_size=args.batch_size,
                  random_state=args.seed, grow_radius=True)
    models = {}
    if "cgcnn" in args.models:
        models["CGCNN"] = CGCNNRegressor(**common)
    if "alignn" in args.models:
        try:
            from skcrystal.estimators.alignn import ALIGNNRegressor
        except ImportError as exc:
            print(f"ALIGNN skipped: {exc}")
        else:
            models["ALIGNN"] = ALIGNNRegressor(**common)
    baseline = None if args.no_baseline else CompositionBaseline(random_state=args.seed)
    bank = DescriptorBank(descriptors=args.descriptors)
    t1 = time.perf_counter()
    df = probe_learnability(models, X, bank=bank, cv=args.cv, n_jobs=args.n_jobs,
                            baseline=baseline, random_state=args.seed, verbose=1)
    t2 = time.perf_counter()

    pd.set_option("display.width", 160)
    reg = df[df.task == "regression"].pivot(index="descriptor", columns="model", values="r2")
    reg = reg.reindex(list(dict.fromkeys(df[df.task == "regression"].descriptor)))
    print(f"\n{args.data}: {len(X)} structures, {args.cv}-fold CV, {args.epochs} epochs; "
          "R2 (mean over folds)")
    print(reg.round(3).to_string())
    cls = df[df.task == "classification"]
    for _, r in cls.iterrows():
        print(f"{r.descriptor} accuracy {r.model}: {r.accuracy:.3f} +- {r.accuracy_std:.3f}")
    notes = df[df.note.astype(bool)]
    for _, r in notes.iterrows():
        print(f"note {r.descriptor} / {r.model}: {r.note}")
    print(f"structures loaded in {t1 - t0:.0f} s, probes in {t2 - t1:.0f} s")

    fig, axes = plt.subplots(1, 2, figsize=(14, 4), gridspec_kw={"width_ratios": [6, 1]})
    plot_probe_scores(df, "r2", ax=axes[0], title=f"{args.data}, n={len(X)}")
    if len(cls):
        plot_probe_scores(df, "accuracy", ax=axes[1], title="crystal system")
    else:
        axes[1].axis("off")
    fig.tight_layout()
    fig.savefig(args.out, dpi=120)
    print(f"figure saved to {args.out}")
    if args.csv:
        df.to_csv(args.csv, index=False)


if __name__ == "__main__":
    main()
