"""Ctrl-C during training: noticed, so that it stops the caller too.

skorch ends ``fit`` quietly when a ``KeyboardInterrupt`` reaches its epoch
loop: that is how its ``EarlyStopping`` stops training, and how a user
keeps a model trained for fewer epochs. Inside ``cross_val_score``,
``GridSearchCV`` or a benchmark loop the same Ctrl-C would leave a partly
trained model that the caller scores as if finished, and the loop would go
on. :func:`noting_interrupts` tells the two apart: it records a SIGINT
arriving inside its block (the interrupt itself is raised as usual), so the
estimator can raise once skorch has wrapped up.
"""
from __future__ import annotations

import contextlib
import signal
import threading


@contextlib.contextmanager
def noting_interrupts():
    """A list that gets an entry when SIGINT arrives inside the block.

    The previous handler still runs (Python's default raises
    ``KeyboardInterrupt``). Outside the main thread, where no handler can
    be set, the list stays empty.
    """
    seen = []
    if threading.current_thread() is not threading.main_thread():
        yield seen
        return
    previous = signal.getsignal(signal.SIGINT)

    def handler(signum, frame):
        seen.append(signum)
        if callable(previous):
            previous(signum, frame)
        elif previous != signal.SIG_IGN:
            signal.default_int_handler(signum, frame)

    signal.signal(signal.SIGINT, handler)
    try:
        yield seen
    finally:
        signal.signal(signal.SIGINT, previous)
