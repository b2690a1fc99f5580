"""Element embeddings by masked-atom prediction, for ``--param module__extra_atom_features=@FILE``.

CrysToGraph's reference matbench script feeds its atoms 64 element
dimensions pretrained by masked-atom prediction (the paper's appendix A.1)
beside CGCNN's 92. This script pretrains such a table with
:func:`skcrystal.pretrain.pretrain_atom_embeddings` on a task's structures
(unlabelled: every fold's, test rows included, so the use is transductive)
and, optionally, the first N bundled perovskites, and saves it as ``.npy``
(row Z is element Z; NaN for elements never seen)::

    python benchmarks/pretrain_embeddings.py --task jdft2d --perovskites 1000 --out emb64.npy
    python benchmarks/learning_curve.py --task jdft2d --model crystograph --size full \\
        --epochs 60 --param module__extra_atom_features=@emb64.npy --fractions 1.0 \\
        --label CrysToGraph-60epochs-pretrained64 --folds 1 2 --out DIR    # beside: --folds 3 4
"""
import argparse
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE))


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--task", choices=("jdft2d", "perovskites"), required=True)
    p.add_argument("--perovskites", type=int, default=0,
                   help="also the first N bundled perovskites")
    p.add_argument("--dim", type=int, default=64, help="embedding length")
    p.add_argument("--epochs", type=int, default=20)
    p.add_argument("--out", required=True, help="the .npy file to write")
    args = p.parse_args(argv)

    import torch
    torch.set_num_threads(1)
    from run_matbench import task_source
    from skcrystal.datasets import load_perovskites
    from skcrystal.pretrain import pretrain_atom_embeddings

    task = task_source(args.task, None)(None)
    structures = list(task.structures)
    if args.perovskites:
        structures += list(load_perovskites(n=args.perovskites)[0])
    t = time.perf_counter()
    table = pretrain_atom_embeddings(structures, embedding_dim=args.dim, max_epochs=args.epochs,
                                     max_neighbors=12, random_state=0)
    needed = sorted({el.Z for s in task.structures for el in s.composition.elements})
    missing = [z for z in needed if np.isnan(table[z]).any()]
    np.save(args.out, table)
    print(f"{len(structures)} structures, {time.perf_counter() - t:.0f} s; {args.out}: "
          f"{table.shape}, {len(needed)} elements of {task.name}, "
          f"{len(missing)} without an embedding {missing}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
