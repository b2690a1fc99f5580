"""The estimator base shared by every skcrystal model.

:class:`CrystalGraphNet` is a skorch ``NeuralNet`` whose ``X`` is a sequence
of pymatgen structures (list, tuple, object array, pandas Series) or a
DataFrame with a structure column plus numeric descriptor columns. It
works through skorch's hooks, so skorch's own ``fit``, ``partial_fit``,
``forward_iter``, ``predict_proba`` and callbacks run unchanged:

* ``get_dataset`` turns structures into a :class:`GraphDataset` (input
  checks naming the offending item, graphs from the content-keyed cache with
  the graph extras the module declares, scaled targets and descriptors);
* ``get_iterator`` collates graphs into one disconnected graph per batch;
* ``infer`` runs the module on a :class:`~skcrystal.graphs.GraphBatch`.

What must be known before the module is built (the number of outputs, the
target and descriptor scaling) is fitted first, by the small pieces of
:mod:`skcrystal.estimators.scaling`. The module is asked what it needs: its
graph extras, its supported elements and its parameter constraints (see
:mod:`skcrystal.nn.model`).

Training defaults (overridden per model where the paper differs; each
model's class docstring and the documentation's defaults table list
them): AdamW with lr 1e-3 and the reference code's weight decay, batch 64,
100 epochs, cosine annealing of the learning rate to zero over
``max_epochs`` (callback ``lr_schedule``; disable with
``callbacks__lr_schedule=None``), no internal validation split
(``train_split=None``: scikit-learn's CV does the validation; pass
``train_split=skorch.dataset.ValidSplit(0.1)`` to monitor ``valid_loss``).
"""
from __future__ import annotations

import contextlib
import inspect
import json
import logging
import numbers
import os
import warnings
from functools import partial

import numpy as np
import torch
from sklearn.base import ClassifierMixin, RegressorMixin, TransformerMixin, clone
from sklearn.exceptions import NotFittedError
from sklearn.utils._param_validation import (
    HasMethods, Interval, Options, StrOptions, validate_parameter_constraints)
from skorch import NeuralNet
from skorch.callbacks import Callback
from skorch.utils import is_dataset

from .._malloc import heap_allocation
from .._signals import noting_interrupts
from .._validation import (_item, check_consistent_length, check_keyword_names,
                           check_parameter_names, check_structures, constructor_parameters,
                           descriptor_values, split_input)
from ..graphs import GraphBuilder, attach_extras, collate_graphs, get_graphs
from ..graphs.cache import check_cache_dir
from ..inference import (DEFAULT_BATCH_SIZE, _no_gpu, trained_elements,
                         warn_untrained_elements)
from ..nn._constraints import sklearn_constraints
from . import _distributed, _lazy
from ._screen import MIN_ROWS as _SCREEN_MIN_ROWS
from ._screen import descriptor_signal, ridge_loo
from .scaling import DescriptorScaler, LabelEncoder, TargetScaler

__all__ = ["CrystalGraphNet", "CrystalRegressorBase", "CrystalClassifierBase",
           "GraphDataset", "CosineAnnealing", "NonFiniteError", "STATE_FORMAT_VERSION"]

logger = logging.getLogger(__name__)

#: version of the ``f_state`` file written by ``save_params``
STATE_FORMAT_VERSION = 1

#: ``descriptor_skip="auto"`` uses the skip path when a ridge fit of the
#: targets on the descriptors alone reaches this leave-one-out R2
_SKIP_MIN_R2 = 0.9

#: default ``descriptor_dropout`` (chosen on the matbench runs of
#: ``benchmarks/RESULTS.md``, "Descriptor dropout")
DEFAULT_DESCRIPTOR_DROPOUT = 0.1


class NonFiniteError(ValueError):
    """A NaN or infinite loss, prediction or gradient.

    Raised during ``fit`` (naming the epoch, the batch and its structures:
    their positions in ``X`` and formulas) and by ``predict``/``transform``
    (naming the structures whose output is not finite), instead of letting
    NaN spread silently through the weights or into the results.
    """


class GraphDataset(torch.utils.data.Dataset):
    """Graphs with optional descriptor rows and targets, indexable by skorch.

    An item is ``(graph, descriptors, target, position)``; the position
    (in the estimator's ``X``) lets errors name a batch's structures.

    Parameters
    ----------
    graphs : list of CrystalGraph
    descriptors : ndarray, shape (n, n_descriptors), optional
    y : ndarray, shape (n, n_targets) or (n,), optional
    """

    def __init__(self, graphs, descriptors=None, y=None):
        self.graphs = graphs
        self.descriptors = descriptors
        self.y = y

    def __len__(self):
        return len(self.graphs)

    def __getitem__(self, i):
        d = None if self.descriptors is None else self.descriptors[i]
        t = None if self.y is None else self.y[i]
        return self.graphs[i], d, t, i


def collate_samples(items, extras=()):
    """DataLoader ``collate_fn``: items of :class:`GraphDataset` -> (GraphBatch, y)."""
    columns = list(zip(*items))
    graphs, descs, ys = columns[:3]
    descriptors = None if descs[0] is None else np.stack(descs)
    batch = collate_graphs(graphs, descriptors=descriptors, extras=extras)
    if len(columns) > 3:
        batch.index = np.asarray(columns[3], dtype=np.int64)
    if ys[0] is None:
        return batch, None
    y = np.stack(ys)
    y = torch.as_tensor(y, dtype=torch.long if y.dtype.kind in "iu" else torch.float32)
    return batch, y


def _cosine_factor(epoch, total, warm):
    # a Python float: a numpy scalar in the optimizer state would not load
    # under torch's weights-only unpickler
    if epoch < warm:
        return float((epoch + 1) / (warm + 1))
    return float(0.5 * (1 + np.cos(np.pi * min(epoch - warm, total) / max(total - warm, 1))))


class CosineAnnealing(Callback):
    """Cosine decay of the learning rate to zero over ``net.max_epochs``.

    Parameters
    ----------
    warmup_epochs : int
        Linear warm-up epochs at the start.
    """

    def __init__(self, warmup_epochs=0):
        self.warmup_epochs = warmup_epochs

    def on_train_begin(self, net, **kwargs):
        factor = partial(_cosine_factor, total=max(int(net.max_epochs), 1),
                         warm=int(self.warmup_epochs))
        self.scheduler_ = torch.optim.lr_scheduler.LambdaLR(net.optimizer_, factor)
        # a resumed fit (CrystalGraphNet.resume) continues the schedule
        done = int(getattr(net, "_schedule_offset_", 0))
        if done:
            self.scheduler_.last_epoch = done
            for group, base in zip(net.optimizer_.param_groups, self.scheduler_.base_lrs):
                group["lr"] = base * factor(done)

    def on_epoch_end(self, net, **kwargs):
        self.scheduler_.step()


def _dropout_seed(random_state):
    """Seed of a fit's descriptor-dropout draws (random_state None: a fresh one)."""
    if random_state is None:
        return int(np.random.SeedSequence().generate_state(1)[0])
    return int(random_state) + 1


def _reset_dropout(net):
    """Forget the descriptor-dropout stream: a new fit draws from its start."""
    for name in ("_dropout_seed", "_dropout_rng", "_dropout_epoch"):
        net.__dict__.pop(name, None)


@contextlib.contextmanager
def _seeded(random_state):
    """Seed torch inside the block and restore the caller's RNG after."""
    if random_state is None:
        yield
        return
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(int(random_state))
        yield


def _rng_state():
    """torch's CPU generator state as JSON-ready data (see ``Checkpoint``'s ``f_rng``)."""
    import base64
    return {"format": "skcrystal-rng-state", "version": 1,
            "torch": base64.b64encode(torch.get_rng_state().numpy().tobytes()).decode()}


def _read_json(f, what):
    """(data, name) of a JSON file given as a path or a file object; else ValueError."""
    source = getattr(f, "name", f)
    try:
        if hasattr(f, "read"):
            text = f.read()
        else:
            with open(f, "rb") as fh:
                text = fh.read()
        return json.loads(text), source
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ValueError(f"{source} is not a {what} (not JSON: {exc})") from None


def _read_rng_state(f):
    """The generator state of an ``f_rng`` file (path or file object) as a tensor."""
    import base64
    state, source = _read_json(f, "skcrystal generator state file")
    try:
        if state.get("format") != "skcrystal-rng-state":
            raise ValueError("no skcrystal-rng-state format mark")
        raw = base64.b64decode(state["torch"], validate=True)
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise ValueError(f"{source} is not a skcrystal generator state file ({exc})") from None
    if len(raw) != torch.get_rng_state().numel():
        raise ValueError(f"{source}: a generator state of {len(raw)} bytes; this torch's "
                         f"CPU generator has {torch.get_rng_state().numel()}")
    return torch.frombuffer(bytearray(raw), dtype=torch.uint8).clone()


def _check_device(device):
    """ValueError naming ``device`` when torch cannot put tensors there."""
    if device is None:
        return
    try:
        why = _no_gpu(device)
    except (RuntimeError, TypeError):
        raise ValueError(f"device={device!r} is not a torch device (e.g. 'cpu', 'cuda', "
                         "'cuda:1')") from None
    if why:
        raise ValueError(f"device={device!r}: {why}; use device='cpu'")


