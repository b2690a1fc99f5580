"""Matbench-protocol runs of issue 10: each model's defaults on jdft2d and perovskites.

Configurations (``--task`` x ``--model``):

=============  ==============================================================
task           data (``--data``, default: the project's shared data folder)
=============  ==============================================================
``jdft2d``     ``jdft2d/matbench_jdft2d_fold0_train.json.gz`` + the official
               ``matbench_jdft2d_folds.json``. The file holds fold 0's
               training set (508 of 636 rows), so folds 1-4 run, each on its
               official training rows present (~381 of 509); fold 0 cannot.
``perovskites`` ``perovskites/perovskites_part{1,2}.csv`` (3,787 + 1,024 rows),
               ``KFold(5, shuffle=True, random_state=18012019)``: ~3,849
               training rows per fold (matbench_perovskites: ~15,000).
=============  ==============================================================

=================  ===========================================================
model              estimator (``random_state=0``; otherwise its defaults)
=================  ===========================================================
``cgcnn``          ``CGCNNRegressor()``
``crystalnet``     ``CrystalNetRegressor()``
``hybrid``         ``CGCNNRegressor(descriptors=make_pipeline(DescriptorBank(),
                   SimpleImputer()))`` (DescriptorBank's Voronoi-based
                   columns are NaN for some jdft2d structures; the imputer
                   fills them with the training fold's means)
``alignn``         ``ALIGNNRegressor(**SIZES["alignn"][--size])``; default
                   size (DEFAULT_SIZE): the largest that runs the task in
                   about 2 hours on one core (jdft2d large, perovskites small)
``crystograph``    ``CrysToGraphRegressor(**SIZES["crystograph"][--size])``;
                   default size: jdft2d full (the paper's Table A1 model,
                   3.3 h), perovskites small (~17 h at its 300 epochs:
                   shorten with ``--epochs``)
``noise``          ``CGCNNRegressor(descriptors=noise_descriptors())``: 29
                   standard-normal columns, a fixed function of each structure
                   (no signal; the control of the descriptor screen)
=================  ===========================================================

Commands (one process per configuration, nothing else heavy on the machine,
one torch thread unless ``--threads``), with the wall time each should take,
extrapolated from one fold of 1-5 epochs (``--folds 1 --epochs 5``) on 2
cores with 2 such runs side by side (load average ~2), one torch thread,
November 2026: graphs + per fold (fit overhead + epochs x epoch time +
predict); the hybrid's descriptors are computed once, in the first fold::

    # jdft2d: 4 folds x ~381 training rows
    python benchmarks/run_matbench.py --task jdft2d --model cgcnn          # ~1.5 min
    python benchmarks/run_matbench.py --task jdft2d --model crystalnet     # ~32 min
    python benchmarks/run_matbench.py --task jdft2d --model hybrid         # ~2 min
    python benchmarks/run_matbench.py --task jdft2d --model alignn --size large       # ~1.5 h
    python benchmarks/run_matbench.py --task jdft2d --model crystograph --size full   # ~3.3 h
                    # (measured: 46-55 min per fold; 1.7 h as two processes side by side)
    python benchmarks/run_matbench.py --task jdft2d --model crystograph --size small --epochs 60
                                                     # 35 min (measured, after the eTGC speed-up)
    # perovskites: 5 folds x ~3,849 training rows
    python benchmarks/run_matbench.py --task perovskites --model cgcnn          # ~11 min
    python benchmarks/run_matbench.py --task perovskites --model crystalnet     # ~10 h
                                  # (measured: 2.0 h per fold, 69 s per epoch)
    python benchmarks/run_matbench.py --task perovskites --model hybrid         # ~19 min
    python benchmarks/run_matbench.py --task perovskites --model alignn --size small  # ~1.8 h
    python benchmarks/run_matbench.py --task perovskites --model crystograph --size small
                                                                     # ~20 h (300 epochs)

    python benchmarks/run_matbench.py --list            # these commands
    python benchmarks/run_matbench.py --table           # RESULTS.md table of all records
    python benchmarks/run_matbench.py --status          # folds stopped or running part way

Other sizes (``--size``; epochs are the model's defaults: 100, CrysToGraph 300):

============================  ==============  ==================  =======================
model, size                   epoch, jdft2d   epoch, perov.       whole task jd / pe
============================  ==============  ==================  =======================
ALIGNN full (256, 4+4)        22 s [m]        166 s [m]           2.5 h [m] / 23 h [m]
ALIGNN large (128, 4+4)       13 s            58 s                1.5 h / 8.1 h
ALIGNN medium (128, 2+2)      5.7 s           43 s [m]            38 min / 6 h [m]
ALIGNN small (64, 2+2)        2.0 s           13 s                14 min / 1.8 h
CrysToGraph full (256, 8x32)  9.0-10.8 s [m]  54 s [a]            3.3 h [m] / ~23 h
CrysToGraph medium (128)      8.5 s [m]       --                  2.8 h [m] / --
CrysToGraph small (64, 4x16)  8.6 s [m]       40 s [a], 49 s [m]  2.9 h [m] / 17-20 h [m]
============================  ==============  ==================  =======================

(figures without a mark: estimates, from a fold of 1-5 epochs as above.
[m]: the epoch measured on whole folds, December 2026, two runs side by
side, and the whole task extrapolated from it: ALIGNN medium 67-71 min
per fold of 100 epochs (the estimate was 30 s per epoch), CrysToGraph
small 47-50 min per fold of 60 epochs (estimated ~39 s per epoch);
ALIGNN full on jdft2d 37 min per fold, 2.5 h for the four folds measured
(the estimate was 49 s per epoch); on the perovskites 176 s per epoch
alone, 146-201 s beside another run (the estimate was 265 s; fold 0 took
4.6 h, 166 s per epoch), and CrysToGraph small 41-70 s beside another
run at its 300 epochs (fold 0 took 4.1 h, 49 s per epoch); on jdft2d,
two folds side by side, CrysToGraph full 9.1-10.4 min and medium 8.1-8.8
min per fold of 60 epochs, full 46-55 min and small 41-46 min per fold
of 300: the line graph's layers, the same in the three sizes, take most
of an epoch there. [a]: alone on the machine, one fold of 3 epochs
(``--folds 0 --epochs 3``, another ``--out-dir``), December 2026: on the perovskites
CrysToGraph full 54 s and small 40 s per epoch (the earlier ~350 s for
full was an estimate from before the eTGC speed-up). A fold that
outlasts a sitting is stopped (Ctrl-C, kill) and resumed by the same
command, see below.)

Each run writes ``benchmarks/matbench_results/<task>__<label>.json.gz`` (the
record, matbench's results layout; see ``skcrystal.benchmarks.matbench``)
and ``.md`` (its RESULTS.md row), fold by fold: rerunning the same command
after an interruption runs only the missing folds, and a fold stopped part
way (Ctrl-C, a killed process) resumes at its last finished epoch from its
``<task>__<label>.fold<k>.checkpoint/`` folder, with the predictions of an
uninterrupted fold. A fold of many hours can so be run a few hours at a
time. ``--folds 1 --epochs 5``
gives a short timing run (use another ``--out-dir`` so it does not mix with
the real record: changed parameters are refused anyway). Processes running
other folds of one configuration at the same time (one per core) each add
their folds to the same record::

    python benchmarks/run_matbench.py --task perovskites --model crystalnet --folds 0 1 2 &
    python benchmarks/run_matbench.py --task perovskites --model crystalnet --folds 3 4
"""
import argparse
import ast
import os
import shlex
import sys
from pathlib import Path

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

