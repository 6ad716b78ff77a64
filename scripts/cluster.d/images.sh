# shellcheck shell=bash
# The node's container images, built here with buildah (no registry is reachable from this
# machine and there is no Docker engine), and loading them into the node's containerd:
#
#   pause        PAUSE_IMAGE: Kubernetes' own build/pause/linux/pause.c, static, FROM scratch
#   python-base  PYTHON_BASE_IMAGE: Debian's python3.11 laid out like python:3.11-slim-bookworm
#   flowpod      FLOWPOD_IMAGE (or --tag): the repository's Dockerfile, unchanged, on python-base
#   minio        the chart's minio.image: the MinIO binary `build` made, FROM scratch
#   dockerfile   any other Dockerfile and context (`image --file F --context DIR --tag T`), e.g.
#                your flows FROM flowpod:dev: what `docker build` does before `kind load`
#
# Owns $IMAGES_DIR: per image and content key a directory with <name>.tar (a docker-archive
# naming the reference the kubelet resolves), image-id, ref, build.log and build-seconds. A key
# hashes exactly what its image is built from, so a warm run is a hash and a file test, no
# buildah call. Also owns buildah's storage under $CACHE_ROOT/buildah, `image` and `load-image`.

BUILDAH_ROOT="$CACHE_ROOT/buildah/storage"
BUILDAH_RUNROOT="/run/flowpod-buildah"
# debootstrap does not resolve virtual packages: python3.11-venv depends on python3.11-distutils,
# which python3-distutils provides.
PYTHON_BASE_PACKAGES="python3.11 python3.11-venv python3-distutils ca-certificates netbase"
# Tags of the Dockerfile's earlier stages (stage-1: the builder), so pruning keeps their layers.
FLOWPOD_BUILD_CACHE="localhost/flowpod-build-cache:stage"
# Archives kept per image, newest first: enough to switch branches back and forth.
IMAGES_KEEP=3
IMAGES_HELPER="$CLUSTER_D/images_helper.py"

# vfs storage and chroot isolation are what work as root here; the storage is ours alone.
bh() {
    BUILDAH_ISOLATION=chroot buildah --storage-driver vfs --root "$BUILDAH_ROOT" \
        --runroot "$BUILDAH_RUNROOT" "$@"
}
image_id() { bh inspect --type image --format '{{.FromImageID}}' "$1" 2>/dev/null; }
helper() { python3 "$IMAGES_HELPER" "$@"; }
chart_minio_image() { helper chart-image "$REPO_ROOT/charts/flowpod/values.yaml" minio.image; }
# The reference the kubelet resolves a name to (flowpod:dev -> docker.io/library/flowpod:dev):
# the name containerd must hold.
kube_image_ref() { helper kube-ref "$1"; }

# --- recipes: each builds REF in buildah's storage from what its key hashes ---------------------

recipe_pause() {
    local work="$1" ref="$2" mod ctr mnt
    mod="$( (cd / && GOFLAGS= GOTOOLCHAIN=local go mod download -json \
        "k8s.io/kubernetes@$KUBERNETES_VERSION") | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p')"
    [[ -f "$mod/build/pause/linux/pause.c" ]] \
        || die "k8s.io/kubernetes@$KUBERNETES_VERSION has no build/pause/linux/pause.c"
    # The flags of Kubernetes' build/pause/Makefile: static, so FROM scratch is enough.
    gcc -Os -Wall -Werror -static -DVERSION="v${ref##*:}-kubernetes-$KUBERNETES_VERSION" \
        -o "$work/pause" "$mod/build/pause/linux/pause.c"
    strip "$work/pause"
    ctr="$(bh from scratch)"
    mnt="$(bh mount "$ctr")"
    install -m 0755 "$work/pause" "$mnt/pause"
    rm "$work/pause"
    bh umount "$ctr"
    # As the published image: the entrypoint, and uid 65535.
    bh config --entrypoint '["/pause"]' --user 65535:65535 "$ctr"
    bh commit --rm --format docker "$ctr" "$ref"
}

