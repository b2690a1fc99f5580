"""DescriptorBank vs the stock matminer featurizers, side by side in one run.

    python benchmarks/bench_descriptors.py [--n-perovskites 30] [--n-2d 30]

Times the Voronoi-based descriptors and the rest of the bank against the
stock featurizers on the same structures (serial, cache off), prints the
per-structure times, the speed ratio and the largest relative difference.

Stock reference, so that it computes the same quantities:
* StructuralHeterogeneity gets the structure with sites wrapped into the
  cell (its all-sites tessellation duplicates a site whose fractional
  coordinate is slightly negative), and on 2D structures, where its fixed
  13 Å cutoff leaves cells unbounded, a VoronoiNN cutoff of the cell's
  longest diagonal + 0.011 Å (pymatgen's own per-site limit).
* The per-site featurizers run as stock (their VoronoiNN grows its cutoff
  itself). On 2D structures the stock values depend on the order the sites
  are visited (the cutoff grows only when a cell is unbounded, not when it
  is inexact), so the difference is reported separately for bulk and 2D.
"""
import argparse
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
from pymatgen.core import Structure

from skcrystal.descriptors.reference import STOCK_NAMES, stock_descriptors

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"


def load(n_perov, n_2d):
    df = pd.read_csv(SHARED / "perovskites" / "perovskites_part2.csv", nrows=n_perov)
    bulk = [Structure.from_str(c, fmt="cif") for c in df["cif"]]
    js = pd.read_json(SHARED / "jdft2d" / "matbench_jdft2d_fold0_train.json.gz", orient="split")
    two_d = [Structure.from_dict(d) for d in js["structure"][:n_2d]]
    return bulk, two_d


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--n-perovskites", type=int, default=30)
    p.add_argument("--n-2d", type=int, default=30)
    args = p.parse_args()
    warnings.filterwarnings("ignore")
    from skcrystal.descriptors import DescriptorBank

    bulk, two_d = load(args.n_perovskites, args.n_2d)
    bank = DescriptorBank(descriptors=STOCK_NAMES, cache=False)
    full = DescriptorBank(cache=False)  # all 29, incl. Niggli lattice
    stock_descriptors(bulk[0]), bank.fit_transform(bulk[:1])  # warm imports
    rows = []
    for kind, structures in (("bulk (perovskites)", bulk), ("2D (jdft2d)", two_d)):
        t0 = time.perf_counter()
        ref = np.array([stock_descriptors(s) for s in structures])
        t_stock = time.perf_counter() - t0
        t0 = time.perf_counter()
        ours = bank.fit_transform(structures)
        t_ours = time.perf_counter() - t0
        t0 = time.perf_counter()
        full.fit_transform(structures)
        t_full = time.perf_counter() - t0
        tiny = np.abs(ref) < 1e-9
        rel = np.where(tiny, np.abs(ours - ref), np.abs(ours - ref) / np.maximum(np.abs(ref), 1e-300))
        n_atoms = sum(len(s) for s in structures)
        worst = np.unravel_index(np.nanargmax(rel), rel.shape)
        rows.append((kind, len(structures), n_atoms, t_stock, t_ours, t_full, rel, worst))
        print(f"{kind}: {len(structures)} structures, {n_atoms} atoms")
        print(f"  stock matminer : {t_stock / len(structures) * 1e3:8.1f} ms/structure")
        print(f"  DescriptorBank : {t_ours / len(structures) * 1e3:8.1f} ms/structure "
              f"(same 22 descriptors); all 29 incl. Niggli lattice: "
              f"{t_full / len(structures) * 1e3:.1f} ms/structure")
        print(f"  speed ratio    : {t_stock / t_ours:8.1f}x")
        print(f"  max rel. diff  : {np.nanmax(rel):.2e} ({STOCK_NAMES[worst[1]]}, "
              f"{structures[worst[0]].composition.reduced_formula})")
        per = rel.max(axis=1)
        print(f"  structures with max rel. diff > 1e-6: {(per > 1e-6).sum()} / {len(structures)}")
        if (per > 1e-6).any():
            for i in np.flatnonzero(per > 1e-6):
                bad = [STOCK_NAMES[j] for j in np.flatnonzero(rel[i] > 1e-6)]
                print(f"    [{i}] {structures[i].composition.reduced_formula}: {bad}")
    t_s = sum(r[3] for r in rows)
    t_o = sum(r[4] for r in rows)
    print(f"overall speed ratio: {t_s / t_o:.1f}x")


if __name__ == "__main__":
    main()
