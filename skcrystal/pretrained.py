"""Pre-trained CGCNN models: the reference checkpoints as fitted estimators.

The reference CGCNN code (txie-93/cgcnn, MIT) saves its models as
``torch.save`` checkpoints (``*.pth.tar``) and publishes eight trained on
Materials Project data. This module turns such a checkpoint into a fitted
:class:`~skcrystal.CGCNNRegressor` or :class:`~skcrystal.CGCNNClassifier`
whose predictions equal the reference code's, and ships the eight published
ones so they work offline::

    >>> from skcrystal import pretrained
    >>> pretrained.available()                                 # doctest: +SKIP
    ('band-gap', 'bulk-moduli', ...)
    >>> est = pretrained.load("formation-energy-per-atom")     # doctest: +SKIP
    >>> est.predict(structures)                                # eV/atom  # doctest: +SKIP

What makes the predictions equal
--------------------------------
* Weights: the reference ``ConvLayer.fc_full`` (one Linear on the
  concatenation centre | neighbour | edge) is split exactly into
  :class:`~skcrystal.nn.cgcnn.CGCNNConv`'s ``atom_proj`` (centre rows, then
  neighbour rows, no bias) and ``edge_proj`` (edge columns and the bias);
  batch-norm weights and running statistics, the embedding and the head are
  copied as they are.
* Atom features: the reference's 92-dim ``atom_init.json`` table (shipped
  with the package), not skcrystal's default one-hot table.
* Graph: ``neighbor_mode="reference"`` (:mod:`skcrystal.graphs.builder`):
  exactly ``max_num_nbr`` (12) neighbours within ``radius`` (8 Å) per atom,
  in the reference's order, padded with edges to atom 0 at ``radius + 1``.
* Targets: the checkpoint's normalizer (mean, std) becomes the estimator's
  target scaling (``target_scaler_``).

Loading is safe: ``torch.load(weights_only=True)`` with only the few
non-tensor types the reference checkpoints contain allowed (numpy scalars
and dtypes, ``argparse.Namespace``); a file that asks for anything else is
refused before any of its code can run.
"""
from __future__ import annotations

import argparse
import difflib
import os
import pickle
import re
from pathlib import Path

import numpy as np

from ._validation import check_parameter_names

# torch is imported where the weights are read: what a checkpoint's graphs
# need (reference_graph_needs) is read without it

__all__ = ["load", "available", "describe", "path_of", "load_cgcnn_checkpoint",
           "load_cgcnn_predictor", "read_checkpoint", "is_checkpoint_reference",
           "reference_graph_needs", "UnsafeCheckpointError"]

_HERE = Path(__file__).resolve().parent / "pretrained_models" / "cgcnn"

#: name -> (task, property, unit) of the shipped checkpoints
_SHIPPED = {
    "band-gap": ("regression", "band gap", "eV"),
    "bulk-moduli": ("regression", "bulk modulus", "log10(GPa)"),
    "efermi": ("regression", "Fermi energy", "eV"),
    "final-energy-per-atom": ("regression", "absolute (final) energy", "eV/atom"),
    "formation-energy-per-atom": ("regression", "formation energy", "eV/atom"),
    "poisson-ratio": ("regression", "Poisson ratio", "-"),
    "semi-metal-classification": (
        "classification", "metal (class 1) vs semiconductor (class 0)", "-"),
    "shear-moduli": ("regression", "shear modulus", "log10(GPa)"),
}


class UnsafeCheckpointError(pickle.UnpicklingError, ValueError):
    """A checkpoint that cannot be loaded as plain data (weights and options)."""


#: the estimator a regression checkpoint becomes, named here so that
#: predicting without the estimator imports no scikit-learn
_REGRESSOR_NAME = "CGCNNRegressor"


def _estimator_class(classification):
    from .estimators.cgcnn import CGCNNClassifier, CGCNNRegressor

    return CGCNNClassifier if classification else CGCNNRegressor


