"""5-fold CV MAE of CGCNN, ALIGNN and CrystalNet on perovskites and jdft2d.

Reduced sizes and epochs so the whole run fits in ~30 min on 2 shared CPU
cores; the numbers are NOT comparable in size to matbench's (which trains
on ~15k perovskites / ~500 jdft2d structures for hundreds of epochs) and
are printed beside the matbench references only for orientation.

Usage::

    python benchmarks/cv_models.py --n 150 --epochs 15 --jobs 2 --out cv.json

Transfer learning (``--transfer``)::

    python benchmarks/cv_models.py --transfer --n-pretrain 2000 --n 200 --epochs 15

pre-trains CGCNN on ``heat_ref`` of perovskites_part1.csv rows 1000..1000+n_pretrain
(disjoint from the bundled 1,000 rows), then on ``heat_all`` of the first
``--n`` bundled rows compares fine-tuning (last head layer only, and all
layers) with training from scratch, tested on bundled rows 500-999, and
reports 5-fold CV MAE of the fine-tuner on the small set.

Every model sees the same structures, folds (KFold, shuffled, seed 0),
batch size and epochs. Results are appended to ``--out`` (JSON lines) as
each (dataset, model) pair finishes, so a partial run still reports.
"""
import argparse
import json
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

REFERENCE = {  # matbench v0.1 leaderboard MAE
    ("perovskites", "ALIGNN"): 0.0288, ("perovskites", "CGCNN"): 0.0452,
    ("jdft2d", "ALIGNN"): 43.4, ("jdft2d", "CGCNN"): 49.2,
}
UNITS = {"perovskites": "eV/cell", "jdft2d": "meV/atom"}


def load(name, n, seed):
    from skcrystal.datasets import load_matbench_json, load_perovskites, shared_data_path
    if name == "perovskites":
        return load_perovskites(n=n, random_state=seed, target="heat_all")
    X, y = load_matbench_json(os.environ.get(
        "JDFT2D", shared_data_path() / "jdft2d" / "matbench_jdft2d_fold0_train.json.gz"))
    idx = np.sort(np.random.default_rng(seed).choice(len(X), size=min(n, len(X)),
                                                     replace=False))
    return [X[i] for i in idx], np.asarray(y)[idx]


def models(epochs, batch_size, size):
    from skcrystal.estimators.alignn import ALIGNNRegressor
    from skcrystal.estimators.cgcnn import CGCNNRegressor
    from skcrystal.estimators.crystalnet import CrystalNetRegressor
    common = dict(max_epochs=epochs, batch_size=batch_size, random_state=0)
    if size == "small":
        return {
            "CGCNN": CGCNNRegressor(**common),
            "ALIGNN": ALIGNNRegressor(module__hidden=64, module__alignn_layers=2,
                                      module__gcn_layers=2, **common),
            "CrystalNet": CrystalNetRegressor(module__hidden=128, **common),
        }
    return {"CGCNN": CGCNNRegressor(**common), "ALIGNN": ALIGNNRegressor(**common),
            "CrystalNet": CrystalNetRegressor(**common)}


