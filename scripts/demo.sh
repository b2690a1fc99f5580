#!/usr/bin/env bash
# Quick start 1: make .venv, install, then fit and cross-validate CGCNN on the
# perovskites bundled in the package and print MAE against a mean predictor.
# Extra arguments go to examples/demo.py (e.g. --epochs 50 --n 1000).
set -euo pipefail
. "$(dirname "$0")/_env.sh" ""
exec python examples/demo.py "$@"
