#!/usr/bin/env bash
# The README's first command, exactly as written (issue 12): in a clean clone of this checkout, a
# fresh virtualenv and a fresh HOME, `pip install . && start-msg` (non-editable), then `msprobe`
# must exit 0, `stop-msg` must stop everything, and no process of the run may be left.
#
#   usage: bash scripts/smoke.sh        (exit 0 = all of that held; 1 = it did not, with the reason)
#
# It uses the default server root (~/.local/share/msgsrv of the fresh HOME) and the default ports, as
# a first-time user does; it stops at once if one of those ports is taken. Leftover processes are
# found by their environment (HOME is the fresh one) and killed by pid, never by name.
set -euo pipefail
REPO=$(cd "$(dirname "$0")/.." && pwd)
WORK=$(mktemp -d /tmp/msgsrv-smoke.XXXXXX)
HOME_DIR="$WORK/home"
VENV="$WORK/venv"

log() { echo "smoke: $*" >&2; }

# run SECONDS COMMAND: COMMAND in the environment of a first-time user (the fresh HOME, the fresh
# venv first on PATH, nothing of ours: MSGSRV_*, coverage, a virtualenv; pip's machine settings,
# PIP_*, are kept), in the clone, stopped after SECONDS.
run() {
    local pipvars=()
    while IFS= read -r v; do pipvars+=("$v"); done < <(env | grep '^PIP_' || true)
    (cd "$WORK/src" && timeout --kill-after=10 "$1" env -i HOME="$HOME_DIR" \
        PATH="$VENV/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin" \
        LANG=C.UTF-8 TERM=dumb "${pipvars[@]}" bash -c "$2")
}

# Pids of every process of this run (HOME in its environment is ours), one per line.
ours() {
    local pid
    for pid in /proc/[0-9]*; do
        pid=${pid#/proc/}
        [ "$pid" = "$$" ] && continue
        tr '\0' '\n' 2>/dev/null < "/proc/$pid/environ" | grep -qx "HOME=$HOME_DIR" && echo "$pid"
    done
    return 0
}

cleanup() {
    local left
    left=$(ours)
    if [ -n "$left" ]; then
        log "killing leftover pids: $(echo "$left" | tr '\n' ' ')"
        for p in $left; do kill -KILL "$p" 2>/dev/null || true; done
    fi
    rm -rf "$WORK"
}
trap cleanup EXIT

fail() { log "FAILED: $*"; exit 1; }

start=$(date +%s)
mkdir -p "$HOME_DIR"
git clone -q --no-hardlinks "$REPO" "$WORK/src"
log "clean clone of $(git -C "$WORK/src" rev-parse --short HEAD) in $WORK/src; HOME=$HOME_DIR"

# The default ports must be free, else start-msg would meet someone else's server.
python3 - <<'EOF' || fail "a default port is taken (another msgsrv or mail server runs here)"
import socket, sys
taken = []
for port in (49994, 10999, 10143, 10110, 10080, 10025, 10024, 10998, 10444):
    try:  # something accepts connections there (a bind test would trip on TIME_WAIT)
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
        taken.append(port)
    except OSError:
        pass
if taken:
    print("taken:", *taken, file=sys.stderr)
    sys.exit(1)
EOF

python3 -m venv "$VENV"
log "\$ pip install . && start-msg"
run 600 'pip install . && start-msg' || fail "pip install . && start-msg exited $?"
where=$(run 60 'cd / && python -c "import msgsrv; print(msgsrv.__file__)"')
case "$where" in "$VENV"/lib/*/site-packages/msgsrv/__init__.py) ;; *) fail "msgsrv is imported from $where, not the venv" ;; esac

log "\$ msprobe"
run 120 'msprobe' || fail "msprobe exited $?"

log "\$ stop-msg"
run 120 'stop-msg' || fail "stop-msg exited $?"

# stop-msg returns once the watcher is gone; give the last exits a moment to be reaped.
deadline=$(( $(date +%s) + 10 ))
while [ -n "$(ours)" ] && [ "$(date +%s)" -lt "$deadline" ]; do sleep 0.2; done
left=$(ours)
if [ -n "$left" ]; then
    for p in $left; do log "left running: $p $(tr '\0' ' ' 2>/dev/null < "/proc/$p/cmdline")"; done
    fail "processes left running after stop-msg"
fi
log "passed in $(( $(date +%s) - start )) s"
