#!/usr/bin/env bash
# Build the documentation: make .venv, install with the docs extras, then
# build the HTML site into docs/_build/html (warnings are errors).
# The example gallery runs examples/gallery/plot_*.py (about a minute each
# on one core); SKCRYSTAL_DOCS_FAST=1 runs them at their smallest setting.
# Extra arguments go to sphinx-build (e.g. -j 2, or -E to rebuild everything).
set -euo pipefail
. "$(dirname "$0")/_env.sh" "docs"
export OMP_NUM_THREADS="${OMP_NUM_THREADS:-1}" MPLBACKEND=Agg
exec python -m sphinx -W --keep-going -b html "$@" docs docs/_build/html
