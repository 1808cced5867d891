#!/usr/bin/env bash
# Start a throw-away single-node SLURM cluster (munged + slurmctld + slurmd) on
# this machine, for tests/test_slurm.py and for trying profiles/slurm locally.
#
# Usage:  ci/slurm/start.sh [STATE_DIR]        (must run as root)
#         eval "$(ci/slurm/start.sh | tail -n 1)"   # export SLURM_CONF in your shell
#
# STATE_DIR defaults to $EFFOPD_SLURM_STATE_DIR, else /tmp/effopd-slurm. Keep it
# short: the munge socket lives in it and unix socket paths are limited to 107
# bytes. Everything the cluster writes goes there: slurm.conf, munge key and
# socket, spool dirs, logs, pid files. The daemons' PIDs are recorded in
# STATE_DIR/pids (one "name pid" per line); ci/slurm/stop.sh kills exactly those.
#
# Idempotent: installs the Debian packages only if missing, reuses an existing
# munge key, and leaves already running daemons of this STATE_DIR alone.
# The last line of stdout is always "export SLURM_CONF=STATE_DIR/slurm.conf".
#
# Environment:
#   EFFOPD_SLURM_STATE_DIR      state directory (if no argument is given)
#   EFFOPD_SLURM_CTLD_PORT      slurmctld port (default 6817)
#   EFFOPD_SLURM_SLURMD_PORT    slurmd port    (default 6818)
#   EFFOPD_SLURM_START_TIMEOUT  seconds to wait for the node to be idle (default 60)
#   EFFOPD_SLURM_CONF_WAIT      seconds to wait for another live cluster to release
#                               /run/slurm/conf/slurm.conf (default 900)
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
STATE_DIR="${1:-${EFFOPD_SLURM_STATE_DIR:-/tmp/effopd-slurm}}"
CTLD_PORT="${EFFOPD_SLURM_CTLD_PORT:-6817}"
SLURMD_PORT="${EFFOPD_SLURM_SLURMD_PORT:-6818}"
TIMEOUT="${EFFOPD_SLURM_START_TIMEOUT:-60}"

log() { echo "[slurm-ci] $*" >&2; }
die() { log "ERROR: $*"; exit 1; }

[[ "$(id -u)" -eq 0 ]] || die "must run as root (slurmd and munged need it)"

mkdir -p "$STATE_DIR"
STATE_DIR="$(cd "$STATE_DIR" && pwd -P)"
CONF="$STATE_DIR/slurm.conf"
PIDS="$STATE_DIR/pids"
export SLURM_CONF="$CONF"