HERE = Path(__file__).resolve().parent
TASKS = ("jdft2d", "perovskites")
MODELS = ("cgcnn", "crystalnet", "hybrid", "alignn", "crystograph", "noise")
LABELS = {"cgcnn": "CGCNN", "crystalnet": "CrystalNet", "hybrid": "CGCNN+DescriptorBank",
          "alignn": "ALIGNN", "crystograph": "CrysToGraph", "noise": "CGCNN+noise"}
#: model sizes: "full" is the model's own default (the paper's size)
SIZES = {
    "alignn": {"full": {},
               "large": {"module__hidden": 128},
               "medium": {"module__hidden": 128, "module__alignn_layers": 2,
                          "module__gcn_layers": 2},
               "small": {"module__hidden": 64, "module__alignn_layers": 2,
                         "module__gcn_layers": 2}},
    "crystograph": {"full": {},
                    "medium": {"module__hidden": 128, "module__n_heads": 4,
                               "module__head_dim": 32},
                    "small": {"module__hidden": 64, "module__n_heads": 4,
                              "module__head_dim": 16}},
}
DEFAULT_SIZE = {("jdft2d", "alignn"): "large", ("jdft2d", "crystograph"): "full",
                ("perovskites", "alignn"): "small", ("perovskites", "crystograph"): "small"}


