#!/usr/bin/env bash
# Stop the CI cluster started by ci/slurm/start.sh.
#
# Usage:  ci/slurm/stop.sh [STATE_DIR] [--purge]
#
# STATE_DIR defaults to $EFFOPD_SLURM_STATE_DIR, else /tmp/effopd-slurm.
# Cancels the cluster's remaining jobs, then sends SIGTERM to exactly the PIDs
# recorded in STATE_DIR/pids (never pkill by name: there may be other SLURM or
# munge daemons on this machine), waits for them to exit (SIGKILL after
# EFFOPD_SLURM_STOP_TIMEOUT seconds, default 30), and removes the pids file.
# A PID is only signalled if /proc/PID/comm still names the daemon recorded for
# it (guards against PID reuse). --purge also deletes STATE_DIR.
# Idempotent: a missing state dir or pids file, or dead PIDs, are not errors.
set -euo pipefail

PURGE=0
ARGS=()
for a in "$@"; do
    case "$a" in
        --purge) PURGE=1 ;;
        *) ARGS+=("$a") ;;
    esac
done
STATE_DIR="${ARGS[0]:-${EFFOPD_SLURM_STATE_DIR:-/tmp/effopd-slurm}}"
TIMEOUT="${EFFOPD_SLURM_STOP_TIMEOUT:-30}"
PIDS="$STATE_DIR/pids"

log() { echo "[slurm-ci] $*" >&2; }

if [[ ! -d "$STATE_DIR" ]]; then
    log "no state dir $STATE_DIR: nothing to stop"
    exit 0
fi
STATE_DIR="$(cd "$STATE_DIR" && pwd -P)"   # as start.sh records it

# shellcheck source=ci/slurm/daemons.sh
source "$(dirname "${BASH_SOURCE[0]}")/daemons.sh"

if [[ -f "$PIDS" ]]; then
    # Cancel leftover jobs first so their slurmstepd processes end cleanly
    # (only on this cluster: SLURM_CONF points at our config).
    if alive slurmctld "$(awk '$1 == "slurmctld" {print $2}' "$PIDS" | tail -n 1)" \
        && command -v scancel >/dev/null 2>&1; then
        SLURM_CONF="$STATE_DIR/slurm.conf" timeout 10 scancel --user="$(id -un)" \
            >/dev/null 2>&1 || true
    fi
    # slurmd first, munged last (the SLURM daemons talk to it while exiting).
    for name in slurmd slurmctld munged; do
        for pid in $(awk -v n="$name" '$1 == n {print $2}' "$PIDS"); do
            if ! alive "$name" "$pid"; then
                continue
            fi
            log "stopping $name (pid $pid)"
            kill -TERM "$pid" 2>/dev/null || true
            deadline=$(( SECONDS + TIMEOUT ))
            while alive "$name" "$pid" && (( SECONDS < deadline )); do
                sleep 0.2
            done
            if alive "$name" "$pid"; then
                log "$name (pid $pid) ignored SIGTERM for ${TIMEOUT} s: SIGKILL"
                kill -KILL "$pid" 2>/dev/null || true
                for _ in $(seq 1 50); do alive "$name" "$pid" || break; sleep 0.1; done
            fi
        done
    done
    rm -f "$PIDS"
else
    log "no pids file in $STATE_DIR: nothing to stop"
fi

# Remove the /run/slurm/conf/slurm.conf symlink start.sh made, if it still
# points at this state dir's slurm.conf.
if [[ -f "$STATE_DIR/conf-link" ]]; then
    link="$(cat "$STATE_DIR/conf-link")"
    # under the lock claim_conf_link.sh takes, so a starter never loses its new link
    (
        flock 9
        if [[ -L "$link" && "$(readlink "$link")" == "$STATE_DIR/slurm.conf" ]]; then
            rm -f -- "$link"
        fi
    ) 9>"$link.lock"
    rm -f -- "$STATE_DIR/conf-link"
fi

if (( PURGE )); then
    log "removing $STATE_DIR"
    rm -rf -- "$STATE_DIR"
fi
log "stopped"
