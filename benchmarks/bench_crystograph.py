"""CrysToGraph benchmarks: training speed vs CGCNN/ALIGNN, GwT memory, pretraining.

``--speed``: training structures per second of CGCNNRegressor,
ALIGNNRegressor (if present) and CrysToGraphRegressor at their defaults
(CrysToGraph: Table A1, hidden 256) and at a reduced CrysToGraph size, on
the same bundled perovskites, in one run, interleaved (model A epoch, model
B epoch, ...) so machine load hits all alike. Graphs and extras are built
and cached before timing.

``--memory``: peak resident memory of one GwT layer (hidden 256, 8 heads,
forward + backward) on a batch mixing 5-atom and 200-atom crystals, each
method in a fresh subprocess:

* ``bucketed``: skcrystal's :func:`graph_wise_attention` (crystals padded
  to the next power of two, one SDPA call per size bucket);
* ``pad_max``: every crystal padded to the largest one, one SDPA call;
* ``dense``: one attention over all atoms of the batch with a
  block-diagonal mask (what "batch-wide" attention costs).

``--pretrain``: masked-atom accuracy on held-out perovskites vs. the
most-frequent-element baseline.

``--etgc``: the restructured eTGC forward against the straightforward one
(kept behind the private switch ``_reference_etgc``), in one process,
alternating: one training step (forward, backward, AdamW with PyTorch's
fused step, as the estimator uses it) of the Table A1 model on 32
perovskites, median of ``--rounds``, after checking that both give the same
outputs and gradients; each eTGC layer alone on the inputs it receives in
that step (forward and backward; the line-graph layers are the bottleneck
the restructuring targets); then ``CrysToGraphRegressor`` epochs on ``--n``
perovskites, median of ``--epochs``.

``--step-overhead``: the per-step work besides forward and backward on the
Table A1 model's 6.7 M parameters: AdamW's step (PyTorch's default
``foreach``, per tensor, fused) and the gradient finiteness check (one
concatenation vs one sum per tensor), medians of ``--rounds`` repeats (at
least 20: each takes milliseconds).

Usage::

    python benchmarks/bench_crystograph.py --speed --memory --pretrain --threads 1
    python benchmarks/bench_crystograph.py --step-overhead --etgc --rounds 5 --epochs 3 --threads 1
"""
import argparse
import json
import resource
import subprocess
import sys
import time

import numpy as np
import torch
from torch.nn import functional as F


# ----------------------------------------------------------------- speed
def speed(n, epochs):
    from sklearn.base import clone
    from skcrystal.datasets import load_perovskites
    from skcrystal.estimators.cgcnn import CGCNNRegressor
    from skcrystal.estimators.crystograph import CrysToGraphRegressor
    X, y = load_perovskites(n=n)
    X = list(X)
    models = {"CGCNN (defaults)": CGCNNRegressor(random_state=0, batch_size=32)}
    try:
        from skcrystal.estimators.alignn import ALIGNNRegressor
        models["ALIGNN (defaults)"] = ALIGNNRegressor(random_state=0, batch_size=32)
    except ImportError:
        pass
    models["CrysToGraph (Table A1, hidden 256)"] = CrysToGraphRegressor(random_state=0)
    models["CrysToGraph (hidden 64, 4x16 heads)"] = CrysToGraphRegressor(
        random_state=0, module__hidden=64, module__n_heads=4, module__head_dim=16)
    models["CrysToGraph hidden 64, no line graph"] = CrysToGraphRegressor(
        random_state=0, module__hidden=64, module__n_heads=4, module__head_dim=16,
        module__use_line_graph=False)
    fitted = {}
    for name, est in models.items():  # warm: graphs, extras, first-epoch allocations
        fitted[name] = clone(est).set_params(max_epochs=1, warm_start=True).fit(X, y)
    times = {name: 0.0 for name in models}
    for _ in range(epochs):
        for name, est in fitted.items():
            t = time.perf_counter()
            est.partial_fit(X, y)
            times[name] += time.perf_counter() - t
    base = n * epochs / times["CGCNN (defaults)"]
    print(f"\n## training speed: {n} perovskites (5 atoms), {epochs} epochs each, "
          f"batch 32, {torch.get_num_threads()} torch thread(s)")
    for name, t in times.items():
        rate = n * epochs / t
        print(f"{name:40s} {rate:8.1f} structures/s   x{rate / base:.3f} of CGCNN")


