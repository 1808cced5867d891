#!/usr/bin/env bash
# Point RUN_CONF (the path srun falls back to, /run/slurm/conf/slurm.conf) at
# CONF, the slurm.conf of the CI cluster being started. Called by start.sh.
#
# Usage:  ci/slurm/claim_conf_link.sh RUN_CONF CONF
#
# There is one RUN_CONF per machine and it can serve one cluster at a time. Its
# current owner is the cluster whose state dir (the link target's directory)
# holds a pids file naming a live munged, slurmctld or slurmd (as start.sh
# records them; /proc/PID/comm must still name the daemon, so a reused PID does
# not count). Then:
#   - no link, or a link to CONF already        -> create it / keep it;
#   - a dangling link, or an owner with no live
#     daemon (a test run killed before stop.sh) -> replace it (logged);
#   - a live owner (a second CI run on the same
#     machine)                                  -> wait for it to stop, up to
#     EFFOPD_SLURM_CONF_WAIT seconds (default 900), then fail naming it;
#   - a regular file (a configless slurmd's
#     cached config)                            -> fail: not ours to touch.
# Check and replacement happen under an flock on RUN_CONF.lock, so two starters
# never both take the link.
set -euo pipefail

RUN_CONF="${1:?usage: claim_conf_link.sh RUN_CONF CONF}"
CONF="${2:?usage: claim_conf_link.sh RUN_CONF CONF}"
WAIT="${EFFOPD_SLURM_CONF_WAIT:-900}"

log() { echo "[slurm-ci] $*" >&2; }
die() { log "ERROR: $*"; exit 1; }

# shellcheck source=ci/slurm/daemons.sh
source "$(dirname "${BASH_SOURCE[0]}")/daemons.sh"
owner_alive() {  # link target -> 0 if its cluster has a live daemon
    local pids
    pids="$(dirname "$1")/pids"
    [[ -f "$pids" ]] || return 1
    local name pid
    while read -r name pid; do
        case "$name" in munged|slurmctld|slurmd) ;; *) continue ;; esac
        alive "$name" "$pid" && return 0
    done < "$pids"
    return 1
}

mkdir -p "$(dirname "$RUN_CONF")"
exec 9>"$RUN_CONF.lock"
deadline=$(( SECONDS + WAIT ))
announced=0
while true; do
    flock 9
    if [[ -L "$RUN_CONF" && "$(readlink "$RUN_CONF")" == "$CONF" ]]; then
        exit 0  # ours already
    elif [[ ! -e "$RUN_CONF" && ! -L "$RUN_CONF" ]]; then
        ln -s "$CONF" "$RUN_CONF"
        exit 0
    elif [[ -L "$RUN_CONF" ]]; then
        target="$(readlink "$RUN_CONF")"
        if [[ ! -e "$RUN_CONF" ]] || ! owner_alive "$target"; then
            log "replacing stale $RUN_CONF -> $target (no live daemon of that cluster)"
            ln -sfn "$CONF" "$RUN_CONF"
            exit 0
        fi
        flock -u 9
        if (( SECONDS >= deadline )); then
            die "$RUN_CONF still belongs to the running cluster of $(dirname "$target")" \
                "after ${WAIT} s (EFFOPD_SLURM_CONF_WAIT); stop it with" \
                "ci/slurm/stop.sh $(dirname "$target") first."
        fi
        if (( ! announced )); then
            log "$RUN_CONF belongs to the running cluster of $(dirname "$target");" \
                "waiting up to ${WAIT} s for it to stop"
            announced=1
        fi
        sleep 2
    else
        die "$RUN_CONF exists and is not a symlink (a configless slurmd's cached config?):" \
            "not ours to replace; run this CI cluster on a machine without one."
    fi
done
