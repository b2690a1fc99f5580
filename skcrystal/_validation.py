"""Input checks shared by every public entry point.

Errors name the offending item by its position in the user's input, so a
bad row in a 10,000-structure CSV can be found.
"""
from __future__ import annotations

import numbers

import numpy as np

__all__ = ["check_structures", "check_targets", "check_consistent_length", "as_structure_list",
           "split_input", "descriptor_values"]


def _describe(obj):
    text = repr(obj)
    return text if len(text) < 60 else text[:57] + "..."


def as_structure_list(X, name="X"):
    """Turn a list, tuple, numpy object array or pandas Series into a list.

    Does not check the items (see :func:`check_structures`).
    """
    try:
        import pandas as pd
    except ImportError:  # pragma: no cover - pandas is a dependency
        pd = None
    if pd is not None and isinstance(X, pd.DataFrame):
        raise TypeError(
            f"{name} is a DataFrame; pass the structure column (a Series) or "
            "use an estimator that accepts DataFrames with descriptor columns")
    if pd is not None and isinstance(X, pd.Series):
        return list(X.to_numpy())
    if isinstance(X, np.ndarray):
        if X.ndim != 1:
            hint = ""
            if X.dtype == object and X.size and type(X.flat[0]).__name__ == "PeriodicSite":
                hint = (": np.array(structures, dtype=object) split each Structure "
                        "into its sites; make the array with a = np.empty(n, "
                        "dtype=object); a[:] = structures")
            raise ValueError(
                f"{name} must be one-dimensional (one structure per row), "
                f"got an array of shape {X.shape}{hint}")
        return list(X)
    if isinstance(X, (list, tuple)):
        return list(X)
    from pymatgen.core import Structure
    if isinstance(X, Structure):
        raise TypeError(
            f"{name} is a single Structure; pass a list of structures, "
            f"e.g. [{name}]")
    try:
        return list(X)
    except TypeError:
        raise TypeError(
            f"{name} must be a sequence of pymatgen Structures, got "
            f"{type(X).__name__}") from None


def split_input(X, structure_column="structure", name="X", descriptor_columns=True):
    """The one place where user input becomes structures (+ descriptor columns).

    Parameters
    ----------
    X : sequence of Structure, pandas Series, or DataFrame
        A DataFrame holds the structures in ``structure_column`` and,
        optionally, numeric descriptor columns.
    structure_column : str
    descriptor_columns : bool
        Read the other columns of a DataFrame as descriptors (else ignore
        them).

    Returns
    -------
    structures : list
        The items (not yet validated, see :func:`check_structures`).
    block : ndarray of float64, shape (n, k), or None
        The other columns of a DataFrame.
    names : list of str
        Their names.
    """
    try:
        import pandas as pd
    except ImportError:  # pragma: no cover - pandas is a dependency
        pd = None
    if pd is not None and isinstance(X, pd.DataFrame):
        if structure_column not in X.columns:
            raise ValueError(
                f"{name} is a DataFrame without the structure column "
                f"structure_column={structure_column!r}; columns are {list(X.columns)}")
        other = X.drop(columns=[structure_column])
        if not descriptor_columns:
            return list(X[structure_column]), None, []
        non_numeric = [c for c in other.columns
                       if not pd.api.types.is_numeric_dtype(other[c])]
        if non_numeric:
            raise ValueError(
                f"descriptor columns of {name} must be numeric; not numeric: {non_numeric}")
        block = other.to_numpy(dtype=np.float64) if other.shape[1] else None
        return list(X[structure_column]), block, [str(c) for c in other.columns]
    return as_structure_list(X, name), None, []


def descriptor_values(transformer, structures, fit):
    """Run a descriptor transformer: (values (n, k) float64, column names).

    Parameters
    ----------
    transformer : transformer
        Structures -> numbers; ``fit_transform`` when ``fit`` else
        ``transform``.
    structures : list of Structure
    fit : bool
    """
    values = transformer.fit_transform(structures) if fit else transformer.transform(structures)
    values = np.asarray(values, dtype=np.float64)
    if values.ndim != 2 or values.shape[0] != len(structures):
        raise ValueError(
            f"descriptors transformer {type(transformer).__name__} returned shape "
            f"{values.shape}, expected ({len(structures)}, n_descriptors)")
    try:
        names = [str(n) for n in transformer.get_feature_names_out()]
    except (AttributeError, TypeError, ValueError):
        names = [f"descriptor_{i}" for i in range(values.shape[1])]
    return values, names


