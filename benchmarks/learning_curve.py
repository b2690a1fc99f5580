"""Learning curve on a task's fixed folds: how much do the training rows explain?

The shared jdft2d file holds matbench fold 0's training set, so each
official fold trains on ~381 of its 509 rows here, and a model's MAE is
not directly comparable with its paper's. This script fits a
``benchmarks/run_matbench.py`` configuration on nested subsets of each
fold's training rows (one random order per fold, seeded by the fold
number, its first ``fraction`` kept), scores the fold's whole test set,
and fits ``MAE = a * N^-b`` through the mean MAE of each training size
(the runner's own record of the whole rows included with
``--full-record``) to read the MAE off at the official training size.

Each (fraction, fold) result is its own JSON file in ``--out``: a run
stopped part way reruns only what is missing, and two processes running
other folds write beside each other::

    python benchmarks/learning_curve.py --task jdft2d --model crystograph --size full \\
        --epochs 60 --fractions 0.5 0.75 --folds 1 2 --out DIR      # beside: --folds 3 4
    python benchmarks/learning_curve.py --report DIR \\
        --full-record benchmarks/matbench_results/matbench_jdft2d__CrysToGraph-full-60epochs.json.gz
"""
import argparse
import gzip
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE))


def subset(train, fraction, fold):
    """The first ``fraction`` of ``train`` (positions) in the fold's own random
    order: nested across fractions, the same in every run."""
    train = np.asarray(train)
    m = int(round(fraction * len(train)))
    if not 0 < m <= len(train):
        raise ValueError(f"fraction {fraction} keeps {m} of {len(train)} training rows")
    order = np.random.default_rng(1000 + int(fold)).permutation(len(train))
    return np.sort(train[order[:m]])


def power_law(sizes, maes):
    """``(a, b)`` of ``mae = a * size^-b``, least squares in log-log."""
    slope, intercept = np.polyfit(np.log(sizes), np.log(maes), 1)
    return float(np.exp(intercept)), float(-slope)


def run(args):
    from sklearn.base import clone

    from run_matbench import configured_estimator, task_source
    from skcrystal.benchmarks.matbench import fold_scores

    import torch
    torch.set_num_threads(args.threads)
    base, label = configured_estimator(args)
    label = args.label or label + (f"-{args.epochs}epochs" if args.epochs else "")
    task = task_source(args.task, None)(None)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    X = np.empty(len(task.structures), dtype=object)
    X[:] = task.structures
    folds = args.folds or list(task.folds)
    for fraction in args.fractions:
        for k in folds:
            path = out / f"{task.name}__{label}__{fraction:g}__fold{k}.json"
            if path.exists():
                print(f"{path.name}: done, skipped", file=sys.stderr)
                continue
            train, test = task.folds[k]
            rows = subset(train, fraction, k)
            est = clone(base)
            t0 = time.perf_counter()
            est.fit(list(X[rows]), task.y[rows])
            fit_s = time.perf_counter() - t0
            pred = np.asarray(est.predict(list(X[test])), dtype=np.float64).reshape(-1)
            scores = fold_scores(task.y[test], pred)
            official = (task.official_sizes or {}).get(k, (len(train), len(test)))
            result = {"task": task.name, "label": label, "fraction": fraction, "fold": k,
                      "n_train": int(len(rows)), "n_train_available": int(len(train)),
                      "n_train_official": int(official[0]), "n_test": int(len(test)),
                      "mae": scores["mae"], "fit_time_s": round(fit_s, 1),
                      "loadavg": list(os.getloadavg()),
                      "command": sys.argv}
            tmp = path.with_suffix(".tmp")
            tmp.write_text(json.dumps(result, indent=1))
            tmp.replace(path)
            print(f"{task.name} {label} fraction {fraction:g} fold {k}: {len(rows)} rows, "
                  f"MAE {scores['mae']:.4g} (fit {fit_s:.0f} s)", file=sys.stderr)


def report(folder, full_record=None):
    """Per training size: the folds' MAEs and their mean; the power law through
    the means and the MAE it gives at the official training size."""
    rows = [json.loads(p.read_text()) for p in sorted(Path(folder).glob("*.json"))]
    labels = sorted({(r["task"], r["label"]) for r in rows})
    if len(labels) > 1:
        sys.exit(f"{folder} holds results of several configurations: {labels}")
    if full_record:
        with gzip.open(full_record, "rt") as fh:
            record = json.load(fh)
        for name, task in record["tasks"].items():
            if labels and name != labels[0][0]:
                sys.exit(f"{full_record} is a record of {name}, the results of {labels[0][0]}")
            for key, fold in task["results"].items():
                p = fold["parameters"]
                rows.append({"task": name, "fraction": 1.0, "fold": int(key.split("_")[1]),
                             "n_train": p["n_train"], "n_train_available": p["n_train"],
                             "n_train_official": p["n_train_official"],
                             "mae": fold["scores"]["mae"]})
    if not rows:
        sys.exit(f"no results in {folder}")
    by = {}
    for r in rows:
        by.setdefault(r["fraction"], {})[r["fold"]] = r
    folds = sorted({r["fold"] for r in rows})
    complete = {f: v for f, v in by.items() if sorted(v) == folds}
    print("| training rows per fold (fraction) | " + " | ".join(f"fold {k}" for k in folds)
          + " | mean |")
    print("| --- | " + " | ".join("---:" for _ in folds) + " | ---: |")
    sizes, means = [], []
    for fraction in sorted(by):
        got = by[fraction]
        n = np.mean([r["n_train"] for r in got.values()])
        cells = [f"{got[k]['mae']:.1f}" if k in got else "-" for k in folds]
        mean = np.mean([got[k]["mae"] for k in got]) if fraction in complete else None
        print(f"| {n:.0f} ({fraction:g}) | " + " | ".join(cells) + " | "
              + (f"**{mean:.1f}**" if mean is not None else "incomplete") + " |")
        if mean is not None:
            sizes.append(n)
            means.append(mean)
    if len(sizes) >= 2:
        a, b = power_law(sizes, means)
        official = np.mean([r["n_train_official"] for r in rows])
        print(f"\nMAE = {a:.4g} * N^-{b:.3f} through the means; at N = {official:.0f} "
              f"(the official training rows): {a * official ** -b:.1f}, "
              f"{a * official ** -b / means[-1]:.3f} x the largest size's {means[-1]:.1f}")


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--task", choices=("jdft2d", "perovskites"))
    p.add_argument("--model")
    p.add_argument("--size", choices=("full", "large", "medium", "small"))
    p.add_argument("--epochs", type=int)
    p.add_argument("--param", action="append", metavar="KEY=VALUE")
    p.add_argument("--label", help="label of the results (default: model, size, epochs)")
    p.add_argument("--fractions", type=float, nargs="+", default=[0.5, 0.75])
    p.add_argument("--folds", type=int, nargs="+")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--out", help="folder of the results")
    p.add_argument("--report", metavar="DIR", help="print the table of the results in DIR")
    p.add_argument("--full-record", help="runner record of the same configuration on all rows")
    args = p.parse_args(argv)
    if args.report:
        report(args.report, args.full_record)
        return 0
    if not (args.task and args.model and args.out):
        p.error("--task, --model and --out are required (or --report)")
    run(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
