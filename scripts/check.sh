#!/usr/bin/env bash
# Static checks CI runs before the tests: mypy, strict on streambot/ (pyproject.toml
# [tool.mypy] lists the modules not yet strict and the libraries that ship no types).
set -euo pipefail
cd "$(dirname "$0")/.."
.venv/bin/mypy streambot