def check_structures(X, name="X", supported_elements=None):
    """Validate a sequence of pymatgen structures.

    Parameters
    ----------
    X : list, tuple, ndarray of object or pandas Series of Structure
    name : str
        How the argument is called in error messages.
    supported_elements : set of int, optional
        Atomic numbers that have features; others raise ``ValueError``.

    Returns
    -------
    list of Structure

    Raises
    ------
    TypeError
        An item is not a ``Structure`` (a ``Molecule``, a CIF string...).
    ValueError
        Empty input, an empty structure, a disordered site, or an
        element without features.
    """
    from pymatgen.core import Structure

    items = as_structure_list(X, name)
    if len(items) == 0:
        raise ValueError(f"{name} is empty: at least one structure is needed")
    for i, s in enumerate(items):
        if not isinstance(s, Structure):
            hint = ""
            if isinstance(s, str):
                hint = (" (a string: parse CIFs first, e.g. with "
                        "skcrystal.datasets.structures_from_cif)")
            raise TypeError(
                f"{name}[{i}] is a {type(s).__name__}, not a pymatgen "
                f"Structure{hint}: {_describe(s)}")
        if len(s) == 0:
            raise ValueError(f"{name}[{i}] is an empty structure (no sites)")
        if not s.is_ordered:
            bad = next(j for j, site in enumerate(s) if not site.is_ordered)
            raise ValueError(
                f"{name}[{i}] ({s.composition.reduced_formula}) is disordered: "
                f"site {bad} has partial occupancy {s[bad].species}; graphs and "
                "descriptors need ordered structures (order it first, e.g. with "
                "pymatgen's OrderDisorderedStructureTransformation)")
        if supported_elements is not None:
            zs = set(s.atomic_numbers)
            missing = zs.difference(supported_elements)
            if missing:
                from pymatgen.core import Element
                names = ", ".join(Element.from_Z(z).symbol for z in sorted(missing))
                raise ValueError(
                    f"{name}[{i}] ({s.composition.reduced_formula}) contains "
                    f"element(s) with no atom features: {names}")
    return items


def check_targets(y, n_samples=None, name="y", allow_nan=False, classification=False):
    """Validate targets: shape, finiteness and length.

    Returns
    -------
    ndarray
        ``y`` as an array of shape (n,) or (n, n_targets) (float for
        regression, unchanged dtype for classification).
    """
    if y is None:
        raise ValueError(f"{name} is required (got None)")
    try:
        import pandas as pd
        if isinstance(y, (pd.Series, pd.DataFrame)):
            y = y.to_numpy()
    except ImportError:  # pragma: no cover
        pass
    arr = np.asarray(y)
    if arr.ndim == 0:
        raise ValueError(f"{name} must be a 1-D or 2-D array, got a scalar")
    if arr.ndim > 2:
        raise ValueError(f"{name} must be 1-D or 2-D, got shape {arr.shape}")
    if classification:
        if arr.ndim != 1:
            raise ValueError(
                f"{name} must be 1-D for a classifier, got shape {arr.shape}")
        if arr.dtype.kind == "f" and not np.all(np.isfinite(arr)):
            bad = np.flatnonzero(~np.isfinite(arr))
            raise ValueError(f"{name} has NaN/inf labels at rows {bad[:10].tolist()}")
    else:
        if arr.dtype == object or arr.dtype.kind in "USb":
            try:
                arr = arr.astype(np.float64)
            except (TypeError, ValueError):
                raise TypeError(
                    f"{name} must be numeric for a regressor, got dtype "
                    f"{np.asarray(y).dtype}") from None
        arr = arr.astype(np.float64)
        if not allow_nan:
            bad = ~np.isfinite(arr)
            if bad.any():
                rows = np.flatnonzero(bad.reshape(len(arr), -1).any(axis=1))
                raise ValueError(
                    f"{name} contains NaN or inf at rows {rows[:10].tolist()}"
                    f"{' ...' if len(rows) > 10 else ''}")
    if n_samples is not None:
        check_consistent_length(n_samples, len(arr), "X", name)
    return arr


def check_consistent_length(n_x, n_y, name_x="X", name_y="y"):
    if n_x != n_y:
        raise ValueError(
            f"{name_x} and {name_y} have different lengths: {n_x} structures "
            f"but {n_y} targets")


def check_positive(value, name, integer=False, allow_none=False):
    """Check a numeric parameter; the error names the parameter."""
    if value is None and allow_none:
        return value
    kind = numbers.Integral if integer else numbers.Real
    if not isinstance(value, kind) or isinstance(value, bool) or not value > 0:
        what = "a positive integer" if integer else "a positive number"
        raise ValueError(f"{name} must be {what}, got {value!r}")
    return value