# ---------------------------------------------------------------- safe loading
def _allowed_globals():
    """The non-tensor types found in reference checkpoints, nothing callable beyond."""
    try:
        from numpy._core.multiarray import scalar
    except ImportError:  # numpy < 2
        from numpy.core.multiarray import scalar

    allowed = [argparse.Namespace, np.dtype,
               # numpy scalars (e.g. ``best_mae_error``) pickle as this
               # reconstructor under the numpy 1 and numpy 2 module names
               (scalar, "numpy.core.multiarray.scalar"),
               (scalar, "numpy._core.multiarray.scalar")]
    for name in ("Float64DType", "Float32DType", "Float16DType", "Int64DType",
                 "Int32DType", "BoolDType"):
        cls = getattr(getattr(np, "dtypes", None), name, None)
        if cls is not None:
            allowed.append(cls)
    return allowed


def read_checkpoint(path):
    """Read a reference-format checkpoint as plain data, without running its code.

    Parameters
    ----------
    path : str or path-like

    Returns
    -------
    dict
        The checkpoint (``state_dict``, ``normalizer``, ``args`` as a dict, ...).

    Raises
    ------
    UnsafeCheckpointError
        The file holds other Python objects (it would run code if unpickled
        normally) or is not a torch checkpoint; the message names the file.
    """
    import torch

    from .datasets._io import _as_path
    path = _as_path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint file not found: {path}")
    try:
        with torch.serialization.safe_globals(_allowed_globals()):
            ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        if re.search(r"Unsupported operand|invalid load key", str(exc)):
            # not pickled data at all (a text file, a truncated download)
            raise UnsafeCheckpointError(
                f"{path} is not a readable torch checkpoint (neither a torch.save zip "
                "archive nor a pickle)") from None
        found = re.search(r"GLOBAL ([\w.]+)", str(exc))
        detail = f"it asks for {found.group(1)}" if found else \
            str(exc).strip().splitlines()[-1]
        raise UnsafeCheckpointError(
            f"{path}: refused to load this checkpoint: it holds Python objects other "
            f"than tensors, numbers and options, which could run code when loaded "
            f"({detail}); only load it with torch.load(weights_only=False) if you "
            f"trust its source") from None
    except (RuntimeError, EOFError, OSError, ValueError) as exc:
        raise UnsafeCheckpointError(
            f"{path} is not a readable torch checkpoint ({type(exc).__name__}: "
            f"{str(exc).splitlines()[0] if str(exc) else ''})") from None
    if not isinstance(ckpt, dict):
        raise ValueError(f"{path}: expected a checkpoint dict, got {type(ckpt).__name__}")
    if isinstance(ckpt.get("args"), argparse.Namespace):
        ckpt["args"] = vars(ckpt["args"])
    return ckpt


# ---------------------------------------------------------------- weights
def _reference_shapes(state, path):
    """(orig_atom_fea_len, atom_fea_len, n_conv, nbr_fea_len, h_fea_len, n_h, n_out)."""
    try:
        orig = state["embedding.weight"].shape[1]
        atom = state["embedding.weight"].shape[0]
        n_conv = 1 + max(int(k.split(".")[1]) for k in state if k.startswith("convs."))
        nbr = state["convs.0.fc_full.weight"].shape[1] - 2 * atom
        h = state["conv_to_fc.weight"].shape[0]
        n_fcs = len({k.split(".")[1] for k in state if k.startswith("fcs.")})
        n_out = state["fc_out.weight"].shape[0]
    except (KeyError, ValueError, IndexError) as exc:
        raise ValueError(
            f"{path}: state_dict is not a reference CrystalGraphConvNet (missing or "
            f"malformed {exc})") from None
    return orig, atom, n_conv, nbr, h, 1 + n_fcs, n_out


#: batch-norm update count given to a reference checkpoint that says neither its
#: epochs nor its training set size: any count past ~44 (momentum 0.1) marks the
#: running statistics as trained, not initial
_TRAINED_BATCHES = 1000


