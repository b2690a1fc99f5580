"""Multiple processes: DDP with 1 vs 2 processes; grid search serial vs loky vs Dask.

* DDP: ``torchrun --standalone --nproc-per-node P`` (P = 1, 2) trains CGCNN
  with ``distributed=True`` on the bundled perovskites, the same global
  batch, the 2 cores shared out (``OMP_NUM_THREADS = 2 / P``); graphs are
  built before the clock starts. Reported: fit seconds and the held-out MAE.
* Grid search: ``GridSearchCV(CGCNNRegressor, 4 candidates, cv=3)`` on the
  perovskites, serially (2 torch threads), with joblib's default loky
  backend (``n_jobs=2``, structures in memory: each worker builds the graphs
  of its fits), and with joblib's Dask backend on a
  ``dask.distributed.LocalCluster`` (2 workers x 1 thread) from structures
  in memory and from a shared ``GraphStore``. The Dask cluster's start-up
  (workers spawned, then torch + pymatgen + skcrystal imported in each) is
  timed apart.

Usage::

    python benchmarks/bench_cluster.py --n 1000 --out /tmp/bench_cluster
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

DDP_SCRIPT = """
import json, sys, time
import numpy as np, torch
sys.path.insert(0, {root!r})
import torch.distributed as dist
from skcrystal import CGCNNRegressor
from skcrystal.datasets import load_perovskites

X, y = load_perovskites(n={n})
cut = int(0.8 * len(X))
est = CGCNNRegressor(max_epochs={epochs}, batch_size=64, random_state=0, distributed=True)
est.prepare(X)
t0 = time.perf_counter()
est.fit(X[:cut], y[:cut])
seconds = time.perf_counter() - t0
mae = float(np.abs(est.predict(X[cut:]) - y[cut:]).mean())
if not dist.is_initialized() or dist.get_rank() == 0:
    print("RESULT " + json.dumps(dict(seconds=seconds, mae=mae,
                                      world=dist.get_world_size() if dist.is_initialized() else 1)))
"""

GRID = {"lr": [1e-3, 3e-3], "module__n_conv": [2, 3]}
SEARCH_MODEL = dict(max_epochs=3, batch_size=32, random_state=0)


def ddp(n, epochs, procs):
    with tempfile.TemporaryDirectory() as tmp:
        script = Path(tmp) / "train.py"
        script.write_text(DDP_SCRIPT.format(root=str(ROOT), n=n, epochs=epochs))
        env = {**os.environ, "OMP_NUM_THREADS": str(max(1, 2 // procs))}
        out = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone",
                              "--nproc-per-node", str(procs), str(script)],
                             capture_output=True, text=True, env=env, cwd=tmp)
    if out.returncode:
        raise RuntimeError(out.stderr[-3000:])
    line = next(x for x in out.stdout.splitlines() if x.startswith("RESULT "))
    return {"processes": procs, **json.loads(line[len("RESULT "):])}


def search(X, y, n_jobs, backend=None):
    import joblib
    from sklearn.model_selection import GridSearchCV, KFold

    from skcrystal import CGCNNRegressor

    gs = GridSearchCV(CGCNNRegressor(**SEARCH_MODEL), GRID, cv=KFold(3), n_jobs=n_jobs,
                      scoring="neg_mean_absolute_error")
    t0 = time.perf_counter()
    if backend:
        with joblib.parallel_backend(backend):
            gs.fit(X, y)
    else:
        gs.fit(X, y)
    return time.perf_counter() - t0, gs.cv_results_["mean_test_score"]


def _warm():
    import pymatgen.core  # noqa: F401
    import torch

    import skcrystal.estimators  # noqa: F401
    torch.set_num_threads(1)
    return os.getpid()


def searches(n, store_dir):
    import torch
    from distributed import Client, LocalCluster

    from skcrystal.datasets import load_perovskites
    from skcrystal.graphs import GraphBuilder, GraphStore, LazyStructures, clear_cache

    X, y = load_perovskites(n=n)
    store = GraphStore(store_dir)
    if len(store) == 0:
        store.add_structures(X, y, builder=GraphBuilder(), n_jobs=2)
    lazy = LazyStructures(GraphStore(store_dir, readonly=True, build_missing=False))
    rows = []
    torch.set_num_threads(2)
    clear_cache()
    t, ref = search(X, y, n_jobs=1)
    rows.append({"how": "serial (2 torch threads), structures in memory", "seconds": t})
    torch.set_num_threads(1)
    t, s = search(X, y, n_jobs=2)
    rows.append({"how": "joblib loky, n_jobs=2, structures in memory", "seconds": t,
                 "max_score_diff": float(np.abs(s - ref).max())})
    t0 = time.perf_counter()
    cluster = LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                           dashboard_address=None)
    client = Client(cluster)
    t_start = time.perf_counter() - t0
    t0 = time.perf_counter()
    client.run(_warm)
    t_import = time.perf_counter() - t0
    try:
        t, s = search(X, y, n_jobs=2, backend="dask")
        rows.append({"how": "Dask LocalCluster 2x1, structures in memory (first search)",
                     "seconds": t, "max_score_diff": float(np.abs(s - ref).max())})
        client.restart()  # fresh workers: no graphs in their memory
        client.run(_warm)
        t, s = search(lazy, y, n_jobs=2, backend="dask")
        rows.append({"how": "Dask LocalCluster 2x1, shared GraphStore (fresh workers)",
                     "seconds": t, "max_score_diff": float(np.abs(s - ref).max())})
    finally:
        client.close()
        cluster.close()
    return rows, {"cluster_start_s": t_start, "worker_imports_s": t_import}


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--n", type=int, default=1000)
    p.add_argument("--epochs", type=int, default=5)
    p.add_argument("--out", default="/tmp/bench_cluster")
    args = p.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    results = {"ddp": [ddp(args.n, args.epochs, procs) for procs in (1, 2)]}
    for r in results["ddp"]:
        print(json.dumps(r), flush=True)
    results["search"], results["startup"] = searches(args.n, out / "perovskites.store")
    (out / "results.json").write_text(json.dumps(results, indent=1))
    print(f"\n| DDP processes (CPU, gloo) | fit, {args.epochs} epochs (s) | held-out MAE (eV) |")
    print("| --- | --- | --- |")
    for r in results["ddp"]:
        print(f"| {r['processes']} | {r['seconds']:.1f} | {r['mae']:.4f} |")
    print("\n| grid search, 4 candidates x 3 folds | seconds | max |score - serial| |")
    print("| --- | --- | --- |")
    for r in results["search"]:
        diff = r.get("max_score_diff")
        print(f"| {r['how']} | {r['seconds']:.1f} | "
              f"{'-' if diff is None else f'{diff:.2g}'} |")
    s = results["startup"]
    print(f"\nDask start-up: cluster {s['cluster_start_s']:.1f} s, then torch + pymatgen + "
          f"skcrystal imported in the workers {s['worker_imports_s']:.1f} s")


if __name__ == "__main__":
    main()