# ----------------------------------------------------------------- eTGC speed-up
def _median(values):
    return float(np.median(values))


def etgc_speed(n_batch, rounds, n_epoch, epochs):
    """Restructured eTGC forward vs the reference one, interleaved in one process.

    Training step: two copies of the Table A1 model (same initial
    parameters, each with its own AdamW), one running the reference eTGC
    forward (``_reference_etgc``), on the same batch of bundled
    perovskites; the first step's outputs and gradients are compared, then
    the steps alternate and the median time of each is reported. Epoch: two
    ``CrysToGraphRegressor`` at their defaults, ``partial_fit`` epochs
    alternating, the reference one under the switch.
    """
    import copy
    from sklearn.base import clone
    from skcrystal.datasets import load_perovskites
    from skcrystal.estimators.crystograph import CrysToGraphRegressor
    from skcrystal.graphs import GraphBuilder, collate_graphs
    from skcrystal.nn.crystograph import CrysToGraph, _reference_etgc

    X, y = load_perovskites(n=max(n_batch, n_epoch))
    X, y = list(X), np.asarray(y, dtype=np.float32)
    torch.manual_seed(0)
    models = {"reference": CrysToGraph()}
    models["restructured"] = copy.deepcopy(models["reference"])
    builder = GraphBuilder(radius=8.0, max_neighbors=12, grow_radius=True)
    batch = collate_graphs([builder.build(s) for s in X[:n_batch]],
                           extras=models["reference"].graph_extras)
    target = torch.as_tensor(y[:n_batch]).unsqueeze(1)
    # as the estimator builds it (PyTorch's fused step; the same for both)
    optims = {k: torch.optim.AdamW(m.parameters(), lr=1e-4, fused=True)
              for k, m in models.items()}

    def step(name):
        model, opt = models[name], optims[name]
        torch.manual_seed(1)  # the eigenvector sign flips
        t = time.perf_counter()
        with _reference_etgc(name == "reference"):
            opt.zero_grad()
            out = model(batch)
            ((out - target) ** 2).mean().backward()
            opt.step()
        return time.perf_counter() - t, out.detach()

    n_pairs = batch.extras["lg_alignn_index"].shape[0]
    print(f"\n## eTGC: restructured vs reference forward, Table A1 model "
          f"({sum(p.numel() for p in models['reference'].parameters()):,} parameters), "
          f"{torch.get_num_threads()} torch thread(s)")
    print(f"training step: {n_batch} perovskites, {batch.n_nodes} atoms, "
          f"{batch.edge_index.shape[1]} bonds, {n_pairs} bond pairs; AdamW")
    # identical function: first step from identical parameters
    grads = {}
    outs = {}
    for name in models:
        _, outs[name] = step(name)
        grads[name] = [p.grad.clone() for p in models[name].parameters()
                       if p.grad is not None]
    scale = max(float(g.abs().max()) for g in grads["reference"])
    d_out = float((outs["reference"] - outs["restructured"]).abs().max())
    d_grad = max(float((a - b).abs().max())
                 for a, b in zip(grads["reference"], grads["restructured"]))
    print(f"first step: max |output diff| {d_out:.2e} (outputs up to "
          f"{float(outs['reference'].abs().max()):.3f}); max |gradient diff| {d_grad:.2e} "
          f"= {d_grad / scale:.1e} of the largest gradient")
    times = {name: [] for name in models}
    for _ in range(rounds):
        for name in models:
            times[name].append(step(name)[0])
    ref, new = _median(times["reference"]), _median(times["restructured"])
    print(f"step, median of {rounds}: reference {ref:.3f} s ({n_batch / ref:.1f} structures/s), "
          f"restructured {new:.3f} s ({n_batch / new:.1f} structures/s): x{ref / new:.2f}")

    etgc_layers(models["reference"], batch, rounds)

    est = CrysToGraphRegressor(random_state=0, max_epochs=1, warm_start=True)
    fitted = {}
    for name in models:  # warm: graphs, extras, first-epoch allocations
        with _reference_etgc(name == "reference"):
            fitted[name] = clone(est).fit(X[:n_epoch], y[:n_epoch])
    times = {name: [] for name in models}
    for _ in range(epochs):
        for name, e in fitted.items():
            with _reference_etgc(name == "reference"):
                t = time.perf_counter()
                e.partial_fit(X[:n_epoch], y[:n_epoch])
                times[name].append(time.perf_counter() - t)
    ref, new = _median(times["reference"]), _median(times["restructured"])
    pred = {name: e.predict(X[:n_epoch]) for name, e in fitted.items()}
    rel = np.abs(pred["reference"] - pred["restructured"]).max() / np.abs(pred["reference"]).max()
    print(f"CrysToGraphRegressor epoch ({n_epoch} perovskites, batch 32), median of {epochs}: "
          f"reference {ref:.2f} s ({n_epoch / ref:.1f} structures/s), restructured {new:.2f} s "
          f"({n_epoch / new:.1f} structures/s): x{ref / new:.2f}; predictions after "
          f"{epochs + 1} epochs each differ by {rel:.1e} (relative)")


