"""Library logging: every message goes through :mod:`logging` (logger ``skcrystal``).

skcrystal prints nothing itself. Messages asked for with ``verbose=`` are
logged at INFO; when the application has not configured logging (no
handler on the root logger or on ``skcrystal``), a plain stderr handler is
attached for the duration of the call, so ``verbose=1`` still shows them.
Warnings of the library (e.g. the training memory of a batch) are logged at
WARNING, which Python shows on stderr when logging is not configured.
Configure as usual, e.g.
``logging.getLogger("skcrystal").setLevel(logging.ERROR)`` to silence them.
"""
from __future__ import annotations

import contextlib
import logging
import sys

logger = logging.getLogger("skcrystal")


def _configured():
    for lg in (logging.getLogger(), logger):
        if any(not isinstance(h, logging.NullHandler) for h in lg.handlers):
            return True
    return False


@contextlib.contextmanager
def verbose_logging(verbose):
    """While ``verbose``, show skcrystal's INFO messages on stderr unless the
    application configured logging itself."""
    if not verbose or _configured():
        yield
        return
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(message)s"))
    level = logger.level
    logger.addHandler(handler)
    if logger.getEffectiveLevel() > logging.INFO:
        logger.setLevel(logging.INFO)
    try:
        yield
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)
