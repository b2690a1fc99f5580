"""``python -m skcrystal``: the same as the ``skcrystal`` command (see :mod:`skcrystal.cli`)."""
from skcrystal.cli import run

if __name__ == "__main__":
    run()
