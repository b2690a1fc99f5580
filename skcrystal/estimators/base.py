"""The estimator base shared by every skcrystal model.

:class:`CrystalGraphNet` is a skorch ``NeuralNet`` whose ``X`` is a sequence
of pymatgen structures (list, tuple, object array, pandas Series) or a
DataFrame with a structure column plus numeric descriptor columns. It owns
everything that is not model-specific:

* input checks with errors that name the offending item;
* graphs from the content-keyed cache (built once per structure and graph
  parameters, in parallel with ``n_jobs``), collated per mini-batch;
* target standardization (regression) / label encoding (classification);
* optional descriptors concatenated to the pooled representation
  (``descriptors=``, standardized with training statistics only);
* ``random_state`` seeding without touching the caller's global RNG;
* ``transform`` (pooled crystal representations), pickling, skorch's
  ``save_params`` / ``load_params``.

Defaults, documented once here: AdamW (lr 1e-3, no weight decay), batch 64,
100 epochs, cosine annealing of the learning rate to zero over
``max_epochs`` (callback ``lr_schedule``; disable with
``callbacks__lr_schedule=None``), no internal validation split
(``train_split=None``: scikit-learn's CV does the validation; pass
``train_split=skorch.dataset.ValidSplit(0.1)`` to monitor ``valid_loss``).
"""
from __future__ import annotations

import contextlib
from functools import partial

import numpy as np
import torch
from sklearn.base import ClassifierMixin, RegressorMixin, TransformerMixin, clone
from sklearn.exceptions import NotFittedError
from skorch import NeuralNet
from skorch.callbacks import Callback
from skorch.dataset import ValidSplit

from .._validation import as_structure_list, check_structures, check_targets
from ..graphs import GraphBuilder, collate_graphs, get_graphs
from ..nn.embedding import supported_elements

__all__ = ["CrystalGraphNet", "CrystalRegressorBase", "CrystalClassifierBase",
           "GraphDataset", "CosineAnnealing"]


class GraphDataset(torch.utils.data.Dataset):
    """Graphs with optional descriptor rows and targets, indexable by skorch.

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
        return self.graphs[i], d, t


def collate_samples(items, extras=()):
    """DataLoader ``collate_fn``: items of :class:`GraphDataset` -> (GraphBatch, y)."""
    graphs, descs, ys = zip(*items)
    descriptors = None if descs[0] is None else np.stack(descs)
    batch = collate_graphs(graphs, descriptors=descriptors, extras=extras)
    if ys[0] is None:
        return batch, None
    y = np.stack(ys)
    y = torch.as_tensor(y, dtype=torch.long if y.dtype.kind in "iu" else torch.float32)
    return batch, y


def _cosine_factor(epoch, total, warm):
    if epoch < warm:
        return (epoch + 1) / (warm + 1)
    return 0.5 * (1 + np.cos(np.pi * min(epoch - warm, total) / max(total - warm, 1)))


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

    def on_epoch_end(self, net, **kwargs):
        self.scheduler_.step()


@contextlib.contextmanager
def _seeded(random_state):
    """Seed torch inside the block and restore the caller's RNG after."""
    if random_state is None:
        yield
        return
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(int(random_state))
        yield