def _transplant(state, module, n_conv, n_h, path, batches=None):
    """The reference state dict in the layout of skcrystal's CGCNN module.

    ``batches``: training batches the checkpoint's batch norms saw, for a
    state dict without their ``num_batches_tracked``.
    """
    import torch

    new = module.state_dict()
    d = module.convs[0].atom_dim

    def put(key, value):
        if new[key].shape != value.shape:
            raise ValueError(f"{path}: {key} has shape {tuple(value.shape)}, expected "
                             f"{tuple(new[key].shape)}")
        new[key] = value.to(new[key].dtype).clone()

    put("embedding.linear.weight", state["embedding.weight"])
    put("embedding.linear.bias", state["embedding.bias"])
    for i in range(n_conv):
        w = state[f"convs.{i}.fc_full.weight"]
        # fc_full acts on [v_i | v_j | u_ij]; atom_proj's rows [0, 2d) are the
        # centre block of W, rows [2d, 4d) the neighbour block
        put(f"convs.{i}.atom_proj.weight", torch.cat([w[:, :d], w[:, d:2 * d]], dim=0))
        put(f"convs.{i}.edge_proj.weight", w[:, 2 * d:])
        put(f"convs.{i}.edge_proj.bias", state[f"convs.{i}.fc_full.bias"])
        for ref, ours in (("bn1", "bn_edge"), ("bn2", "bn_node")):
            for name in ("weight", "bias", "running_mean", "running_var"):
                put(f"convs.{i}.{ours}.{name}", state[f"convs.{i}.{ref}.{name}"])
            if f"convs.{i}.{ref}.num_batches_tracked" in state:
                put(f"convs.{i}.{ours}.num_batches_tracked",
                    state[f"convs.{i}.{ref}.num_batches_tracked"])
            else:
                put(f"convs.{i}.{ours}.num_batches_tracked",
                    torch.tensor(batches or _TRAINED_BATCHES))
    linears = [k[:-len(".weight")] for k in new
               if k.startswith("head.mlp.") and k.endswith(".weight")]
    refs = ["conv_to_fc", *(f"fcs.{j}" for j in range(n_h - 1)), "fc_out"]
    if len(linears) != len(refs):  # pragma: no cover - guarded by the shapes
        raise ValueError(f"{path}: head has {len(refs)} Linear layers, model {len(linears)}")
    for ours, ref in zip(linears, refs):
        put(f"{ours}.weight", state[f"{ref}.weight"])
        put(f"{ours}.bias", state[f"{ref}.bias"])
    return new


def _atom_table(atom_init):
    from .atom_features import atom_feature_table

    return atom_feature_table(str(_HERE / "atom_init.json") if atom_init is None
                              else atom_init)


