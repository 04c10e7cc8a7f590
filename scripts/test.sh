#!/usr/bin/env bash
# The README's test command: make a venv, install msgsrv with its test extras, run pytest.
# Extra arguments go to pytest (e.g. `bash scripts/test.sh -m "not integration"`).
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip >/dev/null 2>&1 || true
.venv/bin/python -m pip install -q -e '.[test]'
exec .venv/bin/python -m pytest "$@"
