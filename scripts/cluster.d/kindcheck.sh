# shellcheck shell=bash
# `scripts/cluster check-kind-config [FILE...]`: check kind cluster config files (default: the
# repository's kind-config.yaml, the README's quickstart cluster) with kind's own loader: strict
# decoding, apiVersion/kind handling, defaults and validation, exactly as `kind create cluster
# --config FILE` applies them, but without Docker or a kind binary and without creating anything.
#
# The checker is the small Go program in kindcheck/ (see its main.go for how it reaches kind's
# internal loader), built against sigs.k8s.io/kind at KIND_VERSION into
# $CACHE_ROOT/kindcheck-$KIND_VERSION-<hash of its sources>/bin/kindcheck with the same
# .partial/.complete discipline as build.sh: a cached build is reused for free, a change to the
# program or to KIND_VERSION builds into a new directory. It builds from a copy of the sources
# (kept in the cache directory's src/), so the build never touches the repository, and with
# -mod=readonly, so the committed go.sum must be complete rather than silently extended.

KINDCHECK_SRC="$CLUSTER_D/kindcheck"
# Set by build_kindcheck.
KINDCHECK_BIN=""

# The files the program is built from; their contents (and names) key the cache directory.
kindcheck_sources() {
    (
        cd "$KINDCHECK_SRC" || exit 1
        LC_ALL=C
        printf '%s\n' go.mod go.sum *.go
    )
}

kindcheck_source_hash() {
    local files
    mapfile -t files < <(kindcheck_sources)
    (cd "$KINDCHECK_SRC" && sha256sum -- "${files[@]}") | sha256sum | cut -c1-12
}

kindcheck_dir() { echo "$CACHE_ROOT/kindcheck-$KIND_VERSION-$(kindcheck_source_hash)"; }

# go.mod must require the kind that versions.env pins: the cache directory is named after
# KIND_VERSION, and the check is meant to be the one that kind release performs.
kindcheck_require_pinned_kind() {
    local required
    required="$(awk '($1 == "require" && $2 == "sigs.k8s.io/kind") { print $3 }
        ($1 == "sigs.k8s.io/kind" && $2 != "=>") { print $2 }' "$KINDCHECK_SRC/go.mod")"
    if [[ "$required" != "$KIND_VERSION" ]]; then
        die "$KINDCHECK_SRC/go.mod requires sigs.k8s.io/kind '${required:-nothing}' but versions.env pins KIND_VERSION=$KIND_VERSION; update it: (cd $KINDCHECK_SRC && go get sigs.k8s.io/kind@$KIND_VERSION && go mod tidy)"
    fi
}

# Build the checker if the cache lacks it; sets KINDCHECK_BIN. Concurrent callers (parallel CI
# jobs, test workers) serialise on a lock and build once.
build_kindcheck() {
    [[ -d "$KINDCHECK_SRC" ]] || die "missing $KINDCHECK_SRC (the kind config checker's sources)"
    local dir
    dir="$(kindcheck_dir)"
    KINDCHECK_BIN="$dir/bin/kindcheck"
    if [[ -f "$dir/.complete" && -x "$KINDCHECK_BIN" ]]; then
        return 0
    fi
    command -v go >/dev/null 2>&1 \
        || die "checking kind configs needs the Go toolchain (https://go.dev/dl/) to build $KINDCHECK_SRC; put 'go' on PATH"
    kindcheck_require_pinned_kind
    mkdir -p "$CACHE_ROOT"
    local lock_fd
    exec {lock_fd}>"$CACHE_ROOT/kindcheck.lock"
    flock -w 600 "$lock_fd" || die "another build of the kind config checker holds $CACHE_ROOT/kindcheck.lock for over 10 minutes"
    if [[ -f "$dir/.complete" && -x "$KINDCHECK_BIN" ]]; then
        exec {lock_fd}>&-
        return 0
    fi
    local work="$dir.partial" logf="$CACHE_ROOT/build-${dir##*/}.log" start files
    rm -rf "$work"
    mkdir -p "$work/bin" "$work/src"
    mapfile -t files < <(kindcheck_sources)
    (cd "$KINDCHECK_SRC" && cp -- "${files[@]}" "$work/src/")
    log "kindcheck (kind $KIND_VERSION): building the kind config checker (a few seconds with a warm Go module cache; log: $logf)"
    start="$(now)"
    if ! (
        cd "$work/src"
        export CGO_ENABLED=0 GOTOOLCHAIN=local GOWORK=off GOFLAGS="-mod=readonly -buildvcs=false"
        set -x
        go build -trimpath -ldflags "-s -w" -o "$work/bin/kindcheck" .
    ) >"$logf" 2>&1; then
        show_log_tail "$logf" 40
        exec {lock_fd}>&-
        die "building the kind config checker failed (full log: $logf)"
    fi
    elapsed "$start" >"$work/build-seconds"
    cp "$logf" "$work/build.log"
    touch "$work/.complete"
    rm -rf "$dir"
    mv "$work" "$dir"
    exec {lock_fd}>&-
    log "kindcheck (kind $KIND_VERSION): built in $(cat "$dir/build-seconds") s ($KINDCHECK_BIN)"
}

# Prints `ok: FILE (N nodes)` or `error: FILE: <kind's message>` per file; exits 1 if any failed.
# Relative FILEs are taken from the caller's working directory; `--name NAME` before the files
# also validates the name given to `kind create cluster --name`.
cmd_check_kind_config() {
    if [[ $# -eq 0 ]]; then
        set -- "$REPO_ROOT/kind-config.yaml"
    fi
    build_kindcheck
    exec "$KINDCHECK_BIN" "$@"
}