recipe_python_base() {
    local work="$1" ref="$2" ctr root name wheels=() run
    ctr="$(bh from scratch)"
    root="$(bh mount "$ctr")"
    # A clean environment: the host's PIP_*, LC_* and the like stay out of the image's setup.
    run=(env -i PATH=/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin LANG=C.UTF-8 HOME=/root
        chroot "$root")
    env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin debootstrap --variant=minbase \
        --include="${PYTHON_BASE_PACKAGES// /,}" \
        --keyring=/usr/share/keyrings/debian-archive-keyring.gpg \
        "$PYTHON_BASE_SUITE" "$root" "$(helper apt-mirror "$PYTHON_BASE_SUITE")"
    # Python where the official image has it: `python -m venv` records /usr/local/bin/python as
    # the venv's bin/python, which the Dockerfile's final stage relies on.
    for name in python python3 python3.11; do
        ln -s /usr/bin/python3.11 "$root/usr/local/bin/$name"
    done
    # pip and setuptools in /usr/local, where the official image has them, and no PEP 668
    # marker (pip may install into this Python). Debian disables ensurepip for its own Python,
    # so they come from the wheels its ensurepip gives venvs: bookworm's pip 23.0.1, which the
    # Dockerfile upgrades in its venv before resolving the dependencies.
    rm -f "$root/usr/lib/python3.11/EXTERNALLY-MANAGED"
    for name in "$root"/usr/share/python-wheels/{pip,setuptools}-*.whl; do
        wheels+=("${name#"$root"}")
    done
    "${run[@]}" python "${wheels[0]}/pip" install --no-index --no-cache-dir \
        --disable-pip-version-check --root-user-action=ignore "${wheels[@]}"
    # What the Dockerfile needs of it: a venv with pip, pointing at /usr/local/bin/python.
    "${run[@]}" python -m venv /tmp/venv-check
    [[ "$(readlink "$root/tmp/venv-check/bin/python")" == /usr/local/bin/python ]]
    "${run[@]}" /tmp/venv-check/bin/python -m pip --version
    rm -r "$root/tmp/venv-check"
    name="$("${run[@]}" python -c 'import platform; print(platform.python_version())')"
    # What debian:bookworm-slim drops (docs, man pages, locales), now and for later apt
    # installs, and the package lists, caches and logs debootstrap leaves. It copied the host's
    # hostname and resolv.conf: emptied, they stay as the mount points a runtime puts its own on.
    printf '%s\n' 'path-exclude /usr/share/doc/*' 'path-include /usr/share/doc/*/copyright' \
        'path-exclude /usr/share/man/*' 'path-exclude /usr/share/info/*' \
        'path-exclude /usr/share/locale/*' 'path-exclude /usr/share/lintian/*' \
        >"$root/etc/dpkg/dpkg.cfg.d/flowpod-slim"
    find "$root/usr/share/doc" -type f ! -name copyright -delete
    find "$root/usr/share/doc" -depth -mindepth 1 -type d -empty -delete
    find "$root/var/log" -type f -delete
    rm -rf "$root"/usr/share/{man,info,locale,lintian}/* "$root"/var/lib/apt/lists/* \
        "$root"/var/cache/apt/* "$root"/var/cache/debconf/*-old "$root"/dev/*
    : >"$root/etc/hostname"
    : >"$root/etc/resolv.conf"
    bh umount "$ctr"
    bh config --env PATH=/usr/local/bin:/usr/local/sbin:/usr/sbin:/usr/bin:/sbin:/bin \
        --env LANG=C.UTF-8 --env PYTHON_VERSION="$name" --cmd '["python3"]' "$ctr"
    bh commit --rm --format docker "$ctr" "$ref"
}

recipe_minio() {
    local work="$1" ref="$2" ctr root
    ctr="$(bh from scratch)"
    root="$(bh mount "$ctr")"
    install -D -m 0755 "$MINIO_DIR/bin/minio" "$root/usr/bin/minio"
    # The chart runs it as uid 1000 on a read-only root with emptyDirs on /tmp (HOME, certs)
    # and /data; the image has both, so it also runs bare. passwd names uid 1000 for MinIO's
    # user lookups. MinIO resolves "localhost" at start-up: /etc/hosts (the kubelet mounts its
    # own over it) and nsswitch.conf let Go's resolver find it without DNS.
    install -d -m 1777 "$root/tmp"
    install -d -m 0755 -o 1000 -g 1000 "$root/data"
    install -d "$root/etc"
    printf 'root:x:0:0:root:/root:/sbin/nologin\nminio:x:1000:1000::/tmp:/sbin/nologin\n' \
        >"$root/etc/passwd"
    printf 'root:x:0:\nminio:x:1000:\n' >"$root/etc/group"
    printf 'hosts: files dns\n' >"$root/etc/nsswitch.conf"
    printf '127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n' >"$root/etc/hosts"
    bh umount "$ctr"
    # No ENTRYPOINT: the chart's `command` and a plain `minio ...` both work.
    bh config --env PATH=/usr/bin:/bin --env HOME=/tmp --user 1000:1000 --port 9000/tcp \
        --cmd '["minio", "server", "/data"]' "$ctr"
    bh commit --rm --format docker "$ctr" "$ref"
}

# Any Dockerfile (args: FILE CONTEXT KEY=VALUE...), FROM images in buildah's storage only.
# --layers reuses unchanged layers, e.g. the flowpod image's dependency layer (pip from PyPI).
recipe_dockerfile() {
    local work="$1" ref="$2" file="$3" context="$4" kv args=() cas=/etc/ssl/certs/ca-certificates.crt
    shift 4
    for kv in "$@"; do args+=(--build-arg "$kv"); done
    # pip in the RUN steps trusts what this machine trusts (a TLS-intercepting proxy re-signs
    # PyPI here): the host's CA bundle is mounted for the build only, never into a layer.
    [[ ! -f "$cas" ]] || args+=(--volume "$cas:$cas:ro")
    bh bud --format docker --layers --pull=never --force-rm "${args[@]}" --tag "$ref" \
        --file "$file" "$context"
}

# The Dockerfile as `make image` builds it, PYTHON_IMAGE its one seam (given last, so it wins).
recipe_flowpod() {
    local work="$1" ref="$2" tails stage id ctr
    shift 2
    image_restore "$(image_dir python-base)/python-base.tar" "$PYTHON_BASE_IMAGE"
    recipe_dockerfile "$work" "$ref" "$REPO_ROOT/Dockerfile" "$REPO_ROOT" "$@" \
        "PYTHON_IMAGE=$PYTHON_BASE_IMAGE" | tee "$work/bud.log"
    # Only the final stage hangs from the tag: name each earlier stage's last image too, or
    # pruning drops the builder's layers, the dependency layer among them.
    tails="$(helper stage-tails "$work/bud.log")"
    rm "$work/bud.log"
    while read -r stage id; do
        [[ -z "$id" ]] || bh tag "$id" "$FLOWPOD_BUILD_CACHE-$stage"
    done <<<"$tails"
    # The venv copied from the builder must work on the fresh base, as the pods' uid 1000.
    ctr="$(bh from --pull=never "$ref")"
    bh run --user 1000:1000 "$ctr" -- sh -c \
        "python -c 'import flowpod, flowpod_operator, kopf, boto3' && flowpod --help >/dev/null"
    bh rm "$ctr"
}

# --- keys, archives and buildah's storage --------------------------------------------------------

# What an image is built from, hashed: pins, its recipe's code, and for flowpod the build
# context (Dockerfile, .dockerignore, the files it copies), the base's key, tag and build args.
image_key() {
    local name="$1" inputs
    shift
    case "$name" in
        pause) inputs="$KUBERNETES_VERSION $PAUSE_IMAGE" ;;
        python-base) inputs="$PYTHON_BASE_SUITE $PYTHON_BASE_IMAGE $PYTHON_BASE_PACKAGES" ;;
        minio) inputs="$MINIO_VERSION $(chart_minio_image)" ;;
        flowpod)
            inputs="$(image_key python-base)"
            inputs+=" $(helper context-hash "$REPO_ROOT") $(printf '%q ' "$@")"
            ;;
        dockerfile)
            # TAG FILE CONTEXT ARGS...: and the images its FROM lines name, as buildah holds them
            # now (FROM flowpod:dev changes with every flowpod build).
            # Paths stay out: the same Dockerfile and files in another folder are the same image.
            local from
            inputs="$(helper context-hash "$3" "$2") $(printf '%q ' "$1" "${@:4}")"
            while read -r from; do
                [[ -z "$from" ]] || inputs+=" $from=$(image_id "$from" || true)"
            done < <(helper from-images "$2" "${@:4}")
            ;;
        *) die "unknown image '$name' (pause, python-base, minio, flowpod or dockerfile)" ;;
    esac
    # flowpod's recipe builds through recipe_dockerfile: both are part of what it is made from.
    { echo "$inputs"; declare -f "recipe_${name//-/_}"
      [[ "$name" != flowpod ]] || declare -f recipe_dockerfile; } | sha256sum | cut -c1-16
}

image_dir() {
    local key
    key="$(image_key "$@")"
    echo "$IMAGES_DIR/$1-$key"
}

# image_archive NAME: build NAME's archive unless it exists, print its path.
# image_archive flowpod [TAG [KEY=VALUE...]]: the tag (default FLOWPOD_IMAGE) and build args.
image_archive() {
    local name="$1" dir
    shift
    if [[ "$name" == flowpod ]]; then
        [[ $# -gt 0 ]] || set -- "$FLOWPOD_IMAGE"
        image_archive python-base >/dev/null
    fi
    dir="$(image_dir "$name" "$@")"
    if [[ ! -f "$dir/$name.tar" ]]; then
        [[ "$name" != minio ]] || minio_binary_wait
        mkdir -p "$IMAGES_DIR"
        # One build at a time (test sessions may start together); a waiter finds it built.
        (
            flock -w 3600 8 || die "another image build held $IMAGES_DIR/.lock for an hour"
            if [[ ! -f "$dir/$name.tar" ]]; then image_build "$name" "$dir" "$@"; fi
        ) 8>"$IMAGES_DIR/.lock"
    fi
    touch "$dir"
    echo "$dir/$name.tar"
}

# Build into DIR.partial, moved into place only on success. The steps run in a fresh bash with
# errexit: no `if` or `||` of a caller can make a failed step go unnoticed.
image_build() {
    local name="$1" dir="$2" start logf="$IMAGES_DIR/build-$1.log"
    shift 2
    [[ "$(id -u)" == 0 ]] || die "building images needs root (buildah, vfs, chroot isolation)"
    command -v buildah >/dev/null || die "buildah is missing: apt-get install $NODE_DEBIAN_PACKAGES"
    rm -rf "$dir.partial"
    mkdir -p "$dir.partial"
    log "image $name: building (log: $logf)"
    start="$(now)"
    if ! bash -euo pipefail -c 'source "$0/lib.sh"; source "$0/images.sh"; set -x
            image_build_steps "$@"' "$CLUSTER_D" "$name" "$dir.partial" "$@" >"$logf" 2>&1; then
        rm -rf "$dir.partial"
        show_log_tail "$logf" 40
        die "building image $name failed (full log: $logf)"
    fi
    elapsed "$start" >"$dir.partial/build-seconds"
    cp "$logf" "$dir.partial/build.log"
    rm -rf "$dir"
    mv "$dir.partial" "$dir"
    log "image $name: built in $(cat "$dir/build-seconds") s:" \
        "$dir/$name.tar ($(du -h "$dir/$name.tar" | cut -f1))"
    # Old archives of this image beyond the newest few, and exports a failed load left.
    ls -dt "$IMAGES_DIR/$name"-*/ | grep -v '\.partial/$' | tail -n +$((IMAGES_KEEP + 1)) \
        | xargs -r rm -rf
    find "$IMAGES_DIR" -maxdepth 1 -name '.load-*.tar' -mmin +60 -delete
}

