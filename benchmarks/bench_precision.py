"""bfloat16 autocast (``mixed_precision="bf16"``) vs float32 on CPU: accuracy and time.

CGCNN on the bundled perovskites (800 train / 200 held out), two seeds;
graphs are built before the clock starts. On a GPU with bfloat16 support
the time would drop; on CPU it measures the accuracy effect only.

Usage::

    python benchmarks/bench_precision.py --epochs 30
"""
import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--epochs", type=int, default=30)
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    args = p.parse_args()
    import torch

    from skcrystal import CGCNNRegressor
    from skcrystal.datasets import load_perovskites

    torch.set_num_threads(2)
    X, y = load_perovskites()
    Xtr, ytr, Xte, yte = X[:800], y[:800], X[800:], y[800:]
    print("| precision | seed | held-out MAE (eV) | fit (s) |\n| --- | --- | --- | --- |")
    for mp in (None, "bf16"):
        for seed in args.seeds:
            est = CGCNNRegressor(max_epochs=args.epochs, random_state=seed, mixed_precision=mp)
            est.prepare(X)
            t0 = time.perf_counter()
            est.fit(Xtr, ytr)
            t = time.perf_counter() - t0
            mae = float(np.abs(est.predict(Xte) - yte).mean())
            print(f"| {mp or 'float32'} | {seed} | {mae:.4f} | {t:.0f} |", flush=True)


if __name__ == "__main__":
    main()