def etgc_layers(model, batch, rounds):
    """Each eTGC layer alone: forward and backward, reference vs restructured.

    The inputs every layer receives in a forward pass of ``model`` over
    ``batch`` are captured once; each layer then runs on its own inputs
    (forward, then backward from fixed random output gradients, through the
    outputs the model reads), alternating the reference forward and the
    restructured one, ``rounds`` times; medians per layer and summed per
    graph (line graph: bonds as nodes, bond pairs as edges; atom graph).
    """
    from skcrystal.nn.crystograph import _reference_etgc

    layers = [(f"line graph {i}", m) for i, m in enumerate(model.lg_layers)]
    layers += [(f"atom graph {i}", m) for i, m in enumerate(model.atom_layers)]
    captured = {}
    hooks = [m.register_forward_pre_hook(
        lambda mod, args, kwargs: captured.setdefault(id(mod), (args, kwargs)),
        with_kwargs=True) for _, m in layers]
    with torch.no_grad():
        model(batch)
    for h in hooks:
        h.remove()
    gen = torch.Generator().manual_seed(2)

    def runner(layer):
        (x, e, edge_index), kwargs = captured[id(layer)]
        x, e = x.detach().requires_grad_(), e.detach().requires_grad_()
        keep_edges = kwargs.get("update_edges", True)
        g_x = torch.randn(x.shape, generator=gen)
        g_e = torch.randn(e.shape, generator=gen)

        def run(reference):
            x.grad = e.grad = None
            layer.zero_grad()
            t = time.perf_counter()
            with _reference_etgc(reference):
                x_out, e_out = layer(x, e, edge_index, **kwargs)
                loss = (x_out * g_x).sum()
                if keep_edges:
                    loss = loss + (e_out * g_e).sum()
                loss.backward()
            return time.perf_counter() - t
        return run

    print(f"eTGC layers alone (forward + backward on the captured inputs), median of {rounds}:")
    total = {}
    for label, layer in layers:
        run = runner(layer)
        run(True), run(False)  # warm
        times = {True: [], False: []}
        for _ in range(rounds):
            for reference in (True, False):
                times[reference].append(run(reference))
        ref, new = _median(times[True]), _median(times[False])
        graph = label.rsplit(" ", 1)[0]
        total.setdefault(graph, [0.0, 0.0])
        total[graph][0] += ref
        total[graph][1] += new
        print(f"  {label}: reference {1e3 * ref:.1f} ms, restructured {1e3 * new:.1f} ms: "
              f"x{ref / new:.2f}")
    for graph, (ref, new) in total.items():
        print(f"  {graph} layers together: reference {1e3 * ref:.0f} ms, restructured "
              f"{1e3 * new:.0f} ms: x{ref / new:.2f}")


