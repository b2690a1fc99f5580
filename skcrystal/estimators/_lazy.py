"""Training and prediction on lazy datasets (larger than memory).

The estimator base hands ``X`` here (through skorch's ``get_dataset`` hook
and the fit-state step) when it is a lazy input:

* a :class:`~skcrystal.graphs.LazyStructures` or a
  :class:`~skcrystal.graphs.GraphStore`;
* a folder (str or PathLike), or a list of structure file paths;
* a torch ``Dataset`` whose items are structures and whose ``targets``
  attribute holds the targets.

Nothing is gathered in memory: the DataLoader reads one batch of graphs at
a time (from the store, or parsed and built in the DataLoader workers), so
peak memory is set by ``batch_size`` (and the store's page cache), not by
the dataset's size. The targets (one number per structure) are held as an
array. Descriptor rows (with ``descriptors=``) are computed in one streaming
pass, in chunks, into a temporary float64 file while their mean and
standard deviation are accumulated, so the descriptor scaling needs no
second pass; the transformer is fitted on the first chunk (enough for
:class:`~skcrystal.descriptors.DescriptorBank`, which learns nothing from
data; fit a data-dependent transformer yourself and pass it fitted inside a
``FunctionTransformer`` otherwise).
"""
from __future__ import annotations

import os
import tempfile
import weakref

import numpy as np
import torch
from sklearn.base import clone
from skorch.utils import is_dataset

from .._validation import check_consistent_length, check_structures, descriptor_values
from ..graphs import GraphStore, LazyStructures
from .scaling import DescriptorScaler

__all__ = ["is_lazy", "as_lazy", "LazyGraphDataset"]

#: structures per chunk of the descriptor pass
DESCRIPTOR_CHUNK = 512


def _is_path(x):
    return isinstance(x, (str, os.PathLike))


def is_lazy(X):
    """Whether ``X`` is one of the lazy inputs (see the module docstring)."""
    if isinstance(X, (LazyStructures, GraphStore)) or _is_path(X):
        return True
    if isinstance(X, (list, tuple)) and X and all(_is_path(x) for x in X):
        return True
    return is_dataset(X) and getattr(X, "targets", None) is not None


def as_lazy(X):
    """``X`` as a :class:`~skcrystal.graphs.LazyStructures`."""
    return X if isinstance(X, LazyStructures) else LazyStructures(X)


def dataset_without_targets(net, X):
    return TypeError(
        f"{type(net).__name__}.fit got a torch Dataset ({type(X).__name__}) whose "
        "targets it cannot see: the number of outputs and the target scaling are "
        "fitted from the targets before training. Pass structures with y, or a lazy "
        "input: skcrystal.graphs.LazyStructures over a GraphStore, a folder or a list "
        "of structure files (with y, or with the targets of the store or folder), or "
        "a Dataset of structures with a `targets` attribute")


def _targets(lazy, y, net):
    if y is None:
        y = lazy.targets
    if y is None:
        raise ValueError(
            f"{type(net).__name__}.fit got no targets: pass y, or a store or folder "
            "that holds them (GraphStore filled with y, a CGCNN/ALIGNN folder with "
            "id_prop.csv)")
    y = net._check_y(y)
    check_consistent_length(len(lazy), len(y))
    return y


# ---------------------------------------------------------------- descriptors
class _RowFile:
    """float64 rows in a temporary file, opened per process; pickles as its path.

    The file is deleted when the object that created it is collected.
    """

    def __init__(self, n_rows, n_cols, folder=None):
        fd, self.path = tempfile.mkstemp(prefix="skcrystal-descriptors-", suffix=".f64",
                                         dir=folder)
        os.close(fd)
        self.shape = (int(n_rows), int(n_cols))
        mm = np.lib.format.open_memmap(self.path, mode="w+", dtype=np.float64,
                                       shape=self.shape)
        del mm
        self._owner = os.getpid()
        self._finalizer = weakref.finalize(self, _unlink, self.path, self._owner)
        self._mm = None
        self._pid = None

    def __getstate__(self):
        return {"path": self.path, "shape": self.shape, "_owner": None}

    def __setstate__(self, state):
        self.__dict__.update(state)
        self._mm = None
        self._pid = None

    def _array(self, mode="r"):
        if self._mm is None or self._pid != os.getpid() or mode != "r":
            mm = np.load(self.path, mmap_mode="r+" if mode != "r" else "r")
            if mode != "r":
                return mm
            self._mm, self._pid = mm, os.getpid()
        return self._mm

    def write(self, start, rows):
        mm = self._array("r+")
        mm[start:start + len(rows)] = rows
        mm.flush()
        del mm

    def __getitem__(self, i):
        return np.asarray(self._array()[i])


