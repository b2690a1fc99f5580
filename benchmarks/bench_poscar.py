"""POSCAR files -> structures and graphs: the fast POSCAR reader against pymatgen's.

Side by side in one run, on the shared JARVIS POSCARs (``alignn_sample``,
the ALIGNN folder layout) and on POSCARs written by pymatgen from the shared
perovskite and jdft2d structures (``--n`` of them, once, into ``--workdir``):

* **graphs** (what ``skcrystal predict`` does per file): ``read_file_graphs``
  with the fast reader (the default) against the same function with the
  fast reader declining every file, i.e. pymatgen's ``Poscar.from_str``,
  ``check_structures`` and ``GraphBuilder.build``, the path every POSCAR
  took before. Graphs are checked equal.
* **structures** (what the loaders do per file, e.g. ``load_alignn_folder``):
  ``skcrystal.datasets._io._parse_poscar`` against ``Poscar.from_str(text,
  read_velocities=False).structure``. Structures are checked equal.

Files are read once before timing, so they come from the page cache. Each
method's fastest of ``--repeat`` alternating passes counts. Run alone on the
machine::

    python benchmarks/bench_poscar.py
    python benchmarks/bench_poscar.py --n 200 --repeat 2     # quick check
"""
from __future__ import annotations

import argparse
import gzip
import os
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import skcrystal.graphs.files as files_module  # noqa: E402
from skcrystal.datasets._io import _parse_poscar  # noqa: E402

SHARED = Path(os.environ.get("SKCRYSTAL_SHARED_DATA", ROOT.parent / "shared" / "data"))
FIELDS = ("atomic_numbers", "positions", "lattice", "center", "neighbor", "distances",
          "offsets", "vectors")


def written_poscars(n, workdir):
    """Paths of ``n`` POSCARs written by pymatgen (perovskites and jdft2d, 9:1)."""
    import pandas as pd
    from pymatgen.core import Structure

    folder = Path(workdir) / f"poscars_{n}"
    paths = [folder / f"POSCAR_{i:05d}" for i in range(n)]
    if folder.is_dir() and all(p.exists() for p in paths):
        return paths
    folder.mkdir(parents=True, exist_ok=True)
    cifs = pd.read_csv(SHARED / "perovskites" / "perovskites_part2.csv", usecols=["cif"])["cif"]
    with gzip.open(SHARED / "jdft2d" / "matbench_jdft2d_fold0_train.json.gz", "rt") as fh:
        dicts = pd.read_json(fh, orient="split")["structure"].tolist()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for i, path in enumerate(paths):
            s = Structure.from_dict(dicts[(i // 10) % len(dicts)]) if i % 10 == 9 else \
                Structure.from_str(cifs[i % len(cifs)], fmt="cif")
            path.write_text(s.to(fmt="poscar"))
    return paths


def _declined(text):
    from skcrystal.datasets._cif import _NotSimple
    raise _NotSimple("benchmark: pymatgen's path")


def read_graphs(items, params, fast):
    saved = files_module._fast_poscar_arrays
    if not fast:
        files_module._fast_poscar_arrays = _declined
    try:
        t0 = time.perf_counter()
        out = files_module.read_file_graphs(items, params)
        return time.perf_counter() - t0, out
    finally:
        files_module._fast_poscar_arrays = saved


def read_structures(texts, fast):
    from pymatgen.io.vasp import Poscar
    t0 = time.perf_counter()
    if fast:
        out = [_parse_poscar(t) for t in texts]
    else:
        out = [Poscar.from_str(t, read_velocities=False).structure for t in texts]
    return time.perf_counter() - t0, out


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n", type=int, default=2000, help="POSCARs written from the "
                        "shared perovskites and jdft2d structures")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--workdir", default=os.path.join(tempfile.gettempdir(),
                                                          "skcrystal_bench_poscar"))
    args = parser.parse_args(argv)

    sets = []
    jarvis = sorted((SHARED / "alignn_sample").glob("POSCAR*"))
    if jarvis:
        sets.append((f"{len(jarvis)} JARVIS POSCARs (alignn_sample)", jarvis))
    if (SHARED / "perovskites").is_dir() and args.n:
        sets.append((f"{args.n:,} POSCARs written by pymatgen", written_poscars(args.n,
                                                                               args.workdir)))
    if not sets:
        sys.exit(f"no shared data under {SHARED} (set SKCRYSTAL_SHARED_DATA)")
    params = dict(radius=8.0, max_neighbors=12, tie_tol=1e-3, grow_radius=False,
                  neighbor_mode="reference", symmetrize=None)
    files_module.prepare_worker()
    print("load average before: %.2f %.2f %.2f" % os.getloadavg())
    print("| files | atoms/file | step | pymatgen (µs/file) | fast reader (µs/file) | speed-up |")
    print("| --- | ---: | --- | ---: | ---: | ---: |")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for name, paths in sets:
            texts = [p.read_text() for p in paths]
            names = [str(p) for p in paths]  # read back from the page cache
            best = {"graphs": {}, "structures": {}}
            outs = {"graphs": {}, "structures": {}}
            for _ in range(args.repeat):
                for fast in (False, True):
                    seconds, outs["graphs"][fast] = read_graphs(names, params, fast)
                    best["graphs"][fast] = min(best["graphs"].get(fast, np.inf), seconds)
                    seconds, outs["structures"][fast] = read_structures(texts, fast)
                    best["structures"][fast] = min(best["structures"].get(fast, np.inf),
                                                   seconds)
            for (g, e), (h, f) in zip(outs["graphs"][False], outs["graphs"][True]):
                assert e is None and f is None, (e, f)
                assert all(np.array_equal(getattr(g, k), getattr(h, k)) for k in FIELDS)
            assert all(a == b for a, b in zip(*outs["structures"].values()))
            atoms = np.mean([len(s) for s in outs["structures"][True]])
            for step in ("graphs", "structures"):
                slow, fast = (best[step][k] / len(paths) * 1e6 for k in (False, True))
                print(f"| {name} | {atoms:.1f} | {step} | {slow:.0f} | {fast:.0f} | "
                      f"x{slow / fast:.2f} |", flush=True)
    print("load average after: %.2f %.2f %.2f" % os.getloadavg())


if __name__ == "__main__":
    main()
