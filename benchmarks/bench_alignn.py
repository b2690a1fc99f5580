"""ALIGNN training speed against the reference implementation's pure-torch model.

Same structures, same graph, same configuration, same weights:

* reference: ``alignn.models.alignn_atomwise_pure.ALIGNNAtomWisePure`` (the
  ``alignn`` package's DGL-free model, layer norm; its line-graph cosines
  computed in the forward, its default);
* skcrystal: ``skcrystal.nn.alignn.ALIGNN(norm="layer")`` with the
  reference's weights copied in (``load_reference_state_dict``);
* graph: ALIGNNRegressor's default (the reference's published graph: 8 Å,
  12 nearest neighbours, radius grown where needed, symmetrized) and its
  line graph, handed to the reference in its own ``TorchGraph`` layout
  (``tests/test_alignn_reference.py`` shows the two constructions agree).

The script first checks that both give the same outputs and the same
training losses (layer norm has no running state, so training-mode outputs
are comparable), then times training epochs (forward, backward, AdamW step
on pre-built batches), interleaved one epoch per variant per round:

``reference``            the reference model, the C library's default allocator
``reference, heap``      the same inside :func:`skcrystal._malloc.heap_allocation`
``skcrystal, default``   skcrystal's module with the default allocator
``skcrystal``            skcrystal's module as its estimators run it (heap)
``skcrystal, bf16``      the same under ``torch.autocast("cpu", torch.bfloat16)``

and reports structures/s (median and best over rounds, first round
excluded), minor page faults per structure and the ratios to the reference.
A last line times ``ALIGNNRegressor.partial_fit`` (the skorch estimator on
the same graph and sizes) for the estimator's own overhead.

Usage::

    python benchmarks/bench_alignn.py [--n 128] [--batch-size 32] [--rounds 5] [--threads 1]
"""
import argparse
import resource
import statistics
import time
import warnings

import numpy as np
import torch


def _jarvis(structure):
    from jarvis.core.atoms import Atoms

    return Atoms(lattice_mat=structure.lattice.matrix, coords=structure.frac_coords,
                 elements=[site.specie.symbol for site in structure], cartesian=False)


def _atom_table(structures):
    from jarvis.core.specie import get_node_attributes

    table = {}
    for s in structures:
        for el in s.composition.elements:
            table[el.Z] = np.asarray(get_node_attributes(el.symbol, atom_features="cgcnn"),
                                     dtype=np.float32)
    return table


def _reference_batch(batch, structures, table):
    """skcrystal's batch as the reference model's input ``(g, lg, lattice)``.

    The reference edge ``src -> dst`` aggregates at ``dst`` with ``r = x_dst -
    x_src``: here centre = dst, neighbour = src, ``r = -vector``; its line
    graph pair ``a -> b`` is skcrystal's (receiving ``b``, sending ``a``).
    """
    from alignn.torch_graph_builder import TorchGraph

    center, neighbor = batch.edge_index
    lg_index = batch.extras["lg_alignn_index"]
    g = TorchGraph(num_nodes=int(batch.atomic_numbers.shape[0]), src=neighbor, dst=center,
                   ndata={"atom_features": torch.as_tensor(np.stack(
                       [table[z] for s in structures for z in s.atomic_numbers]))},
                   edata={"r": -batch.vectors.float()},
                   batch_num_nodes=batch.n_nodes_per_graph,
                   batch_num_edges=batch.n_edges_per_graph)
    lg = TorchGraph(num_nodes=int(center.shape[0]), src=lg_index[:, 1], dst=lg_index[:, 0])
    return g, lg, None


def build(structures, graph_fn, batch_size, hidden, layers):
    """Both models (same weights) and both batch lists (same structures, same graphs)."""
    from alignn.models.alignn_atomwise_pure import ALIGNNAtomWisePure, ALIGNNAtomWisePureConfig

    from skcrystal.graphs import collate_graphs
    from skcrystal.nn.alignn import ALIGNN, load_reference_state_dict

    table = _atom_table(structures)
    torch.manual_seed(0)
    config = ALIGNNAtomWisePureConfig(
        name="alignn_atomwise_pure", output_features=1, calculate_gradient=False,
        gradwise_weight=0.0, energy_mult_natoms=False, use_penalty=False,
        alignn_layers=layers, gcn_layers=layers, hidden_features=hidden,
        embedding_features=64, atom_input_features=92)
    ref = ALIGNNAtomWisePure(config)
    ours = ALIGNN(atom_features=table, hidden=hidden, alignn_layers=layers, gcn_layers=layers,
                  norm="layer")
    load_reference_state_dict(ours, ref.state_dict())
    ref_batches, our_batches, n_pairs = [], [], 0
    for start in range(0, len(structures), batch_size):
        chunk = structures[start:start + batch_size]
        graphs = [graph_fn(s) for s in chunk]
        batch = collate_graphs(graphs, extras=list(ours.graph_extras))
        our_batches.append(batch)
        ref_batches.append(_reference_batch(batch, chunk, table))
        n_pairs += int(batch.extras["lg_alignn_index"].shape[0])
    return ref, ours, ref_batches, our_batches, n_pairs


def _ref_forward(model, batch):
    return model(batch)["out"].reshape(-1)


def _our_forward(model, batch):
    return model(batch).reshape(-1)