image_build_steps() {
    local name="$1" work="$2" ref
    shift 2
    case "$name" in
        pause) ref="$PAUSE_IMAGE" ;;
        python-base) ref="$PYTHON_BASE_IMAGE" ;;
        minio) ref="$(chart_minio_image)" ;;
        flowpod | dockerfile) ref="$1" && shift ;;
    esac
    storage_clean
    "recipe_${name//-/_}" "$work" "$ref" "$@"
    kube_image_ref "$ref" >"$work/ref"
    image_id "$ref" >"$work/image-id"
    # By ID, so the archive names only the reference the kubelet resolves.
    bh push "$(cat "$work/image-id")" "docker-archive:$work/$name.tar:$(cat "$work/ref")"
    storage_clean
}

# Make REF name ARCHIVE's image in buildah's storage: it may be gone, or REF may name another
# build than a warm archive holds.
image_restore() {
    local archive="$1" ref="$2" id kref
    id="$(cat "$(dirname "$archive")/image-id")"
    [[ "$(image_id "$ref" || true)" != "$id" ]] || return 0
    if [[ -z "$(image_id "$id" || true)" ]]; then
        bh pull --quiet "docker-archive:$archive" >/dev/null
        # The pull named it as the archive does (docker.io/library/flowpod:dev), while buildah
        # calls flowpod:dev localhost/flowpod:dev: drop the name that would only pin the image.
        kref="$(kube_image_ref "$ref")"
        if [[ "$kref" != "$ref" ]]; then
            bh tag "$id" "$ref"
            bh rmi "$kref" >/dev/null
        fi
    fi
    bh tag "$id" "$ref"
}

