# Sourced by scripts/demo.sh and scripts/test.sh: make .venv and install skcrystal.
#
# torch is installed first and pinned (TORCH_SPEC, default torch==2.13.0, the
# CPU build) so that pip never resolves a bare "torch" to a multi-GB CUDA
# build. Users with a GPU set e.g. TORCH_SPEC="torch==2.13.0" with their
# own index: TORCH_SPEC="torch --index-url https://download.pytorch.org/whl/cu121".
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${SKCRYSTAL_VENV:-$ROOT/.venv}"
PYTHON="${PYTHON:-python3}"
TORCH_SPEC="${TORCH_SPEC:-torch==2.13.0}"
EXTRAS="${1:-}"
if [ ! -x "$VENV/bin/python" ]; then
  echo "[skcrystal] creating virtualenv $VENV" >&2
  "$PYTHON" -m venv "$VENV"
fi
# shellcheck disable=SC1091
. "$VENV/bin/activate"
stamp="$VENV/.skcrystal-installed-$(cat "$ROOT/setup.py" | cksum | cut -d' ' -f1)$EXTRAS"
if [ ! -f "$stamp" ]; then
  echo "[skcrystal] installing $TORCH_SPEC and skcrystal${EXTRAS:+[$EXTRAS]} (first run only)" >&2
  python -m pip install -q --disable-pip-version-check --upgrade pip >&2
  # shellcheck disable=SC2086
  python -m pip install -q --disable-pip-version-check $TORCH_SPEC >&2
  python -m pip install -q --disable-pip-version-check -e "$ROOT${EXTRAS:+[$EXTRAS]}" >&2
  touch "$stamp"
fi
cd "$ROOT"
