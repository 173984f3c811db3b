#!/usr/bin/env bash
# Checks that read the code without running it, before the tests:
# - ruff: lint ([tool.ruff] in pyproject.toml) and the formatting check;
# - the import contracts in pyproject.toml ([tool.importlinter]): every import
#   points down the data flow and none closes a cycle;
# - mypy, strict on every module of streambot/ ([tool.mypy] lists only the
#   libraries that ship no types).
set -euo pipefail
cd "$(dirname "$0")/.."
.venv/bin/ruff check streambot tests benchmarks scripts
.venv/bin/ruff format --check streambot tests benchmarks scripts
.venv/bin/lint-imports --no-logo --no-cache
.venv/bin/mypy streambot
