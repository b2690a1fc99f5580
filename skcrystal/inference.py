"""Predictions of a fitted regression model from graphs, in torch and numpy only.

``CrystalGraphNet.predict`` goes through skorch (dataset, data loader,
evaluation step) and so needs scikit-learn, scipy and skorch imported:
about a second and a half before the first structure is read, more than
the network then spends on thousands of structures. A command that only
predicts from a saved model (``skcrystal predict CHECKPOINT FOLDER``) uses
:class:`GraphPredictor` instead: the same module, the same batches of the
estimator's ``batch_size``, the same collation
(:func:`~skcrystal.graphs.batch.collate_graphs`), the forward in eval mode
without gradients and the same inverse target scaling, so the predictions
equal the estimator's bit for bit (``tests/test_inference.py``).

It covers regression on graphs alone on the CPU. Anything else
(classifiers, descriptor hybrids, mixed precision, GPUs) stays with the
estimator, and so does a batch with a non-finite output:
:meth:`GraphPredictor.predict` returns None and the caller asks the
estimator, whose error names the structures.

:func:`predict_files` takes a folder's files through parsing, graphs and
the predictor chunk by chunk; with workers, the workers build the graphs
and send collated batches to this process's network (on up to two cores),
or run the whole chain and send back only the predictions (more cores).
"""
from __future__ import annotations

from typing import NamedTuple, Optional

import numpy as np
import torch

from ._malloc import heap_allocation
from .graphs.collate import DEFAULT_BATCH_SIZE

__all__ = ["GraphPredictor", "DEFAULT_BATCH_SIZE"]


def _no_gpu(device):
    """Why torch cannot run on ``device`` here ("no CUDA GPU is usable ..."), or None."""
    if torch.device(device).type == "cuda" and not torch.cuda.is_available():
        return (f"no CUDA GPU is usable here (torch {torch.__version__}, CUDA build: "
                f"{torch.version.cuda or 'no'})")
    return None


def _learnable_rows(module):
    """Rows of ``module``'s learnable atom embedding table, or 0 for a fixed table."""
    embedding = getattr(getattr(module, "embedding", None), "embedding", None)
    return 0 if embedding is None else int(embedding.num_embeddings)


def trained_elements(module, graphs, before=None):
    """Atomic numbers a learnable atom embedding trains on in ``graphs``.

    A fixed feature table (CGCNN's, a user's) gives every element meaningful
    features; a learnable embedding (``atom_features="embedding"``) keeps
    random initial rows for elements no training structure had.

    Parameters
    ----------
    module : CrystalModel
    graphs : list of CrystalGraph
        The training graphs.
    before : tuple of int, optional
        Elements of earlier training (``partial_fit``), kept.

    Returns
    -------
    tuple of int or None
        None for a fixed feature table.
    """
    rows = _learnable_rows(module)
    if not rows:
        return None
    seen = np.zeros(rows, dtype=bool)
    if graphs:
        seen[np.concatenate([g.atomic_numbers for g in graphs])] = True
    if before is not None:
        seen[list(before)] = True
    return tuple(np.flatnonzero(seen).tolist())


def warn_untrained_elements(module, trained, graphs, label, stacklevel=2):
    """Warn for graphs with elements the learnable embedding never trained on.

    Parameters
    ----------
    module : CrystalModel
    trained : tuple of int or None
        :func:`trained_elements` of the fit (None: not noted, no check).
    graphs : list of CrystalGraph, or of their atomic-number arrays
    label : callable
        ``label(i)`` names graph ``i`` in the message (``X[3] (KCl)``, a file).
    """
    rows = _learnable_rows(module)
    if trained is None or not rows:
        return
    seen = np.zeros(rows, dtype=bool)
    seen[list(trained)] = True
    numbers = [getattr(g, "atomic_numbers", g) for g in graphs]
    unseen = [i for i, z in enumerate(numbers) if not seen[z].all()]
    if not unseen:
        return
    import warnings

    from pymatgen.core import Element
    listed = "; ".join(
        f"{label(i)}: " + ", ".join(Element.from_Z(z).symbol
                                    for z in np.unique(numbers[i]) if not seen[z])
        for i in unseen[:5])
    warnings.warn(
        f"{len(unseen)} structure(s) have elements no training structure had, whose "
        "learnable embedding rows (atom_features='embedding') are still their random "
        f"initial values: their predictions are guesses. {listed}"
        f"{' ...' if len(unseen) > 5 else ''}", UserWarning, stacklevel=stacklevel + 1)