# ---------------------------------------------------------------- public API
def load_cgcnn_checkpoint(path, atom_init=None, **params):
    """A fitted CGCNN estimator from a reference-format checkpoint.

    Parameters
    ----------
    path : str or path-like
        A ``*.pth.tar`` saved by the reference code's ``main.py`` (dict with
        ``state_dict``, ``normalizer``, ``args``).
    atom_init : str, path-like or ndarray, optional
        The element feature table the model was trained with
        (``atom_init.json`` format). Default: the reference table shipped with
        skcrystal (92 features).
    **params
        Estimator parameters set on the result (``batch_size``, ``n_jobs``,
        ``max_epochs`` for a later fit, ...).

    Returns
    -------
    CGCNNRegressor or CGCNNClassifier
        Fitted: ``predict`` works at once. A regressor predicts in the units
        of the training targets; the classifier has ``classes_ = [0, 1]``
        (the reference's class order) and ``predict_proba``. It builds the
        reference graph (``neighbor_mode="reference"``, radius and
        neighbour count from the checkpoint, default 8 Å and 12). Training
        options of the checkpoint (epoch, ``best_mae_error``, ``args``) are
        in ``checkpoint_info_``.

    Raises
    ------
    UnsafeCheckpointError
        The file holds other Python objects than weights and options.
    ValueError
        The weights do not fit a reference ``CrystalGraphConvNet`` or the
        atom table.
    """
    spec = _checkpoint_spec(path, atom_init)
    cls = _estimator_class(spec["classification"])
    kw = {f"module__{k}": v for k, v in spec["module"].items()}
    kw.update(spec["builder"])
    kw.update(params)
    est = cls(**kw)
    # the fitted data state as a saved estimator state holds it
    data_state = {"format": "skcrystal-estimator-state", "version": 1, "n_descriptors_": 0}
    if spec["classification"]:
        data_state.update(n_outputs_=2, label_encoder_={"classes_": [0, 1]})
    else:
        data_state.update(n_outputs_=1, target_scaler_={
            "mean_": [spec["mean"]], "scale_": [spec["std"]], "ndim_": 1})
    est._set_data_state(data_state, path)
    # the optimizer is built when training starts (fine-tuning), not to predict
    est.initialize_for_inference()
    # a misspelt **params name now, not at a later fit
    from .estimators.base import routed_prefixes
    check_parameter_names(est, params, routed_prefixes(est))
    est.module_.load_state_dict(_transplant(spec["state"], est.module_, spec["n_conv"],
                                            spec["n_h"], path, spec["batches"]))
    est.module_.eval()
    est.checkpoint_info_ = spec["info"]
    return est