def transfer(a):
    from sklearn.metrics import mean_absolute_error
    from sklearn.model_selection import KFold, cross_val_score
    from skcrystal.datasets import load_csv, load_perovskites, shared_data_path
    from skcrystal.estimators.cgcnn import CGCNNRegressor
    from skcrystal.transfer import FineTuner, finetune
    df = load_csv(shared_data_path() / "perovskites" / "perovskites_part1.csv",
                  target=["heat_ref", "heat_all"], as_frame=True)
    pre = df.iloc[1000:1000 + a.n_pretrain]
    small = load_perovskites(as_frame=True)
    X_s, y_s = list(small.structure[:a.n]), small.heat_all.to_numpy()[:a.n]
    X_t, y_t = list(small.structure[500:]), small.heat_all.to_numpy()[500:]
    common = dict(batch_size=a.batch_size, random_state=0)
    t = time.perf_counter()
    base = CGCNNRegressor(max_epochs=a.epochs, **common).fit(
        list(pre.structure), pre.heat_ref.to_numpy())
    print(f"# transfer: pre-trained CGCNN on {len(pre)} heat_ref rows, {a.epochs} epochs, "
          f"{time.perf_counter() - t:.0f} s; small set {len(X_s)} heat_all rows; "
          f"test {len(X_t)} rows", flush=True)
    mean_mae = mean_absolute_error(y_t, np.full(len(y_t), y_s.mean()))
    rows = [("mean predictor", mean_mae),
            ("pre-trained on heat_ref, no fine-tuning",
             mean_absolute_error(y_t, base.predict(X_t)))]
    runs = {
        "scratch on small set": lambda: CGCNNRegressor(
            max_epochs=a.ft_epochs, **common).fit(X_s, y_s),
        "fine-tune last layer (lr 1e-5, paper)": lambda: finetune(
            base, X_s, y_s, lr=1e-5, max_epochs=a.ft_epochs),
        "fine-tune last layer (lr 1e-2)": lambda: finetune(
            base, X_s, y_s, lr=1e-2, max_epochs=a.ft_epochs),
        "fine-tune all layers (lr 1e-3)": lambda: finetune(
            base, X_s, y_s, freeze=None, lr=1e-3, max_epochs=a.ft_epochs),
    }
    for name, make in runs.items():
        rows.append((name, mean_absolute_error(y_t, make().predict(X_t))))
    for name, mae in rows:
        print(f"  {name:42s} test MAE {mae:.4f} eV/cell", flush=True)
    if not a.transfer_cv:
        return
    cv = KFold(5, shuffle=True, random_state=0)
    for name, est in [("FineTuner(last layer, lr 1e-2)", FineTuner(base, lr=1e-2,
                                                                  max_epochs=a.ft_epochs)),
                      ("scratch", CGCNNRegressor(max_epochs=a.ft_epochs, **common))]:
        sc = -cross_val_score(est, X_s, y_s, cv=cv, scoring="neg_mean_absolute_error")
        print(f"  5-fold CV on the small set, {name:32s} MAE {sc.mean():.4f} "
              f"± {sc.std():.4f} eV/cell", flush=True)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--n", type=int, default=150, help="structures per dataset")
    p.add_argument("--epochs", type=int, default=15)
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--jobs", type=int, default=1, help="folds in parallel")
    p.add_argument("--size", choices=["small", "default"], default="small")
    p.add_argument("--datasets", default="perovskites,jdft2d")
    p.add_argument("--models", default="CGCNN,CrystalNet,ALIGNN")
    p.add_argument("--out", default="cv_models.jsonl")
    p.add_argument("--transfer", action="store_true")
    p.add_argument("--n-pretrain", type=int, default=2000)
    p.add_argument("--ft-epochs", type=int, default=40)
    p.add_argument("--transfer-cv", action="store_true",
                   help="also 5-fold CV of fine-tuner and scratch on the small set")
    a = p.parse_args(argv)
    import torch
    from sklearn.model_selection import KFold, cross_validate
    torch.set_num_threads(1)
    if a.transfer:
        return transfer(a)
    print(f"# n={a.n} epochs={a.epochs} batch={a.batch_size} size={a.size} jobs={a.jobs}",
          flush=True)
    for ds in a.datasets.split(","):
        X, y = load(ds, a.n, 0)
        base = float(np.abs(y - y.mean()).mean())
        print(f"{ds}: {len(X)} structures, mean-predictor MAE {base:.4g} {UNITS[ds]}",
              flush=True)
        ests = models(a.epochs, a.batch_size, a.size)
        for name in a.models.split(","):
            t = time.perf_counter()
            res = cross_validate(ests[name], X, y, cv=KFold(5, shuffle=True, random_state=0),
                                 scoring="neg_mean_absolute_error", n_jobs=a.jobs)
            mae = -res["test_score"]
            row = dict(dataset=ds, model=name, n=len(X), epochs=a.epochs,
                       batch_size=a.batch_size, size=a.size, mae=float(mae.mean()),
                       mae_std=float(mae.std()), fold_mae=mae.tolist(),
                       mean_predictor_mae=base, seconds=time.perf_counter() - t,
                       matbench=REFERENCE.get((ds, name)), unit=UNITS[ds])
            print(f"  {name:10s} MAE {row['mae']:.4g} ± {row['mae_std']:.2g} {UNITS[ds]} "
                  f"(matbench {row['matbench']}) {row['seconds']:.0f} s", flush=True)
            with open(a.out, "a") as fh:
                fh.write(json.dumps(row) + "\n")


if __name__ == "__main__":
    main()