class GraphPredictor:
    """A fitted regression module with what turns its outputs into predictions.

    Parameters
    ----------
    module : skcrystal.nn.model.CrystalModel
        The fitted module (put in eval mode here).
    builder : skcrystal.graphs.GraphBuilder
        The graph parameters the module was fitted with.
    batch_size : int
        Structures per forward pass (the estimator's ``batch_size``; -1: all).
    target_mean, target_scale : array-like, shape (n_targets,)
        The target scaling: predictions are ``output * scale + mean``.
    target_ndim : {1, 2}
        1: predictions of shape (n,) (a single 1-D target), else (n, n_targets).
    n_jobs : int, optional
        Worker processes for reading files into graphs.
    name : str
        What the model is called in messages (the estimator's class name).
    """

    def __init__(self, module, builder, batch_size, target_mean, target_scale,
                 target_ndim=1, n_jobs=None, name="model"):
        self.module = module.eval()
        self.builder = builder
        self.batch_size = batch_size
        self.target_mean = np.asarray(target_mean, dtype=np.float64)
        self.target_scale = np.asarray(target_scale, dtype=np.float64)
        self.target_ndim = int(target_ndim)
        self.n_jobs = n_jobs
        self.name = name

    @classmethod
    def from_estimator(cls, est):
        """The predictor of a fitted estimator, or None where it does not apply.

        Parameters
        ----------
        est : CrystalGraphNet

        Returns
        -------
        GraphPredictor or None
            None for a classifier, an unfitted estimator, descriptors, mixed
            precision, a distributed setup, a device other than the CPU, or
            data-loader options of its own.
        """
        scaler = getattr(est, "target_scaler_", None)
        module = getattr(est, "module_", None)
        if (scaler is None or module is None or not est.__sklearn_is_fitted__()
                or getattr(est, "classes_", None) is not None
                or getattr(est, "n_descriptors_", 0) or est.descriptors is not None
                or getattr(est, "descriptor_scaler_", None) is not None
                or est.mixed_precision or est.distributed
                or str(est.device) != "cpu" or est.get_params_for("iterator_valid")
                or est.iterator_valid is not torch.utils.data.DataLoader):
            return None
        batch_size = est.batch_size
        return cls(module, est._builder(), batch_size, scaler.mean_, scaler.scale_,
                   scaler.ndim_, est.n_jobs, type(est).__name__)

    @property
    def graph_extras(self):
        """Graph extras the module reads (tuple of GraphExtra)."""
        return tuple(getattr(self.module, "graph_extras", ()))

    @property
    def supported_elements(self):
        """Atomic numbers the module has features for."""
        return getattr(self.module, "supported_elements", None)

    def outputs(self, graphs):
        """Module outputs on ``graphs``, float64, shape (n, n_targets); None if
        any is not finite.

        Parameters
        ----------
        graphs : list of CrystalGraph
            With the module's graph extras attached.
        """
        from .graphs.collate import collate_arrays

        n = len(graphs)
        step = n if self.batch_size in (None, -1) else int(self.batch_size)
        extras = self.graph_extras
        return self.batch_outputs(
            collate_arrays(graphs[start:start + step], extras=extras)
            for start in range(0, n, max(step, 1)))

    def batch_outputs(self, batches):
        """Module outputs on collated batches, float64, shape (n, n_targets);
        None if any is not finite.

        Parameters
        ----------
        batches : iterable of CollatedArrays
            Batches of :func:`~skcrystal.graphs.collate.collate_arrays`, with
            the module's graph extras (batches of the ``batch_size`` give the
            predictions of :meth:`predict`).
        """
        from .graphs.batch import batch_from_arrays

        outs = []
        self.module.eval()
        # the estimators' allocator setting for inference (skcrystal._malloc)
        with torch.no_grad(), heap_allocation(release=False):
            for arrays in batches:
                out = self.module(batch_from_arrays(arrays))
                if not bool(torch.isfinite(out).all()):
                    return None
                outs.append(out)
        return torch.cat(outs).numpy().astype(np.float64)

    def predict(self, graphs):
        """Predictions in the units of the targets; None if an output is not finite.

        Parameters
        ----------
        graphs : list of CrystalGraph

        Returns
        -------
        ndarray, shape (n,) or (n, n_targets), or None
        """
        return self._scaled(self.outputs(graphs))

    def predict_batches(self, batches):
        """:meth:`predict` of collated batches (see :meth:`batch_outputs`)."""
        return self._scaled(self.batch_outputs(batches))

    def _scaled(self, raw):
        if raw is None:
            return None
        out = raw * self.target_scale + self.target_mean
        return out[..., 0] if self.target_ndim == 1 else out