class CrystalGraphNet(NeuralNet):
    """skorch ``NeuralNet`` over crystal structures (base class).

    Parameters
    ----------
    module : type of torch.nn.Module
        A :class:`~skcrystal.nn.head.CrystalModel` class; its parameters
        are set with the ``module__`` prefix (``module__n_conv=4``). The
        estimator supplies ``n_outputs`` and ``n_descriptors`` from the data.
    criterion : type of torch loss
    optimizer : type of torch.optim.Optimizer, default AdamW
        Its parameters use the ``optimizer__`` prefix.
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
    descriptors : transformer or None
        Structures -> numbers (e.g. :class:`skcrystal.descriptors.DescriptorBank`,
        or a Pipeline ending in an imputer), fitted on the training
        structures; its standardized output is concatenated to the pooled
        representation (descriptor-hybridized model).
    structure_column : str, default "structure"
        Column of the structures when ``X`` is a DataFrame; the other
        (numeric) columns are used as precomputed descriptors.
    random_state : int or None
        Seeds weight initialisation, shuffling and dropout for the fit.
    n_jobs : int or None
        joblib workers to build graphs (a ``descriptors`` transformer uses
        its own ``n_jobs``).
    cache_dir : str or None
        Optional on-disk graph cache folder.
    train_split : callable or None, default None
        skorch's internal validation split (see the module docstring).
    verbose : int, default 0
        1 prints a line per epoch.
    **kwargs
        Prefixed parameters (``module__``, ``optimizer__``,
        ``iterator_train__``, ``callbacks__``).
    """

    #: per-model graph extras: tuple of (key, func, params); see
    #: :meth:`skcrystal.graphs.CrystalGraph.with_extra`
    def graph_extras(self):
        return ()

    def __init__(self, module, criterion, optimizer=torch.optim.AdamW, lr=1e-3,
                 max_epochs=100, batch_size=64, radius=8.0, max_neighbors=12,
                 grow_radius=False, descriptors=None, structure_column="structure",
                 random_state=None, n_jobs=None, cache_dir=None, train_split=None,
                 verbose=0, **kwargs):
        super().__init__(module, criterion, optimizer=optimizer, lr=lr,
                         max_epochs=max_epochs, batch_size=batch_size,
                         train_split=train_split, verbose=verbose, **kwargs)
        self.radius = radius
        self.max_neighbors = max_neighbors
        self.grow_radius = grow_radius
        self.descriptors = descriptors
        self.structure_column = structure_column
        self.random_state = random_state
        self.n_jobs = n_jobs
        self.cache_dir = cache_dir

    # ------------------------------------------------------------------ skorch
    @property
    def _default_callbacks(self):
        return [*super()._default_callbacks, ("lr_schedule", CosineAnnealing())]

    def initialize_module(self):
        kwargs = self.get_params_for("module")
        kwargs.update(self._module_data_kwargs())
        try:
            self.module_ = self.initialized_instance(self.module, kwargs)
        except TypeError as exc:
            name = getattr(self.module, "__name__", type(self.module).__name__)
            raise TypeError(f"invalid module__ parameter for {name}: {exc}") from exc
        return self

    def _module_data_kwargs(self):
        """Module arguments that come from the data (set during fit)."""
        kw = {}
        if hasattr(self, "n_outputs_"):
            kw["n_outputs"] = self.n_outputs_
        if getattr(self, "n_descriptors_", 0):
            kw["n_descriptors"] = self.n_descriptors_
        return kw

    def get_iterator(self, dataset, training=False):
        prefix = "iterator_train" if training else "iterator_valid"
        kwargs = self.get_params_for(prefix)
        kwargs.setdefault("collate_fn", partial(collate_samples, extras=self.graph_extras()))
        if training:
            kwargs.setdefault("shuffle", True)
        kwargs.setdefault("batch_size", self.batch_size)
        if kwargs["batch_size"] == -1:
            kwargs["batch_size"] = len(dataset)
        iterator = self.iterator_train if training else self.iterator_valid
        return iterator(dataset, **kwargs)

    def infer(self, x, **fit_params):
        return self.module_(x.to(self.device), **fit_params)

    def get_loss(self, y_pred, y_true, X=None, training=False):
        return self.criterion_(y_pred, y_true.to(y_pred.device))

    # ------------------------------------------------------------------ data
    def _builder(self):
        return GraphBuilder(radius=self.radius, max_neighbors=self.max_neighbors,
                            grow_radius=self.grow_radius)

    def _split_input(self, X):
        """(structures, precomputed descriptor block or None, its column names)."""
        try:
            import pandas as pd
        except ImportError:  # pragma: no cover
            pd = None
        if pd is not None and isinstance(X, pd.DataFrame):
            if self.structure_column not in X.columns:
                raise ValueError(
                    f"X is a DataFrame without the structure column "
                    f"structure_column={self.structure_column!r}; columns are "
                    f"{list(X.columns)}")
            other = X.drop(columns=[self.structure_column])
            non_numeric = [c for c in other.columns
                           if not pd.api.types.is_numeric_dtype(other[c])]
            if non_numeric:
                raise ValueError(
                    f"descriptor columns of X must be numeric; not numeric: {non_numeric}")
            block = other.to_numpy(dtype=np.float64) if other.shape[1] else None
            return list(X[self.structure_column]), block, [str(c) for c in other.columns]
        return as_structure_list(X), None, []

    def _check_structures(self, X):
        atom_kw = self.get_params_for("module")
        supported = supported_elements(atom_kw.get("atom_features", "cgcnn"),
                                       atom_kw.get("extra_atom_features"))
        return check_structures(X, supported_elements=supported)

    def _graphs(self, structures):
        return get_graphs(structures, self._builder(), n_jobs=self.n_jobs,
                          cache_dir=self.cache_dir, indices=range(len(structures)))

    def prepare(self, X):
        """Validate structures and build (or fetch) their graphs in the cache.

        Calling this before ``fit``/``predict`` is optional (both do it); it
        lets a caller build the graphs of a large dataset up front, e.g.
        in chunks with a progress display, with this estimator's graph
        parameters and graph extras.

        Parameters
        ----------
        X : sequence of Structure, or DataFrame

        Returns
        -------
        list of CrystalGraph
        """
        structures, _, _ = self._split_input(X)
        graphs = self._graphs(self._check_structures(structures))
        extras = self.graph_extras()
        for g in graphs:
            for key, func, params in extras:
                g.with_extra(key, func, **params)
        return graphs

    def _descriptor_matrix(self, structures, block, names, fit):
        parts, cols = [], []
        if self.descriptors is not None:
            if fit:
                self.descriptors_ = clone(self.descriptors)
                values = self.descriptors_.fit_transform(structures)
            else:
                values = self.descriptors_.transform(structures)
            values = np.asarray(values, dtype=np.float64)
            if values.ndim != 2 or values.shape[0] != len(structures):
                raise ValueError(
                    f"descriptors transformer returned shape {values.shape}, expected "
                    f"({len(structures)}, n_descriptors)")
            parts.append(values)
            try:
                cols += list(self.descriptors_.get_feature_names_out())
            except (AttributeError, TypeError, ValueError):
                cols += [f"descriptor_{i}" for i in range(values.shape[1])]
        if block is not None:
            parts.append(block)
            cols += names
        if fit:
            self.descriptor_names_ = cols
        elif list(cols) != list(getattr(self, "descriptor_names_", [])):
            expected = list(self.descriptor_names_)
            if len(cols) != len(expected):
                raise ValueError(
                    f"X has {len(cols)} descriptor columns but the model was fitted "
                    f"with {len(expected)}: {expected}")
            i = next(j for j, (a, b) in enumerate(zip(cols, expected)) if a != b)
            # same count, other names or order: using them would silently
            # feed each column into another column's weights
            raise ValueError(
                f"descriptor column {i} of X is {cols[i]!r} but the model was fitted "
                f"with {expected[i]!r} there; pass the columns in the fitted order "
                f"{expected}")
        if not parts:
            if fit:
                self.n_descriptors_ = 0
            return None
        D = np.hstack(parts)
        bad = ~np.isfinite(D)
        if bad.any():
            rows = np.flatnonzero(bad.any(axis=1))
            bad_cols = [cols[j] for j in np.flatnonzero(bad.any(axis=0))]
            raise ValueError(
                f"descriptors contain NaN/inf in rows {rows[:10].tolist()}"
                f"{' ...' if len(rows) > 10 else ''} (columns {bad_cols[:10]}); "
                "drop those structures or pass descriptors=make_pipeline(bank, "
                "SimpleImputer())")
        if fit:
            self.n_descriptors_ = D.shape[1]
            self.descriptor_mean_ = D.mean(axis=0)
            std = D.std(axis=0)
            self.descriptor_scale_ = np.where(std > 0, std, 1.0)
        return ((D - self.descriptor_mean_) / self.descriptor_scale_).astype(np.float32)

    def _dataset(self, X, y=None, fit=False):
        structures, block, names = self._split_input(X)
        structures = self._check_structures(structures)
        if y is not None and len(y) != len(structures):
            raise ValueError(
                f"X and y have different lengths: {len(structures)} structures "
                f"but {len(y)} targets")
        D = self._descriptor_matrix(structures, block, names, fit)
        return GraphDataset(self._graphs(structures), D, y)

    # ------------------------------------------------------------------ fit
    def _encode_targets(self, y, fit):  # pragma: no cover - abstract
        raise NotImplementedError

    def fit(self, X, y=None, **fit_params):
        """Train on structures ``X`` and targets ``y``.

        Parameters
        ----------
        X : sequence of Structure, or DataFrame
            See the class docstring.
        y : array-like, shape (n,) or (n, n_targets)
        """
        if isinstance(X, torch.utils.data.Dataset):
            return super().fit(X, y, **fit_params)
        refit = not (self.warm_start and self.initialized_)
        y_enc = self._encode_targets(y, fit=refit)
        dataset = self._dataset(X, y_enc, fit=refit)
        with _seeded(self.random_state):
            return super().fit(dataset, self._split_labels(y_enc), **fit_params)

    def partial_fit(self, X, y=None, classes=None, **fit_params):
        if isinstance(X, torch.utils.data.Dataset):
            return super().partial_fit(X, y, classes=classes, **fit_params)
        refit = not self.initialized_
        y_enc = self._encode_targets(y, fit=refit)
        dataset = self._dataset(X, y_enc, fit=refit)
        with _seeded(self.random_state):
            return super().partial_fit(dataset, self._split_labels(y_enc),
                                       classes=classes, **fit_params)

    def _split_labels(self, y_enc):
        return None

    # ------------------------------------------------------------------ save/load
    #: fitted attributes that are not torch state (target scaling, classes,
    #: descriptor scaling); saved by ``save_params(f_state=...)``
    _data_state = ("y_ndim_", "n_outputs_", "y_mean_", "y_scale_", "classes_",
                   "descriptors_", "descriptor_names_", "n_descriptors_",
                   "descriptor_mean_", "descriptor_scale_")

    def save_params(self, f_params=None, f_optimizer=None, f_criterion=None,
                    f_history=None, f_state=None, **kwargs):
        """skorch's ``save_params`` plus ``f_state``: the fitted data state.

        ``f_params`` alone holds the weights; a prediction in original units
        also needs the target scaling (or ``classes_``) and descriptor
        scaling, which ``f_state`` saves (pickle). Pickling the whole
        estimator saves everything at once.
        """
        if f_state is not None:
            import pickle
            self._check_fitted()
            state = {k: getattr(self, k) for k in self._data_state if hasattr(self, k)}
            if hasattr(f_state, "write"):
                pickle.dump(state, f_state)
            else:
                with open(f_state, "wb") as f:
                    pickle.dump(state, f)
        return super().save_params(f_params=f_params, f_optimizer=f_optimizer,
                                   f_criterion=f_criterion, f_history=f_history, **kwargs)

    def load_params(self, f_params=None, f_optimizer=None, f_criterion=None,
                    f_history=None, checkpoint=None, f_state=None, **kwargs):
        """skorch's ``load_params`` plus ``f_state`` (see :meth:`save_params`).

        With ``f_state`` the estimator is initialised with the saved output
        and descriptor sizes first, so a fresh, unfitted estimator with the
        same parameters can load a saved model. Weights saved on a GPU load
        on the CPU when ``device="cpu"`` (skorch maps the tensors).
        """
        if f_state is not None:
            import pickle
            if hasattr(f_state, "read"):
                state = pickle.load(f_state)
            else:
                with open(f_state, "rb") as f:
                    state = pickle.load(f)
            for k, v in state.items():
                setattr(self, k, v)
            self.initialize()
        return super().load_params(f_params=f_params, f_optimizer=f_optimizer,
                                   f_criterion=f_criterion, f_history=f_history,
                                   checkpoint=checkpoint, **kwargs)

    # ------------------------------------------------------------------ inference
    def _check_fitted(self):
        if not (self.initialized_ and hasattr(self, "n_outputs_")):
            raise NotFittedError(
                f"this {type(self).__name__} is not fitted yet; call fit(X, y) first")

    def _apply(self, X, fn):
        """Run ``fn(batch)`` on every mini-batch of ``X`` in eval mode.

        Returns the list of per-batch outputs (numpy).
        """
        self._check_fitted()
        dataset = X if isinstance(X, GraphDataset) else self._dataset(X)
        self.module_.eval()
        outs = []
        with torch.no_grad():
            for batch, _ in self.get_iterator(dataset, training=False):
                outs.append(fn(batch.to(self.device)))
        return outs

    def _forward_numpy(self, X):
        self._check_fitted()
        outs = self._apply(X, self.module_)
        return torch.cat(outs).cpu().numpy().astype(np.float64)

    def transform(self, X):
        """Pooled crystal representations (before descriptors and the head).

        Parameters
        ----------
        X : sequence of Structure

        Returns
        -------
        ndarray, shape (n_structures, d)
        """
        self._check_fitted()
        outs = self._apply(X, self.module_.embed)
        return torch.cat(outs).cpu().numpy().astype(np.float64)

    embed = transform

    def fit_transform(self, X, y=None, **fit_params):
        return self.fit(X, y, **fit_params).transform(X)

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

    def __init__(self, module, criterion=torch.nn.MSELoss, **kwargs):
        super().__init__(module, criterion=criterion, **kwargs)

    def _encode_targets(self, y, fit):
        y = check_targets(y)
        y2 = y.reshape(len(y), -1)
        if fit:
            self.y_ndim_ = y.ndim
            self.n_outputs_ = y2.shape[1]
            self.y_mean_ = y2.mean(axis=0)
            std = y2.std(axis=0)
            self.y_scale_ = np.where(std > 0, std, 1.0)
        elif y2.shape[1] != self.n_outputs_:
            raise ValueError(f"y has {y2.shape[1]} targets but the model was "
                             f"fitted with {self.n_outputs_}")
        return ((y2 - self.y_mean_) / self.y_scale_).astype(np.float32)

    def _unscale(self, raw):
        out = raw * self.y_scale_ + self.y_mean_
        return out[:, 0] if self.y_ndim_ == 1 else out

    def predict(self, X):
        """Predicted targets in original units, shape (n,) or (n, n_targets)."""
        return self._unscale(self._forward_numpy(X))

    def score(self, X, y, sample_weight=None):
        return RegressorMixin.score(self, X, y, sample_weight=sample_weight)


