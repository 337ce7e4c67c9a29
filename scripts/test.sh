#!/usr/bin/env bash
# Set up (system packages, .venv with the dev extra) and run the whole test suite, then
# the linters. Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh dev
.venv/bin/python -m pytest -q "$@"
.venv/bin/ruff check .
.venv/bin/mypy