def _write_text(f, text):
    """Write ``text`` to a path or to a (text or binary) file object."""
    if hasattr(f, "write"):
        f.write(text.encode() if "b" in getattr(f, "mode", "") else text)
    else:
        with open(f, "w", encoding="utf-8") as fh:
            fh.write(text)


def _any_file(f_params, f_optimizer, f_criterion, f_history, kwargs):
    """Whether any of skorch's own save/load targets is given."""
    return any(f is not None for f in (f_params, f_optimizer, f_criterion, f_history,
                                       *(v for k, v in kwargs.items() if k.startswith("f_"))))


_UNITS = {"": 1, "B": 1, "KB": 10**3, "MB": 10**6, "GB": 10**9, "TB": 10**12,
          "KIB": 2**10, "MIB": 2**20, "GIB": 2**30, "TIB": 2**40}


def parse_bytes(value, name="max_memory"):
    """Bytes from a number or a string such as ``"4GB"``, ``"512 MiB"`` (None stays None)."""
    import re

    if value is None:
        return None
    if isinstance(value, numbers.Real) and not isinstance(value, bool):
        return float(value)
    m = re.fullmatch(r"\s*([0-9]*\.?[0-9]+(?:[eE][+-]?[0-9]+)?)\s*([A-Za-z]*)\s*", str(value))
    if not m or m.group(2).upper() not in _UNITS or float(m.group(1)) <= 0:
        raise ValueError(f"{name} must be a positive number of bytes or a size such as "
                         f"'4GB' or '512MiB', got {value!r}")
    return float(m.group(1)) * _UNITS[m.group(2).upper()]


def _fmt_bytes(n):
    for unit, size in (("GB", 1e9), ("MB", 1e6), ("KB", 1e3)):
        if n >= size:
            return f"{n / size:.1f} {unit}"
    return f"{int(n)} B"


#: The estimator parameters that shape a graph (GraphBuilder's).
_GRAPH_PARAMS = ("radius", "max_neighbors", "grow_radius", "neighbor_mode", "symmetrize")


def routed_prefixes(net):
    """The prefixes a skorch net routes (``module__x``...): its ``prefixes_`` and,
    before they are initialized, the module, criterion and optimizer; none for an
    estimator that is no skorch net."""
    if not hasattr(net, "prefixes_"):
        return set()
    return {"module", "criterion", "optimizer", *net.prefixes_}


def check_prefixed_names(net, prefixes=("module", "optimizer", "criterion",
                                        "iterator_train", "iterator_valid")):
    """A skorch net's ``prefix__name`` parameters against what the class they go to
    takes.

    Raises
    ------
    TypeError
        Naming the prefixed parameter, the class and the closest name
        (:func:`skcrystal._validation.check_keyword_names`).
    """
    for prefix in prefixes:
        names = [k for k in net.get_params_for(prefix) if k != "param_groups"]
        target = getattr(net, prefix, None)
        if prefix == "module" and target is not None:
            target = _module_class(target)
        check_keyword_names(target, names, prefix + "__")


def _module_class(module):
    return module if isinstance(module, type) else type(module)


def _batch_structures(batch, graphs=None, limit=20):
    """"X[i] (formula), ..." for the crystals ``graphs`` (default all) of a batch."""
    from pymatgen.core import Composition, Element

    z = batch.atomic_numbers.detach().cpu().numpy()
    owner = batch.node_graph.detach().cpu().numpy()
    index = getattr(batch, "index", None)
    graphs = range(batch.n_graphs) if graphs is None else list(graphs)
    names = []
    for g in graphs[:limit]:
        try:
            counts = np.bincount(z[owner == g])
            formula = Composition({Element.from_Z(int(k)): int(c)
                                   for k, c in enumerate(counts) if c}).reduced_formula
        except (ValueError, KeyError):  # pragma: no cover - unknown Z
            formula = "?"
        where = f"X[{index[g]}]" if index is not None else f"item {g} of the batch"
        names.append(f"{where} ({formula})")
    more = f" and {len(graphs) - limit} more" if len(graphs) > limit else ""
    return ", ".join(names) + more


def _all_finite(tensors):
    """Whether every element of every tensor is finite (no NaN, no inf).

    One sum per tensor, then a single check of the stacked sums: a NaN or
    inf anywhere makes its tensor's sum non-finite. A sum can also overflow
    from large finite values, so a non-finite sum is confirmed element by
    element before the answer is no. Unlike one ``isfinite`` over the
    concatenated tensors, this neither copies every gradient into a new
    buffer nor reads it twice (the copy alone costs as much as the
    optimizer's step on a model of a few million parameters).
    """
    sums = torch.stack([t.sum(dtype=torch.float32) for t in tensors])
    if bool(torch.isfinite(sums).all()):
        return True
    return all(bool(torch.isfinite(t).all()) for t in tensors)


def _fused_optimizer(optimizer, params, kwargs):
    """``kwargs`` with ``fused=True`` where ``optimizer`` has a fused kernel.

    PyTorch's fused Adam/AdamW/SGD step updates every parameter in one
    kernel (on the CPU since PyTorch 2.4); its default is the per-parameter
    loop or the ``foreach`` kernels, several times slower on models of
    millions of parameters. Used only when the optimizer takes ``fused``,
    every parameter is a floating-point tensor on the CPU or a CUDA device,
    and the user chose none of ``fused``, ``foreach`` and ``differentiable``
    (an ``optimizer__foreach=True`` or ``optimizer__fused=False`` is kept).
    The update is the same to float rounding.
    """
    if (optimizer is None or any(k in kwargs for k in ("fused", "foreach", "differentiable"))
            or tuple(int(v) for v in torch.__version__.split(".")[:2]) < (2, 4)):
        return kwargs
    try:
        takes_fused = "fused" in inspect.signature(optimizer).parameters
    except (TypeError, ValueError):  # pragma: no cover - builtin without a signature
        return kwargs
    if not takes_fused or not params or not all(
            p.is_floating_point() and p.device.type in ("cpu", "cuda") for p in params):
        return kwargs
    return {**kwargs, "fused": True}