class CrystalClassifierBase(ClassifierMixin, TransformerMixin, CrystalGraphNet):
    """Classification on structures; labels of any type.

    ``classes_`` holds the sorted labels; ``predict_proba`` their
    probabilities (softmax of the logits); cross-entropy loss.
    """

    def __init__(self, module, criterion=torch.nn.CrossEntropyLoss, **kwargs):
        super().__init__(module, criterion=criterion, **kwargs)

    def _encode_targets(self, y, fit):
        y = check_targets(y, classification=True)
        if fit:
            self.classes_, codes = np.unique(y, return_inverse=True)
            if len(self.classes_) < 2:
                raise ValueError(
                    f"y has a single class {self.classes_.tolist()}; a classifier "
                    "needs at least two")
            self.n_outputs_ = len(self.classes_)
            return codes.astype(np.int64)
        pos = np.searchsorted(self.classes_, y)
        pos = np.clip(pos, 0, len(self.classes_) - 1)
        unknown = self.classes_[pos] != y
        if unknown.any():
            raise ValueError(f"y has labels unseen in the first fit: "
                             f"{np.unique(np.asarray(y)[unknown]).tolist()}")
        return pos.astype(np.int64)

    def _split_labels(self, y_enc):
        # stratified internal validation split, when one is requested
        return y_enc if isinstance(self.train_split, ValidSplit) else None

    def predict_proba(self, X):
        """Class probabilities, shape (n, n_classes), columns ordered as ``classes_``."""
        return torch.softmax(torch.as_tensor(self._forward_numpy(X)), dim=1).numpy()

    def predict(self, X):
        """Predicted labels (same type as the ``y`` given to ``fit``)."""
        return self.classes_[self.predict_proba(X).argmax(axis=1)]

    def score(self, X, y, sample_weight=None):
        return ClassifierMixin.score(self, X, y, sample_weight=sample_weight)