def _unlink(path, owner):
    if os.getpid() == owner:
        try:
            os.unlink(path)
        except OSError:
            pass


def _descriptor_rows(net, lazy, fit, y=None):
    """Streaming pass: (row file or None); fits ``descriptor_scaler_`` when ``fit``.

    With ``y`` (a regressor's fit), also screens the descriptors and sets
    the descriptor skip path's ridge start as the in-memory path does, from
    the standardized rows read back from the file (n x n_descriptors
    numbers, briefly in memory); None when the screen sets them aside.
    """
    if fit:
        net.n_descriptors_ = 0
        net.descriptor_scaler_ = None
        net.descriptors_used_, net.descriptor_screen_ = net.descriptors is not None, None
    elif not getattr(net, "descriptors_used_", True):
        return None  # set aside by the descriptor screen
    if net.descriptors is None:
        if not fit and getattr(net, "descriptor_scaler_", None) is not None:
            net.descriptor_scaler_.transform(np.zeros((0, 0)), [])  # names the mismatch
        return None
    if fit:
        net.descriptors_ = clone(net.descriptors)
    n = len(lazy)
    rows = count = mean = m2 = names = None
    for start in range(0, n, DESCRIPTOR_CHUNK):
        chunk = [lazy.structure(i) for i in range(start, min(n, start + DESCRIPTOR_CHUNK))]
        values, names = descriptor_values(net.descriptors_, chunk, fit and start == 0)
        if rows is None:
            rows = _RowFile(n, values.shape[1], folder=net.cache_dir)
            count, mean, m2 = 0, np.zeros(values.shape[1]), np.zeros(values.shape[1])
        if fit:
            # finiteness and names, with the chunk's row numbers shifted
            try:
                DescriptorScaler()._check(values, names, fitting=True)
            except ValueError as exc:
                raise ValueError(f"{exc} (rows counted from X[{start}])") from None
            # Chan et al.'s pairwise update of the mean and the sum of squares
            k = len(values)
            c_mean = values.mean(axis=0)
            c_m2 = ((values - c_mean) ** 2).sum(axis=0)
            delta = c_mean - mean
            total = count + k
            mean = mean + delta * k / total
            m2 = m2 + c_m2 + delta ** 2 * count * k / total
            count = total
        else:
            net.descriptor_scaler_._check(values, names, fitting=False)
        rows.write(start, values)
    if fit:
        std = np.sqrt(m2 / max(count, 1))
        scaler = DescriptorScaler()
        scaler.names_ = [str(c) for c in names]
        scaler.mean_, scaler.scale_ = mean, np.where(std > 0, std, 1.0)
        net.descriptor_scaler_ = scaler
        net.n_descriptors_ = rows.shape[1]
        if y is not None:
            D = (np.asarray(rows._array()) - scaler.mean_) / scaler.scale_
            if net._set_descriptor_use(D.astype(np.float32), y) is None:
                return None  # set aside by the descriptor screen
    return rows


