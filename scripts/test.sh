#!/usr/bin/env bash
# Sets up (see setup.sh), runs the static checks (check.sh) and the whole test suite. Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup.sh
./scripts/check.sh  # mypy: a type error fails CI before any test runs
exec .venv/bin/python -m pytest -q -p no:cacheprovider "$@"
