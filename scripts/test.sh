#!/usr/bin/env bash
# Quick start 2: make .venv, install with the test extras, run the test suite.
# Two pytest workers with one torch thread each use 2 cores best (two
# threads per process contend badly when the cores are shared).
# Extra arguments go to pytest (e.g. -k cgcnn, or -m "not slow").
set -euo pipefail
. "$(dirname "$0")/_env.sh" "test"
export OMP_NUM_THREADS="${OMP_NUM_THREADS:-1}" MPLBACKEND=Agg
workers="${SKCRYSTAL_TEST_WORKERS:-2}"
exec python -m pytest -q -n "$workers" --durations=15 "$@"
