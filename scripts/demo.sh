#!/usr/bin/env bash
# The main job on the embedded default store: installs what it needs, then runs the demo study.
# Usage (as root on a fresh Debian machine): bash scripts/demo.sh [-o OUTPUT_DIR]
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh --with-mlip
exec .venv/bin/perovflow demo "$@"
