#!/usr/bin/env bash
# Best-effort install of the Debian packages the integration tests use (issue 7):
#   dovecot-imapd dovecot-pop3d  real IMAP/POP servers  (tests/integration/test_real_daemons.py)
#   postfix                      real SMTP server        (tests/integration/test_real_daemons.py)
#   resource-agents              ocf-tester              (tests/integration/test_ocf.py)
#   libxml2-utils                xmllint, which ocf-tester validates meta-data with
#   systemd                      systemd-analyze verify  (tests/integration/test_systemd.py)
#   prometheus                   one real scrape         (tests/integration/test_metrics.py); promtool
#                                                         for the alerting rules (tests/console/test_console_alerting.py)
#   chromium                     the console's browser tests (tests/console/test_console_browser.py)
#
# Idempotent: packages already installed are skipped, so a second run does no apt work.
# Never fails: without apt (or root, or a network) the tests that need a package skip with a reason.
# No service is started: a policy-rc.d refuses every invoke-rc.d start during the install, and the
# packages' debconf questions are answered non-interactively (postfix: "No configuration").
set -u

PACKAGES=(dovecot-imapd dovecot-pop3d postfix resource-agents libxml2-utils systemd prometheus chromium)

log() { echo "ci-deps: $*" >&2; }

if ! command -v apt-get >/dev/null 2>&1; then
    log "apt-get not found; skipping (integration tests will skip)"
    exit 0
fi
if [ "$(id -u)" -ne 0 ]; then
    log "not root; skipping (integration tests will skip)"
    exit 0
fi

missing=()
for p in "${PACKAGES[@]}"; do
    if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
        missing+=("$p")
    fi
done
if [ ${#missing[@]} -eq 0 ]; then
    log "all packages present"
    exit 0
fi

start=$(date +%s)
export DEBIAN_FRONTEND=noninteractive
if command -v debconf-set-selections >/dev/null 2>&1; then
    printf '%s\n' \
        "postfix postfix/main_mailer_type select No configuration" \
        "postfix postfix/mailname string localhost" | debconf-set-selections || true
fi

# Keep maintainer scripts from starting daemons (dovecot, postfix, prometheus) on this machine.
policy=/usr/sbin/policy-rc.d
own_policy=0
if [ ! -e "$policy" ]; then
    printf '#!/bin/sh\nexit 101\n' > "$policy" && chmod 755 "$policy" && own_policy=1
fi
cleanup() { [ "$own_policy" -eq 1 ] && rm -f "$policy"; }
trap cleanup EXIT

log "installing: ${missing[*]}"
if ! timeout 600 apt-get update -qq >/dev/null 2>&1; then
    log "apt-get update failed; trying the install with the lists at hand"
fi
# One package at a time would be slower; one transaction, and on failure each package alone so that
# one unavailable package does not cost the others.
if ! timeout 900 apt-get install -y -qq --no-install-recommends \
        -o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold "${missing[@]}" >/dev/null 2>&1; then
    log "combined install failed; installing one by one"
    for p in "${missing[@]}"; do
        timeout 600 apt-get install -y -qq --no-install-recommends \
            -o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold "$p" >/dev/null 2>&1 \
            || log "unable to install $p"
    done
fi
log "done in $(( $(date +%s) - start )) s"
exit 0
