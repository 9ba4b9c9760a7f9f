#!/usr/bin/env bash
# The whole test suite, as CI runs it: install what is needed, start SLURM, run pytest.
# Usage (as root on a fresh Debian machine): bash scripts/test.sh [pytest args]
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh --with-mlip
if [ "$(id -u)" = 0 ] && [ -x scripts/slurm-up.sh ]; then
  bash scripts/slurm-up.sh || echo "warning: SLURM did not start; SLURM tests will be skipped" >&2
fi
export OMP_NUM_THREADS=1
.venv/bin/ruff check perovflow structures workflows hpc analysis engines tests benchmarks
exec .venv/bin/python -m pytest "$@"