def step_overhead(rounds):
    """The per-step work around forward and backward, on the Table A1 model's parameters.

    AdamW's step as PyTorch runs it by default (``foreach``), per parameter
    tensor (``foreach=False``) and fused (``fused=True``, the estimators'
    default), then the estimator's gradient finiteness check, one
    ``isfinite`` over the concatenated gradients (the earlier check)
    against one sum per tensor (:func:`skcrystal.estimators.base._all_finite`),
    on random gradients; medians of ``rounds`` alternating repeats.
    """
    from skcrystal.estimators.base import _all_finite
    from skcrystal.nn.crystograph import CrysToGraph

    torch.manual_seed(0)
    model = CrysToGraph()
    params = list(model.parameters())
    for p in params:
        p.grad = torch.randn_like(p) * 1e-3
    grads = [p.grad for p in params]
    n = sum(p.numel() for p in params)
    print(f"\n## Step overhead: Table A1 model ({n:,} parameters in {len(params)} tensors), "
          f"{torch.get_num_threads()} torch thread(s)")
    optims = {name: torch.optim.AdamW(params, lr=1e-9, **kw) for name, kw in
              (("foreach (PyTorch's default)", {"foreach": True}),
               ("per tensor", {"foreach": False}), ("fused", {"fused": True}))}
    checks = {"concatenate + isfinite": lambda: bool(torch.isfinite(torch.cat(
                  [g.reshape(-1) for g in grads])).all()),
              "sum per tensor (_all_finite)": lambda: _all_finite(grads)}
    times = {name: [] for name in [*optims, *checks]}
    for _ in range(3):  # warm: optimizer state, allocations
        for opt in optims.values():
            opt.step()
    for _ in range(rounds):
        for name, opt in optims.items():
            t = time.perf_counter()
            opt.step()
            times[name].append(time.perf_counter() - t)
        for name, check in checks.items():
            t = time.perf_counter()
            assert check()
            times[name].append(time.perf_counter() - t)
    base = _median(times["foreach (PyTorch's default)"])
    for name in optims:
        med = _median(times[name])
        print(f"AdamW step, {name}: {1e3 * med:.1f} ms (x{base / med:.2f} vs foreach)")
    base = _median(times["concatenate + isfinite"])
    for name in checks:
        med = _median(times[name])
        print(f"gradient check, {name}: {1e3 * med:.1f} ms (x{base / med:.2f})")


# ----------------------------------------------------------------- memory
def _pad_max(q, k, v, node_graph, sizes):
    n, H, d = q.shape
    P, b = int(sizes.max()), sizes.numel()
    start = torch.zeros_like(sizes)
    start[1:] = torch.cumsum(sizes, 0)[:-1]
    pos = torch.arange(n) - start[node_graph]
    dense = q.new_zeros((3, b, P, H, d))
    dense[:, node_graph, pos] = torch.stack([q, k, v])
    valid = torch.arange(P) < sizes[:, None]
    qd, kd, vd = dense.transpose(2, 3).unbind(0)
    o = F.scaled_dot_product_attention(qd, kd, vd, attn_mask=valid[:, None, None, :])
    return o.transpose(1, 2)[node_graph, pos]


def _dense(q, k, v, node_graph, sizes):
    mask = node_graph[:, None] == node_graph[None, :]
    o = F.scaled_dot_product_attention(q.transpose(0, 1)[None], k.transpose(0, 1)[None],
                                       v.transpose(0, 1)[None], attn_mask=mask)
    return o[0].transpose(0, 1)


