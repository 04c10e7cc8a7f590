#!/usr/bin/env bash
# Makes .venv and installs msgsrv in it, editable, with its test extras (pytest, pytest-timeout,
# coverage, hypothesis, ruff). Skips pip when pyproject.toml has not changed since the last install.
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -m venv .venv
stamp=.venv/.msgsrv-install
want=$(sha256sum pyproject.toml | cut -d' ' -f1)
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ] || ! .venv/bin/python -c 'import msgsrv' 2>/dev/null; then
    .venv/bin/python -m pip install -q --upgrade pip >/dev/null 2>&1 || true
    .venv/bin/python -m pip install -q -e '.[test]'
    echo "$want" > "$stamp"
fi