class FileChunk(NamedTuple):
    """What :func:`predict_files` yields for a chunk of files (positions are
    in the chunk; ``offset`` is the chunk's first in all the files)."""

    offset: int
    errors: list
    valid: list
    graphs: Optional[list]
    pred: Optional[np.ndarray]
    atomic_numbers: Optional[list]


class _PredictorFile:
    """A :class:`GraphPredictor` pickled once to a file that worker processes
    load once each (sending the module with every chunk would copy its weights
    through the pipe again and again)."""

    def __init__(self, path):
        self.path = str(path)


# the predictor a worker process loaded, by file (one at a time)
_WORKER_PREDICTOR = {}


def _chunk_predictor(model):
    if isinstance(model, GraphPredictor):
        return model
    predictor = _WORKER_PREDICTOR.get(model.path)
    if predictor is None:
        import pickle

        with open(model.path, "rb") as fh:
            predictor = pickle.load(fh)
        _WORKER_PREDICTOR.clear()
        _WORKER_PREDICTOR[model.path] = predictor
    return predictor


def predict_file_chunk(paths, builder_params, supported=None, model=None, numbers=False):
    """Graphs of a chunk of structure files and, with a model, their predictions
    (the worker function of :func:`predict_files`).

    Parameters
    ----------
    paths : list of str or (str, str)
        Files, or ``(name, CIF text)`` pairs (see
        :func:`~skcrystal.graphs.files.read_file_graphs`).
    builder_params : dict
        :class:`~skcrystal.graphs.GraphBuilder` parameters.
    supported : set of int, optional
        Atomic numbers the model has features for.
    model : GraphPredictor or _PredictorFile, optional
        None: the graphs are returned, not predicted.
    numbers : bool
        Return the atomic numbers of each predicted graph (for the check of
        untrained embedding rows, which runs in the caller).

    Returns
    -------
    errors, valid
        As from :func:`~skcrystal.graphs.files.file_chunk_graphs`.
    graphs : list of CrystalGraph or None
        Their graphs, when not predicted here (no model, or an output that
        is not finite: the caller hands them to the estimator).
    pred : ndarray or None
        Predictions of the valid files, shape (n_valid,) or (n_valid, n_targets).
    atomic_numbers : list of ndarray or None
        With ``numbers``, those of each valid file's structure.
    """
    from .graphs.files import file_chunk_graphs

    predictor = None if model is None else _chunk_predictor(model)
    errors, valid, graphs = file_chunk_graphs(
        paths, builder_params, supported,
        extras=() if predictor is None else predictor.graph_extras)
    if predictor is None or not graphs:
        return errors, valid, graphs, None, None
    pred = predictor.predict(graphs)
    z = [g.atomic_numbers for g in graphs] if numbers else None
    return errors, valid, graphs if pred is None else None, pred, z


def _predicted_here(result, predictor, paths, builder_params, supported):
    """The :func:`predict_file_chunk` result of a
    :func:`~skcrystal.graphs.files.collate_file_chunk` result: its batches
    predicted in this process (a chunk whose output is not finite is read
    again for its graphs, which the caller hands to the estimator)."""
    from .graphs.files import file_chunk_graphs

    errors, valid, batches, z = result
    if not batches:
        return errors, valid, [], None, None
    pred = predictor.predict_batches(batches)
    if pred is not None:
        return errors, valid, None, pred, z
    graphs = file_chunk_graphs(paths, builder_params, supported, predictor.graph_extras)[2]
    return errors, valid, graphs, None, z