def _checkpoint_spec(path, atom_init=None):
    """What a reference checkpoint holds, checked, in skcrystal's terms.

    Returns
    -------
    dict
        ``classification``; ``module`` (CGCNN parameters, without
        ``n_outputs``); ``builder`` (graph parameters); ``mean``, ``std``
        (the normalizer); ``state`` (the reference weights), ``n_conv``,
        ``n_h``; ``info`` (``checkpoint_info_``).
    """
    ckpt = read_checkpoint(path)
    args = ckpt.get("args") or {}
    if not isinstance(args, dict):
        raise ValueError(f"{path}: 'args' is a {type(args).__name__}, expected options")
    state = ckpt.get("state_dict")
    if not isinstance(state, dict):
        raise ValueError(f"{path}: no 'state_dict' in the checkpoint "
                         f"(keys: {sorted(ckpt)})")
    # weights saved from a DataParallel model carry this prefix
    state = {k[len("module."):] if k.startswith("module.") else k: v
             for k, v in state.items()}
    orig, atom, n_conv, nbr, h, n_h, n_out = _reference_shapes(state, path)
    # without args, the head's width tells the task (the reference has 1 or 2 outputs)
    classification = args.get("task", "classification" if n_out == 2 else "regression") \
        == "classification"
    if n_out != (2 if classification else 1):
        raise ValueError(f"{path}: fc_out has {n_out} outputs, expected "
                         f"{2 if classification else 1} for task {args.get('task')!r}")
    builder = _reference_builder(args)
    radius = builder["radius"]
    dmin = float(args.get("dmin", 0.0))
    step = float(args.get("step", 0.2))
    if dmin != 0.0:
        raise ValueError(f"{path}: Gaussian centres start at dmin={dmin}; only 0 "
                         "is supported")
    # the reference's centres: np.arange(dmin, radius + step, step)
    n_centres = len(np.arange(dmin, radius + step, step))
    if n_centres != nbr:
        raise ValueError(f"{path}: the weights expect {nbr} edge features but "
                         f"radius={radius}, step={step} give {n_centres} Gaussians")
    table = _atom_table(atom_init)
    if table.shape[1] != orig:
        raise ValueError(f"{path}: the embedding expects {orig} atom features, the "
                         f"atom table has {table.shape[1]}")
    normalizer = ckpt.get("normalizer") or {"mean": 0.0, "std": 1.0}
    module = dict(atom_features=table, hidden=atom, n_conv=n_conv, h_fea_len=h, n_h=n_h,
                  cutoff=radius, gaussian_step=step, gaussian_width=step)
    if classification:
        module["dropout"] = 0.5  # the reference's nn.Dropout() (training only)
    # the reference's torch saved no num_batches_tracked: the batch norms' counts
    # are the batches of the epochs the checkpoint was trained for (so that
    # RecomputeBatchNorm(only_if_stale=True) sees long-trained statistics)
    try:
        batches = int(ckpt["epoch"]) * -(-int(args["train_size"]) // int(args["batch_size"]))
    except (KeyError, TypeError, ValueError):
        batches = None
    info = {"path": str(path), "epoch": ckpt.get("epoch"),
            "best_mae_error": None if ckpt.get("best_mae_error") is None
            else float(ckpt["best_mae_error"]),
            "args": dict(args)}
    return {"classification": classification, "module": module,
            "builder": builder,
            "mean": float(normalizer["mean"]), "std": float(normalizer["std"]),
            "state": state, "n_conv": n_conv, "n_h": n_h, "info": info,
            "batches": batches}


def _reference_builder(args):
    """GraphBuilder parameters of a checkpoint's ``args`` (the reference
    defaults where it has none)."""
    return dict(radius=float(args.get("radius", 8.0)),
                max_neighbors=int(args.get("max_num_nbr", 12)), neighbor_mode="reference")


class _Opaque:
    """Whatever a checkpoint holds besides plain data, when only its
    options are read (tensors, storages, option objects)."""

    def __init__(self, *args, **kwargs):
        pass

    def __call__(self, *args, **kwargs):
        return _Opaque()

    def __setstate__(self, state):
        self.state = state


class _OptionsUnpickler(pickle.Unpickler):
    """Reads a checkpoint's pickle with every class but plain containers
    replaced by :class:`_Opaque` (so no code of the file runs) and the tensor
    data left unread."""

    def find_class(self, module, name):
        if (module, name) == ("collections", "OrderedDict"):
            import collections

            return collections.OrderedDict
        return _Opaque

    def persistent_load(self, pid):
        return None


def _checkpoint_options(path):
    """A checkpoint's ``args`` (dict), read without torch and without its
    tensors; None where that cannot be done."""
    import zipfile

    try:
        if zipfile.is_zipfile(path):  # torch.save's format since torch 1.6
            with zipfile.ZipFile(path) as archive:
                name = next(n for n in archive.namelist() if n.endswith("/data.pkl"))
                with archive.open(name) as fh:
                    ckpt = _OptionsUnpickler(fh).load()
        else:  # the legacy format: magic number, protocol, system info, object
            with open(path, "rb") as fh:
                for _ in range(3):
                    _OptionsUnpickler(fh).load()
                ckpt = _OptionsUnpickler(fh).load()
    except Exception:  # noqa: BLE001 - any failure: the caller loads it with torch
        return None
    if not isinstance(ckpt, dict):
        return None
    args = ckpt.get("args")
    if isinstance(args, _Opaque):  # an argparse.Namespace
        args = getattr(args, "state", None)
    return args if isinstance(args, dict) else None


def reference_graph_needs(spec, atom_init=None):
    """What the graphs of a reference regression checkpoint's predictions
    need, read without torch: the :class:`~skcrystal.graphs.GraphBuilder`
    parameters and the elements the model has features for.

    ``skcrystal predict`` starts building graphs from them in worker
    processes while this process imports torch and loads the weights;
    :func:`load_cgcnn_predictor` then gives the same (what it gives is what
    counts).

    Parameters
    ----------
    spec : str or path-like
        A reference checkpoint or the name of a shipped one.
    atom_init : str, path-like or ndarray, optional
        See :func:`load_cgcnn_checkpoint`.

    Returns
    -------
    (dict, frozenset of int) or None
        Builder parameters and supported atomic numbers; None where they
        cannot be told this way (not a reference checkpoint, a
        classification one, options that cannot be read).
    """
    from .atom_features import table_elements

    try:
        name = _shipped_name(spec)
        path = path_of(name) if name else spec
        if not os.path.isfile(path):
            return None
        args = _checkpoint_options(path)
        if args is None or args.get("task", "regression") != "regression":
            return None
        return _reference_builder(args), table_elements(_atom_table(atom_init))
    except (OSError, TypeError, ValueError):
        return None


def load_cgcnn_predictor(path, atom_init=None, n_jobs=None):
    """A regression checkpoint as a :class:`~skcrystal.inference.GraphPredictor`.

    What :func:`load_cgcnn_checkpoint` builds, without the estimator (so
    without importing scikit-learn, scipy or skorch): the same module with
    the same weights, graph parameters, batch size and target scaling, so
    its predictions equal the estimator's.

    Parameters
    ----------
    path : str or path-like
        A reference checkpoint, or the name of a shipped one.
    atom_init : str, path-like or ndarray, optional
        See :func:`load_cgcnn_checkpoint`.
    n_jobs : int, optional
        Worker processes for reading files into graphs.

    Returns
    -------
    (GraphPredictor or None, dict)
        None for a classification checkpoint (use the estimator); the
        ``checkpoint_info_`` the estimator would carry.
    """
    from .graphs.builder import GraphBuilder
    from .inference import DEFAULT_BATCH_SIZE, GraphPredictor
    from .nn.cgcnn import CGCNN

    name = _shipped_name(path)
    spec = _checkpoint_spec(path_of(name) if name else path, atom_init)
    info = spec["info"]
    if name:
        info["name"] = name
    if spec["classification"]:
        return None, info
    # as the estimator builds it: module__ parameters plus n_outputs
    module = CGCNN(n_outputs=1, **spec["module"])
    module.load_state_dict(_transplant(spec["state"], module, spec["n_conv"], spec["n_h"],
                                       path, spec["batches"]))
    builder = GraphBuilder(**spec["builder"])
    return GraphPredictor(module, builder, DEFAULT_BATCH_SIZE, [spec["mean"]], [spec["std"]],
                          1, n_jobs, _REGRESSOR_NAME), info


def available():
    """Names of the pre-trained models shipped with skcrystal (tuple of str)."""
    return tuple(sorted(_SHIPPED))


def describe(name):
    """(task, property, unit) of a shipped model."""
    return _SHIPPED[_check_name(name)]


def _check_name(name):
    if name not in _SHIPPED:
        close = difflib.get_close_matches(str(name), list(_SHIPPED), n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ";"
        raise ValueError(f"unknown pre-trained model {name!r}{hint} available: "
                         f"{', '.join(available())}")
    return name


def path_of(name):
    """File of a shipped checkpoint."""
    return _HERE / f"{_check_name(name)}.pth.tar"


def load(name, **params):
    """A shipped reference CGCNN model as a fitted estimator (offline).

    Parameters
    ----------
    name : str
        One of :func:`available` (e.g. ``"formation-energy-per-atom"``,
        ``"band-gap"``, ``"semi-metal-classification"``).
    **params
        Estimator parameters, see :func:`load_cgcnn_checkpoint`.

    Returns
    -------
    CGCNNRegressor or CGCNNClassifier
    """
    est = load_cgcnn_checkpoint(path_of(name), **params)
    est.checkpoint_info_["name"] = name
    return est


def is_checkpoint_reference(spec):
    """Whether a model argument is a reference checkpoint or a shipped model's name.

    True for a ``*.pth.tar`` / ``*.pth`` path and for a name of
    :func:`available` that is not also an existing file.
    """
    spec = os.fspath(spec)
    return spec.endswith((".pth.tar", ".pth")) or _shipped_name(spec) is not None


def _shipped_name(spec):
    """``spec`` if it names a shipped model (and no existing file), else None."""
    spec = os.fspath(spec)
    return spec if spec in _SHIPPED and not os.path.exists(spec) else None
