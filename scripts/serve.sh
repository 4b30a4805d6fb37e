#!/usr/bin/env bash
# README command 1: install what serving needs, build the default model repository if it is
# missing, and start the server in the foreground (Ctrl-C stops it).
set -euo pipefail
cd "$(dirname "$0")/.."
INSTALL_APT=0 bash scripts/install.sh
MODELS=${MODELS:-models}
${PYTHON:-python3} -m training defaults --out "$MODELS"
exec ${PYTHON:-python3} -m service serve --models "$MODELS" "$@"
