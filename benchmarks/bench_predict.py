"""End to end from files: ``skcrystal predict`` against the reference CGCNN ``predict.py``.

Both pipelines read the same folder of CIF files (``id_prop.csv`` + ``<id>.cif``
+ ``atom_init.json``, the reference code's input layout) with the same
reference checkpoint, parse every CIF, build every graph and run the network,
side by side in one run:

* ``reference``: the reference CGCNN code's ``predict.py`` pipeline
  (txie-93/cgcnn, MIT), re-implemented here because the reference package is
  not installed: per structure ``Structure.from_file``, the 92-dim
  ``atom_init.json`` features, ``get_all_neighbors(radius, include_index=True)``
  sorted by distance and cut at / padded to ``max_num_nbr``, the Gaussian
  distance expansion; batches of the checkpoint's ``batch_size`` collated as
  ``collate_pool`` does; the ``CrystalGraphConvNet`` forward in eval mode with
  its per-crystal Python-loop mean pooling; predictions de-normalised by the
  checkpoint's normaliser. It runs in this process with one torch thread.
* ``skcrystal``: the command a user runs, ``python -m skcrystal predict
  CHECKPOINT FOLDER --out predictions.csv``, in a subprocess with its
  defaults, timed from process start to exit (imports included); also with
  ``--n-jobs 2``.

The machine's speed drifts by tens of percent within minutes, and one
skcrystal run lasts a few seconds: the timings come in ``--repeat`` rounds,
each timing a slice of the reference's files (whole batches of its 256) and
then every skcrystal command once. The reference's rate is over all its
slices (each slice loads the checkpoint again, ~0.1 s), skcrystal's time is
its median run.

Predictions are compared by id: the largest absolute difference and how many
rows differ by more than 1e-4 eV/atom. The folder of CIFs is generated once
(``--workdir``, reused by later runs) from the shared perovskite and jdft2d
structures (interleaved, about 1 jdft2d structure for 9 perovskites), written
with pymatgen's ``CifWriter``; past the 5,319 distinct structures, copies get
every atom displaced by up to 0.02 Å (seeded), so no two files hold the same
structure.

Run::

    python benchmarks/bench_predict.py                      # 10,000 CIFs
    python benchmarks/bench_predict.py --ref-n 1000         # reference on a subset
    python benchmarks/bench_predict.py --n 50 --ref-n 50    # quick check
"""
from __future__ import annotations

import argparse
import csv
import gzip
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
for _path in (ROOT, Path(__file__).resolve().parent):
    if str(_path) not in sys.path:
        sys.path.insert(0, str(_path))

from _reference_cgcnn import CrystalGraphConvNet, collate_pool  # noqa: E402 (beside this file)

CHECKPOINT = "formation-energy-per-atom"
# rows whose predictions differ by more than this count as disagreeing, eV/atom
AGREE_TOL = 1e-4


# ---------------------------------------------------------------- the folder
def _source_structures(shared, n=None):
    """The distinct structures the folder is made of, perovskites and jdft2d
    interleaved (any prefix holds both in proportion); the first ``n`` only."""
    import pandas as pd
    from pymatgen.core import Structure

    cifs = []
    for part in ("perovskites_part1.csv", "perovskites_part2.csv"):
        cifs += pd.read_csv(shared / "perovskites" / part, usecols=["cif"])["cif"].tolist()
    with gzip.open(shared / "jdft2d" / "matbench_jdft2d_fold0_train.json.gz", "rt") as f:
        dicts = pd.read_json(f, orient="split")["structure"].tolist()
    order = _interleave(len(cifs), len(dicts))[:n]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return [Structure.from_str(cifs[k], fmt="cif") if k < len(cifs)
                else Structure.from_dict(dicts[k - len(cifs)]) for k in order]


def _interleave(n_a, n_b):
    """Indices into ``a + b`` spreading the ``b`` items evenly among the ``a`` ones."""
    keys = [(i / n_a, 0, i) for i in range(n_a)] + [((j + 0.5) / n_b, 1, n_a + j)
                                                    for j in range(n_b)]
    return [k[2] for k in sorted(keys)]