class CrystalGraphNet(NeuralNet):
    """skorch ``NeuralNet`` over crystal structures (base class).

    Parameters
    ----------
    module : type of CrystalModel
        A :class:`~skcrystal.nn.model.CrystalModel` class; its parameters
        are set with the ``module__`` prefix (``module__n_conv=4``). The
        estimator supplies ``n_outputs`` and ``n_descriptors`` from the
        data, and ``cutoff`` (the radial basis cut-off) from ``radius``
        unless ``module__cutoff`` is given.
    criterion : type of torch loss
    optimizer : type of torch.optim.Optimizer, default AdamW
        Its parameters use the ``optimizer__`` prefix
        (``optimizer__weight_decay``; each model sets its reference's value).
        Optimizers with a fused kernel (AdamW, Adam, SGD) get
        ``fused=True`` unless ``optimizer__fused`` or ``optimizer__foreach``
        is given: the same update to float rounding, in one pass over all
        parameters.
    lr : float, default 1e-3
    max_epochs : int, default 100
    batch_size : int, default 64
    radius : float, default 8.0
        Neighbour cut-off of the graphs, Å.
    max_neighbors : int or None, default 12
        Nearest neighbours kept per atom (ties with the last one kept too).
    grow_radius : bool, default False
        Grow the cut-off of a structure with an isolated atom instead of
        raising (see :mod:`skcrystal.graphs.builder`).
    neighbor_mode : {"keep_ties", "reference"}, default "keep_ties"
        ``"keep_ties"`` keeps every neighbour tied with the last one kept
        (graphs independent of atom order and cell choice);
        ``"reference"`` keeps exactly ``max_neighbors`` in the reference
        CGCNN code's order, padded (for its published checkpoints).
    symmetrize : {None, "union", "both"}, default None
        Add reverse edges after the neighbour cut: ``"union"`` the missing
        ones (every directed bond once), ``"both"`` the reverse of every
        edge (CrystalNet's reference graph); see
        :mod:`skcrystal.graphs.symmetrize`. Part of the graph cache key.
    descriptors : transformer or None
        Structures -> numbers (e.g. :class:`skcrystal.descriptors.DescriptorBank`,
        or a Pipeline ending in an imputer), fitted on the training
        structures; its standardized output is concatenated to the pooled
        representation (descriptor-hybridized model).
    descriptor_skip : {"auto", True, False}, default "auto"
        With descriptors, a linear map from the descriptors straight to the
        outputs beside the head's MLP (see
        :class:`~skcrystal.nn.head.ReadoutHead`). ``"auto"``: regressors fit
        a ridge regression of the scaled targets on the scaled descriptors
        (penalty by leave-one-out error) and use the skip path, started at
        that fit, only when its leave-one-out R2 is at least 0.9 (the
        descriptors alone carry the answer linearly); otherwise, and for
        classifiers, the descriptors go through the MLP only. ``True``: always
        (regressors start it at the ridge fit, classifiers at zero);
        ``False``: never. Fitted: ``descriptor_skip_`` and
        ``descriptor_ridge_r2_``.
    descriptor_screen : bool, default True
        With descriptors, regressors first test whether the descriptors
        predict the targets on held-out rows at all: a ridge regression's
        leave-one-out R2 and a small random forest's out-of-bag R2, each
        against the same statistic on 19 permutations of the targets (see
        :mod:`skcrystal.estimators._screen`). When neither reaches 0.01 and
        beats its permutations, the descriptors are set aside with a warning
        and the fit is the plain model's (same weights and predictions as
        without descriptors, for the same ``random_state``); ``predict``
        then computes no descriptors. Fitted: ``descriptors_used_`` (bool)
        and ``descriptor_screen_`` (the statistics). ``False`` always uses
        the descriptors; classifiers and fits of fewer than 20 structures
        always do.
    descriptor_dropout : float in [0, 1), default 0.1
        With descriptors, the probability that a crystal's whole descriptor
        vector is replaced by zeros (its training mean, after scaling) in a
        training batch. The network then has to predict from the graph
        alone as well, so descriptors that repeat what the graph already
        knows cannot take over the head and cost accuracy (the paper's
        de-ALIGNN loses 15% on total energy this way); prediction always
        uses every descriptor. The draws come from a generator of their
        own, seeded from ``random_state`` and the epoch, so the initial
        weights and the batches stay the plain model's. Not applied when the skip path is
        on (``descriptor_skip_``): descriptors that carry the answer
        linearly are meant to be used, not guarded against. ``0`` is the
        paper's hybrid.
    structure_column : str, default "structure"
        Column of the structures when ``X`` is a DataFrame; the other
        (numeric) columns are used as precomputed descriptors.
    random_state : int or None
        Seeds weight initialisation, shuffling and dropout for the fit.
    n_jobs : int or None
        Processes building graphs, this one included (-1: one per core; a
        ``descriptors`` transformer uses its own ``n_jobs``). Inside
        ``cross_val_score(n_jobs=...)`` or a grid search's workers the graphs
        are built in the fit's own process.
    cache_dir : str or None
        Optional on-disk graph cache folder.
    train_split : callable or None, default None
        skorch's internal validation split (see the module docstring).
    max_memory : float, str or None, default "4GB"
        Largest estimated training memory of one structure (bytes, or a
        string such as ``"16GB"``, ``"500MB"``): ``fit`` refuses, before
        training starts, a structure whose estimate
        (:meth:`CrystalModel.training_memory
        <skcrystal.nn.model.CrystalModel.training_memory>`, measured per
        model) is larger, naming it; ``None`` disables the check. A batch
        whose largest ``batch_size`` structures add up to more is logged as
        a warning.
    progress : {"auto", True, False}, default "auto"
        Progress bars (tqdm, on stderr) for graph building, the epochs of
        ``fit`` (when ``verbose=0``) and ``predict``/``transform``;
        ``"auto"`` shows them when stderr is a terminal (an interactive
        session), not in scripts whose output goes to a file or in tests.
    distributed : bool, default False
        Data-parallel training with ``torch.distributed`` (DDP) when the
        script runs under a launcher such as ``torchrun``; ``batch_size`` is
        then the global batch (see :mod:`skcrystal.estimators._distributed`
        and the user guide's "Multiple GPUs and clusters").
    mixed_precision : {None, "bf16"}, default None
        ``"bf16"`` runs the forward pass under bfloat16 autocast.
    verbose : int, default 0
        0 prints nothing (a progress bar may show, see ``progress``); 1 prints
        skorch's table on stdout, one line per epoch (train loss, valid loss
        with a ``train_split``, duration).
    **kwargs
        Prefixed parameters (``module__``, ``optimizer__``,
        ``iterator_train__``, ``callbacks__``).
    """

    _parameter_constraints = {
        "lr": [Interval(numbers.Real, 0, None, closed="neither")],
        "max_epochs": [Interval(numbers.Integral, 1, None, closed="left")],
        # -1: the whole dataset in one batch (skorch's convention)
        "batch_size": [Interval(numbers.Integral, 1, None, closed="left"),
                       Options(numbers.Integral, {-1})],
        "radius": [Interval(numbers.Real, 0, None, closed="neither")],
        "max_neighbors": [Interval(numbers.Integral, 1, None, closed="left"), None],
        "grow_radius": ["boolean"],
        "neighbor_mode": [StrOptions({"keep_ties", "reference"})],
        "symmetrize": [StrOptions({"union", "both"}), None],
        "descriptors": [HasMethods(["fit", "transform"]), None],
        "descriptor_skip": [StrOptions({"auto"}), "boolean"],
        "descriptor_screen": ["boolean"],
        "descriptor_dropout": [Interval(numbers.Real, 0, 1, closed="left")],
        "structure_column": [str],
        "random_state": [Interval(numbers.Integral, 0, None, closed="left"), None],
        "n_jobs": [numbers.Integral, None],
        "cache_dir": [str, os.PathLike, None],
        "max_memory": [Interval(numbers.Real, 0, None, closed="neither"), str, None],
        "progress": [StrOptions({"auto"}), "boolean"],
        "distributed": ["boolean"],
        "mixed_precision": [StrOptions({"bf16"}), None],
        "verbose": ["verbose"],
        # a class or an instance (skorch's convention), never a name
        "criterion": [callable, None],
        "optimizer": [callable],
        "device": [str, torch.device, None],
    }

    #: per-class defaults of the constructor (model-specific values set by
    #: each model's estimator; merged along the class hierarchy)
    _defaults = {}

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        defaults = {}
        for klass in reversed(cls.__mro__):
            defaults.update(klass.__dict__.get("_defaults", {}))
        cls._all_defaults = defaults
        if "__init__" in cls.__dict__:
            return
        # an explicit signature for help() and the API docs: the base's
        # parameters with this class's defaults, then its prefixed defaults
        base = inspect.signature(CrystalGraphNet.__init__).parameters
        params = [base["self"]]
        for name, p in base.items():
            if name in ("self", "kwargs"):
                continue
            params.append(p.replace(default=defaults.get(name, p.default)))
        params += [inspect.Parameter(k, inspect.Parameter.KEYWORD_ONLY, default=v)
                   for k, v in defaults.items() if k not in base]
        params.append(base["kwargs"])

        def __init__(self, *args, **kw):
            for k, v in cls._all_defaults.items():
                kw.setdefault(k, v)
            CrystalGraphNet.__init__(self, *args, **kw)

        __init__.__signature__ = inspect.Signature(params)
        __init__.__doc__ = f"See :class:`{cls.__name__}`."
        __init__.__qualname__ = f"{cls.__name__}.__init__"
        cls.__init__ = __init__

    def __init__(self, module=None, criterion=None, optimizer=torch.optim.AdamW, lr=1e-3,
                 max_epochs=100, batch_size=DEFAULT_BATCH_SIZE, radius=8.0, max_neighbors=12,
                 grow_radius=False, neighbor_mode="keep_ties", symmetrize=None,
                 descriptors=None, descriptor_skip="auto", descriptor_screen=True,
                 descriptor_dropout=DEFAULT_DESCRIPTOR_DROPOUT, structure_column="structure",
                 random_state=None, n_jobs=None,
                 cache_dir=None, train_split=None, max_memory="4GB", progress="auto",
                 distributed=False, mixed_precision=None, verbose=0, **kwargs):
        super().__init__(module, criterion, optimizer=optimizer, lr=lr,
                         max_epochs=max_epochs, batch_size=batch_size,
                         train_split=train_split, verbose=verbose, **kwargs)
        self.radius = radius
        self.max_neighbors = max_neighbors
        self.grow_radius = grow_radius
        self.neighbor_mode = neighbor_mode
        self.symmetrize = symmetrize
        self.descriptors = descriptors
        self.descriptor_skip = descriptor_skip
        self.descriptor_screen = descriptor_screen
        self.descriptor_dropout = descriptor_dropout
        self.structure_column = structure_column
        self.random_state = random_state
        self.n_jobs = n_jobs
        self.cache_dir = cache_dir
        self.max_memory = max_memory
        self.progress = progress
        self.distributed = distributed
        self.mixed_precision = mixed_precision

    # ------------------------------------------------------------------ params
    def _check_params(self):
        """Check every parameter (the estimator's and ``module__``'s); errors name it."""
        # model constraints (merged into some estimators' own) are records
        # that become scikit-learn's objects here
        validate_parameter_constraints(
            sklearn_constraints(self._parameter_constraints),
            {k: getattr(self, k) for k in self._parameter_constraints},
            caller_name=type(self).__name__)
        if self.module is None:  # else skorch's "'NoneType' object is not callable"
            raise TypeError(f"{type(self).__name__} has no module: use a model's estimator "
                            "(CGCNNRegressor, ALIGNNRegressor, ...) or pass module=<a "
                            "skcrystal.nn.model.CrystalModel class>")
        parse_bytes(self.max_memory, "max_memory")
        check_cache_dir(self.cache_dir)
        _check_device(self.device)
        module_cls = _module_class(self.module)
        if hasattr(module_cls, "validate_params"):
            module_cls.validate_params(self.get_params_for("module"))
        if self.train_split is None:  # else skorch's KeyError after the first epoch
            for i, cb in enumerate(self.callbacks or []):
                obj = cb[1] if isinstance(cb, tuple) else cb
                monitor = getattr(obj, "monitor", None)
                if isinstance(monitor, str) and monitor.startswith("valid"):
                    raise ValueError(
                        f"callbacks[{i}] ({type(obj).__name__}) monitors {monitor!r}, but "
                        "there is no validation split (train_split=None): pass "
                        "train_split=skorch.dataset.ValidSplit(0.1), or monitor a training "
                        "score (e.g. 'train_loss')")
        # before any data is read, not at the first epoch (module__: above)
        check_prefixed_names(self, ("optimizer", "criterion", "iterator_train",
                                    "iterator_valid"))

    # ------------------------------------------------------------------ module
    @property
    def _default_callbacks(self):
        from .callbacks import EpochProgressBar
        return [*super()._default_callbacks, ("lr_schedule", CosineAnnealing()),
                ("progress_bar", EpochProgressBar())]

    def _show_progress(self):
        """Whether to show progress bars (see the ``progress`` parameter)."""
        progress = getattr(self, "progress", "auto")
        if isinstance(progress, str) and progress == "auto":
            import sys
            isatty = getattr(sys.stderr, "isatty", None)
            try:
                return bool(isatty is not None and isatty())
            except ValueError:  # a closed stream
                return False
        return bool(progress)

    def _module_kwargs(self):
        """``module__`` parameters plus those that come from the data."""
        kw = self.get_params_for("module")
        if hasattr(self, "n_outputs_"):
            kw["n_outputs"] = self.n_outputs_
        if getattr(self, "n_descriptors_", 0):
            kw["n_descriptors"] = self.n_descriptors_
        if "cutoff" in getattr(_module_class(self.module), "_parameter_constraints", {}):
            kw.setdefault("cutoff", self.radius)
        return kw

    def initialize(self):
        self.__dict__.pop("_optimizer_deferred_", None)
        return super().initialize()

    def _validate_params(self):
        # skorch's check of the names given, with the estimator named and the
        # nearest valid name suggested; skorch's then (its other checks)
        check_parameter_names(self, getattr(self, "_params_to_validate", ()),
                              routed_prefixes(self))
        super()._validate_params()

    def initialize_for_inference(self):
        """Initialize like :meth:`initialize`, creating the optimizer on first use.

        For a model loaded only to predict (a pre-trained checkpoint):
        building a torch optimizer imports ``torch._dynamo`` (about a second
        of start-up). ``optimizer_`` appears, built as :meth:`initialize`
        builds it, the first time anything reads it (training, saving the
        optimizer state).

        Returns
        -------
        self
        """
        self.check_training_readiness()
        self._initialize_virtual_params()
        self._initialize_callbacks()
        self._initialize_module()
        self._initialize_criterion()
        self._initialize_history()
        # skorch validates the parameter names once the optimizer has taken
        # its own: done then (in __getattr__)
        self.__dict__["_optimizer_deferred_"] = True
        self.initialized_ = True
        return self

    def initialize_optimizer(self, *args, **kwargs):
        if self.__dict__.pop("_optimizer_deferred_", False):
            # first build: through skorch's context, which registers it
            self._initialize_optimizer()
            self._validate_params()
            return self
        return super().initialize_optimizer(*args, **kwargs)

    def __getattr__(self, name):
        # only called when normal lookup fails: the deferred optimizer
        if name == "optimizer_" and self.__dict__.pop("_optimizer_deferred_", False):
            self._initialize_optimizer()
            self._validate_params()
            return self.__dict__["optimizer_"]
        raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")

    def get_params_for_optimizer(self, prefix, named_parameters):
        named = list(named_parameters)
        args, kwargs = super().get_params_for_optimizer(prefix, named)
        # every parameter, frozen ones too: torch's fused check covers them all
        params = [p for _, p in named]
        return args, _fused_optimizer(getattr(self, prefix, None), params, kwargs)

    def initialize_module(self):
        try:
            self.module_ = self.initialized_instance(self.module, self._module_kwargs())
        except TypeError as exc:
            name = _module_class(self.module).__name__
            raise TypeError(f"invalid module__ parameter for {name}: {exc}") from exc
        self._init_descriptor_skip()
        return self

    def _init_descriptor_skip(self):
        """Start each head's descriptor skip path at the ridge fit, or turn it off.

        A descriptor that carries the answer is then used from the first
        epoch and the network learns the residual. From a zero start,
        gradient descent reaches the linear answer only slowly, while the MLP
        memorises the training set through the graph features; where the
        descriptors do not carry the answer linearly, a linear path beside
        the MLP costs accuracy (``benchmarks/RESULTS.md``, descriptor skip
        path), so it is turned off: weights zero and frozen.
        """
        start = self.__dict__.pop("_skip_start", None)
        use = getattr(self, "descriptor_skip_", True)
        if start is None and use:
            return
        readout = getattr(self.module_, "readout_modules", lambda: [])()
        for head in readout:
            skip = getattr(head, "skip", None)
            if not isinstance(skip, torch.nn.Linear):
                continue
            with torch.no_grad():
                if not use:
                    skip.weight.zero_()
                    skip.weight.requires_grad_(False)
                elif tuple(skip.weight.shape) == start.shape:
                    skip.weight.copy_(torch.as_tensor(start, dtype=skip.weight.dtype))

    def _graph_module(self):
        """The module whose graph needs apply: the fitted one, else a throwaway one."""
        if self.initialized_ and getattr(self, "module_", None) is not None:
            return self.module_
        with torch.random.fork_rng(devices=[]):  # leave the caller's RNG alone
            return self.initialized_instance(self.module, self._module_kwargs())

    @property
    def descriptor_names_(self):
        """Descriptor column names in the fitted order (list of str)."""
        scaler = getattr(self, "descriptor_scaler_", None)
        return [] if scaler is None else list(scaler.names_)

    @property
    def graph_extras(self):
        """Graph extras the module reads (tuple of GraphExtra)."""
        return tuple(getattr(self._graph_module(), "graph_extras", ()))

    # ------------------------------------------------------------------ data
    def _builder(self):
        return GraphBuilder(**self._graph_params())

    def _graph_params(self):
        """The graph parameters, as :class:`GraphBuilder` takes them."""
        return {name: getattr(self, name) for name in _GRAPH_PARAMS}

    def _check_graph_params(self):
        """Refuse to predict from graphs built otherwise than the training's.

        The weights were trained on graphs of the ``radius``,
        ``max_neighbors``... of the last ``fit`` / ``partial_fit``
        (``graph_params_``); changed afterwards with ``set_params`` and no
        training, predictions from other graphs would be silently wrong (a
        CGCNN trained on 12 neighbours gave 1.7 instead of 5.4 eV on 4).
        """
        fitted = getattr(self, "graph_params_", None)
        if fitted is None:  # a model loaded from weights alone: nothing noted
            return
        now = self._graph_params()
        changed = [f"{k}={fitted[k]!r} -> {now[k]!r}" for k in fitted if now.get(k) != fitted[k]]
        if changed:
            raise ValueError(f"the graph parameters changed since fit ({', '.join(changed)}): "
                             "the model was trained on the fit's graphs; set them back or "
                             "fit again")

    def _inputs(self, X, module):
        """(checked structures, descriptor block, its names) of the user's ``X``."""
        structures, block, names = split_input(X, self.structure_column)
        supported = getattr(module, "supported_elements", None)
        return check_structures(structures, supported_elements=supported), block, names

    def _graphs(self, structures, module):
        graphs = get_graphs(structures, self._builder(), n_jobs=self.n_jobs,
                            cache_dir=self.cache_dir, indices=range(len(structures)),
                            progress=self._show_progress())
        return attach_extras(graphs, getattr(module, "graph_extras", ()),
                             labels=lambda i: _item("X", i, structures[i]))

    def _check_training_memory(self, graphs, structures, module):
        """Refuse a structure whose training memory estimate exceeds ``max_memory``."""
        limit = parse_bytes(self.max_memory, "max_memory")
        if limit is None or not hasattr(module, "training_memory"):
            return
        estimates = []
        for i, g in enumerate(graphs):
            need = module.training_memory(g)
            if need is None:
                return
            estimates.append(need)
            if need > limit:
                pairs = module.n_angle_pairs(g)
                angles = f", {pairs} angle pairs" if pairs else ""
                raise ValueError(
                    f"X[{i}] ({structures[i].composition.reduced_formula}) needs about "
                    f"{_fmt_bytes(need)} to train {type(module).__name__} ({g.n_atoms} "
                    f"atoms, {g.n_edges} edges{angles}), more than max_memory="
                    f"{self.max_memory!r}: raise max_memory (None disables the check), "
                    "lower max_neighbors or radius, or leave this structure out")
        batch = len(estimates) if self.batch_size == -1 else min(self.batch_size,
                                                                  len(estimates))
        worst = sum(sorted(estimates, reverse=True)[:batch])
        if worst > limit:
            logger.warning(
                "the %d largest structures together need about %s of training memory in "
                "one batch, more than max_memory=%r: lower batch_size if training runs "
                "out of memory", batch, _fmt_bytes(worst), self.max_memory)

    def prepare(self, X, training=False):
        """Validate structures and build (or fetch) their graphs in the cache.

        Calling this before ``fit``/``predict`` is optional (both do it); it
        lets a caller build the graphs of a large dataset up front, e.g.
        in chunks with a progress display, with this estimator's graph
        parameters and the module's graph extras.

        Parameters
        ----------
        X : sequence of Structure, or DataFrame
        training : bool, default False
            Also check each structure's training memory estimate against
            ``max_memory`` (as ``fit`` does).

        Returns
        -------
        list of CrystalGraph
        """
        if _lazy.is_lazy(X):
            return _lazy.prepare(self, X)
        module = self._graph_module()
        structures = self._inputs(X, module)[0]
        graphs = self._graphs(structures, module)
        if training:
            self._check_training_memory(graphs, structures, module)
        return graphs

    def _descriptor_matrix(self, structures, block, names, fit):
        """Standardized descriptors (float32, (n, k)) or None; fits when ``fit``."""
        if not fit and not getattr(self, "descriptors_used_", True):
            return None  # set aside by the descriptor screen
        parts, cols = [], []
        if self.descriptors is not None:
            if fit:
                self.descriptors_ = clone(self.descriptors)
            values, value_names = descriptor_values(self.descriptors_, structures, fit)
            parts.append(values)
            cols += value_names
        if block is not None:
            parts.append(block)
            cols += names
        if fit:
            self.n_descriptors_ = 0
            self.descriptor_scaler_ = None
        if not parts:
            if not fit and getattr(self, "descriptor_scaler_", None) is not None:
                self.descriptor_scaler_.transform(np.zeros((0, 0)), cols)  # names the mismatch
            return None
        D = np.hstack(parts)
        if fit:
            self.descriptor_scaler_ = DescriptorScaler().fit(D, cols)
            self.n_descriptors_ = D.shape[1]
        elif getattr(self, "descriptor_scaler_", None) is None:
            raise ValueError(f"X has descriptor columns {cols} but the model was "
                             "fitted without descriptors")
        return self.descriptor_scaler_.transform(D, cols)

    def _fit_data_state(self, X, y):
        """Fit what the module's construction needs: target and descriptor scaling."""
        _reset_dropout(self)
        self.graph_params_ = self._graph_params()
        if is_dataset(X) or _lazy.is_lazy(X):  # streamed, batch by batch
            return _lazy.fit_data_state(self, X, y)
        self._check_params()
        structures, block, names = self._inputs(X, self._graph_module())
        y = self._check_y(y)
        check_consistent_length(len(structures), len(y))
        self._fit_targets(y)
        D = self._descriptor_matrix(structures, block, names, fit=True)
        D = self._set_descriptor_use(D, y)
        # get_dataset of this fit reuses the checked structures and descriptors
        self._fit_memo_ = (X, structures, D)

    def _set_descriptor_use(self, D, y):
        """Screen the descriptors and decide the skip path; the descriptors to train on.

        Returns ``D``, or None when the screen (``descriptor_screen``) sets
        them aside: the fit is then the plain model's.
        """
        self.descriptors_used_, self.descriptor_screen_ = D is not None, None
        if D is None:
            self.descriptor_skip_, self.descriptor_ridge_r2_ = False, None
            return None
        if self.descriptor_screen:
            self.descriptor_screen_ = self._screen_descriptors(D, y)
        if self.descriptor_screen_ is not None and not self.descriptor_screen_["signal"]:
            sc, k = self.descriptor_screen_, D.shape[1]
            forest = "" if sc["forest_r2"] is None else \
                f", random forest out-of-bag R2 {sc['forest_r2']:.3f}"
            warnings.warn(
                f"the descriptors ({k} column{'s' if k > 1 else ''}) do not predict the "
                f"targets on held-out rows (ridge leave-one-out R2 {sc['ridge_r2']:.3f}"
                f"{forest}, no better than for shuffled targets): fitting the plain model "
                "without them. descriptor_screen=False keeps them.", UserWarning,
                stacklevel=4)
            # descriptor_scaler_ stays: the columns' names and scaling, for
            # inspection; the module is built without them
            self.descriptors_used_, self.n_descriptors_ = False, 0
            self.descriptor_skip_, self.descriptor_ridge_r2_ = False, None
            return None
        start, r2 = self._ridge_start(D, y)
        mode = self.descriptor_skip
        if isinstance(mode, str):  # "auto"
            use = r2 is not None and r2 >= _SKIP_MIN_R2
        else:
            use = bool(mode)
        self.descriptor_skip_, self.descriptor_ridge_r2_ = use, r2
        self._skip_start = start if use else None
        return D

    def _screen_descriptors(self, D, y):
        """The descriptor screen's statistics (dict), or None where it does not apply."""
        return None

    def _ridge_start(self, D, y):
        """(skip-path start of shape (n_outputs, n_descriptors) or None, LOO R2 or None).

        Regressors return the ridge weights of the scaled targets on the
        scaled descriptors and the fit's leave-one-out R2; classifiers
        ``(None, None)`` (a zero start).
        """
        return None, None

    def get_dataset(self, X, y=None):
        """Structures (+ targets) -> :class:`GraphDataset` (skorch hook)."""
        if _lazy.is_lazy(X):
            return _lazy.get_dataset(self, X, y)
        if is_dataset(X):
            return X
        memo = self.__dict__.pop("_fit_memo_", None)
        if memo is not None and memo[0] is X:
            structures, D = memo[1], memo[2]
            module = self._graph_module()
        else:
            self.check_is_fitted()
            if y is None:  # prediction: on the graphs of the training only
                self._check_graph_params()
            else:  # training goes on (partial_fit, a fine-tuning) on these graphs
                self.graph_params_ = self._graph_params()
            module = self._graph_module()
            structures, block, names = self._inputs(X, module)
            D = self._descriptor_matrix(structures, block, names, fit=False)
        y_enc = None
        if y is not None:
            y = self._check_y(y)
            check_consistent_length(len(structures), len(y))
            y_enc = self._encode_targets(y)
        graphs = self._graphs(structures, module)
        if memo is not None and y is not None:  # training: before the first epoch
            self._check_training_memory(graphs, structures, module)
        self._trained_elements(graphs, structures, module, training=y is not None,
                               fresh=memo is not None)
        return GraphDataset(graphs, D, y_enc)

    def _trained_elements(self, graphs, structures, module, training, fresh):
        """Note the elements a learnable atom embedding trains on (``trained_elements_``);
        warn at prediction for structures with others (see
        :func:`skcrystal.inference.trained_elements`).

        ``fresh``: a new fit (or the first ``partial_fit``) starts the note
        afresh; later ``partial_fit`` calls and warm starts add to it.
        """
        if training:
            before = None if fresh else getattr(self, "trained_elements_", None)
            trained = trained_elements(module, graphs, before)
            if trained is not None:
                self.trained_elements_ = trained
            return
        warn_untrained_elements(
            module, getattr(self, "trained_elements_", None), graphs,
            lambda i: f"X[{i}] ({structures[i].composition.reduced_formula})", stacklevel=5)

    def get_iterator(self, dataset, training=False):
        prefix = "iterator_train" if training else "iterator_valid"
        kwargs = self.get_params_for(prefix)
        kwargs.setdefault("collate_fn", partial(collate_samples, extras=self.graph_extras))
        if training:
            kwargs.setdefault("shuffle", True)
        kwargs.setdefault("batch_size", self.batch_size)
        if kwargs["batch_size"] == -1:
            kwargs["batch_size"] = len(dataset)
        if training:
            kwargs = _distributed.iterator_kwargs(self, dataset, kwargs)
        iterator = self.iterator_train if training else self.iterator_valid
        loader = iterator(dataset, **kwargs)
        desc = getattr(self, "_progress_desc_", None)
        if not training and desc and self._show_progress() and len(loader) > 1:
            from tqdm.auto import tqdm
            return tqdm(loader, desc=desc, unit="batch", leave=False)
        return loader

    def infer(self, x, **fit_params):
        method = getattr(self, "_infer_method_", None)
        fn = _distributed.forward_module(self) if method is None else \
            getattr(self.module_, method)
        x = x.to(self.device, non_blocking=True)
        if (self.descriptor_dropout and getattr(x, "descriptors", None) is not None
                and self.module_.training and not getattr(self, "descriptor_skip_", False)):
            x.descriptors = self._drop_descriptors(x.descriptors)
        with _distributed.autocast(self):
            out = fn(x, **fit_params)
        if self.mixed_precision and isinstance(out, torch.Tensor):
            out = out.float()
        if isinstance(out, torch.Tensor) and not bool(torch.isfinite(out).all()):
            what = "representation" if method == "embed" else "output"
            rows = None
            if out.ndim >= 1 and out.shape[0] == getattr(x, "n_graphs", -1):
                rows = np.flatnonzero(~torch.isfinite(out.detach()).reshape(
                    out.shape[0], -1).all(dim=1).cpu().numpy()).tolist()
            raise NonFiniteError(
                f"non-finite (NaN or inf) model {what}{self._where()} for "
                f"{_batch_structures(x, rows)}; check these structures (e.g. atoms "
                "that overlap) or lower lr if the weights diverged")
        return out

    def _drop_descriptors(self, d):
        """``d`` with each crystal's row zeroed with probability ``descriptor_dropout``.

        ``x.to`` above made a new batch, so the caller's keeps its values.
        The generator is reseeded at each epoch from the fit's seed and the
        epoch number, so an epoch's draws do not depend on how many batches
        came before (a warm-started or resumed fit included).
        """
        epoch = len(self.history)
        if getattr(self, "_dropout_epoch", None) != epoch:
            if "_dropout_seed" not in self.__dict__:  # once per fit
                self._dropout_seed = _dropout_seed(self.random_state)
            seed = self._dropout_seed
            self._dropout_rng = torch.Generator().manual_seed(seed * 100_003 + epoch)
            self._dropout_epoch = epoch
        keep = torch.rand(d.shape[0], 1, generator=self._dropout_rng) >= self.descriptor_dropout
        return d * keep.to(device=d.device, dtype=d.dtype)

    def _where(self):
        """" at epoch E, training batch B" while fitting, "" otherwise."""
        phase = getattr(self, "_phase_", None)
        if phase is None or not len(self.history):
            return ""
        row = self.history[-1]
        batch = len(row.get("batches", ()))
        if phase == "valid":
            batch -= int(row.get("train_batch_count", 0))
        name = "training" if phase == "train" else "validation" if phase == "valid" else phase
        return f" at epoch {row.get('epoch', len(self.history))}, {name} batch {batch}"

    def run_single_epoch(self, iterator, training, prefix, step_fn, **fit_params):
        self._phase_ = prefix
        try:
            return super().run_single_epoch(iterator, training, prefix, step_fn, **fit_params)
        finally:
            self.__dict__.pop("_phase_", None)

    def _set_training(self, training=True):
        """skorch's ``_set_training``, skipped when nothing would change.

        skorch sets the mode before every training batch, walking the module
        tree with a ``train()`` call per layer; between batches of an epoch
        every module is already in that mode.
        """
        modules = [getattr(self, name + "_", None) for name in self._modules + self._criteria]
        if all(m.training == training for module in modules
               if isinstance(module, torch.nn.Module) for m in module.modules()):
            return
        super()._set_training(training)

    def train_step_single(self, batch, **fit_params):
        step = super().train_step_single(batch, **fit_params)
        grads = [p.grad.detach() for p in self.module_.parameters() if p.grad is not None]
        if grads and not _all_finite(grads):
            raise NonFiniteError(
                f"non-finite (NaN or inf) gradient{self._where()}; the batch holds "
                f"{_batch_structures(batch[0])}; lower lr, or check these structures")
        return step

    @contextlib.contextmanager
    def _infer_with(self, method):
        """Make skorch's inference path call ``module_.<method>`` instead of forward."""
        self._infer_method_ = method
        try:
            yield
        finally:
            del self._infer_method_

    def get_loss(self, y_pred, y_true, X=None, training=False):
        loss = self.criterion_(y_pred, y_true.to(y_pred.device, non_blocking=True))
        if loss.ndim == 0 and not bool(torch.isfinite(loss)):
            held = (f"; the batch holds {_batch_structures(X)}"
                    if hasattr(X, "node_graph") else "")
            raise NonFiniteError(f"non-finite loss ({float(loss.detach())}){self._where()}{held}")
        return loss

    # ------------------------------------------------------------------ fit
    def _check_y(self, y):  # pragma: no cover - abstract
        raise NotImplementedError

    def _fit_targets(self, y):  # pragma: no cover - abstract
        raise NotImplementedError

    def _encode_targets(self, y):  # pragma: no cover - abstract
        raise NotImplementedError

    def fit(self, X, y=None, **fit_params):
        """Train on structures ``X`` and targets ``y`` (skorch's ``fit``).

        Parameters
        ----------
        X : sequence of Structure, or DataFrame
            See the class docstring.
        y : array-like, shape (n,) or (n, n_targets)

        Notes
        -----
        On glibc, freed memory is kept for reuse while the fit runs (each
        step would otherwise fault in its activations' pages afresh) and
        handed back when it ends; ``partial_fit`` keeps it for its next
        call. ``predict`` and ``transform`` keep it too, and leave it kept
        when they end (the next call reuses it).
        ``SKCRYSTAL_HEAP_ALLOCATION=0`` turns this off; see
        ``skcrystal._malloc``.

        Ctrl-C stops training and raises ``KeyboardInterrupt`` once the
        callbacks' ``on_train_end`` has run (a checkpoint is complete); the
        estimator keeps the weights it had. skorch itself ends ``fit``
        quietly on a Ctrl-C, which inside ``cross_val_score`` or a grid
        search would score a partly trained model and go on to the next
        fit. A callback that stops training by raising
        ``KeyboardInterrupt`` (skorch's ``EarlyStopping``) still ends
        ``fit`` quietly.
        """
        self._check_fit_params(fit_params, "fit")
        if not (self.warm_start and self.initialized_):
            self._fit_data_state(X, y)
        self.__dict__.pop("_rng_state_", None)  # fit starts from random_state
        with noting_interrupts() as interrupted, _seeded(self.random_state), \
                _distributed.training_context(self), heap_allocation():
            self._seeding_ = True
            try:
                super().fit(X, y, **fit_params)
            finally:
                self.__dict__.pop("_seeding_", None)
                self.__dict__.pop("_fit_memo_", None)
                # a generator loaded with a best checkpoint at the end of training
                self.__dict__.pop("_rng_state_", None)
        self._after_training(interrupted)
        return self

    def _check_fit_params(self, fit_params, method):
        """Refuse fit parameters the module's ``forward`` does not take.

        skorch hands ``fit(X, y, **fit_params)`` to the module's forward
        pass; the skcrystal models take the batch only, so ``sample_weight``
        would fail inside torch after the graphs are built.
        """
        import inspect
        # skorch's own keywords: fit_loop's (epochs=, the _routing_method its fit
        # hands partial_fit)
        own = inspect.signature(self.fit_loop).parameters
        fit_params = {k: v for k, v in fit_params.items() if k not in own}
        if not fit_params:
            return
        forward = getattr(_module_class(self.module), "forward", None)
        try:
            params = inspect.signature(forward).parameters.values()
        except (TypeError, ValueError):
            return
        if any(p.kind is p.VAR_KEYWORD for p in params):
            return
        unknown = sorted(set(fit_params) - {p.name for p in params})
        if unknown:
            raise TypeError(
                f"{type(self).__name__}.{method} got {', '.join(unknown)}: skorch passes fit "
                f"parameters to the module's forward, and "
                f"{_module_class(self.module).__name__}.forward takes none of them (sample "
                "weights are not supported)")

    def partial_fit(self, X, y=None, classes=None, **fit_params):
        self._check_fit_params(fit_params, "partial_fit")
        if not (self.initialized_ and hasattr(self, "n_outputs_")):
            self._fit_data_state(X, y)
            self.initialize()
        if getattr(self, "_seeding_", False):
            return super().partial_fit(X, y, classes=classes, **fit_params)
        with noting_interrupts() as interrupted, _seeded(self.random_state), \
                _distributed.training_context(self), heap_allocation(release=False):
            # a loaded checkpoint's generator: training goes on with the
            # shuffles and dropout masks the interrupted fit would have drawn
            rng = self.__dict__.pop("_rng_state_", None)
            if rng is not None:
                torch.set_rng_state(rng)
            try:
                super().partial_fit(X, y, classes=classes, **fit_params)
            finally:
                self.__dict__.pop("_fit_memo_", None)
                self.__dict__.pop("_rng_state_", None)
        self._after_training(interrupted)
        return self

    def _after_training(self, interrupted):
        """Once ``fit`` / ``partial_fit`` has wrapped up: raise a Ctrl-C that
        skorch took as a stop, else warn about stale batch-norm statistics.

        skorch ends training quietly on ``KeyboardInterrupt`` (its
        ``EarlyStopping`` stops that way, and still does); a Ctrl-C from
        the user (SIGINT) is raised again, so ``cross_val_score``, a grid
        search or a script stops instead of scoring a partly trained model
        and going on.

        After a fit of few steps (a small data set, few epochs) the running
        statistics (an average with momentum 0.1 from mean 0, variance 1)
        describe no trained weights, and predictions in eval mode can be
        far off (measured: a held-out MAE 15x the mean predictor's after
        one batch). Recomputing them is not done silently: a checkpoint of
        the last epoch would then predict otherwise than the estimator.
        """
        from .callbacks import stale_batch_norms

        if interrupted:
            raise KeyboardInterrupt(
                f"{type(self).__name__} training interrupted (Ctrl-C) in epoch "
                f"{len(self.history)} of {self.max_epochs}; the estimator keeps the "
                "weights it had then")
        stale = stale_batch_norms(self.module_)
        if stale:
            seen = min(int(m.num_batches_tracked) for m in stale)
            warnings.warn(
                f"{type(self).__name__}: {len(stale)} batch norm(s) have seen only {seen} "
                "training batch(es), so their running statistics are still mostly their "
                "initial values and predictions (eval mode) do not reflect the trained "
                "weights; train for more steps (more epochs, a smaller batch_size) or "
                "add callbacks=[('recompute_bn', RecomputeBatchNorm())]",
                UserWarning, stacklevel=3)

    def resume(self, X, y, checkpoint):
        """Continue an interrupted ``fit`` from a checkpoint to ``max_epochs`` in all.

        Loads the weights, the optimizer state, the history and the fitted
        data state saved by ``checkpoint`` (a
        :class:`~skcrystal.estimators.Checkpoint`, or skorch's
        with ``f_state``), then trains the epochs that remain, with the
        learning-rate schedule where it stopped. When the checkpoint saved
        torch's random number generator too (``Checkpoint``'s ``f_rng``,
        by default), the remaining epochs draw the shuffles and dropout
        masks the uninterrupted fit would have drawn: with an integer
        ``random_state``, the resumed model equals the uninterrupted one
        on the CPU. Without it, they are drawn afresh from ``random_state``.

        Parameters
        ----------
        X, y
            The training data of the interrupted fit.
        checkpoint : Checkpoint
            Saved every epoch (``monitor=None``) by the interrupted fit.

        Returns
        -------
        self
        """
        self._check_params()
        self.load_params(checkpoint=checkpoint)
        done = len(self.history)
        if done >= self.max_epochs:
            return self
        # scores' best-so-far (valid_loss_best, a Checkpoint's trigger) continue
        for _, cb in self.callbacks_:
            name = getattr(cb, "name", None)
            if hasattr(cb, "best_score_") and isinstance(name, str):
                past = [row[name] for row in self.history if row.get(name) is not None]
                if past:
                    cb.best_score_ = min(past) if cb.lower_is_better else max(past)
        self._schedule_offset_ = done
        try:
            return self.partial_fit(X, y, epochs=self.max_epochs - done)
        finally:
            self.__dict__.pop("_schedule_offset_", None)

    def set_params(self, **params):
        """skorch's ``set_params``; a changed ``module__`` parameter unfits the model.

        skorch rebuilds the module with fresh weights when a ``module__``
        parameter changes; the estimator then reports itself unfitted
        instead of predicting with random weights. New ``callbacks`` (or
        ``callbacks__<name>``) of a fitted estimator take effect at once
        (skorch kept the old ones until the next ``fit``, and a callback set
        to None broke ``partial_fit``). ``descriptors__<name>`` sets a
        parameter of the ``descriptors`` transformer, as scikit-learn does
        for nested estimators (skorch would store it on the estimator and
        reject it at ``fit``).
        """
        nested = {}
        routed, own = routed_prefixes(self), constructor_parameters(type(self))
        for key in [k for k in params if "__" in k]:
            head, _, rest = key.partition("__")
            if head not in routed and head in own:
                nested.setdefault(head, {})[rest] = params.pop(key)
        # a misspelt name: named with the one meant (scikit-learn's message prints the
        # whole module; skorch keeps an unknown prefixed name until a fresh fit)
        check_parameter_names(self, params, routed)
        rebuilt = self.initialized_ and any(k.startswith("module__") for k in params)
        super().set_params(**params)
        for head, sub in nested.items():  # after their owners, as scikit-learn does
            owner = getattr(self, head)
            if not hasattr(owner, "set_params"):
                raise ValueError(f"{head}__{next(iter(sub))}: {head}={owner!r} has no "
                                 "parameters to set")
            owner.set_params(**sub)
        if rebuilt:
            for name in ("n_outputs_", "target_scaler_", "label_encoder_", "classes_",
                         "trained_elements_"):
                self.__dict__.pop(name, None)
        if self.initialized_ and any(k == "callbacks" or k.startswith("callbacks__")
                                     for k in params):
            self.initialize_callbacks()
        return self

    # ------------------------------------------------------------------ save/load
    def _data_state(self):
        state = {"format": "skcrystal-estimator-state", "version": STATE_FORMAT_VERSION,
                 "class": type(self).__name__, "n_outputs_": int(self.n_outputs_),
                 "n_descriptors_": int(getattr(self, "n_descriptors_", 0))}
        for name in ("target_scaler_", "label_encoder_", "descriptor_scaler_"):
            obj = getattr(self, name, None)
            if obj is not None:
                state[name] = obj.get_state()
        if hasattr(self, "descriptor_skip_"):
            # a loaded or resumed model keeps the fit's choice (a skip path
            # turned off stays frozen when training goes on)
            state["descriptor_skip_"] = bool(self.descriptor_skip_)
            state["descriptor_ridge_r2_"] = self.descriptor_ridge_r2_
        if not getattr(self, "descriptors_used_", True):
            state["descriptors_used_"] = False  # predict computes no descriptors
        if getattr(self, "trained_elements_", None) is not None:
            state["trained_elements_"] = list(self.trained_elements_)
        if getattr(self, "graph_params_", None) is not None:
            state["graph_params_"] = {k: v.item() if isinstance(v, np.generic) else v
                                      for k, v in self.graph_params_.items()}  # JSON
        return state

    def _set_data_state(self, state, source):
        if not isinstance(state, dict) or state.get("format") != "skcrystal-estimator-state":
            raise ValueError(f"{source} is not a skcrystal estimator state file")
        if state.get("version", 0) > STATE_FORMAT_VERSION:
            raise ValueError(
                f"{source} was written in state format {state.get('version')}; this "
                f"skcrystal reads up to {STATE_FORMAT_VERSION}: upgrade skcrystal")
        self.n_outputs_ = int(state["n_outputs_"])
        self.n_descriptors_ = int(state.get("n_descriptors_", 0))
        for name, cls in (("target_scaler_", TargetScaler), ("label_encoder_", LabelEncoder),
                          ("descriptor_scaler_", DescriptorScaler)):
            setattr(self, name, cls.from_state(state[name]) if name in state else None)
        if self.label_encoder_ is not None:
            self.classes_ = self.label_encoder_.classes_
        if "descriptor_skip_" in state:
            self.descriptor_skip_ = bool(state["descriptor_skip_"])
            self.descriptor_ridge_r2_ = state.get("descriptor_ridge_r2_")
        self.descriptors_used_ = bool(state.get("descriptors_used_", True))
        for name in ("trained_elements_", "graph_params_"):  # not this state's
            self.__dict__.pop(name, None)
        if "graph_params_" in state:
            self.graph_params_ = dict(state["graph_params_"])
        if "trained_elements_" in state:
            self.trained_elements_ = tuple(int(z) for z in state["trained_elements_"])

    def save_params(self, f_params=None, f_optimizer=None, f_criterion=None,
                    f_history=None, f_state=None, f_rng=None, **kwargs):
        """skorch's ``save_params`` plus ``f_state`` and ``f_rng``.

        ``f_params`` alone holds the weights; a prediction in original units
        also needs the target scaling (or ``classes_``) and descriptor
        scaling, which ``f_state`` saves as JSON (no pickle: loading it runs
        no code). A fitted ``descriptors`` transformer is not plain data:
        pickle the whole estimator to keep it. ``f_rng`` saves torch's
        random number generator (JSON), which training goes on from after
        :meth:`load_params` (see :meth:`resume`).
        """
        if f_rng is not None:
            _write_text(f_rng, json.dumps(_rng_state()))
        if f_state is not None:
            self.check_is_fitted()
            if getattr(self, "descriptors_", None) is not None:
                raise ValueError(
                    "f_state cannot hold the fitted descriptors transformer "
                    f"{type(self.descriptors_).__name__}; pickle the estimator "
                    "instead, or pass the descriptors as DataFrame columns")
            _write_text(f_state, json.dumps(self._data_state()))
        if (f_rng is not None or f_state is not None) and not _any_file(
                f_params, f_optimizer, f_criterion, f_history, kwargs):
            return None  # the state or generator alone: nothing for skorch to save
        return super().save_params(f_params=f_params, f_optimizer=f_optimizer,
                                   f_criterion=f_criterion, f_history=f_history, **kwargs)

    def load_params(self, f_params=None, f_optimizer=None, f_criterion=None,
                    f_history=None, checkpoint=None, f_state=None, f_rng=None, **kwargs):
        """skorch's ``load_params`` plus ``f_state`` and ``f_rng`` (see :meth:`save_params`).

        With ``f_state`` the estimator is initialised with the saved output
        and descriptor sizes first, so a fresh, unfitted estimator with the
        same parameters can load a saved model. Weights saved on a GPU load
        on the CPU when ``device="cpu"`` (skorch maps the tensors). The
        generator state of ``f_rng`` is set when the next ``partial_fit``
        (or :meth:`resume`) starts training; ``fit`` starts from
        ``random_state`` instead.
        """
        if f_rng is not None:
            self._rng_state_ = _read_rng_state(f_rng)
        if checkpoint is not None and (getattr(checkpoint, "f_state", None) is not None
                                       or getattr(checkpoint, "f_rng", None) is not None):
            return self._load_checkpoint(checkpoint, f_params, f_optimizer, f_criterion,
                                         f_history, f_state, **kwargs)
        if f_state is not None:
            state, source = _read_json(f_state, "skcrystal estimator state file")
            sizes = (getattr(self, "n_outputs_", None), getattr(self, "n_descriptors_", 0))
            self._set_data_state(state, source)
            # a fitted estimator of the same shape keeps its module, callbacks
            # and history (Checkpoint(load_best=True) loads at the end of fit)
            if not self.initialized_ or sizes != (self.n_outputs_, self.n_descriptors_):
                self.initialize()
        if (f_rng is not None or f_state is not None) and checkpoint is None and \
                not _any_file(f_params, f_optimizer, f_criterion, f_history, kwargs):
            return None  # the state or generator alone: nothing for skorch to load
        source = next((getattr(f, "name", f) for f in (f_params, f_optimizer, f_criterion)
                       if f is not None), "the saved files")
        return self._skorch_load(source, f_params=f_params, f_optimizer=f_optimizer,
                                 f_criterion=f_criterion, f_history=f_history,
                                 checkpoint=checkpoint, **kwargs)

    def _skorch_load(self, source, **kwargs):
        """skorch's ``load_params``; weights or an optimizer state that do not fit
        this model are a ValueError naming ``source``, not torch's error."""
        try:
            return super().load_params(**kwargs)
        except (RuntimeError, ValueError, KeyError) as exc:
            lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()]
            shape = next((ln for ln in lines if any(
                m in ln for m in ("size mismatch", "Missing key", "Unexpected key",
                                  "parameter group"))), None)
            detail = (shape or (lines[0] if lines else repr(exc))).rstrip(".")
            why = ("the saved model was built with another model or other module__ "
                   "parameters" if shape else "is the file damaged, or not written by "
                   "save_params?")
            module = type(self.module_).__name__ if hasattr(self, "module_") else "module"
            raise ValueError(f"{source}: cannot load into this {type(self).__name__} "
                             f"({module}): {detail}; {why}") from None

    def _load_checkpoint(self, checkpoint, f_params, f_optimizer, f_criterion, f_history,
                         f_state, **kwargs):
        """``load_params(checkpoint=cp)`` when ``cp`` saves the data state too."""
        import copy

        from skorch.history import History

        # the file names may be formatted with the history (skorch's
        # {last_epoch[...]} fields): read it first, as skorch does
        if f_history is None and checkpoint.f_history is not None:
            if not os.path.exists(checkpoint.f_history_):
                raise FileNotFoundError(
                    f"no checkpoint in {checkpoint.dirname or os.getcwd()}: "
                    f"{checkpoint.f_history_} not found")
            self.history = History.from_file(checkpoint.f_history_)
        if f_state is None and getattr(checkpoint, "f_state", None) is not None:
            f_state = checkpoint._format_target(self, checkpoint.f_state, -1)
        if isinstance(f_state, str) and not os.path.exists(f_state):
            raise FileNotFoundError(f"checkpoint state file {f_state} not found: was the "
                                    "checkpoint written by a fitted skcrystal estimator?")
        f_rng = checkpoint._format_target(self, getattr(checkpoint, "f_rng", None), -1)
        rest = copy.copy(checkpoint)
        for name in ("f_state", "f_rng"):
            rest.__dict__.pop(name, None)
        if f_state is not None:
            self.load_params(f_state=f_state)
        # a checkpoint written before the generator was saved resumes without it
        if isinstance(f_rng, str) and os.path.exists(f_rng):
            self.load_params(f_rng=f_rng)
        return self._skorch_load(checkpoint.dirname or os.getcwd(), f_params=f_params,
                                 f_optimizer=f_optimizer, f_criterion=f_criterion,
                                 f_history=f_history, checkpoint=rest, **kwargs)

    # ------------------------------------------------------------------ inference
    def __sklearn_is_fitted__(self):
        return bool(self.initialized_ and hasattr(self, "n_outputs_"))

    def check_is_fitted(self, attributes=None, *args, **kwargs):
        if not self.__sklearn_is_fitted__():
            raise NotFittedError(
                f"this {type(self).__name__} is not fitted yet; call fit(X, y) first")

    def _outputs(self, X, method=None):
        """Module outputs (``module_.<method>`` or forward) on ``X``, float64 numpy."""
        self.check_is_fitted()
        self._progress_desc_ = "predicting" if method is None else "transforming"
        try:
            # freed memory kept for reuse (skcrystal._malloc): a fresh process
            # with a saved ALIGNN otherwise faults its bond-pair tensors in
            # afresh at every batch; kept at the end for the next call
            with self._infer_with(method), heap_allocation(release=False):
                out = self.forward(X, training=False)
        finally:
            self.__dict__.pop("_progress_desc_", None)
        return out.numpy().astype(np.float64)

    def transform(self, X):
        """Pooled crystal representations (before descriptors and the head).

        Parameters
        ----------
        X : sequence of Structure

        Returns
        -------
        ndarray, shape (n_structures, d)
        """
        out = self._outputs(X, "embed")
        self._n_embed_ = out.shape[1]
        return out

    def embed(self, X):
        """Pooled crystal representations (same as :meth:`transform`, always numpy)."""
        return self._outputs(X, "embed")

    def fit_transform(self, X, y=None, **fit_params):
        return self.fit(X, y, **fit_params).transform(X)

    def get_feature_names_out(self, input_features=None):
        """Names of the :meth:`transform` columns: ``<classname>0``, ``<classname>1``...

        With ``set_output(transform="pandas")`` :meth:`transform` returns a
        DataFrame with these columns (and the index of ``X`` when ``X`` is a
        DataFrame or Series).

        Returns
        -------
        ndarray of str
        """
        self.check_is_fitted()
        n = getattr(self, "_n_embed_", None)
        if n is None:
            n = self._n_embed_ = self._outputs([self._probe_structure()], "embed").shape[1]
        prefix = type(self).__name__.lower()
        return np.asarray([f"{prefix}{i}" for i in range(n)], dtype=object)

    def _probe_structure(self):
        """A one-atom cubic cell of an element the model supports (to size outputs)."""
        from pymatgen.core import Lattice, Structure

        supported = getattr(self.module_, "supported_elements", None) or {11}
        z = 11 if 11 in supported else min(supported)
        return Structure(Lattice.cubic(3.0), [int(z)], [[0, 0, 0]])

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.two_d_array = False
        tags.input_tags.pairwise = False
        try:
            tags.input_tags.structures = True
        except AttributeError:  # pragma: no cover
            pass
        tags.non_deterministic = self.random_state is None
        return tags


