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

The script first checks that both give the same outputs (layer norm has no
running state, so training-mode outputs are comparable), then times
training epochs (forward, backward, AdamW step on pre-built batches). Each
variant runs in a fresh process that keeps its allocator mode over all its
epochs, as a fit does; the variants take turns, ``--rounds`` times:

``reference``            the reference model, the C library's default allocator
``reference, tuned``     the same with glibc's mmap turned off (``GLIBC_TUNABLES``
                         below): freed large blocks are reused, not mapped afresh
``skcrystal``            skcrystal's module, default allocator (as users run it)
``skcrystal, tuned``     the same with the tunables
``skcrystal, bf16``      skcrystal, default allocator, under
                         ``torch.autocast("cpu", torch.bfloat16)`` (the estimators'
                         ``mixed_precision="bf16"``)

and reports structures/s (median and best over the epochs after each
process's first), minor page faults per structure, the training losses
(same seed, same batches: equal up to float rounding between the float32
variants) and the ratios to the reference. One more variant,
``ALIGNNRegressor``, runs the skorch estimator's ``partial_fit`` epochs on
the same structures, graph and sizes in its own process, taking its turn
with the others: what a user of the estimator gets (its defaults include
PyTorch's fused AdamW step, the bare loops use AdamW's default, and the
fit keeps freed memory for reuse, ``skcrystal._malloc``);
``ALIGNNRegressor, heap off`` is the same with ``SKCRYSTAL_HEAP_ALLOCATION=0``
(glibc's default behaviour inside the fit).

``--fit-memory`` instead runs one ``ALIGNNRegressor.fit`` of ``--epochs``
epochs with and without that setting, each in a fresh process, and reports
the peak resident memory and what the process still holds after the fit.

``--predict`` times ``ALIGNNRegressor.predict`` as users run it (batch
norm, the estimator's default), with and without that setting, each in a
fresh process, taking turns ``--rounds`` times. A model at the script's
sizes is fitted for one epoch on the ``--n`` perovskites and pickled once;
then each process predicts the same structures ``--epochs`` times (graphs
built before the clock starts) in one of three ways:

``saved model``          loads the pickle and predicts: a deployed model
                         (``skcrystal predict``, a script that loads a model)
``after fit``            fits the same epoch itself, then predicts: a
                         cross-validation fold, a fit-then-score script
``one per call``         loads the pickle and predicts one structure per call,
                         32 calls a pass: the per-call cost of the setting

It reports structures/s of the first pass and the median of the later
ones, minor page faults per structure, the resident memory after the last
pass, and the largest difference between the two settings' predictions
(the same arithmetic: 0).

Usage::

    python benchmarks/bench_alignn.py [--n 192] [--batch-size 64] [--epochs 3] [--rounds 2]
    python benchmarks/bench_alignn.py --fit-memory --epochs 5
    python benchmarks/bench_alignn.py --predict --epochs 3 --rounds 2
"""
import argparse
import resource
import statistics
import time

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


#: glibc without mmap for large blocks and without giving freed memory back
TUNABLES = {"GLIBC_TUNABLES": "glibc.malloc.mmap_max=0:glibc.malloc.trim_threshold=68719476736"}
#: the estimators' own allocator setting turned off
NO_HEAP = {"SKCRYSTAL_HEAP_ALLOCATION": "0"}

VARIANTS = {  # name: (model, environment, bf16)
    "reference": ("reference", {}, False),
    "reference, tuned": ("reference", TUNABLES, False),
    "skcrystal": ("skcrystal", {}, False),
    "skcrystal, tuned": ("skcrystal", TUNABLES, False),
    "skcrystal, bf16": ("skcrystal", {}, True),
    "ALIGNNRegressor": ("estimator", {}, False),
    "ALIGNNRegressor, heap off": ("estimator", NO_HEAP, False),
}


def child(args):
    """One variant's epochs in this process; prints one JSON line."""
    import contextlib
    import json

    torch.set_num_threads(args.threads)
    which, _, bf16 = VARIANTS[args.variant]
    if which == "estimator":
        if args.predict_child:
            return predict_child(args)
        return fit_memory_child(args) if args.fit_child else estimator_child(args)
    ref, ours, ref_batches, our_batches, _ = build(
        _structures(args.n), _builder().build, args.batch_size, args.hidden, args.layers)
    model, batches, forward = (ref, ref_batches, _ref_forward) if which == "reference" \
        else (ours, our_batches, _our_forward)
    model.train()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    targets = _targets(our_batches)
    amp = torch.autocast("cpu", dtype=torch.bfloat16) if bf16 else contextlib.nullcontext()
    rates, faults, losses = [], [], []
    for _ in range(args.epochs):
        total = 0.0
        f0 = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
        t0 = time.perf_counter()
        for batch, y in zip(batches, targets):
            opt.zero_grad(set_to_none=True)
            with amp:
                out = forward(model, batch)
            loss = torch.nn.functional.mse_loss(out.float(), y)
            loss.backward()
            opt.step()
            total += float(loss.detach()) * len(y)
        rates.append(args.n / (time.perf_counter() - t0))
        faults.append((resource.getrusage(resource.RUSAGE_SELF).ru_minflt - f0) / args.n)
        losses.append(total / args.n)
    print(json.dumps({"rates": rates, "faults": faults, "losses": losses}))


def check_equal(ref, ours, ref_batches, our_batches):
    """Largest |difference| of the two models' outputs on every batch."""
    worst, scale = 0.0, 0.0
    with torch.no_grad():
        for rb, ob in zip(ref_batches, our_batches):
            a, b = _ref_forward(ref, rb), _our_forward(ours, ob)
            worst = max(worst, float((a - b).abs().max()))
            scale = max(scale, float(a.abs().max()))
    return worst, scale


def _estimator(args, max_epochs, norm="layer"):
    """``ALIGNNRegressor`` at the bare loops' sizes, no validation split.

    Layer norm as the bare loops (comparable training-mode outputs);
    ``norm=None``: the estimator's default.
    """
    from skcrystal.estimators.alignn import ALIGNNRegressor

    module = {} if norm is None else {"module__norm": norm}
    return ALIGNNRegressor(batch_size=args.batch_size, max_epochs=max_epochs, train_split=None,
                           module__hidden=args.hidden, module__alignn_layers=args.layers,
                           module__gcn_layers=args.layers, random_state=0, verbose=0,
                           progress=False, **module)


def estimator_child(args):
    """``ALIGNNRegressor.partial_fit`` epochs in this process; one JSON line.

    The estimator as users run it (its defaults: AdamW with PyTorch's fused
    step, shuffled batches, the training-step checks), on the same
    structures, graph and sizes, layer norm. The first epoch also builds
    and caches the graphs and line graphs; like every variant's first epoch
    it is not counted. Its losses are on standardized targets, not the bare
    loops' (not compared).
    """
    import json

    structures = _structures(args.n)
    y = np.linspace(-1, 1, len(structures))
    est = _estimator(args, max_epochs=1)
    rates, faults = [], []
    for _ in range(args.epochs):
        f0 = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
        t0 = time.perf_counter()
        est.partial_fit(structures, y)
        rates.append(args.n / (time.perf_counter() - t0))
        faults.append((resource.getrusage(resource.RUSAGE_SELF).ru_minflt - f0) / args.n)
    print(json.dumps({"rates": rates, "faults": faults, "losses": None}))


def _resident_mb():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * resource.getpagesize() / 2**20


def fit_memory_child(args):
    """One ``ALIGNNRegressor.fit`` of ``--epochs`` epochs; peak and after-fit memory."""
    import json

    structures = _structures(args.n)
    y = np.linspace(-1, 1, len(structures))
    est = _estimator(args, max_epochs=args.epochs)
    f0 = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    t0 = time.perf_counter()
    est.fit(structures, y)
    seconds = time.perf_counter() - t0
    faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt - f0
    print(json.dumps({"rate": args.n * args.epochs / seconds,
                      "faults": faults / (args.n * args.epochs),
                      "peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                      "after_mb": _resident_mb()}))


def fit_memory(args):
    """The estimator's ``fit`` with and without its allocator setting, fresh processes."""
    print("| ALIGNNRegressor.fit | structures/s (all epochs) | minor page faults / structure "
          "| peak resident memory | resident memory after fit |")
    print("| --- | ---: | ---: | ---: | ---: |")
    for name in ("ALIGNNRegressor", "ALIGNNRegressor, heap off"):
        r = _run_child(args, name, "--fit-child")
        print(f"| {name} | {r['rate']:.1f} | {r['faults']:,.0f} | {r['peak_mb']:,.0f} MB "
              f"| {r['after_mb']:,.0f} MB |", flush=True)


PREDICT_SCENARIOS = ("saved model", "after fit", "one per call")


def _predict_model(args, structures):
    """The model ``--predict`` times: one epoch, the estimator's default norm."""
    return _estimator(args, 1, norm=None).fit(structures, np.linspace(-1, 1, len(structures)))


def predict_child(args):
    """``--epochs`` passes of ``predict`` in one scenario; one JSON line."""
    import json
    import pickle

    structures = _structures(args.n)
    if args.predict_child == "after fit":
        est = _predict_model(args, structures)
    else:
        with open(args.model_file, "rb") as f:
            est = pickle.load(f)
    if args.predict_child == "one per call":
        structures = structures[:32]
        calls = [[s] for s in structures]
    else:
        calls = [structures]
    est.prepare(structures)
    rates, faults = [], []
    for _ in range(args.epochs):
        f0 = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
        t0 = time.perf_counter()
        pred = np.concatenate([est.predict(c) for c in calls])
        rates.append(len(structures) / (time.perf_counter() - t0))
        faults.append((resource.getrusage(resource.RUSAGE_SELF).ru_minflt - f0)
                      / len(structures))
    print(json.dumps({"rates": rates, "faults": faults, "after_mb": _resident_mb(),
                      "pred": pred.tolist()}))


def predict_bench(args):
    """The estimator's ``predict`` with and without its allocator setting."""
    import os
    import pickle
    import tempfile

    structures = _structures(args.n)
    est = _predict_model(args, structures)
    names = ("ALIGNNRegressor", "ALIGNNRegressor, heap off")
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        args.model_file = os.path.join(tmp, "alignn.pkl")
        with open(args.model_file, "wb") as f:
            pickle.dump(est, f)
        del est
        print(f"{args.n} perovskites, batch {args.batch_size}, hidden {args.hidden}, "
              f"{args.layers} + {args.layers} layers, {args.threads} thread(s), "
              f"{args.epochs} passes a process; load average {os.getloadavg()[0]:.2f}")
        for r in range(args.rounds):
            for scenario in PREDICT_SCENARIOS:
                for name in names:
                    res = _run_child(args, name, "--predict-child", scenario,
                                     "--model-file", args.model_file)
                    got = results.setdefault((scenario, name), [])
                    got.append(res)
                    print(f"round {r}, {scenario}, {name}: "
                          + ", ".join(f"{x:.1f}" for x in res["rates"]), flush=True)
    print()
    print("| predict | setting | first pass, structures/s | later passes (median) "
          "| faults / structure, first -> later | resident memory after | vs heap off, "
          "first / later |")
    print("| --- | --- | ---: | ---: | ---: | ---: | ---: |")
    for scenario in PREDICT_SCENARIOS:
        summary = {}
        for name in names:
            runs = results[(scenario, name)]
            summary[name] = (
                statistics.median(r["rates"][0] for r in runs),
                statistics.median(x for r in runs for x in r["rates"][1:]),
                statistics.median(r["faults"][0] for r in runs),
                statistics.median(x for r in runs for x in r["faults"][1:]),
                statistics.median(r["after_mb"] for r in runs))
        off = summary[names[1]]
        for name in names:
            first, later, f_first, f_later, mb = summary[name]
            print(f"| {scenario} | {'default' if name == names[0] else 'heap off'} "
                  f"| {first:.1f} | {later:.1f} | {f_first:,.0f} -> {f_later:,.0f} "
                  f"| {mb:,.0f} MB | x{first / off[0]:.2f} / x{later / off[1]:.2f} |")
    worst = max(float(np.max(np.abs(np.subtract(a["pred"], b["pred"]))))
                for scenario in PREDICT_SCENARIOS
                for a in results[(scenario, names[0])] for b in results[(scenario, names[1])])
    print(f"\nlargest prediction difference between the settings: {worst:.2e}")
    print(f"load average at the end {os.getloadavg()[0]:.2f}")


def _structures(n):
    from skcrystal.datasets import load_perovskites

    return list(load_perovskites(n=n)[0])


def _builder():
    from skcrystal.estimators.alignn import ALIGNNRegressor

    return ALIGNNRegressor()._builder()


def _targets(batches):
    rng = np.random.default_rng(0)
    return [torch.as_tensor(rng.normal(size=b.n_graphs), dtype=torch.float32)
            for b in batches]


def _run_child(args, name, *extra):
    import json
    import os
    import subprocess
    import sys

    cmd = [sys.executable, __file__, "--variant", name, "--n", str(args.n),
           "--batch-size", str(args.batch_size), "--epochs", str(args.epochs),
           "--hidden", str(args.hidden), "--layers", str(args.layers),
           "--threads", str(args.threads), *extra]
    env = dict(os.environ)
    for key in (*TUNABLES, *NO_HEAP):
        env.pop(key, None)
    env.update(VARIANTS[name][1])
    out = subprocess.run(cmd, check=True, stdout=subprocess.PIPE, text=True, env=env).stdout
    return json.loads(out.strip().splitlines()[-1])


def main():
    import os

    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--n", type=int, default=192, help="bundled perovskites")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--epochs", type=int, default=3, help="per process; the first is not timed")
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--hidden", type=int, default=256)
    p.add_argument("--layers", type=int, default=4, help="ALIGNN layers = GCN layers")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--no-estimator", action="store_true")
    p.add_argument("--fit-memory", action="store_true",
                   help="only: one fit of --epochs epochs with and without the estimators' "
                        "allocator setting (peak and after-fit memory)")
    p.add_argument("--predict", action="store_true",
                   help="only: predict with and without the estimators' allocator setting "
                        "(a saved model, after a fit, one structure per call)")
    p.add_argument("--variant", choices=sorted(VARIANTS), help=argparse.SUPPRESS)
    p.add_argument("--fit-child", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--predict-child", choices=PREDICT_SCENARIOS, help=argparse.SUPPRESS)
    p.add_argument("--model-file", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.variant:
        return child(args)
    torch.set_num_threads(args.threads)
    if args.fit_memory:
        return fit_memory(args)
    if args.predict:
        return predict_bench(args)
    structures = _structures(args.n)
    builder = _builder()
    ref, ours, ref_batches, our_batches, n_pairs = build(
        structures, builder.build, args.batch_size, args.hidden, args.layers)
    n_bonds = sum(b.n_edges for b in our_batches)
    worst, scale = check_equal(ref, ours, ref_batches, our_batches)
    print(f"{args.n} perovskites, {builder!r}: {n_bonds / args.n:.1f} bonds and "
          f"{n_pairs / args.n:.0f} bond pairs per structure; batch {args.batch_size}; hidden "
          f"{args.hidden}, {args.layers} + {args.layers} layers, {args.threads} thread(s); "
          f"load average {os.getloadavg()[0]:.2f}")
    print(f"outputs: max |skcrystal - reference| = {worst:.2e} (largest output {scale:.2f})")
    del ref, ours, ref_batches, our_batches
    results = {}
    names = [n for n in VARIANTS if not (args.no_estimator and VARIANTS[n][0] == "estimator")]
    for r in range(args.rounds):
        for name in names:
            res = _run_child(args, name)
            got = results.setdefault(name, {"rates": [], "faults": [], "losses": None})
            got["rates"] += res["rates"][1:]
            got["faults"] += res["faults"][1:]
            got["losses"] = res["losses"]
            print(f"round {r}, {name}: " + ", ".join(f"{x:.1f}" for x in res["rates"]),
                  flush=True)
    base = statistics.median(results["reference"]["rates"])
    print()
    print("| training | median structures/s | best | minor page faults / structure "
          "| vs reference (median) | training loss, epoch 1 -> last |")
    print("| --- | ---: | ---: | ---: | ---: | --- |")
    for name, v in results.items():
        med = statistics.median(v["rates"])
        loss = (f"{v['losses'][0]:.4f} -> {v['losses'][-1]:.4f}" if v["losses"]
                else "(standardized targets)")
        print(f"| {name} | {med:.1f} | {max(v['rates']):.1f} | "
              f"{statistics.median(v['faults']):,.0f} | x{med / base:.2f} | {loss} |")
    same = max(abs(a - b) for a, b in zip(results["reference"]["losses"],
                                          results["skcrystal"]["losses"]))
    print(f"\nlargest per-epoch training-loss difference, skcrystal vs reference: {same:.2e}")
    print(f"load average at the end {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