def make_folder(workdir, n, seed=0):
    """Write (or reuse) the folder of ``n`` CIFs in the reference code's layout.

    Parameters
    ----------
    workdir : Path
        Parent folder; the CIFs go to ``workdir / f"cifs_{n}"``.
    n : int
        Number of CIF files.
    seed : int
        Seed of the displacements of the repeated structures.

    Returns
    -------
    Path
        The folder (``id_prop.csv`` with dummy targets 0, ``atom_init.json``,
        ``<id>.cif``).
    """
    from pymatgen.io.cif import CifWriter

    from skcrystal.datasets import shared_data_path

    folder = Path(workdir) / f"cifs_{n}"
    done = folder / ".complete"
    if done.is_file() and done.read_text().strip() == f"{n} {seed}":
        return folder
    shared = shared_data_path()
    if shared is None:
        sys.exit("needs the shared data folder (set SKCRYSTAL_SHARED_DATA)")
    t0 = time.perf_counter()
    if folder.exists():
        shutil.rmtree(folder)
    folder.mkdir(parents=True)
    pool = _source_structures(shared, n)
    rng = np.random.default_rng(seed)
    ids = []
    for i in range(n):
        s = pool[i % len(pool)]
        if i >= len(pool):
            s = s.copy()
            disp = rng.uniform(-0.02, 0.02, size=(len(s), 3)) / np.sqrt(3)
            for k in range(len(s)):
                s.translate_sites([k], disp[k], frac_coords=False, to_unit_cell=True)
        ident = f"s{i:05d}"
        CifWriter(s).write_file(folder / f"{ident}.cif")
        ids.append(ident)
    with open(folder / "id_prop.csv", "w", newline="") as fh:
        csv.writer(fh).writerows((i, 0.0) for i in ids)
    shutil.copy(ROOT / "skcrystal" / "pretrained_models" / "cgcnn" / "atom_init.json",
                folder / "atom_init.json")
    done.write_text(f"{n} {seed}\n")
    print(f"wrote {n} CIFs to {folder} in {time.perf_counter() - t0:.0f} s", file=sys.stderr)
    return folder


def checkpoint_path(name=CHECKPOINT):
    """The reference checkpoint file (the shared copy, else the shipped one)."""
    from skcrystal import pretrained
    from skcrystal.datasets import shared_data_path

    shared = shared_data_path()
    if shared is not None:
        path = shared.parent / "pretrained" / "cgcnn" / f"{name}.pth.tar"
        if path.is_file():
            return path
    return Path(pretrained.path_of(name))


# ---------------------------------------------------------------- reference pipeline
class _RefData:
    """The reference ``CIFData``: one structure file -> padded neighbour arrays."""

    def __init__(self, folder, ids, max_num_nbr, radius, dmin=0.0, step=0.2):
        self.folder, self.ids = Path(folder), list(ids)
        self.max_num_nbr, self.radius = max_num_nbr, radius
        with open(self.folder / "atom_init.json") as fh:
            table = json.load(fh)
        self.atom_init = {int(z): np.asarray(v, dtype=float) for z, v in table.items()}
        self.centres = np.arange(dmin, radius + step, step)
        self.var = step

    def __len__(self):
        return len(self.ids)

    def __getitem__(self, idx):
        import torch
        from pymatgen.core import Structure

        cif_id = self.ids[idx]
        crystal = Structure.from_file(str(self.folder / f"{cif_id}.cif"))
        atom_fea = np.vstack([self.atom_init[site.specie.number] for site in crystal])
        nbr_idx, nbr_dist = [], []
        m = self.max_num_nbr
        for nbrs in crystal.get_all_neighbors(self.radius, include_index=True):
            nbrs = sorted(nbrs, key=lambda nb: nb[1])[:m]
            pad = m - len(nbrs)
            nbr_idx.append([nb[2] for nb in nbrs] + [0] * pad)
            nbr_dist.append([nb[1] for nb in nbrs] + [self.radius + 1.0] * pad)
        dist = np.array(nbr_dist)
        nbr_fea = np.exp(-(dist[..., None] - self.centres) ** 2 / self.var ** 2)
        return ((torch.Tensor(atom_fea), torch.Tensor(nbr_fea), torch.LongTensor(nbr_idx)),
                torch.Tensor([0.0]), cif_id)


