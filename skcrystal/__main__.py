"""``python -m skcrystal``: the same as the ``skcrystal`` command (see :mod:`skcrystal.cli`)."""
import sys

from skcrystal.cli import main

if __name__ == "__main__":
    sys.exit(main())
