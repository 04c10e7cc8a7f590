#!/usr/bin/env bash
# Installs the Debian packages the tests use (issue 12):
#   dovecot-imapd dovecot-pop3d  real IMAP/POP servers   (tests/integration/test_real_daemons.py)
#   postfix                      real SMTP server         (tests/integration/test_real_daemons.py)
#   resource-agents              ocf-tester               (tests/integration/test_ocf.py)
#   libxml2-utils                xmllint, which ocf-tester validates meta-data with
#   systemd                      systemd-analyze verify   (tests/integration/test_systemd.py)
#   prometheus                   one real scrape          (tests/integration/test_metrics.py); promtool
#                                                          for the alerting rules (tests/console/test_console_alerting.py)
#   iproute2                     ss: the metrics port listens on loopback only (test_metrics.py)
#   groff man-db                 man -l and groff -ww on every page (tests/test_docs.py, *man_page*.py)
#   curl fetchmail mutt          real mail clients against the built-in servers
#   chromium chromium-driver     browser tests of the web console (tests/console/test_console_browser.py)
#   dovecot-dev build-essential autoconf automake libtool pkg-config
#                                Dovecot's imaptest, built by ../shared/tools/imaptest/build.sh
#   git                          scripts/smoke.sh clones the checkout
#
# Idempotent: packages already installed are skipped, so a second run does no apt work.
# Under CI=true a package that cannot be installed (or no apt, or not root) fails with exit 1 and
# apt's own error lines; elsewhere it warns and exits 0, and the tests that need it skip, naming it.
# apt waits up to 10 minutes for a lock another process holds (DPkg::Lock::Timeout) instead of
# giving up. No service is started: a policy-rc.d refuses every invoke-rc.d start during the install,
# and the packages' debconf questions are answered non-interactively (postfix: "No configuration").
set -u

PACKAGES=(
    dovecot-imapd dovecot-pop3d postfix resource-agents libxml2-utils systemd prometheus iproute2
    groff man-db
    curl fetchmail mutt faketime
    chromium chromium-driver
    dovecot-dev build-essential autoconf automake libtool pkg-config
    git
)

log() { echo "ci-deps: $*" >&2; }

case "${CI:-}" in 1|true|TRUE|True|yes) strict=1 ;; *) strict=0 ;; esac

# give_up MESSAGE: fatal under CI, a warning elsewhere
give_up() {
    if [ "$strict" -eq 1 ]; then
        log "error: $*"
        exit 1
    fi
    log "warning: $* (the tests that need these packages will skip)"
    exit 0
}

installed() { dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q "install ok installed"; }

command -v apt-get >/dev/null 2>&1 || give_up "apt-get not found; cannot install: ${PACKAGES[*]}"
[ "$(id -u)" -eq 0 ] || give_up "not root; cannot install: ${PACKAGES[*]}"

missing=()
for p in "${PACKAGES[@]}"; do
    installed "$p" || missing+=("$p")
done
if [ ${#missing[@]} -eq 0 ]; then
    log "all ${#PACKAGES[@]} packages present"
    exit 0
fi

start=$(date +%s)
export DEBIAN_FRONTEND=noninteractive
if command -v debconf-set-selections >/dev/null 2>&1; then
    printf '%s\n' \
        "postfix postfix/main_mailer_type select No configuration" \
        "postfix postfix/mailname string localhost" | debconf-set-selections
fi

# Keep maintainer scripts from starting daemons (dovecot, postfix, prometheus) on this machine.
policy=/usr/sbin/policy-rc.d
own_policy=0
if [ ! -e "$policy" ]; then
    printf '#!/bin/sh\nexit 101\n' > "$policy" && chmod 755 "$policy" && own_policy=1
fi
cleanup() { if [ "$own_policy" -eq 1 ]; then rm -f "$policy"; fi; }
trap cleanup EXIT

APT=(apt-get -o DPkg::Lock::Timeout=600 -o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold)

log "installing: ${missing[*]}"
# -qq keeps apt's progress off the log; its warnings and errors go to stderr and stay visible.
if ! timeout 900 "${APT[@]}" update -qq >/dev/null; then
    log "apt-get update failed (its errors are above); trying the install with the package lists at hand"
fi
# One transaction is fastest; if it fails, each package alone, so that the error names the one that
# cannot be had and the others are still installed.
if ! timeout 1800 "${APT[@]}" install -y -qq --no-install-recommends "${missing[@]}" >/dev/null; then
    log "combined install failed (apt's errors are above); installing one by one"
    for p in "${missing[@]}"; do
        installed "$p" && continue
        timeout 900 "${APT[@]}" install -y -qq --no-install-recommends "$p" >/dev/null \
            || log "apt-get install $p failed (its errors are above)"
    done
fi

failed=()
for p in "${missing[@]}"; do
    installed "$p" || failed+=("$p")
done
log "done in $(( $(date +%s) - start )) s"
[ ${#failed[@]} -eq 0 ] || give_up "unable to install: ${failed[*]}"
exit 0
