"""Larger than memory: peak memory of one CGCNN epoch vs dataset size, store build rate.

Synthetic-but-valid structures are generated on the fly (in chunks, never
all at once) from the 1,000 bundled perovskites: copy ``i`` is perovskite
``i % 1000`` with its lattice strained by up to +-3 % per axis and, for
two copies in three, its A-site element replaced by one of K, Rb, Cs, Ca,
Sr, Ba, La (its target shifted by a fixed amount per element), so
every structure has another content key and graph.

Each measurement runs in a fresh process; memory is sampled every 20 ms
from ``/proc/self/status``: ``RssAnon`` (the process's own memory: arrays,
graphs, the model) and ``VmHWM`` (peak resident set, which also counts
the store's file pages mapped into the process; they belong to the page
cache and the kernel drops them under memory pressure).

Usage::

    python benchmarks/bench_store.py --sizes 20000 50000 100000 --out /tmp/bench_store
    python benchmarks/bench_store.py --sizes 2000 --inmemory 2000   # quick look

Prints a markdown table (and writes ``results.json`` into ``--out``).
"""
import argparse
import json
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

A_SITES = ["K", "Rb", "Cs", "Ca", "Sr", "Ba", "La"]
MODEL = dict(max_epochs=1, batch_size=64, random_state=0, module__n_conv=2)
# the lazy runs decode graphs in one DataLoader worker while the main process trains
LAZY = dict(iterator_train__num_workers=1)


