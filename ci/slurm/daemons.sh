# Sourced by start.sh, stop.sh and claim_conf_link.sh: is a recorded daemon alive?
# alive NAME PID -> 0 if PID runs the program NAME (/proc/PID/comm; so a reused PID
# does not count) and has not exited (a zombie, not yet reaped, counts as exited).
alive() {
    [[ -n "$2" && -r "/proc/$2/comm" ]] || return 1
    [[ "$(cat "/proc/$2/comm" 2>/dev/null)" == "$1" ]] || return 1
    local st
    st="$(awk '{print $3}' "/proc/$2/stat" 2>/dev/null || true)"
    [[ -n "$st" && "$st" != "Z" ]]
}