# ---------------------------------------------------------------- dataset
class LazyGraphDataset(torch.utils.data.Dataset):
    """Items (graph, descriptor row, target, position) of a lazy input, read on demand.

    Parameters
    ----------
    lazy : LazyStructures
    builder : GraphBuilder
    extras : tuple of GraphExtra
    supported_elements : set of int or None
    rows : row file or None
        Raw descriptor rows, standardized here with ``scaler``.
    scaler : DescriptorScaler or None
    y : ndarray or None
        Encoded targets.
    """

    def __init__(self, lazy, builder, extras=(), supported_elements=None, rows=None,
                 scaler=None, y=None):
        self.lazy = lazy
        self.builder = builder
        self.extras = tuple(extras)
        self.supported_elements = (None if supported_elements is None
                                   else frozenset(int(z) for z in supported_elements))
        self.rows = rows
        self.scaler = scaler
        self.y = y

    def __len__(self):
        return len(self.lazy)

    def _graph(self, i):
        lazy = self.lazy
        if lazy.store is None:
            s = lazy.structure(i)
            try:
                check_structures([s], supported_elements=self.supported_elements,
                                 sources=[lazy.source_name(i)] if lazy.source_name(i) else None)
            except ValueError as exc:
                raise ValueError(str(exc).replace("X[0]", f"X[{i}]", 1)) from None
            graph = self.builder.build(s, index=i)
            for extra in self.extras:
                graph.extra(extra)
            return graph
        graph = lazy.graph(i, self.builder, self.extras)
        if self.supported_elements is not None:
            bad = set(np.unique(graph.atomic_numbers).tolist()) - self.supported_elements
            if bad:
                from pymatgen.core import Element
                names = sorted(Element.from_Z(z).symbol for z in bad)
                raise ValueError(f"X[{i}] (file {lazy.source_name(i)!r}) has elements "
                                 f"{names} that this model does not support")
        return graph

    def __getitem__(self, i):
        i = int(i)
        d = None
        if self.rows is not None:
            d = ((self.rows[i] - self.scaler.mean_) / self.scaler.scale_).astype(np.float32)
        t = None if self.y is None else self.y[i]
        return self._graph(i), d, t, i


# ---------------------------------------------------------------- estimator hooks
def fit_data_state(net, X, y):
    """The fit-state step of the base on a lazy ``X`` (see the module docstring)."""
    if is_dataset(X) and not is_lazy(X):
        raise dataset_without_targets(net, X)
    net._check_params()
    lazy = as_lazy(X)
    y = _targets(lazy, y, net)
    net._fit_targets(y)
    regressor = getattr(net, "target_scaler_", None) is not None
    rows = _descriptor_rows(net, lazy, fit=True, y=y if regressor else None)
    net._fit_memo_ = (X, lazy, rows)


def get_dataset(net, X, y=None):
    """skorch's ``get_dataset`` on a lazy ``X``."""
    memo = net.__dict__.pop("_fit_memo_", None)
    module = net._graph_module()
    if memo is not None and memo[0] is X:
        lazy, rows = memo[1], memo[2]
    else:
        net.check_is_fitted()
        lazy = as_lazy(X)
        rows = _descriptor_rows(net, lazy, fit=False)
    if y is None and (memo is not None or net.__dict__.get("_seeding_")):
        y = lazy.targets  # training on the targets of the store or folder
    y_enc = None
    if y is not None:
        y = net._check_y(y)
        check_consistent_length(len(lazy), len(y))
        y_enc = net._encode_targets(y)
    supported = getattr(module, "supported_elements", None)
    return LazyGraphDataset(lazy, net._builder(), getattr(module, "graph_extras", ()),
                            supported_elements=supported, rows=rows,
                            scaler=getattr(net, "descriptor_scaler_", None), y=y_enc)


def prepare(net, X):
    """``prepare`` on a lazy ``X``: store the graphs of a writable store (parallel)."""
    lazy = as_lazy(X)
    store = lazy.store
    if store is None or store.readonly:
        raise TypeError("prepare on a lazy input needs a writable GraphStore (its missing "
                        "graphs are built and stored); other lazy inputs are read batch "
                        "by batch, so there is nothing to prepare")
    module = net._graph_module()
    store.build_graphs(net._builder(), extras=getattr(module, "graph_extras", ()),
                       n_jobs=net.n_jobs)
    return store