# Keep buildah's storage bounded: mounts an interrupted debootstrap left (proc, sys), working
# containers, and images no tag reaches. Tagged images and the layers beneath them stay.
storage_clean() {
    awk -v root="$BUILDAH_ROOT/" 'index($2, root) == 1 { print $2 }' /proc/mounts | sort -r \
        | xargs -r umount -l
    bh rm --all >/dev/null
    bh rmi --prune >/dev/null || true
}

# MinIO is built by `scripts/cluster build`: wait for a build in progress, never start one.
minio_binary_wait() {
    local polls=0
    until [[ -f "$MINIO_DIR/.complete" ]]; do
        [[ -d "$MINIO_DIR.partial" || -f "$MINIO_DIR/.complete" ]] \
            || die "MinIO $MINIO_VERSION is not built ($MINIO_DIR): run scripts/cluster build"
        ((polls++ % 12)) || log "image minio: waiting for the MinIO build ($MINIO_DIR.partial)"
        ((polls < 720)) || die "MinIO $MINIO_VERSION's build did not finish within an hour"
        sleep 5
    done
}

# --- the node's containerd -----------------------------------------------------------------------

node_ctr() { ctr --address "$CONTAINERD_SOCKET" --namespace k8s.io "$@"; }

node_containerd_check() {
    [[ -S "$CONTAINERD_SOCKET" ]] && node_ctr --timeout 5s version >/dev/null 2>&1 \
        || die "the node's containerd is not running (no answer on $CONTAINERD_SOCKET): start the node with scripts/cluster up"
}

