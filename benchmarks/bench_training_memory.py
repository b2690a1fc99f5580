"""Peak memory of one training step: the constants of a model's ``_training_memory``.

For each cell (perturbed NaCl supercells of 64 and 216 atoms) a fresh process
builds the graph with the model's extras, the module and an AdamW optimizer at
the estimator's defaults, records its peak resident memory, runs one training
step (forward, backward, optimizer step, batch of one) and reports how much the
peak rose. The per-unit cost is the slope between the two cells, per edge or
per angle pair (``--unit``); the fixed part (weights, optimizer state) cancels.

Usage::

    python benchmarks/bench_training_memory.py --model crystalnet --unit edge
    python benchmarks/bench_training_memory.py --model crystograph --unit angle
"""
import argparse
import json
import os
import subprocess
import sys

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))


def _cell(rep, seed=0):
    import numpy as np
    from pymatgen.core import Lattice, Structure

    s = Structure.from_spacegroup("Fm-3m", Lattice.cubic(5.64), ["Na", "Cl"],
                                  [[0, 0, 0], [0.5, 0.5, 0.5]])
    s.make_supercell([rep] * 3)
    # break the tied shells so the neighbour counts are those of a generic crystal
    shift = np.random.default_rng(seed).normal(scale=0.05, size=(len(s), 3))
    for i, d in enumerate(shift):
        s.translate_sites([i], d, frac_coords=False)
    return s


def child(model, rep):
    import resource

    import torch

    from skcrystal.estimators import registry
    from skcrystal.graphs import collate_graphs

    torch.set_num_threads(1)
    est = registry.get(model).estimator_class("regression")()
    s = _cell(rep)
    module = est._graph_module()
    graph = est.prepare([s])[0]
    batch = collate_graphs([graph], extras=module.graph_extras)
    n_angles = module.n_angle_pairs(graph)
    module.train()
    opt = torch.optim.AdamW(module.parameters(), lr=1e-3)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    loss = module(batch).pow(2).sum()
    loss.backward()
    opt.step()
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(json.dumps({"atoms": len(s), "edges": graph.n_edges, "angles": n_angles,
                      "rise_bytes": (peak - before) * 1024,
                      "estimate_bytes": module.training_memory(graph)}))


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="crystalnet")
    p.add_argument("--unit", choices=("edge", "angle"), default="edge")
    p.add_argument("--child", type=int, default=None, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.child is not None:
        return child(args.model, args.child)
    rows = []
    for rep in (2, 3):  # 64 and 216 atoms
        out = subprocess.run([sys.executable, __file__, "--model", args.model,
                              "--child", str(rep)], capture_output=True, text=True,
                             check=True)
        rows.append(json.loads(out.stdout.strip().splitlines()[-1]))
        print(json.dumps(rows[-1]))
    key = "edges" if args.unit == "edge" else "angles"
    slope = (rows[1]["rise_bytes"] - rows[0]["rise_bytes"]) / (rows[1][key] - rows[0][key])
    print(json.dumps({"model": args.model, "per_" + args.unit + "_bytes": round(slope),
                      "load": os.getloadavg()[0]}))


if __name__ == "__main__":
    main()
