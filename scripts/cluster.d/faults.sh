# shellcheck shell=bash
# Fault injection for the fault tests (tests/integration/test_faults.py, docs/reliability.md):
# restart the API server, stop and start MinIO, on the running cluster, by process id as every
# other component (procs.sh). `up` and `down` are unchanged; these only act on a healthy cluster's
# state dir, and only on the one component they name.

require_running_state() {
    [[ -f "$STATE_DIR/env.json" ]] || die "no running cluster (no $STATE_DIR/env.json); start one with: scripts/cluster up"
    load_state || die "no cluster state in $STATE_DIR"
}

# restart-apiserver [--kill]: stop kube-apiserver (SIGTERM, SIGKILL after 5 s: its graceful
# termination waits far longer for open watches; --kill: SIGKILL at once, as a crash), start it
# again with the same flags, state and port, and wait until /readyz answers. Logs the seconds the
# API was unavailable.
cmd_restart_apiserver() {
    local grace=5 quiet=quiet
    case "${1:-}" in
        "") ;;
        --kill) grace=0 ;;
        *) die "unknown option '$1' (use: scripts/cluster restart-apiserver [--kill])" ;;
    esac
    require_running_state
    take_lock
    local start
    start="$(now)"
    if ((grace == 0)); then
        local pid
        if pid="$(component_pid kube-apiserver)"; then
            log "killing kube-apiserver (pid $pid)"
            kill -KILL "$pid" 2>/dev/null || true
            while component_alive kube-apiserver; do sleep 0.05; done
            rm -f "$(PID_DIR)/kube-apiserver.pid"
        fi
    else
        stop_component kube-apiserver "$grace" "$quiet"
    fi
    log "starting kube-apiserver on $(apiserver_url)"
    start_apiserver
    log "kube-apiserver ready again after $(elapsed "$start") s"
}

# stop-minio: stop MinIO (SIGTERM, SIGKILL after 15 s); its data stays in the state dir.
cmd_stop_minio() {
    require_running_state
    take_lock
    stop_component minio 15
    log "MinIO stopped"
}

# start-minio: start MinIO again on the same address with the same data and credentials, and wait
# until it is ready (the bucket is created only if it is missing).
cmd_start_minio() {
    require_running_state
    take_lock
    if component_alive minio; then
        log "MinIO is already running"
        return 0
    fi
    local start
    start="$(now)"
    log "starting MinIO on $(minio_url)"
    start_minio
    log "MinIO ready in $(elapsed "$start") s"
}
