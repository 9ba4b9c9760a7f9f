#!/usr/bin/env bash
# Install everything perovflow needs on a Debian machine (run as root); idempotent.
#   - Debian packages: Quantum ESPRESSO, CP2K (+ data), SLURM + munge, MPI
#   - a project virtual environment in .venv with perovflow installed (editable)
# Usage: bash scripts/setup.sh [--with-mlip]
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
WITH_MLIP=0
[ "${1:-}" = "--with-mlip" ] && WITH_MLIP=1

APT_PKGS=(quantum-espresso cp2k cp2k-data slurm-wlm munge openmpi-bin python3-venv chromium)
missing=()
for p in "${APT_PKGS[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" != 0 ]; then
    echo "error: Debian packages missing: ${missing[*]} (fix: run this script as root)" >&2; exit 2
  fi
  echo ">> apt-get install ${missing[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  echo ">> creating .venv"
  "$PY" -m venv .venv
fi
stamp=.venv/.perovflow-installed
want="$(sha1sum pyproject.toml | cut -d' ' -f1)-$WITH_MLIP"
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
  if [ "$WITH_MLIP" = 1 ]; then
    # torch first, pinned: 2.13.0 resolves to the CPU build (plain 'torch' pulls GBs of CUDA).
    echo ">> pip install torch==2.13.0"
    .venv/bin/pip install -q torch==2.13.0
    echo ">> pip install -e .[test,mlip]"
    .venv/bin/pip install -q -e "$ROOT[test,mlip]"
  else
    echo ">> pip install -e .[test]"
    .venv/bin/pip install -q -e "$ROOT[test]"
  fi
  echo "$want" > "$stamp"
fi
echo ">> setup complete: $ROOT/.venv/bin/perovflow"