class CrystalRegressorBase(RegressorMixin, TransformerMixin, CrystalGraphNet):
    """Regression on structures; targets standardized internally.

    ``predict`` returns values in the units of ``y``: shape (n,) for 1-D
    ``y``, (n, n_targets) for 2-D ``y``. The loss is MSE on standardized
    targets.
    """

    _defaults = {"criterion": torch.nn.MSELoss}

    # defined here so that scikit-learn's set_output wraps them (TransformerMixin
    # wraps the methods a class defines itself)
    def transform(self, X):
        return CrystalGraphNet.transform(self, X)

    transform.__doc__ = CrystalGraphNet.transform.__doc__

    def fit_transform(self, X, y=None, **fit_params):
        return CrystalGraphNet.fit_transform(self, X, y, **fit_params)

    def _check_y(self, y):
        from .._validation import check_targets
        return check_targets(y)

    def _fit_targets(self, y):
        self.target_scaler_ = TargetScaler().fit(y)
        self.n_outputs_ = self.target_scaler_.n_outputs

    def _encode_targets(self, y):
        return self.target_scaler_.transform(y)

    def _ridge_start(self, D, y):
        if D is None:
            return None, None
        Y = self.target_scaler_.transform(y).astype(np.float64)
        # the penalty chosen by efficient leave-one-out error: descriptors
        # without signal (or too many for the data) get shrunk towards zero
        # instead of starting the model at an overfitted linear fit
        coef, r2 = ridge_loo(D.astype(np.float64), Y)
        return coef.astype(np.float32), float(r2.mean())

    def _screen_descriptors(self, D, y):
        if len(D) < _SCREEN_MIN_ROWS:
            return None
        Y = self.target_scaler_.transform(y).astype(np.float64)
        # a fixed seed: the decision is a function of the data alone, the
        # same for every member of an ensemble or point of a grid
        return descriptor_signal(D, Y, random_state=0)

    def refit_target_scaling(self, y):
        """Standardize targets with ``y``'s statistics, keeping the weights.

        For fine-tuning a fitted model on a small set: the network keeps
        predicting standardized values, now read in the new set's units.

        Returns
        -------
        (TargetScaler, TargetScaler)
            The previous and the new scaling.
        """
        self.check_is_fitted()
        new = TargetScaler().fit(self._check_y(y))
        if new.n_outputs != self.n_outputs_:
            raise ValueError(f"y has {new.n_outputs} targets but the fitted model "
                             f"predicts {self.n_outputs_}")
        old, self.target_scaler_ = self.target_scaler_, new
        return old, new

    def predict(self, X):
        """Predicted targets in original units, shape (n,) or (n, n_targets)."""
        raw = self._outputs(X)
        return self.target_scaler_.inverse_transform(raw)

    def score(self, X, y, sample_weight=None):
        return RegressorMixin.score(self, X, y, sample_weight=sample_weight)