def predict_files(paths, builder, predictor=None, supported=None, n_jobs=None,
                  chunk_size=None, numbers=False, started=None):
    """Structure files (or CIF texts) -> graphs -> predictions, chunk by chunk, in order.

    With ``n_jobs`` (processes in all, this one included: see
    :func:`skcrystal._parallel.imap_chunks_shared`) each process reads,
    parses and builds the graphs of its chunks. Up to
    :data:`~skcrystal.graphs.files.NETWORK_HERE_UP_TO` processes, the
    workers send each chunk's graphs as collated batches (a few arrays per
    batch: the graphs one by one cost about as much CPU to send as to build)
    and this process runs the network on every batch, so the workers never
    import torch; with more processes each runs the network on its own
    chunks and sends the predictions. Either way a chunk holds whole batches
    of ``predictor.batch_size`` and every batch is the same, so the
    predictions do not depend on ``n_jobs``.

    Parameters
    ----------
    paths : sequence of str or Path, or of (name, CIF text)
        Structure files, or CIF texts (a CSV's CIF column) with what names
        each in errors.
    builder : GraphBuilder
        The graph parameters the model was fitted with.
    predictor : GraphPredictor, optional
        None: the graphs are yielded for the caller to predict (a
        classifier, a GPU...).
    supported : set of int, optional
        Atomic numbers the model has features for; others are refused.
    n_jobs : int, optional
        Processes in all, this one included (joblib's meaning of -1...;
        ``None`` and 1: this one only).
    chunk_size : int, optional
        Files per chunk; by default the multiple of the batch size nearest
        below 256 (at least one batch).
    numbers : bool
        Yield the atomic numbers of the predicted structures.
    started : StartedChunks, optional
        The first chunks, handed to the workers before this call by
        :func:`~skcrystal.graphs.files.start_file_chunks` (used where they
        match this call, else cancelled).

    Yields
    ------
    FileChunk
        Per chunk of consecutive ``paths``: its position in ``paths`` and
        the results of :func:`predict_file_chunk`.
    """
    import contextlib
    import tempfile

    from ._parallel import imap_chunks_shared, shared_processes
    from .graphs.files import (_builder_params, collate_file_chunk, collate_kwargs, file_chunks,
                               network_in_workers)

    chunks = file_chunks(paths, getattr(predictor, "batch_size", None), chunk_size)
    if n_jobs not in (None, 1) and len(chunks) < 2:
        n_jobs = None  # one chunk: starting a worker costs more than it saves
    params = _builder_params(builder)
    supported = None if supported is None else set(supported)
    n_processes, threads = shared_processes(n_jobs)
    here = predictor is not None and not network_in_workers(n_processes)
    with contextlib.ExitStack() as stack:
        model = predictor
        if predictor is not None and not here:
            # cloudpickle (joblib's): a model class defined in a script or a
            # notebook (__main__) travels by value, as joblib's tasks do
            try:
                import cloudpickle  # joblib >= 1.6 depends on it
            except ImportError:
                from joblib.externals import cloudpickle  # joblib < 1.6 ships it

            folder = stack.enter_context(tempfile.TemporaryDirectory(prefix="skcrystal-"))
            model = _PredictorFile(f"{folder}/predictor.pkl")
            with open(model.path, "wb") as fh:
                cloudpickle.dump(predictor, fh)
        if n_processes > 1 and threads < torch.get_num_threads():
            # this process works beside the workers: as many threads as
            # each of them
            stack.callback(torch.set_num_threads, torch.get_num_threads())
            torch.set_num_threads(threads)
        if here:
            results = imap_chunks_shared(
                collate_file_chunk, chunks, n_jobs, started=started,
                then=lambda chunk, result: _predicted_here(result, predictor, chunk, params,
                                                           supported),
                **collate_kwargs(params, supported, predictor.graph_extras,
                                 predictor.batch_size, numbers))
        else:  # chunks started for collate_file_chunk do not match: cancelled there
            results = imap_chunks_shared(predict_file_chunk, chunks, n_jobs, started=started,
                                         builder_params=params, supported=supported,
                                         model=model, numbers=numbers)
        offset = 0
        for chunk, result in zip(chunks, results):
            yield FileChunk(offset, *result)
            offset += len(chunk)
