"""Constructor constraints of the model modules, declared without scikit-learn.

Model modules declare their parameters' valid values in scikit-learn's
style (``Interval``, ``StrOptions``, types, ``None``, ``"array-like"``,
``"boolean"``) and every construction checks them. Importing
``sklearn.utils._param_validation`` costs about a second (it imports
``scipy.stats``), more than ``torch`` itself, which a command that only
loads a model and predicts should not pay.

So the two constraint kinds the modules build, :class:`Interval` and
:class:`StrOptions`, are plain records here with scikit-learn's
constructor signature, turned into scikit-learn's objects
(:func:`sklearn_constraints`) only when scikit-learn validates. The check
run at every construction, :func:`validate`, first tries
:func:`plainly_satisfied`, which accepts a value only where scikit-learn
certainly accepts it (plain Python ints, floats, strings, None, arrays and
the declared types); anything else (a numpy scalar, a bool for a number, a
value out of range...) is judged by scikit-learn's
``validate_parameter_constraints``, which raises its usual error naming the
parameter. The outcome is scikit-learn's in every case.
"""
from __future__ import annotations

import math
import numbers

__all__ = ["Interval", "StrOptions", "sklearn_constraints", "plainly_satisfied",
           "validate"]


class Interval:
    """``sklearn.utils._param_validation.Interval``, built on first use.

    Parameters
    ----------
    type : {numbers.Integral, numbers.Real}
    left, right : number or None
        Bounds (None: unbounded).
    closed : {"left", "right", "both", "neither"}
    """

    def __init__(self, type, left, right, *, closed):  # noqa: A002 - sklearn's name
        self.type, self.left, self.right, self.closed = type, left, right, closed

    def sklearn(self):
        """The scikit-learn constraint."""
        from sklearn.utils._param_validation import Interval as SkInterval

        return SkInterval(self.type, self.left, self.right, closed=self.closed)

    def plainly_satisfied_by(self, value):
        # plain ints (not bool) for Integral; plain finite ints or floats for Real
        if type(value) is int:
            pass
        elif type(value) is float and self.type is numbers.Real and math.isfinite(value):
            pass
        else:
            return False
        if self.type not in (numbers.Integral, numbers.Real):
            return False
        left_ok = self.left is None or (
            value >= self.left if self.closed in ("left", "both") else value > self.left)
        right_ok = self.right is None or (
            value <= self.right if self.closed in ("right", "both") else value < self.right)
        return left_ok and right_ok

    def __repr__(self):
        return (f"Interval({self.type.__name__}, {self.left}, {self.right}, "
                f"closed={self.closed!r})")


class StrOptions:
    """``sklearn.utils._param_validation.StrOptions``, built on first use.

    Parameters
    ----------
    options : set of str
    deprecated : set of str, optional
    """

    def __init__(self, options, *, deprecated=None):
        self.options, self.deprecated = set(options), deprecated

    def sklearn(self):
        """The scikit-learn constraint."""
        from sklearn.utils._param_validation import StrOptions as SkStrOptions

        return SkStrOptions(self.options, deprecated=self.deprecated)

    def plainly_satisfied_by(self, value):
        # a deprecated option is accepted by scikit-learn with a warning: its call
        return type(value) is str and value in self.options and \
            value not in (self.deprecated or ())

    def __repr__(self):
        return f"StrOptions({sorted(self.options)!r})"


def _as_sklearn(constraint):
    return constraint.sklearn() if isinstance(constraint, (Interval, StrOptions)) \
        else constraint


def sklearn_constraints(constraints):
    """The constraints dict with this module's records as scikit-learn objects.

    Parameters
    ----------
    constraints : dict of str -> list
        ``_parameter_constraints`` (records of this module, scikit-learn
        objects and plain entries may be mixed).

    Returns
    -------
    dict of str -> list
        What ``validate_parameter_constraints`` takes.
    """
    return {name: value if isinstance(value, str) else [_as_sklearn(c) for c in value]
            for name, value in constraints.items()}


def _plain(constraint, value):
    """Whether ``value`` satisfies ``constraint`` for certain; False when unsure."""
    if isinstance(constraint, (Interval, StrOptions)):
        return constraint.plainly_satisfied_by(value)
    if constraint is None:
        return value is None
    if isinstance(constraint, type):
        return isinstance(value, constraint)
    if constraint == "boolean":
        return type(value) is bool
    if constraint == "array-like":
        import numpy as np

        return isinstance(value, (list, tuple, np.ndarray))
    return False  # another kind: scikit-learn judges


def plainly_satisfied(constraints, params):
    """Whether every parameter certainly satisfies its constraints.

    Parameters
    ----------
    constraints : dict of str -> list
    params : dict of str -> object
        Parameters without constraints are not checked (as scikit-learn
        does).

    Returns
    -------
    bool
        True only where scikit-learn's validation would pass; False means
        "ask scikit-learn", not "invalid".
    """
    for name, value in params.items():
        options = constraints.get(name)
        if options is None:
            continue
        if isinstance(options, str) or not any(_plain(c, value) for c in options):
            return False
    return True


def validate(constraints, params, caller_name):
    """scikit-learn's ``validate_parameter_constraints``, skipped when plainly valid.

    Parameters
    ----------
    constraints : dict of str -> list
    params : dict of str -> object
    caller_name : str

    Raises
    ------
    sklearn.utils._param_validation.InvalidParameterError
        (a ``ValueError`` and ``TypeError``) naming the parameter.
    """
    if plainly_satisfied(constraints, params):
        return
    from sklearn.utils._param_validation import validate_parameter_constraints

    validate_parameter_constraints(sklearn_constraints(constraints), params,
                                   caller_name=caller_name)