def _ref_collate(items):
    """``collate_pool``, carrying each item's id along."""
    inputs, targets = collate_pool([(x, target) for x, target, _ in items])
    return inputs, targets, [cif_id for *_, cif_id in items]


def _ref_model(ckpt):
    """The reference ``CrystalGraphConvNet`` (classic layout) with the checkpoint loaded."""
    args = ckpt["args"]
    state = ckpt["state_dict"]
    orig = state["embedding.weight"].shape[1]
    f = state["embedding.weight"].shape[0]
    e = state["convs.0.fc_full.weight"].shape[1] - 2 * f
    model = CrystalGraphConvNet(orig, e, atom_fea_len=f, n_conv=args["n_conv"],
                                h_fea_len=args["h_fea_len"], n_h=args["n_h"],
                                classification=args["task"] == "classification")
    model.load_state_dict(state)
    return model.eval()


def run_reference(folder, ids, ckpt_file):
    """Predict ``ids`` of ``folder`` the way the reference ``predict.py`` does.

    Returns
    -------
    dict
        id -> prediction (eV/atom for the formation-energy checkpoint).
    """
    import torch

    from skcrystal.pretrained import read_checkpoint

    ckpt = read_checkpoint(ckpt_file)
    args = ckpt["args"]
    model = _ref_model(ckpt)
    mean, std = ckpt["normalizer"]["mean"], ckpt["normalizer"]["std"]
    # the published checkpoints predate these options: CIFData's defaults
    data = _RefData(folder, ids, int(args.get("max_num_nbr", 12)),
                    float(args.get("radius", 8.0)))
    bs = args["batch_size"]
    out = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for start in range(0, len(data), bs):
            (atom_fea, nbr_fea, nbr_idx, crystal_idx), _, batch_ids = _ref_collate(
                [data[i] for i in range(start, min(start + bs, len(data)))])
            with torch.no_grad():
                pred = model(atom_fea, nbr_fea, nbr_idx, crystal_idx)
            if args["task"] == "classification":
                values = torch.exp(pred)[:, 1].tolist()
            else:
                values = (pred * std + mean).view(-1).tolist()
            out.update(zip(batch_ids, values))
    return out