sock_path="$STATE_DIR/munge/munge.socket.2"
if (( ${#sock_path} > 100 )); then
    die "state dir path too long for a unix socket: $sock_path"
fi

# --- 1. packages -----------------------------------------------------------
# Debian 12 ships SLURM 22.05. The minimal set is slurmctld + slurmd +
# slurm-client (sbatch, squeue, sinfo, sacct...) + munge; slurm-wlm would pull
# ~40 packages (X11 sview etc.).
need_pkgs=()
command -v slurmctld >/dev/null 2>&1 || need_pkgs+=(slurmctld)
command -v slurmd    >/dev/null 2>&1 || need_pkgs+=(slurmd)
command -v sbatch    >/dev/null 2>&1 || need_pkgs+=(slurm-client)
command -v munged    >/dev/null 2>&1 || need_pkgs+=(munge)
if (( ${#need_pkgs[@]} )); then
    command -v apt-get >/dev/null 2>&1 || die "missing ${need_pkgs[*]} and no apt-get"
    log "installing ${need_pkgs[*]} (apt-get)"
    t0=$SECONDS
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq >&2
    # On hosts with systemd the postinst scripts enable the system services;
    # they do not interfere: we use our own munge socket, spool and config.
    apt-get install -y -qq --no-install-recommends "${need_pkgs[@]}" >&2
    log "apt-get took $((SECONDS - t0)) s"
fi

# --- 2. directories, munge key, slurm.conf -----------------------------------
mkdir -p "$STATE_DIR"/{munge,spool/ctld,spool/d,log,run}
# munged refuses group/world-writable key/socket directories and wants the
# socket's directory to be searchable by everyone (clients of other users).
chmod 0755 "$STATE_DIR/munge"
chmod 0755 "$STATE_DIR"
key="$STATE_DIR/munge/munge.key"
if [[ ! -s "$key" ]]; then
    log "creating munge key $key"
    dd if=/dev/urandom of="$key" bs=1024 count=1 status=none
fi
chmod 0400 "$key"

cpus="$(nproc)"
mem_total_mb="$(free -m | awk '/^Mem:/ {print $2}')"
mem_mb=$(( mem_total_mb * 95 / 100 ))
sed -e "s|@STATE_DIR@|$STATE_DIR|g" \
    -e "s|@CPUS@|$cpus|g" \
    -e "s|@MEM_MB@|$mem_mb|g" \
    -e "s|@CTLD_PORT@|$CTLD_PORT|g" \
    -e "s|@SLURMD_PORT@|$SLURMD_PORT|g" \
    "$HERE/slurm.conf.in" > "$CONF.tmp"
if [[ -f "$CONF" ]] && ! cmp -s "$CONF" "$CONF.tmp"; then
    log "slurm.conf changed; running daemons keep the old one until restarted"
fi
mv "$CONF.tmp" "$CONF"

# --- 3. make the config findable without SLURM_CONF --------------------------
# Inside a job, snakemake-executor-plugin-slurm-jobstep runs the rule via a nested
# `srun` whose environment it strips of every SLURM_* variable except the job
# ids -- SLURM_CONF included. srun then looks for /etc/slurm/slurm.conf, then
# /run/slurm/conf/slurm.conf (where a "configless" slurmd caches its config),
# then DNS SRV records, and fails with "Could not establish a configuration
# source". Real clusters have one of those; we symlink the /run one (volatile,
# and unused unless there is no /etc/slurm/slurm.conf) to our slurm.conf.
SYS_CONF=/etc/slurm/slurm.conf
RUN_CONF=/run/slurm/conf/slurm.conf
if [[ -e "$SYS_CONF" ]]; then
    die "$SYS_CONF exists (a system SLURM?): job steps inside our jobs would use it " \
        "instead of $CONF. Run this CI cluster on a machine without a system SLURM."
fi
# One machine, one RUN_CONF: claim_conf_link.sh replaces a stale link (a run
# killed before stop.sh) and waits for a live second cluster to stop.
bash "$HERE/claim_conf_link.sh" "$RUN_CONF" "$CONF"
echo "$RUN_CONF" > "$STATE_DIR/conf-link"

# --- 4. daemons ------------------------------------------------------------
# Each daemon runs in the foreground (-F/-D) in its own session, so $! is the
# daemon's PID; we record it and stop.sh kills exactly that PID.
recorded_pid() {  # name -> pid recorded in $PIDS (empty if none)
    [[ -f "$PIDS" ]] && awk -v n="$1" '$1 == n {print $2}' "$PIDS" | tail -n 1 || true
}
# shellcheck source=ci/slurm/daemons.sh
source "$(dirname "${BASH_SOURCE[0]}")/daemons.sh"
record_pid() {  # name pid
    local tmp="$PIDS.tmp"
    { [[ -f "$PIDS" ]] && awk -v n="$1" '$1 != n' "$PIDS"; echo "$1 $2"; } > "$tmp" || true
    mv "$tmp" "$PIDS"
}
dump_logs() {
    for f in "$STATE_DIR"/log/*.log "$STATE_DIR"/munge/munged.log; do
        [[ -f "$f" ]] || continue
        echo "----- $f (last 40 lines) -----" >&2
        tail -n 40 "$f" >&2
    done
}
start_daemon() {  # name logfile cmd...
    local name="$1" out="$2"; shift 2
    local pid
    pid="$(recorded_pid "$name")"
    if alive "$name" "$pid"; then
        log "$name already running (pid $pid)"
        return 0
    fi
    log "starting $name"
    setsid "$@" </dev/null >>"$out" 2>&1 &
    pid=$!
    record_pid "$name" "$pid"
    sleep 0.5
    if ! alive "$name" "$pid"; then
        log "$name (pid $pid) exited right away"
        dump_logs
        die "could not start $name"
    fi
}

start_daemon munged "$STATE_DIR/log/munged.out" \
    munged --foreground --force \
        --socket="$sock_path" \
        --key-file="$key" \
        --pid-file="$STATE_DIR/run/munged.pid" \
        --log-file="$STATE_DIR/munge/munged.log" \
        --seed-file="$STATE_DIR/munge/munged.seed"
# wait for the socket, then check that munge credentials round-trip
for _ in $(seq 1 20); do [[ -S "$sock_path" ]] && break; sleep 0.25; done
if ! munge --socket="$sock_path" -n | unmunge --socket="$sock_path" >/dev/null 2>&1; then
    dump_logs
    die "munge round trip failed on $sock_path"
fi

# slurmctld keeps its state in spool/ctld (no -c/-i), so start.sh after stop.sh
# with the same state dir continues the job id sequence.
start_daemon slurmctld "$STATE_DIR/log/slurmctld.out" slurmctld -D -f "$CONF"
start_daemon slurmd "$STATE_DIR/log/slurmd.out" slurmd -D -N localhost -f "$CONF"

# --- 5. wait for the node --------------------------------------------------
log "waiting up to ${TIMEOUT} s for node localhost to be idle"
deadline=$(( SECONDS + TIMEOUT ))
state=""
while (( SECONDS < deadline )); do
    state="$(sinfo -h -N -n localhost -o '%T' 2>/dev/null | head -n 1 || true)"
    case "$state" in
        idle|mixed|allocated|completing) break ;;
    esac
    for name in munged slurmctld slurmd; do
        if ! alive "$name" "$(recorded_pid "$name")"; then
            dump_logs
            die "$name died while waiting for the node"
        fi
    done
    sleep 1
done
case "$state" in
    idle|mixed|allocated|completing) ;;
    *)
        log "node state after ${TIMEOUT} s: '${state:-<sinfo failed>}'"
        sinfo -N -l >&2 || true
        scontrol show node localhost >&2 || true
        dump_logs
        die "SLURM node did not become idle"
        ;;
esac

log "cluster up: $(sinfo -h -o '%P %a %D %T %C')  (state dir $STATE_DIR)"
echo "export SLURM_CONF=$CONF" > "$STATE_DIR/env"
echo "export SLURM_CONF=$CONF"
