#!/usr/bin/env bash
# Lint and house style: `ruff check .` with the rules of pyproject.toml ([tool.ruff.lint]: pyflakes,
# bugbear, pyupgrade, import order, and pycodestyle's whitespace/indentation/blank-line rules with
# double quotes). The style is checked, not rewritten: `ruff format` would reformat most files.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/venv.sh
.venv/bin/ruff --version
.venv/bin/ruff check .
