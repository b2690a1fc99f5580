"""Learning curve on a task's fixed folds: how much do the training rows explain?

The shared jdft2d file holds matbench fold 0's training set, so each
official fold trains on ~381 of its 509 rows here, and a model's MAE is
not directly comparable with its paper's. This script runs a
``benchmarks/run_matbench.py`` configuration through the runner
(:func:`skcrystal.benchmarks.run_matbench`) on the task with each fold's
training rows cut to a fraction (one random order per fold, seeded by the
fold number, its first ``fraction`` kept: nested across fractions), each
fold scored on its whole test set, and fits ``MAE = a * N^-b`` through the
mean MAE of each training size (the runner's own record of the whole rows
included with ``--full-record``) to read the MAE off at the official
training size.

Each fraction is a runner record in ``--out``, labelled
``<label>-rows<fraction>``: resumable per fold and per epoch, and two
processes running other folds write beside each other::

    python benchmarks/learning_curve.py --task jdft2d --model crystograph --size full \\
        --epochs 60 --fractions 0.5 0.75 --folds 1 2 --out DIR      # beside: --folds 3 4
    python benchmarks/learning_curve.py --report DIR \\
        --full-record benchmarks/matbench_results/matbench_jdft2d__CrysToGraph-full-60epochs.json.gz
"""
import argparse
import dataclasses
import re
import shlex
import sys
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE))

# the suffix that marks a record's training fraction
_ROWS = re.compile(r"-rows([0-9.]+)$")


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


def subset_task(task, fraction):
    """``task`` with each fold's training rows cut to :func:`subset` (test
    rows whole; the official sizes kept for the extrapolation)."""
    folds = {k: (subset(train, fraction, k), test) for k, (train, test) in task.folds.items()}
    official = task.official_sizes or {k: (len(train), len(test))
                                       for k, (train, test) in task.folds.items()}
    split = (f"{task.split}; training rows: the first {fraction:g} of each fold's, in an "
             "order seeded by the fold (benchmarks/learning_curve.py)")
    return dataclasses.replace(task, folds=folds, official_sizes=official, split=split)


def run_curve(task, estimator, label, fractions, folds=None, out="learning_curve",
              command=None):
    """Run ``estimator`` on ``task`` cut to each of ``fractions``; the runner's
    results, one record per fraction (label ``<label>-rows<fraction>``)."""
    from skcrystal.benchmarks import run_matbench

    return [run_matbench(subset_task(task, fraction), estimator, folds=folds, out_dir=out,
                         label=f"{label}-rows{fraction:g}", command=command)
            for fraction in fractions]


def run(args, argv):
    import torch

    from run_matbench import configured_estimator, task_source

    torch.set_num_threads(args.threads)
    base, label = configured_estimator(args)
    label = args.label or label + (f"-{args.epochs}epochs" if args.epochs else "")
    task = task_source(args.task, None)(None)
    run_curve(task, base, label, args.fractions, args.folds, args.out,
              command=shlex.join(["python", "benchmarks/learning_curve.py", *argv]))


def _record_rows(record, fraction):
    """(task name, rows) of a runner record: one row per fold."""
    (name, task), = record["tasks"].items()
    rows = []
    for key, fold in task["results"].items():
        p = fold["parameters"]
        rows.append({"fraction": fraction, "fold": int(key.split("_")[1]),
                     "n_train": p["n_train"], "n_train_official": p["n_train_official"],
                     "mae": fold["scores"]["mae"]})
    return name, rows


def report(folder, full_record=None):
    """Per training size: the folds' MAEs and their mean; the power law through
    the means and the MAE it gives at the official training size."""
    from skcrystal.benchmarks.matbench import read_record

    rows, configs = [], set()
    for path in sorted(Path(folder).glob("*.json.gz")):
        record = read_record(path)
        label = record["user_metadata"]["skcrystal"]["label"]
        found = _ROWS.search(label)
        if found is None:
            continue  # not a learning-curve record
        name, got = _record_rows(record, float(found.group(1)))
        configs.add((name, label[:found.start()]))
        rows += got
    if len(configs) > 1:
        sys.exit(f"{folder} holds results of several configurations: {sorted(configs)}")
    if full_record:
        name, got = _record_rows(read_record(full_record), 1.0)
        if configs and name != next(iter(configs))[0]:
            sys.exit(f"{full_record} is a record of {name}, the results of "
                     f"{next(iter(configs))[0]}")
        rows += got
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
    argv = sys.argv[1:] if argv is None else list(argv)
    args = p.parse_args(argv)
    if args.report:
        report(args.report, args.full_record)
        return 0
    if not (args.task and args.model and args.out):
        p.error("--task, --model and --out are required (or --report)")
    run(args, argv)
    return 0


if __name__ == "__main__":
    sys.exit(main())