def commands():
    lines = []
    for task in TASKS:
        for model in MODELS:
            size = DEFAULT_SIZE.get((task, model))
            lines.append(f"python benchmarks/run_matbench.py --task {task} --model {model}"
                         + (f" --size {size}" if size else ""))
    return lines


def task_source(task, data):
    from skcrystal.benchmarks import matbench_task, perovskites_task
    from skcrystal.datasets import shared_data_path

    data = Path(data) if data else shared_data_path()
    if data is None:
        sys.exit("no --data given and no shared data folder found (SKCRYSTAL_SHARED_DATA)")
    if task == "jdft2d":
        folder = data / "jdft2d" if (data / "jdft2d").is_dir() else data
        return lambda n: matbench_task(folder / "matbench_jdft2d_fold0_train.json.gz",
                                       fold_file=folder / "matbench_jdft2d_folds.json",
                                       max_structures=n)
    folder = data / "perovskites" if (data / "perovskites").is_dir() else data
    return lambda n: perovskites_task(folder, max_structures=n)


def noise_descriptors(n_columns=29):
    """A transformer of ``n_columns`` standard-normal columns, a fixed function of each
    structure (seeded by its lattice and coordinates): descriptors with no signal."""
    from sklearn.preprocessing import FunctionTransformer

    return FunctionTransformer(_noise_rows, kw_args={"n_columns": n_columns})


def _noise_rows(structures, n_columns):
    import zlib

    import numpy as np

    rows = []
    for s in structures:
        key = np.round(np.concatenate([s.lattice.matrix.ravel(), s.frac_coords.ravel()]), 5)
        rows.append(np.random.default_rng(zlib.crc32(key.tobytes())).normal(size=n_columns))
    return np.array(rows)


def estimator(model, size, params):
    """(estimator, label) of a configuration, with ``params`` set on it."""
    from skcrystal.cli import get_estimator_class

    params = {"random_state": 0, **params}
    label = LABELS[model]
    if model == "hybrid":
        from sklearn.impute import SimpleImputer
        from sklearn.pipeline import make_pipeline

        from skcrystal.descriptors import DescriptorBank

        # the Voronoi-based columns are NaN for some 2D jdft2d structures; the
        # imputer fills them with training-fold means
        est = get_estimator_class("cgcnn")(
            descriptors=make_pipeline(DescriptorBank(), SimpleImputer()), **params)
    elif model == "noise":
        est = get_estimator_class("cgcnn")(descriptors=noise_descriptors(), **params)
    else:
        sizes = SIZES.get(model, {"full": {}})
        if (size or "full") not in sizes:
            sys.exit(f"--size {size}: {model} has sizes {sorted(sizes)}")
        sized = sizes[size or "full"]
        est = get_estimator_class(model)(**{**sized, **params})
        if size and size != "full":
            label += f"-{size}"
    return est, label


def configured_estimator(args):
    """(estimator, label) of the parsed ``--task --model --size --param --epochs``."""
    params = parse_params(args.param)
    if args.epochs is not None:
        params["max_epochs"] = args.epochs
    size = args.size or DEFAULT_SIZE.get((args.task, args.model))
    return estimator(args.model, size, params)