# ---------------------------------------------------------------- skcrystal CLI
def run_cli(folder, ckpt_file, out_csv, extra=()):
    """``python -m skcrystal predict`` in a subprocess; (seconds, id -> prediction)."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH")) if p)
    cmd = [sys.executable, "-m", "skcrystal", "predict", str(ckpt_file), str(folder),
           "--out", str(out_csv), "--quiet", *extra]
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
    dt = time.perf_counter() - t0
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed ({proc.returncode}): {proc.stderr}")
    import pandas as pd
    df = pd.read_csv(out_csv, dtype={"id": str})
    col = [c for c in df.columns if c.startswith("pred")][0]
    return dt, dict(zip(df["id"], df[col]))


def compare(ref, ours):
    """(max abs difference, number of rows beyond AGREE_TOL, number compared)."""
    ids = sorted(ref)
    missing = [i for i in ids if i not in ours]
    if missing:
        raise AssertionError(f"skcrystal has no prediction for {missing[:5]}")
    diff = np.abs(np.array([ref[i] for i in ids]) - np.array([ours[i] for i in ids]))
    return float(diff.max()), int((diff > AGREE_TOL).sum()), len(ids)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=10_000, help="CIF files in the folder")
    parser.add_argument("--ref-n", type=int, default=None,
                        help="time the reference on a random subset of this many files "
                             "(default: all)")
    parser.add_argument("--workdir", default=None,
                        help="where the CIF folder is written and reused "
                             "(default: a folder in the system temp dir)")
    parser.add_argument("--checkpoint", default=CHECKPOINT)
    parser.add_argument("--n-jobs", type=int, nargs="*", default=[2],
                        help="extra skcrystal runs with --n-jobs N (default: 2)")
    parser.add_argument("--repeat", type=int, default=3,
                        help="rounds, each timing a slice of the reference's files and "
                             "every skcrystal command once, in turn, so that the machine's "
                             "drift hits both; skcrystal's figure is its median run "
                             "(default: 3)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    if args.repeat < 1:
        parser.error(f"--repeat must be at least 1, got {args.repeat}")

    import torch
    torch.set_num_threads(1)
    workdir = Path(args.workdir or Path(tempfile.gettempdir()) / "skcrystal_bench_predict")
    folder = make_folder(workdir, args.n, args.seed)
    ckpt = checkpoint_path(args.checkpoint)
    with open(folder / "id_prop.csv") as fh:
        all_ids = [row[0] for row in csv.reader(fh)]
    ref_ids = all_ids
    if args.ref_n is not None and args.ref_n < len(all_ids):
        ref_ids = sorted(random.Random(args.seed).sample(all_ids, args.ref_n))

    print(f"folder: {len(all_ids)} CIFs ({folder}); checkpoint {ckpt.name}; "
          f"load average {os.getloadavg()[0]:.2f}")
    # the reference's files in --repeat slices of whole batches of its 256
    bounds = [min(len(ref_ids), round(k * len(ref_ids) / args.repeat / 256) * 256)
              for k in range(args.repeat)] + [len(ref_ids)]
    configs = [None, *args.n_jobs]
    ref, t_ref = {}, 0.0
    times = {n_jobs: [] for n_jobs in configs}
    last = {}
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(args.repeat):
            t0 = time.perf_counter()
            ref.update(run_reference(folder, ref_ids[bounds[r]:bounds[r + 1]], ckpt))
            t_ref += time.perf_counter() - t0
            for n_jobs in configs:
                extra = [] if n_jobs is None else ["--n-jobs", str(n_jobs)]
                dt, last[n_jobs] = run_cli(folder, ckpt, Path(tmp) / "pred.csv", extra)
                times[n_jobs].append(dt)
    ref_rate = len(ref_ids) / t_ref
    subset = "" if len(ref_ids) == len(all_ids) else \
        f" (random subset of {len(ref_ids)} of the {len(all_ids)})"
    print(f"reference predict.py pipeline, 1 thread: {len(ref_ids)} structures{subset} "
          f"in {t_ref:.1f} s = {ref_rate:.1f} structures/s ({args.repeat} slices)")
    rows = []
    env_threads = os.environ.get("OMP_NUM_THREADS", "default")
    for n_jobs in configs:
        dt = float(np.median(times[n_jobs]))
        rate = len(all_ids) / dt
        max_diff, n_bad, n_cmp = compare(ref, last[n_jobs])
        label = "skcrystal predict" + (f" --n-jobs {n_jobs}" if n_jobs else "")
        spread = ", ".join(f"{t:.2f}" for t in times[n_jobs])
        rows.append((label, dt, rate, rate / ref_rate, max_diff, n_bad, n_cmp))
        print(f"{label} (OMP_NUM_THREADS={env_threads}): {len(all_ids)} structures in "
              f"{dt:.2f} s (median of {spread}) = {rate:.0f} structures/s, "
              f"{rate / ref_rate:.1f}x the reference; max |diff| {max_diff:.2g} eV/atom, "
              f"{n_bad}/{n_cmp} rows beyond {AGREE_TOL:g}")
    print(f"load average after: {os.getloadavg()[0]:.2f}")
    print()
    print("| pipeline | structures | time (s) | structures/s | vs reference | max abs diff "
          f"| rows > {AGREE_TOL:g} |")
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: |")
    print(f"| reference predict.py (1 thread) | {len(ref_ids)} | {t_ref:.1f} | "
          f"{ref_rate:.1f} | 1x | - | - |")
    for label, dt, rate, ratio, max_diff, n_bad, n_cmp in rows:
        print(f"| `{label}` | {len(all_ids)} | {dt:.2f} | {rate:.0f} | {ratio:.1f}x | "
              f"{max_diff:.2g} | {n_bad}/{n_cmp} |")
    return rows


if __name__ == "__main__":
    main()