def synthetic(start, stop, base=None):
    """Structures and targets of copies ``start..stop-1`` (deterministic)."""
    from skcrystal.datasets import load_perovskites

    X, y = base if base is not None else load_perovskites()
    out, ys = [], []
    for i in range(start, stop):
        rng = np.random.default_rng(i)
        s = X[i % len(X)].copy()
        s.apply_strain(rng.uniform(-0.03, 0.03, size=3))
        target = float(y[i % len(X)])
        k = int(rng.integers(0, 3 * len(A_SITES) // 2))
        if k < len(A_SITES):
            a_site = s[0].specie.symbol  # the A site comes first in this set
            if a_site != A_SITES[k]:
                s.replace_species({a_site: A_SITES[k]})
                target += 0.05 * (k + 1)
        out.append(s)
        ys.append(target)
    return out, np.array(ys)


class PeakMemory:
    """Samples RssAnon of this process plus its children (DataLoader workers), MiB.

    ``hwm`` is this process's VmHWM at the end (peak resident set including
    mapped file pages).
    """

    def __init__(self, every=0.02):
        self.every = every
        self.anon = 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    @staticmethod
    def _status():
        out = {}
        with open("/proc/self/status") as f:
            for line in f:
                key, _, value = line.partition(":")
                if key in ("RssAnon", "VmHWM", "RssFile"):
                    out[key] = int(value.split()[0]) / 1024
        return out

    @staticmethod
    def _anon_total():
        import psutil

        total = 0.0
        me = psutil.Process()
        for proc in [me, *me.children(recursive=True)]:
            try:
                with open(f"/proc/{proc.pid}/status") as f:
                    for line in f:
                        if line.startswith("RssAnon:"):
                            total += int(line.split()[1]) / 1024
            except OSError:
                pass
        return total

    def _run(self):
        while not self._stop.is_set():
            self.anon = max(self.anon, self._anon_total())
            time.sleep(self.every)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()
        status = self._status()
        self.anon = max(self.anon, status["RssAnon"])
        self.hwm = status["VmHWM"]


def fill(path, n, n_jobs, chunk=10000):
    """Fill a store with n synthetic structures and their graphs.

    Returns (seconds filling, seconds generating the synthetic structures).
    """
    from skcrystal.datasets import load_perovskites
    from skcrystal.graphs import GraphBuilder, GraphStore

    base = load_perovskites()
    store = GraphStore(path)
    filling = generating = 0.0
    for start in range(len(store), n, chunk):
        t0 = time.perf_counter()
        X, y = synthetic(start, min(n, start + chunk), base)
        t1 = time.perf_counter()
        store.add_structures(X, y, builder=GraphBuilder(), n_jobs=n_jobs, chunk_size=500)
        generating += t1 - t0
        filling += time.perf_counter() - t1
    return filling, generating


def child_epoch(path, n, mode):
    """One CGCNN epoch on the first n items, lazily from the store or in memory."""
    import torch

    torch.set_num_threads(2)
    from skcrystal import CGCNNRegressor
    from skcrystal.graphs import GraphStore, LazyStructures

    store = GraphStore(path, readonly=True, build_missing=False)
    lazy = LazyStructures(store)[:n]
    with PeakMemory() as mem:
        t0 = time.perf_counter()
        if mode == "store":
            est = CGCNNRegressor(**MODEL, **LAZY).fit(lazy)
        else:  # the in-memory path: structures in a list, graphs in the cache
            X = [lazy.structure(i) for i in range(n)]
            est = CGCNNRegressor(**MODEL, n_jobs=2).fit(X, lazy.targets)
        seconds = time.perf_counter() - t0
    assert np.isfinite(est.history[-1, "train_loss"])
    return {"n": n, "mode": mode, "seconds": seconds, "rss_anon_mib": mem.anon,
            "vm_hwm_mib": mem.hwm}


def child_build_rate(n):
    """In-memory builder rate (get_graphs, 2 workers) on n synthetic structures."""
    from skcrystal.graphs import GraphBuilder, GraphCache, get_graphs

    X, _ = synthetic(0, n)
    t0 = time.perf_counter()
    get_graphs(X, GraphBuilder(), n_jobs=2, cache=GraphCache())
    return {"n": n, "seconds": time.perf_counter() - t0}


def run_child(*args):
    out = subprocess.run([sys.executable, __file__, "--child", *map(str, args)],
                         capture_output=True, text=True, check=False)
    if out.returncode:
        raise RuntimeError(out.stderr[-3000:])
    return json.loads(out.stdout.strip().splitlines()[-1])


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--sizes", type=int, nargs="+", default=[20000, 50000, 100000])
    p.add_argument("--inmemory", type=int, nargs="*", default=[20000, 50000],
                   help="sizes also trained in memory")
    p.add_argument("--out", default="/tmp/bench_store")
    p.add_argument("--n-jobs", type=int, default=2)
    p.add_argument("--child", nargs="+", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child:
        kind, *rest = args.child
        if kind == "epoch":
            print(json.dumps(child_epoch(rest[0], int(rest[1]), rest[2])))
        else:
            print(json.dumps(child_build_rate(int(rest[0]))))
        return
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    store = out / "synthetic.store"
    results = {"fill": [], "epochs": [], "build": None}
    from skcrystal.graphs import GraphStore

    have = len(GraphStore(store)) if (store / "index.mdb").exists() else 0
    for n in sorted(args.sizes):
        if n > have:
            seconds, gen = fill(store, n, args.n_jobs)
            results["fill"].append({"from": have, "to": n, "seconds": seconds,
                                    "generating_s": gen, "per_s": (n - have) / seconds})
            print(f"filled {have}..{n}: {(n - have) / seconds:.0f} structures/s", flush=True)
            have = n
    results["store"] = GraphStore(store, readonly=True).stats()
    n_rate = min(args.sizes + [20000])
    results["build"] = run_child("build", n_rate)
    results["build"]["per_s"] = n_rate / results["build"]["seconds"]
    for n in sorted(args.sizes):
        modes = ["store"] + (["memory"] if n in args.inmemory else [])
        for mode in modes:
            r = run_child("epoch", store, n, mode)
            results["epochs"].append(r)
            print(json.dumps(r), flush=True)
    (out / "results.json").write_text(json.dumps(results, indent=1))
    print("\n| structures | data | epoch (s) | peak RssAnon, with workers (MiB) | "
          "peak RSS of the main process incl. mapped store pages (MiB) |")
    print("| --- | --- | --- | --- | --- |")
    for r in results["epochs"]:
        print(f"| {r['n']:,} | {'store, lazy' if r['mode'] == 'store' else 'in memory'} | "
              f"{r['seconds']:.0f} | {r['rss_anon_mib']:.0f} | {r['vm_hwm_mib']:.0f} |")
    print("\n| build | structures/s |")
    print("| --- | --- |")
    for f in results["fill"]:
        print(f"| store fill {f['from']:,}..{f['to']:,} (build + serialize + write, "
              f"{args.n_jobs} jobs) | "
              f"{f['per_s']:.0f} |")
    print(f"| in-memory get_graphs, {n_rate:,} structures, 2 jobs | "
          f"{results['build']['per_s']:.0f} |")
    s = results["store"]
    print(f"\nstore: {s['items']:,} items, {s['graphs']:,} graphs, "
          f"{s['bytes'] / 2**30:.2f} GiB on disk")


if __name__ == "__main__":
    main()