# The image ID (config digest) containerd holds under REF, or nothing.
containerd_image_id() {
    local digest
    digest="$(node_ctr images ls "name==$1" | awk 'NR == 2 { print $3 }')"
    [[ -z "$digest" ]] || node_ctr content get "$digest" | helper manifest-config
}

# Import a docker-archive, unless containerd holds each of its names at its image ID already.
load_archive() {
    local archive="$1" info id refs=() ref missing=0 start
    info="$(helper archive-info "$archive")" || die "$archive is not a docker-archive"
    id="$(head -1 <<<"$info")"
    mapfile -t refs < <(tail -n +2 <<<"$info")
    [[ ${#refs[@]} -gt 0 ]] || die "$archive names no image (RepoTags): export it with a name"
    for ref in "${refs[@]}"; do
        [[ "$(containerd_image_id "$ref")" == "$id" ]] || missing=1
    done
    if ((missing == 0)); then
        log "${refs[*]}: already in the node's containerd (${id:7:12})"
        return 0
    fi
    start="$(now)"
    # Unpacked for the snapshotter of the node's CRI plugin (node.sh's containerd config).
    node_ctr images import --snapshotter overlayfs "$archive" >/dev/null
    for ref in "${refs[@]}"; do
        [[ "$(containerd_image_id "$ref")" == "$id" ]] \
            || die "importing $archive did not give the node's containerd $ref at ${id:7:12}"
    done
    log "${refs[*]}: loaded into the node's containerd in $(elapsed "$start") s"
}

# An image in buildah's storage, exported under the name the kubelet resolves.
load_storage_image() {
    local name="$1" id kref archive
    id="$(image_id "$name")" || die "no image '$name' in buildah's storage ($BUILDAH_ROOT): build it with scripts/cluster image --tag $name, or pass a docker-archive"
    kref="$(kube_image_ref "$name")"
    if [[ "$(containerd_image_id "$kref")" == "sha256:$id" ]]; then
        log "$kref: already in the node's containerd (${id:0:12})"
        return 0
    fi
    archive="$IMAGES_DIR/.load-$$.tar"
    mkdir -p "$IMAGES_DIR"
    rm -f "$archive"
    bh push --quiet "$id" "docker-archive:$archive:$kref"
    load_archive "$archive"
    rm -f "$archive"
}

# Pause (the sandbox image) and MinIO: what every node has, as if pulled from a registry.
node_images_load() {
    local pause minio
    pause="$(image_archive pause)"
    minio="$(image_archive minio)"
    node_containerd_check
    load_archive "$pause"
    load_archive "$minio"
}

# --- commands ------------------------------------------------------------------------------------

# scripts/cluster image [--tag NAME:TAG] [--build-arg KEY=VALUE]... [--load]: `make image`.
# With --file F [--context DIR] (and a --tag), any Dockerfile: `docker build -t T -f F DIR`.
cmd_image() {
    local tag="" load=0 args=() kv archive file="" context=""
    local usage="scripts/cluster image [--tag NAME:TAG] [--file DOCKERFILE [--context DIR]] [--build-arg KEY=VALUE]... [--load]"
    while [[ $# -gt 0 ]]; do
        case "$1" in
            --tag) tag="${2:?--tag needs NAME:TAG}" && shift ;;
            --tag=*) tag="${1#*=}" ;;
            --file) file="${2:?--file needs a Dockerfile}" && shift ;;
            --context) context="${2:?--context needs a folder}" && shift ;;
            --build-arg) args+=("${2:?--build-arg needs KEY=VALUE}") && shift ;;
            --build-arg=*) args+=("${1#*=}") ;;
            --load) load=1 ;;
            *) die "unknown option '$1' (use: $usage)" ;;
        esac
        shift
    done
    for kv in "${args[@]}"; do [[ "$kv" == ?*=* ]] || die "--build-arg '$kv' is not KEY=VALUE"; done
    if [[ -n "$file" || -n "$context" ]]; then
        [[ -n "$file" && -n "$tag" ]] || die "--file and --tag go together (use: $usage)"
        [[ -f "$file" ]] || die "no Dockerfile at $file"
        context="$(cd "${context:-$(dirname "$file")}" && pwd)" || die "no context folder $context"
        archive="$(image_archive dockerfile "$tag" "$(cd "$(dirname "$file")" && pwd)/$(basename "$file")" \
            "$context" "${args[@]}")"
    else
        tag="${tag:-$FLOWPOD_IMAGE}"
        archive="$(image_archive flowpod "$tag" "${args[@]}")"
    fi
    image_restore "$archive" "$tag"
    log "image $tag: $archive"
    echo "$archive"
    if ((load)); then
        node_containerd_check
        load_archive "$archive"
    fi
}

cmd_load_image() {
    [[ $# -gt 0 ]] || die "usage: scripts/cluster load-image IMAGE|ARCHIVE... (an image in buildah's storage such as flowpod:dev, or a docker-archive file)"
    node_containerd_check
    local arg
    for arg in "$@"; do
        if [[ -f "$arg" ]]; then load_archive "$arg"; else load_storage_image "$arg"; fi
    done
}
