"""Training throughput of ALIGNN and CrystalNet relative to CGCNN, and extra-graph cost.

Usage::

    python benchmarks/bench_models.py --n 64 --batch-size 32 --reps 2

1. Training structures/s: every model trains on the same perovskite
   structures with the same batch size; each timed unit is one epoch of
   ``partial_fit`` (collate incl. graph extras, forward, backward, AdamW
   step), after a warm-up epoch that fills the graph cache and memoises the
   line graph / reverse edges (so graph building is excluded). Models are
   interleaved within each repetition and the best repetition is kept, so
   load from other jobs hits all alike. Both the reference-default sizes
   and the small configurations used by the tests/CV are timed.
2. Per-structure cost of the graph extras (line graph, reverse edges) next
   to the graph build itself, on perovskites and jdft2d.
"""
import argparse
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))


def configs(size):
    from skcrystal.estimators.alignn import ALIGNNRegressor
    from skcrystal.estimators.cgcnn import CGCNNRegressor
    from skcrystal.estimators.crystalnet import CrystalNetRegressor
    if size == "default":
        return {"CGCNN": (CGCNNRegressor, {}), "ALIGNN": (ALIGNNRegressor, {}),
                "CrystalNet": (CrystalNetRegressor, {})}
    return {"CGCNN": (CGCNNRegressor, {}),
            "ALIGNN": (ALIGNNRegressor, dict(module__hidden=64,
                                             module__alignn_layers=2, module__gcn_layers=2)),
            "CrystalNet": (CrystalNetRegressor, dict(module__hidden=128))}


def training_throughput(X, y, batch_size, reps, size):
    ests = {name: cls(max_epochs=1, batch_size=batch_size, random_state=0,
                      callbacks__lr_schedule=None, **kw).fit(X, y)  # warm-up epoch
            for name, (cls, kw) in configs(size).items()}
    best = {name: np.inf for name in ests}
    for _ in range(reps):
        for name, est in ests.items():
            t = time.perf_counter()
            est.partial_fit(X, y)
            best[name] = min(best[name], time.perf_counter() - t)
    rate = {name: len(X) / sec for name, sec in best.items()}
    print(f"\ntraining, {size} sizes: {len(X)} structures, batch {batch_size}, "
          f"best of {reps} epochs")
    print(f"{'model':12s} {'structures/s':>14s} {'relative to CGCNN':>18s}")
    for name, r in rate.items():
        print(f"{name:12s} {r:14.1f} {r / rate['CGCNN']:18.3f}")
    return rate


def extra_costs(datasets, reps):
    from skcrystal.graphs import GraphBuilder
    from skcrystal.graphs.line_graph import count_line_graph_pairs, line_graph
    from skcrystal.graphs.reverse_edges import reverse_edges
    builder = GraphBuilder()
    print(f"\ngraph extras, µs per structure (best of {reps}; 8 Å, 12 neighbours)")
    print(f"{'dataset':14s} {'n':>5s} {'atoms':>6s} {'edges':>6s} {'pairs':>7s} "
          f"{'build':>8s} {'line graph':>11s} {'ratio':>6s} {'reverse':>8s} {'ratio':>6s}")
    for name, X in datasets.items():
        t_build = t_lg = t_rev = np.inf
        for _ in range(reps):
            t = time.perf_counter()
            graphs = [builder.build(s) for s in X]
            t_build = min(t_build, time.perf_counter() - t)
            t = time.perf_counter()
            for g in graphs:
                line_graph(g)
            t_lg = min(t_lg, time.perf_counter() - t)
            t = time.perf_counter()
            for g in graphs:
                reverse_edges(g)
            t_rev = min(t_rev, time.perf_counter() - t)
        n = len(X)
        pairs = np.mean([count_line_graph_pairs(g) for g in graphs])
        print(f"{name:14s} {n:5d} {np.mean([g.n_atoms for g in graphs]):6.1f} "
              f"{np.mean([g.n_edges for g in graphs]):6.1f} {pairs:7.0f} "
              f"{1e6 * t_build / n:8.0f} {1e6 * t_lg / n:11.0f} {t_lg / t_build:6.2f} "
              f"{1e6 * t_rev / n:8.0f} {t_rev / t_build:6.2f}")


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--n", type=int, default=64)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--reps", type=int, default=2)
    p.add_argument("--sizes", default="small,default")
    p.add_argument("--threads", type=int, default=1)
    a = p.parse_args(argv)
    import torch
    from skcrystal.datasets import load_matbench_json, load_perovskites, shared_data_path
    torch.set_num_threads(a.threads)
    X, y = load_perovskites(n=a.n)
    Xj, _ = load_matbench_json(
        shared_data_path() / "jdft2d" / "matbench_jdft2d_fold0_train.json.gz")
    extra_costs({"perovskites": X, "jdft2d": Xj[:200]}, a.reps + 1)
    for size in a.sizes.split(","):
        training_throughput(X, y, a.batch_size, a.reps, size)


if __name__ == "__main__":
    main()