class CrystalClassifierBase(ClassifierMixin, TransformerMixin, CrystalGraphNet):
    """Classification on structures; labels of any type.

    ``classes_`` holds the sorted labels; ``predict_proba`` (skorch's) their
    probabilities (softmax of the logits); cross-entropy loss.
    """

    _defaults = {"criterion": torch.nn.CrossEntropyLoss}

    # defined here so that scikit-learn's set_output wraps them (TransformerMixin
    # wraps the methods a class defines itself)
    def transform(self, X):
        return CrystalGraphNet.transform(self, X)

    transform.__doc__ = CrystalGraphNet.transform.__doc__

    def fit_transform(self, X, y=None, **fit_params):
        return CrystalGraphNet.fit_transform(self, X, y, **fit_params)

    def _check_y(self, y):
        from .._validation import check_targets
        return check_targets(y, classification=True)

    def _fit_targets(self, y):
        self.label_encoder_ = LabelEncoder().fit(y)
        self.classes_ = self.label_encoder_.classes_
        self.n_outputs_ = len(self.classes_)

    def _encode_targets(self, y):
        return self.label_encoder_.transform(y)

    def predict(self, X):
        """Predicted labels (same type as the ``y`` given to ``fit``)."""
        proba = self.predict_proba(X)  # first: an unfitted model has no classes_
        return self.classes_[proba.argmax(axis=1)]

    def score(self, X, y, sample_weight=None):
        return ClassifierMixin.score(self, X, y, sample_weight=sample_weight)