def parse_params(items):
    """``KEY=VALUE`` strings -> dict: Python literals, ``@file.npy`` an array
    read from the file (e.g. ``module__extra_atom_features=@embeddings.npy``),
    anything else the string itself."""
    out = {}
    for text in items or []:
        key, _, raw = text.partition("=")
        raw = raw.strip()
        if raw.startswith("@") and raw.endswith(".npy"):
            import numpy as np
            out[key.strip()] = np.load(raw[1:], allow_pickle=False)
            continue
        try:
            out[key.strip()] = ast.literal_eval(raw)
        except (ValueError, SyntaxError):
            out[key.strip()] = raw
    return out


def table(out_dir):
    from skcrystal.benchmarks import markdown_row
    from skcrystal.benchmarks.matbench import MARKDOWN_HEADER

    print(MARKDOWN_HEADER)
    for path in sorted(Path(out_dir).glob("*.json.gz")):
        print(markdown_row(path))


def status(out_dir):
    from skcrystal.benchmarks import fold_progress

    rows = fold_progress(out_dir)
    if not rows:
        print(f"no fold stopped or running part way in {out_dir}")
    for r in rows:
        per = f", {r['epoch_s']:.0f} s per epoch" if r["epoch_s"] else ""
        eta = f", ~{r['eta_s'] / 3600:.1f} h left" if r["eta_s"] is not None else ""
        print(f"{r['record']} fold {r['fold']}: {r['epochs_done']}/{r['max_epochs']} epochs"
              f"{per}{eta}, {r['parts']} part(s), last epoch ended {r['updated_at']}")


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--task", choices=TASKS)
    p.add_argument("--model", choices=MODELS)
    p.add_argument("--size", choices=("full", "large", "medium", "small"),
                   help="ALIGNN / CrysToGraph size (default: see DEFAULT_SIZE)")
    p.add_argument("--data", help="shared data folder (holding jdft2d/, perovskites/)")
    p.add_argument("--out-dir", default=str(HERE / "matbench_results"))
    p.add_argument("--folds", type=int, nargs="+", help="fold numbers (default: all)")
    p.add_argument("--epochs", type=int, help="max_epochs (default: the model's)")
    p.add_argument("--param", action="append", metavar="KEY=VALUE",
                   help="more estimator parameters (Python literals, or @file.npy)")
    p.add_argument("--max-structures", type=int, help="first N rows only (quick checks)")
    p.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    p.add_argument("--no-checkpoint", action="store_true",
                   help="no checkpoint after every epoch (a stopped fold restarts)")
    p.add_argument("--label", help="record label (default: from the model and size)")
    p.add_argument("--no-resume", action="store_true")
    p.add_argument("--list", action="store_true", help="print the commands of the issue")
    p.add_argument("--table", action="store_true",
                   help="print the RESULTS.md table of the records in --out-dir")
    p.add_argument("--status", action="store_true",
                   help="print the folds stopped or running part way in --out-dir")
    args = p.parse_args(argv)
    if args.list:
        print("\n".join(commands()))
        return 0
    if args.table:
        table(args.out_dir)
        return 0
    if args.status:
        status(args.out_dir)
        return 0
    if not (args.task and args.model):
        p.error("--task and --model are required (or --list / --table)")

    import torch
    torch.set_num_threads(args.threads)
    from skcrystal.benchmarks import run_matbench

    est, label = configured_estimator(args)
    task = task_source(args.task, args.data)(args.max_structures)
    res = run_matbench(task, est, folds=args.folds, out_dir=args.out_dir,
                       resume=not args.no_resume, label=args.label or label,
                       checkpoint=not args.no_checkpoint,
                       command=shlex.join(["python", "benchmarks/run_matbench.py",
                                           *(sys.argv[1:] if argv is None else argv)]))
    print(res.row)
    print(f"record: {res.path}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
