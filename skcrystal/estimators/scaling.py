"""Target and descriptor scaling: the fitted data state of an estimator.

Small, separately tested pieces the estimator base composes:

* :class:`TargetScaler` standardizes regression targets (the loss is MSE on
  standardized targets; predictions come back in the units of ``y``);
* :class:`LabelEncoder` maps class labels of any type to codes;
* :class:`DescriptorScaler` standardizes descriptor columns with training
  statistics and checks that later inputs have the fitted columns.

Each has ``get_state()`` / ``from_state()`` holding plain numbers, lists
and arrays only, so the state can be stored without pickle.
"""
from __future__ import annotations

import numpy as np

from .._validation import check_targets

__all__ = ["TargetScaler", "LabelEncoder", "DescriptorScaler"]


class _State:
    _fields = ()
    #: fields that are lists of str, not arrays (restored as lists)
    _list_fields = ()

    def _check_fitted(self):
        if not all(hasattr(self, k) for k in self._fields):  # not an AttributeError
            from sklearn.exceptions import NotFittedError
            raise NotFittedError(f"this {type(self).__name__} is not fitted yet; call fit "
                                 "first")

    def get_state(self):
        """The fitted state as a dict of lists/numbers (JSON-friendly)."""
        self._check_fitted()
        out = {}
        for k in self._fields:
            v = getattr(self, k)
            out[k] = v.tolist() if isinstance(v, np.ndarray) else v
        return out

    @classmethod
    def from_state(cls, state):
        obj = cls.__new__(cls)
        for k in cls._fields:
            v = state[k]
            if k in cls._list_fields:
                v = [str(x) for x in v]
            elif isinstance(v, list):
                v = np.asarray(v)
            setattr(obj, k, v)
        return obj


class TargetScaler(_State):
    """Standardize regression targets column by column.

    Attributes
    ----------
    mean_, scale_ : ndarray, shape (n_targets,)
        Training mean and standard deviation (1 where it is 0).
    ndim_ : int
        1 for 1-D ``y`` (``inverse_transform`` returns shape (n,)), else 2.
    """

    _fields = ("mean_", "scale_", "ndim_")

    def fit(self, y):
        y = check_targets(y)
        y2 = y.reshape(len(y), -1)
        self.ndim_ = int(y.ndim)
        self.mean_ = y2.mean(axis=0)
        std = y2.std(axis=0)
        self.scale_ = np.where(std > 0, std, 1.0)
        constant = np.flatnonzero(std == 0)
        if len(y2) > 1 and len(constant):
            import warnings
            where = "" if y2.shape[1] == 1 else \
                f" in target column(s) {constant.tolist()}"
            values = ", ".join(f"{v:g}" for v in self.mean_[constant][:5])
            # the network then has to learn to output exactly zero, which a
            # short fit does not: predictions scatter around the one value
            warnings.warn(f"y is constant{where} (every value {values}): nothing to learn, "
                          "and the model's predictions only approach that value as it "
                          "trains; check the target column", UserWarning, stacklevel=4)
        return self

    @property
    def n_outputs(self):
        return int(self.mean_.shape[0])

    def transform(self, y):
        """Standardized targets, float32, shape (n, n_targets)."""
        self._check_fitted()
        y = check_targets(y)
        y2 = y.reshape(len(y), -1)
        if y2.shape[1] != self.n_outputs:
            raise ValueError(f"y has {y2.shape[1]} targets but the model was "
                             f"fitted with {self.n_outputs}")
        return ((y2 - self.mean_) / self.scale_).astype(np.float32)

    def inverse_transform(self, raw):
        """Model outputs (n, n_targets) -> original units, (n,) for 1-D ``y``."""
        self._check_fitted()
        out = np.asarray(raw, dtype=np.float64) * self.scale_ + self.mean_
        return out[..., 0] if self.ndim_ == 1 else out


class LabelEncoder(_State):
    """Class labels of any sortable type <-> integer codes.

    Attributes
    ----------
    classes_ : ndarray
        The sorted labels seen in ``fit``.
    """

    _fields = ("classes_",)

    def fit(self, y):
        y = check_targets(y, classification=True)
        self.classes_ = np.unique(y)
        if len(self.classes_) < 2:
            raise ValueError(f"y has a single class {self.classes_.tolist()}; a "
                             "classifier needs at least two")
        return self

    def transform(self, y):
        """Codes (int64, shape (n,)); unseen labels raise naming them."""
        self._check_fitted()
        y = check_targets(y, classification=True)
        pos = np.clip(np.searchsorted(self.classes_, y), 0, len(self.classes_) - 1)
        unknown = self.classes_[pos] != y
        if unknown.any():
            raise ValueError(f"y has labels unseen in the first fit: "
                             f"{np.unique(np.asarray(y)[unknown]).tolist()}")
        return pos.astype(np.int64)


class DescriptorScaler(_State):
    """Standardize descriptor columns; check names and finiteness.

    Attributes
    ----------
    names_ : list of str
        Column names in the fitted order.
    mean_, scale_ : ndarray, shape (n_descriptors,)
    """

    _fields = ("names_", "mean_", "scale_")
    _list_fields = ("names_",)

    def fit(self, D, names):
        D = self._check(D, names, fitting=True)
        self.names_ = [str(n) for n in names]
        self.mean_ = D.mean(axis=0)
        std = D.std(axis=0)
        self.scale_ = np.where(std > 0, std, 1.0)
        return self

    def transform(self, D, names):
        """Standardized descriptors, float32, shape (n, n_descriptors)."""
        self._check_fitted()
        D = self._check(D, names, fitting=False)
        return ((D - self.mean_) / self.scale_).astype(np.float32)

    def _check(self, D, names, fitting):
        D = np.asarray(D, dtype=np.float64)
        names = [str(n) for n in names]
        if not fitting and names != self.names_:
            expected = self.names_
            if len(names) != len(expected):
                raise ValueError(
                    f"X has {len(names)} descriptor columns but the model was "
                    f"fitted with {len(expected)}: {expected}")
            i = next(j for j, (a, b) in enumerate(zip(names, expected)) if a != b)
            # same count, other names or order: using them would silently
            # feed each column into another column's weights
            raise ValueError(
                f"descriptor column {i} of X is {names[i]!r} but the model was "
                f"fitted with {expected[i]!r} there; pass the columns in the "
                f"fitted order {expected}")
        bad = ~np.isfinite(D)
        if bad.any():
            rows = np.flatnonzero(bad.any(axis=1))
            cols = [names[j] for j in np.flatnonzero(bad.any(axis=0))]
            raise ValueError(
                f"descriptors contain NaN/inf in rows {rows[:10].tolist()}"
                f"{' ...' if len(rows) > 10 else ''} (columns {cols[:10]}); drop "
                "those structures or pass descriptors=make_pipeline(bank, "
                "SimpleImputer())")
        return D