def memory_child(method, n_small, n_large):
    from skcrystal.nn.crystograph import GwTLayer, graph_wise_attention
    import skcrystal.nn.crystograph as ctg
    torch.manual_seed(0)
    sizes = torch.tensor([5] * n_small + [200] * n_large)
    sizes = sizes[torch.randperm(len(sizes))]
    node_graph = torch.repeat_interleave(torch.arange(len(sizes)), sizes)
    layer = GwTLayer(256, 8, 32, 256)
    x = torch.randn(int(sizes.sum()), 256, requires_grad=True)
    fn = {"bucketed": graph_wise_attention, "pad_max": _pad_max, "dense": _dense}[method]
    ctg.graph_wise_attention = fn  # GwTLayer looks the function up at call time
    layer(x[:10], node_graph[:10] * 0, torch.tensor([10])).sum().backward()  # warm
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    t = time.perf_counter()
    layer(x, node_graph, sizes).sum().backward()
    dt = time.perf_counter() - t
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(json.dumps({"method": method, "peak_delta_mb": (peak - before) / 1024,
                      "seconds": dt}))


def memory(n_small, n_large):
    sizes = [5] * n_small + [200] * n_large
    n = sum(sizes)
    P = 2 ** int(np.ceil(np.log2(200)))
    theory = {  # attention-score floats per head (L x L blocks)
        "bucketed": n_small * 8 ** 2 + n_large * P ** 2,
        "pad_max": (n_small + n_large) * 200 ** 2,
        "dense": n ** 2,
    }
    print(f"\n## GwT memory: {n_small} crystals of 5 atoms + {n_large} of 200 atoms "
          f"({n} atoms), hidden 256, 8 heads, forward + backward, fresh process each")
    print(f"sum of squares of crystal sizes: {sum(s * s for s in sizes):,}")
    for method in ("bucketed", "pad_max", "dense"):
        out = subprocess.run([sys.executable, __file__, "--memory-child", method,
                              "--n-small", str(n_small), "--n-large", str(n_large)],
                             capture_output=True, text=True)
        if out.returncode:
            print(f"{method:9s} failed: {out.stderr.strip().splitlines()[-1]}")
            continue
        r = json.loads(out.stdout.strip().splitlines()[-1])
        print(f"{method:9s} peak RSS +{r['peak_delta_mb']:8.1f} MB   {r['seconds']:6.2f} s   "
              f"score entries/head {theory[method]:>12,}")


# ----------------------------------------------------------------- pretrain
def pretrain(n_train, n_test, epochs):
    from skcrystal.datasets import load_perovskites
    from skcrystal.pretrain import MaskedAtomPretrainer
    X, _ = load_perovskites(n=n_train + n_test)
    X = list(X)
    t = time.perf_counter()
    pre = MaskedAtomPretrainer(max_epochs=epochs, max_neighbors=12, random_state=0)
    pre.fit(X[:n_train])
    print(f"\n## masked-atom pretraining: {n_train} perovskites (as 2x2x2 supercells), "
          f"{epochs} epochs, {time.perf_counter() - t:.0f} s")
    print(f"held-out ({n_test}) masked-element accuracy {pre.score(X[n_train:]):.3f}; "
          f"most-frequent-element baseline {pre.baseline_score(X[n_train:]):.3f}")


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--speed", action="store_true")
    p.add_argument("--memory", action="store_true")
    p.add_argument("--pretrain", action="store_true")
    p.add_argument("--etgc", action="store_true")
    p.add_argument("--step-overhead", action="store_true")
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--n", type=int, default=64)
    p.add_argument("--epochs", type=int, default=2)
    p.add_argument("--n-small", type=int, default=60)
    p.add_argument("--n-large", type=int, default=4)
    p.add_argument("--memory-child")
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    if args.memory_child:
        return memory_child(args.memory_child, args.n_small, args.n_large)
    print(f"# {' '.join(sys.argv)}")
    if args.memory:
        memory(args.n_small, args.n_large)
    if args.speed:
        speed(args.n, args.epochs)
    if args.pretrain:
        pretrain(500, 100, 8)
    if args.step_overhead:
        step_overhead(max(args.rounds, 20))
    if args.etgc:
        etgc_speed(32, args.rounds, args.n, args.epochs)


if __name__ == "__main__":
    main()
