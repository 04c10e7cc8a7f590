#!/usr/bin/env bash
# The README's test command: make .venv, install msgsrv with its test extras, run pytest under
# coverage (every Python subprocess counted: see [tool.coverage.run] in pyproject.toml), then print
# the coverage report. Extra arguments go to pytest (e.g. `bash scripts/test.sh -m "not integration"`).
# With no arguments the whole suite runs and the report must reach the floor (fail_under); with
# arguments the report is printed but the floor is not checked. The tests run in
# MSGSRV_TEST_WORKERS pytest-xdist workers (default 4; 0 runs them in this one process).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/venv.sh
PY=.venv/bin/python
results=.ci-results
rm -rf "$results" && mkdir -p "$results"
# Every Python process of the run writes its own coverage data file (SQLite) at exit: on tmpfs
# that costs no disk syncs (~15 ms a process; a run makes thousands). Combined into .coverage.
cov_dir=$(mktemp -d "$( [ -d /dev/shm ] && [ -w /dev/shm ] && echo /dev/shm || echo "${TMPDIR:-/tmp}")/msgsrv-cov.XXXXXX")
trap 'rm -rf "$cov_dir"' EXIT
export COVERAGE_FILE=$cov_dir/.coverage
$PY -m coverage erase
rc=0
workers=${MSGSRV_TEST_WORKERS:-4}
dist=()
[ "$workers" = 0 ] || dist=(-n "$workers")
$PY -m coverage run -m pytest "${dist[@]}" --junitxml="$results/junit.xml" "$@" || rc=$?
$PY -m coverage combine -q || true  # nothing to combine: the report below says so
cp "$COVERAGE_FILE" .coverage 2>/dev/null || true  # kept for `coverage report -m`, `coverage html`
export COVERAGE_FILE=$PWD/.coverage
floor=()
[ $# -eq 0 ] || floor=(--fail-under=0)
echo
echo "coverage (lines, msgsrv/, subprocesses included):"
cov=0
$PY -m coverage report "${floor[@]}" || cov=$?
if [ -n "${CI_STARTED:-}" ]; then echo "run time: $(( $(date +%s) - CI_STARTED )) s (.ci/run so far)"; fi
# The closing line: what pytest ran (from its JUnit XML), so that it is the run's last word.
$PY - "$results/junit.xml" <<'PYEOF' || true
import sys
import xml.etree.ElementTree as ET

suites = ET.parse(sys.argv[1]).getroot()
suite = suites if suites.tag == "testsuite" else suites[0]
n, failures, errors, skipped = (int(suite.get(k, 0)) for k in ("tests", "failures", "errors", "skipped"))
print(f"tests: {n - failures - errors - skipped} passed, {failures + errors} failed, {skipped} skipped")
PYEOF
if [ "$rc" -ne 0 ]; then exit "$rc"; fi
if [ "$cov" -ne 0 ]; then echo "coverage is below the floor (fail_under in pyproject.toml)" >&2; exit "$cov"; fi
