"""Reference CGCNN checkpoints: skcrystal's predictions against the reference code's.

For each file of ``shared/pretrained/cgcnn/reference_predictions/`` and each of the
eight shipped checkpoints: how many rows match (regression: within 1e-4 relative or
1e-5 absolute; classification: probability within 1e-5) and the largest absolute and
relative differences. The reference run read every structure from a CIF file written
by pymatgen; ``--no-roundtrip`` reads the POSCARs / CIF strings directly instead.

Usage::

    python benchmarks/pretrained_reference.py [--shared DIR] [--no-roundtrip]
"""
import argparse
import os
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd


def _read(path=None, text=None, fmt=None):
    from pymatgen.core import Structure

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return Structure.from_file(path) if path else Structure.from_str(text, fmt=fmt)


def _roundtrip(s):
    from pymatgen.io.cif import CifWriter

    return _read(text=str(CifWriter(s)), fmt="cif")


def datasets(data, roundtrip):
    folder = data / "cgcnn_sample"
    ids = sorted(p.name for p in folder.glob("*.cif"))
    yield "cgcnn_sample.csv", ids, [_read(folder / i) for i in ids]
    folder = data / "alignn_sample"
    ids = sorted(p.name for p in folder.glob("POSCAR*"))
    ss = [_read(folder / i) for i in ids]
    yield "alignn_sample.csv", ids, [_roundtrip(s) for s in ss] if roundtrip else ss
    df = pd.read_csv(data / "perovskites" / "perovskites_part2.csv", nrows=300)
    ss = [_read(text=c, fmt="cif") for c in df["cif"]]
    yield ("perovskites_part2_first300.csv", [f"part2-{i}" for i in range(len(df))],
           [_roundtrip(s) for s in ss] if roundtrip else ss)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shared", default=os.environ.get(
        "SKCRYSTAL_SHARED", Path(__file__).resolve().parents[2] / "shared"))
    parser.add_argument("--no-roundtrip", action="store_true")
    args = parser.parse_args()
    from skcrystal import pretrained
    from skcrystal.estimators.cgcnn import CGCNNClassifier

    shared = Path(args.shared)
    models = {name: pretrained.load(name) for name in pretrained.available()}
    print("| file | checkpoint | rows matching | max abs diff | max rel diff |")
    print("| --- | --- | ---: | ---: | ---: |")
    t0 = time.perf_counter()
    for csv, ids, structures in datasets(shared / "data", not args.no_roundtrip):
        ref = pd.read_csv(shared / "pretrained" / "cgcnn" / "reference_predictions" / csv)
        for name, est in models.items():
            expected = ref[ref.checkpoint == name].set_index("id").loc[ids, "prediction"]
            expected = expected.to_numpy()
            clf = isinstance(est, CGCNNClassifier)
            pred = est.predict_proba(structures)[:, 1] if clf else est.predict(structures)
            err = np.abs(pred - expected)
            rel = err / np.maximum(np.abs(expected), 1e-12)
            ok = err <= 1e-5 if clf else (err <= 1e-5) | (rel <= 1e-4)
            bad = [ids[i] for i in np.flatnonzero(~ok)]
            print(f"| {csv} | {name} | {ok.sum()}/{len(ok)}"
                  f"{' (' + ', '.join(bad[:3]) + ')' if bad else ''} | {err.max():.2g} | "
                  f"{rel.max():.2g} |")
    print(f"\n{time.perf_counter() - t0:.1f} s")


if __name__ == "__main__":
    main()
