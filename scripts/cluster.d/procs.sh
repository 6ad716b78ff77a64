# shellcheck shell=bash
# Starting, watching and stopping the cluster's processes, strictly by process id.
#
# Each component runs detached in its own session (setsid + nohup), its output in
# $STATE_DIR/logs/<name>.log and "<pid> <start-time>" in $STATE_DIR/pids/<name>.pid. The start time
# (field 22 of /proc/<pid>/stat) guards against a recycled pid: we never signal a process that is
# not the one we started. Stopping collects the component's whole process tree first, then
# SIGTERM, a grace period, SIGKILL.

LOG_DIR() { echo "$STATE_DIR/logs"; }
PID_DIR() { echo "$STATE_DIR/pids"; }

proc_start_time() { awk '{ print $22 }' "/proc/$1/stat" 2>/dev/null; }

# start_detached NAME CMD...: run CMD in a new session with stdin closed, record its pid.
start_detached() {
    local name="$1"
    shift
    mkdir -p "$(LOG_DIR)" "$(PID_DIR)"
    local logf
    logf="$(LOG_DIR)/$name.log"
    # A background child of a non-interactive shell is not a process-group leader, so setsid
    # execs in place and $! is the component's own pid.
    # fds 8 and 9 are scripts/cluster's locks (take_lock): a daemon must not inherit them, or it
    # would hold them for its whole life and block every later `up`/`down`.
    setsid nohup "$@" </dev/null >>"$logf" 2>&1 8>&- 9>&- &
    local pid=$!
    # The start time is only readable once the child exists; it does by the time `&` returns.
    echo "$pid $(proc_start_time "$pid")" >"$(PID_DIR)/$name.pid"
}

# Print the pid of component NAME if it is still the process we started; fail otherwise.
component_pid() {
    local file
    file="$(PID_DIR)/$1.pid"
    [[ -f "$file" ]] || return 1
    local pid start
    read -r pid start <"$file" || return 1
    [[ -n "$pid" && -d "/proc/$pid" ]] || return 1
    [[ "$(proc_start_time "$pid")" == "$start" ]] || return 1
    # A zombie is dead for our purposes.
    [[ "$(awk '{ print $3 }' "/proc/$pid/stat" 2>/dev/null)" != Z ]] || return 1
    echo "$pid"
}

component_alive() { component_pid "$1" >/dev/null; }

# All descendants of a pid (children, grandchildren, ...), from /proc.
descendants() {
    local root="$1"
    ps -e -o pid=,ppid= | awk -v root="$root" '
        { parent[$1] = $2; pids[NR] = $1 }
        END {
            changed = 1; inset[root] = 1
            while (changed) {
                changed = 0
                for (i in pids) { p = pids[i]
                    if (!(p in inset) && (parent[p] in inset)) { inset[p] = 1; changed = 1 } }
            }
            for (p in inset) if (p != root) print p
        }'
}

# stop_component NAME [GRACE_SECONDS [quiet]]: TERM the component, wait, KILL it and any leftover
# descendants (with a warning unless quiet). Silent and successful when it is not running.
stop_component() {
    local name="$1" grace="${2:-10}" quiet="${3:-}" pid
    local pidfile
    pidfile="$(PID_DIR)/$name.pid"
    if ! pid="$(component_pid "$name")"; then
        rm -f "$pidfile"
        return 0
    fi
    # Remember the tree before the parent dies: orphans are re-parented to init and lost to us.
    local tree child
    tree="$(descendants "$pid")"
    local -A start_of=()
    for child in $tree; do
        start_of[$child]="$(proc_start_time "$child")"
    done
    log "stopping $name (pid $pid)"
    kill -TERM "$pid" 2>/dev/null || true
    local deadline=$((SECONDS + grace))
    while component_alive "$name" && ((SECONDS < deadline)); do
        sleep 0.1
    done
    if component_alive "$name"; then
        [[ -n "$quiet" ]] || warn "$name did not exit within ${grace}s of SIGTERM; sending SIGKILL"
        kill -KILL "$pid" 2>/dev/null || true
    fi
    # Leftover children (e.g. pods the node agent did not reap), still the same processes.
    for child in $tree; do
        if [[ -n "${start_of[$child]}" && "$(proc_start_time "$child")" == "${start_of[$child]}" ]]; then
            kill -KILL "$child" 2>/dev/null || true
        fi
    done
    rm -f "$pidfile"
}

# wait_until NAME TIMEOUT DESCRIPTION CMD...: poll CMD until it succeeds. Fails early, with the
# component's log, if the component process died; fails with the log after TIMEOUT seconds.
wait_until() {
    local name="$1" timeout="$2" what="$3"
    shift 3
    local deadline=$((SECONDS + timeout))
    while ! "$@" >/dev/null 2>&1; do
        if ! component_alive "$name"; then
            show_log_tail "$(LOG_DIR)/$name.log"
            die "$name exited while waiting for: $what"
        fi
        if ((SECONDS >= deadline)); then
            show_log_tail "$(LOG_DIR)/$name.log"
            die "timed out after ${timeout}s waiting for $name: $what"
        fi
        sleep 0.2
    done
}

# Free TCP ports on loopback, one per line, chosen by the kernel (bind to port 0). All sockets
# are held open until every port is chosen so the same port is never returned twice.
free_ports() {
    local count="$1"
    "$VENV_PYTHON" - "$count" <<'EOF'
import socket
import sys

socks = []
for _ in range(int(sys.argv[1])):
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    socks.append(s)
for s in socks:
    print(s.getsockname()[1])
EOF
}
