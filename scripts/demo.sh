#!/usr/bin/env bash
# Set up and run the demo: a simulated home against a local broker, on embedded defaults.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh demo
exec .venv/bin/anxin demo "$@"