class Variant:
    """One training run: a model, its batches, its optimizer and how it runs."""

    def __init__(self, name, model, batches, forward, targets, heap=False, bf16=False):
        import copy

        self.name, self.batches, self.forward = name, batches, forward
        self.model = copy.deepcopy(model).train()
        self.opt = torch.optim.AdamW(self.model.parameters(), lr=1e-3)
        self.targets, self.heap, self.bf16 = targets, heap, bf16
        self.rates, self.faults, self.losses = [], [], []

    def epoch(self, n_structures):
        import contextlib

        from skcrystal._malloc import heap_allocation

        heap = heap_allocation() if self.heap else contextlib.nullcontext()
        amp = torch.autocast("cpu", dtype=torch.bfloat16) if self.bf16 \
            else contextlib.nullcontext()
        total = 0.0
        with heap:
            faults0 = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
            t0 = time.perf_counter()
            for batch, y in zip(self.batches, self.targets):
                self.opt.zero_grad(set_to_none=True)
                with amp:
                    out = self.forward(self.model, batch)
                loss = torch.nn.functional.mse_loss(out.float(), y)
                loss.backward()
                self.opt.step()
                total += float(loss.detach()) * len(y)
            dt = time.perf_counter() - t0
            faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt - faults0
        self.rates.append(n_structures / dt)
        self.faults.append(faults / n_structures)
        self.losses.append(total / n_structures)


def check_equal(ref, ours, ref_batches, our_batches):
    """Largest |difference| of the two models' outputs on every batch."""
    worst, scale = 0.0, 0.0
    with torch.no_grad():
        for rb, ob in zip(ref_batches, our_batches):
            a, b = _ref_forward(ref, rb), _our_forward(ours, ob)
            worst = max(worst, float((a - b).abs().max()))
            scale = max(scale, float(a.abs().max()))
    return worst, scale


def estimator_rate(structures, batch_size, hidden, layers, epochs=2):
    """structures/s of ALIGNNRegressor.partial_fit epochs (graphs cached), best epoch."""
    from skcrystal.estimators.alignn import ALIGNNRegressor

    y = np.linspace(-1, 1, len(structures))
    est = ALIGNNRegressor(batch_size=batch_size, max_epochs=1, train_split=None,
                          module__hidden=hidden, module__alignn_layers=layers,
                          module__gcn_layers=layers, module__norm="layer",
                          random_state=0, verbose=0, progress=False)
    est.partial_fit(structures, y)  # warm-up: graphs and line graphs built and cached
    best = 0.0
    for _ in range(epochs):
        t0 = time.perf_counter()
        est.partial_fit(structures, y)
        best = max(best, len(structures) / (time.perf_counter() - t0))
    return best


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--n", type=int, default=128, help="bundled perovskites")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--hidden", type=int, default=256)
    p.add_argument("--layers", type=int, default=4, help="ALIGNN layers = GCN layers")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--no-bf16", action="store_true")
    p.add_argument("--no-estimator", action="store_true")
    args = p.parse_args()
    torch.set_num_threads(args.threads)

    from skcrystal.datasets import load_perovskites

    structures = list(load_perovskites(n=args.n)[0])
    from skcrystal.estimators.alignn import ALIGNNRegressor

    builder = ALIGNNRegressor()._builder()
    ref, ours, ref_batches, our_batches, n_pairs = build(
        structures, builder.build, args.batch_size, args.hidden, args.layers)
    n_bonds = sum(b.n_edges for b in our_batches)
    worst, scale = check_equal(ref, ours, ref_batches, our_batches)
    print(f"{args.n} perovskites, {builder!r}: {n_bonds / args.n:.1f} bonds and "
          f"{n_pairs / args.n:.0f} bond pairs per structure; batch {args.batch_size}; hidden "
          f"{args.hidden}, {args.layers} + {args.layers} layers, {args.threads} thread(s)")
    print(f"outputs: max |skcrystal - reference| = {worst:.2e} (largest output {scale:.2f})")

    rng = np.random.default_rng(0)
    targets = [torch.as_tensor(rng.normal(size=ob.n_graphs), dtype=torch.float32)
               for ob in our_batches]
    variants = [
        Variant("reference", ref, ref_batches, _ref_forward, targets),
        Variant("reference, heap", ref, ref_batches, _ref_forward, targets, heap=True),
        Variant("skcrystal, default", ours, our_batches, _our_forward, targets),
        Variant("skcrystal", ours, our_batches, _our_forward, targets, heap=True),
    ]
    if not args.no_bf16:
        variants.append(Variant("skcrystal, bf16", ours, our_batches, _our_forward, targets,
                                heap=True, bf16=True))
    for r in range(args.rounds + 1):
        for v in variants:
            v.epoch(args.n)
        print(f"round {r}: " + ", ".join(f"{v.name} {v.rates[-1]:.1f}" for v in variants),
              flush=True)
    base = statistics.median(variants[0].rates[1:])
    print()
    print("| training | median structures/s | best | minor page faults / structure "
          "| vs reference (median) | training loss, epoch 1 -> last |")
    print("| --- | ---: | ---: | ---: | ---: | --- |")
    for v in variants:
        med = statistics.median(v.rates[1:])
        print(f"| {v.name} | {med:.1f} | {max(v.rates[1:]):.1f} | "
              f"{statistics.median(v.faults[1:]):,.0f} | x{med / base:.2f} | "
              f"{v.losses[0]:.4f} -> {v.losses[-1]:.4f} |")
    same = max(abs(a - b) for a, b in zip(variants[0].losses, variants[3].losses))
    print(f"\nlargest per-epoch training-loss difference, skcrystal vs reference: {same:.2e}")
    if not args.no_estimator:
        rate = estimator_rate(structures, args.batch_size, args.hidden, args.layers)
        print(f"ALIGNNRegressor.partial_fit (skorch, same graph and sizes, heap): "
              f"{rate:.1f} structures/s (best of 2 epochs), x{rate / base:.2f} the reference's "
              "median")


if __name__ == "__main__":
    main()
