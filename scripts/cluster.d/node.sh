# shellcheck shell=bash
# The node: what kind runs inside its node container, run on this machine. containerd 1.6 with
# runc and the CNI bridge plugin (Debian), the kubelet and kube-proxy (built with the control
# plane), CoreDNS (built from its module), and the network they live on.
#
# The network exists only inside this machine. `up` creates the bridge $NODE_BRIDGE, whose address
# $NODE_IP is the node's InternalIP, the pods' gateway and the address the API server, MinIO and
# CoreDNS listen on; pods get addresses from $POD_SUBNET in network namespaces that containerd
# creates. IPv4 forwarding is switched on for that bridge alone (never ip_forward for the whole
# machine), nothing is masqueraded out, and an nftables table of our own ($GUARD_TABLE, hooked in
# before every other filter, so kube-proxy's ACCEPT rules cannot pre-empt it) drops any pod
# packet that would leave through another interface. `down` removes all of it.
#
# One node runs per machine (it owns the bridge, the guard, port 53 on $NODE_IP, node port 30900 on
# loopback, $NODE_RUN_DIR and $KUBELET_ROOT): $NODE_RUN_DIR/owner names the state dir of the
# cluster that holds it.

NODE_BRIDGE="flowpod0"
NODE_IP="10.244.0.1"
POD_SUBNET="10.244.0.0/24"
CLUSTER_CIDR="10.244.0.0/16"
GUARD_TABLE="flowpod_guard"
NODE_OWNER_FILE="$NODE_RUN_DIR/owner"
# Where the kubelet's pod cgroups go (cgroup v1, cgroupfs driver: one tree per controller).
KUBEPODS_CGROUP="kubepods"

NODE_DIR() { echo "$STATE_DIR/node"; }

# crictl's settings for the node (`scripts/cluster env` exports CRI_CONFIG_FILE, so a plain
# `crictl ps` in that shell talks to it).
CRICTL_CONFIG="$NODE_RUN_DIR/crictl.yaml"
crictl_node() { "$CRICTL_DIR/bin/crictl" --config "$CRICTL_CONFIG" "$@"; }

write_sysctl() { printf '%s\n' "$2" >"/proc/sys/$1"; }

# --- ownership: one node per machine -------------------------------------------------------------
# Fails when another live cluster holds the node; clears what a dead one left behind.
claim_node() {
    mkdir -p "$NODE_RUN_DIR"
    chmod 700 "$NODE_RUN_DIR"
    if [[ -f "$NODE_OWNER_FILE" ]]; then
        local owner
        owner="$(cat "$NODE_OWNER_FILE")"
        if [[ "$owner" != "$STATE_DIR" && -f "$owner/pids/kubelet.pid" ]] \
            && STATE_DIR="$owner" component_alive kubelet; then
            die "the node is in use by the cluster in $owner (one node per machine); stop it first: FLOWPOD_CLUSTER_STATE=$owner scripts/cluster down"
        fi
        log "clearing what the stopped cluster in $owner left of the node"
        (STATE_DIR="$owner" node_teardown)
        mkdir -p "$NODE_RUN_DIR"
    elif ip link show "$NODE_BRIDGE" >/dev/null 2>&1 || nft list table inet "$GUARD_TABLE" >/dev/null 2>&1; then
        log "clearing a node network without an owner (an interrupted up or down)"
        node_teardown
        mkdir -p "$NODE_RUN_DIR"
    fi
    echo "$STATE_DIR" >"$NODE_OWNER_FILE"
}

# --- network -------------------------------------------------------------------------------------
node_network_up() {
    [[ "$(id -u)" == 0 ]] || die "the node needs root (a bridge, nftables, containerd, the kubelet)"
    claim_node
    mkdir -p "$(NODE_DIR)"
    # Values we change on the machine, restored by `down`.
    cat /proc/sys/net/ipv4/conf/all/route_localnet >"$NODE_RUN_DIR/route_localnet.orig"
    nft list tables >"$NODE_RUN_DIR/nft-tables.orig"
    cat /proc/sys/net/bridge/bridge-nf-call-iptables >"$NODE_RUN_DIR/bridge-nf-call-iptables.orig" \
        2>/dev/null || die "br_netfilter is missing (/proc/sys/net/bridge): kube-proxy's Service rules need it for pod-to-pod traffic on one bridge"

    # Pods' network namespaces are bind mounts in /run/netns (containerd's CNI code). Make that
    # folder a shared mount point now, as `ip netns add` does when it first runs: if `ip netns`
    # did it later, its new mount would hide the pods' namespaces from the CNI teardown.
    mkdir -p /run/netns
    if ! mountpoint -q /run/netns; then
        mount --bind /run/netns /run/netns
        touch "$NODE_RUN_DIR/run-netns-mounted"
    fi
    mount --make-shared /run/netns

    ip link add "$NODE_BRIDGE" type bridge
    ip addr add "$NODE_IP/${POD_SUBNET#*/}" dev "$NODE_BRIDGE"
    ip link set "$NODE_BRIDGE" up
    # Forwarding for packets that arrive on the bridge only (pod -> Service -> pod is routed
    # through it); the machine's other interfaces keep forwarding off.
    write_sysctl "net/ipv4/conf/$NODE_BRIDGE/forwarding" 1
    # Bridged pod-to-pod packets pass iptables, so replies to Service traffic are un-NATed.
    write_sysctl net/bridge/bridge-nf-call-iptables 1
    # A Service address that nothing translates must not follow the default route out.
    ip route add "$SERVICE_CIDR" dev "$NODE_BRIDGE"

    # Priority -10 runs after destination NAT (-100), so Service addresses are already translated,
    # and before iptables' filter chains (0), so nothing there can accept what we drop.
    nft -f - <<EOF
table inet $GUARD_TABLE {
    comment "flowpod test node: pod and Service traffic stays on this machine (scripts/cluster)"
    chain forward {
        type filter hook forward priority -10; policy accept;
        ip saddr $CLUSTER_CIDR oifname != "$NODE_BRIDGE" counter drop comment "pod-leaves-machine"
        ip daddr $CLUSTER_CIDR iifname != "$NODE_BRIDGE" counter drop comment "outside-reaches-pod"
        ip daddr $SERVICE_CIDR counter drop comment "untranslated-service-address"
    }
    chain output {
        type filter hook output priority -10; policy accept;
        ip daddr $CLUSTER_CIDR oifname != { "$NODE_BRIDGE", "lo" } counter drop comment "host-to-pod-elsewhere"
        ip daddr $SERVICE_CIDR counter drop comment "untranslated-service-address"
    }
}
EOF
}

# The kubelet and kube-proxy leave chains behind (kube-proxy --cleanup removes only its Service
# rules; the kubelet's KUBE-FIREWALL and canaries stay): drop every KUBE-* chain and rule, keep
# whatever else is there, and delete the iptables tables they created on a machine that had none.
remove_kube_iptables() {
    local save restore family table
    for family in ip ip6; do
        save="iptables-save" restore="iptables-restore"
        [[ "$family" == ip6 ]] && save="ip6tables-save" restore="ip6tables-restore"
        command -v "$save" >/dev/null 2>&1 || continue
        if "$save" 2>/dev/null | grep -q 'KUBE-'; then
            "$save" | grep -v -- 'KUBE-' | "$restore" || warn "could not remove the KUBE-* $family chains"
        fi
        [[ -f "$NODE_RUN_DIR/nft-tables.orig" ]] || continue
        for table in filter nat mangle; do
            grep -qx "table $family $table" "$NODE_RUN_DIR/nft-tables.orig" && continue
            # A table someone else has put rules in since stays.
            nft -j list table "$family" "$table" 2>/dev/null | grep -q '"rule"' && continue
            nft delete table "$family" "$table" 2>/dev/null || true
        done
    done
}

node_network_down() {
    nft delete table inet "$GUARD_TABLE" 2>/dev/null || true
    remove_kube_iptables
    if [[ -f "$NODE_RUN_DIR/run-netns-mounted" ]] && [[ -z "$(ls -A /run/netns 2>/dev/null)" ]]; then
        umount /run/netns 2>/dev/null || true
    fi
    ip route del "$SERVICE_CIDR" dev "$NODE_BRIDGE" 2>/dev/null || true
    ip link del "$NODE_BRIDGE" 2>/dev/null || true
    local name
    for name in route_localnet bridge-nf-call-iptables; do
        local file="$NODE_RUN_DIR/$name.orig" key
        [[ -f "$file" ]] || continue
        case "$name" in
            route_localnet) key=net/ipv4/conf/all/route_localnet ;;
            *) key="net/bridge/$name" ;;
        esac
        write_sysctl "$key" "$(cat "$file")" || true
    done
}

# --- configuration files -------------------------------------------------------------------------
write_node_configs() {
    local dir pki
    dir="$(NODE_DIR)"
    pki="$(PKI_DIR)"
    mkdir -p "$dir/cni/net.d" "$dir/cni/ipam" "$dir/containerd" "$dir/kubelet" "$dir/pod-logs" \
        "$KUBELET_ROOT"

    printf 'runtime-endpoint: unix://%s\nimage-endpoint: unix://%s\ntimeout: 30\n' \
        "$CONTAINERD_SOCKET" "$CONTAINERD_SOCKET" >"$CRICTL_CONFIG"
    cat >"$dir/containerd/config.toml" <<EOF
# containerd for the flowpod test node (written by scripts/cluster up).
version = 2
root = "$dir/containerd/root"
state = "$NODE_RUN_DIR/containerd"
[grpc]
  address = "$CONTAINERD_SOCKET"
[ttrpc]
  address = "$NODE_RUN_DIR/containerd/containerd.sock.ttrpc"
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "$PAUSE_IMAGE"
  # This sandbox forbids lowering oom_score_adj; without this every pod sandbox fails to start.
  restrict_oom_score_adj = true
  disable_apparmor = true
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        SystemdCgroup = false
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "/usr/lib/cni"
    conf_dir = "$dir/cni/net.d"
EOF

    # isGateway stays false: with it the bridge plugin turns on ip_forward for the whole machine.
    # The gateway address is the bridge's own, set by node_network_up.
    cat >"$dir/cni/net.d/10-flowpod.conflist" <<EOF
{
  "cniVersion": "1.0.0",
  "name": "flowpod",
  "plugins": [
    {
      "type": "bridge",
      "bridge": "$NODE_BRIDGE",
      "isGateway": false,
      "isDefaultGateway": false,
      "ipMasq": false,
      "hairpinMode": true,
      "ipam": {
        "type": "host-local",
        "dataDir": "$dir/cni/ipam",
        "ranges": [[{"subnet": "$POD_SUBNET", "rangeStart": "${NODE_IP%.*}.10", "gateway": "$NODE_IP"}]],
        "routes": [{"dst": "0.0.0.0/0"}]
      }
    }
  ]
}
EOF

    cat >"$dir/kubelet/config.yaml" <<EOF
apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
address: $NODE_IP
port: $KUBELET_PORT
readOnlyPort: 0
healthzBindAddress: 127.0.0.1
healthzPort: $KUBELET_HEALTHZ_PORT
tlsCertFile: $pki/node.crt
tlsPrivateKeyFile: $pki/node.key
authentication:
  anonymous: {enabled: false}
  webhook: {enabled: true}
  x509: {clientCAFile: $pki/ca.crt}
authorization: {mode: Webhook}
containerRuntimeEndpoint: unix://$CONTAINERD_SOCKET
cgroupDriver: cgroupfs
cgroupRoot: /
failSwapOn: false
clusterDomain: cluster.local
clusterDNS: [$NODE_IP]
# Pods resolve cluster names only: no upstream resolver, so no query leaves the machine.
resolvConf: ""
podLogsDir: $dir/pod-logs
# Images cannot be pulled again (no registry): never garbage-collect them, never evict for disk
# on a shared development machine.
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
evictionHard: {memory.available: "100Mi", nodefs.available: "1%", nodefs.inodesFree: "1%", imagefs.available: "1%"}
serializeImagePulls: false
maxPods: 250
EOF

    cat >"$dir/kube-proxy.yaml" <<EOF
apiVersion: kubeproxy.config.k8s.io/v1alpha1
kind: KubeProxyConfiguration
mode: iptables
clientConnection:
  kubeconfig: $STATE_DIR/kube-proxy.kubeconfig
hostnameOverride: $NODE_NAME
bindAddress: $NODE_IP
clusterCIDR: $CLUSTER_CIDR
healthzBindAddress: 127.0.0.1:$PROXY_HEALTHZ_PORT
metricsBindAddress: 127.0.0.1:$PROXY_METRICS_PORT
# Node ports answer on loopback (kind-config.yaml's 127.0.0.1:30900) and the node's address,
# never on the machine's outside interfaces.
nodePortAddresses: ["127.0.0.0/8", "$NODE_IP/32"]
iptables:
  localhostNodePorts: true
  minSyncPeriod: 0s
# Leave the machine's conntrack table size alone.
conntrack:
  maxPerCore: 0
  min: 0
EOF

    cat >"$dir/Corefile" <<EOF
# Cluster DNS for pods: cluster.local and reverse lookups, nothing forwarded upstream.
cluster.local:53 in-addr.arpa:53 ip6.arpa:53 {
    bind $NODE_IP
    errors
    health 127.0.0.1:$COREDNS_HEALTH_PORT
    ready 127.0.0.1:$COREDNS_READY_PORT
    kubernetes cluster.local in-addr.arpa ip6.arpa {
        kubeconfig $STATE_DIR/coredns.kubeconfig flowpod-test
        pods insecure
        fallthrough in-addr.arpa ip6.arpa
    }
    cache 5
}
EOF
}

# CoreDNS reads Services, EndpointSlices, Pods and Namespaces, as its own user.
apply_coredns_rbac() {
    kubectl_admin apply -f - >/dev/null <<EOF
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata:
  name: flowpod:coredns
rules:
  - apiGroups: [""]
    resources: [services, pods, namespaces]
    verbs: [list, watch]
  - apiGroups: [discovery.k8s.io]
    resources: [endpointslices]
    verbs: [list, watch]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata:
  name: flowpod:coredns
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: "flowpod:coredns"}
subjects:
  - {apiGroup: rbac.authorization.k8s.io, kind: User, name: "flowpod:coredns"}
EOF
}

# --- processes -----------------------------------------------------------------------------------
start_containerd() {
    write_node_configs
    # No registry is reachable from here, and none may be contacted: every pull goes to a proxy
    # address where nothing listens, so a missing image fails at once (ErrImagePull) instead of
    # reaching out. Images are imported (load-image).
    HTTP_PROXY=http://127.0.0.1:9 HTTPS_PROXY=http://127.0.0.1:9 NO_PROXY= \
        start_detached containerd containerd --config "$(NODE_DIR)/containerd/config.toml" \
        --address "$CONTAINERD_SOCKET"
    wait_until containerd 60 "the CRI socket $CONTAINERD_SOCKET" crictl_node info
}

start_kubelet() {
    start_detached kubelet "$K8S_DIR/bin/kubelet" \
        --config "$(NODE_DIR)/kubelet/config.yaml" \
        --kubeconfig "$STATE_DIR/node.kubeconfig" \
        --root-dir "$KUBELET_ROOT" \
        --hostname-override "$NODE_NAME" \
        --node-ip "$NODE_IP" \
        --v 1
    wait_until kubelet 120 "Node $NODE_NAME Ready" \
        kubectl_admin wait --for condition=Ready "node/$NODE_NAME" --timeout 2s
}

start_kube_proxy() {
    start_detached kube-proxy "$K8S_DIR/bin/kube-proxy" --config "$(NODE_DIR)/kube-proxy.yaml" --v 1
    wait_until kube-proxy 60 "/healthz" curl -fsS --max-time 2 "http://127.0.0.1:$PROXY_HEALTHZ_PORT/healthz"
}

start_coredns() {
    apply_coredns_rbac
    start_detached coredns "$COREDNS_DIR/bin/coredns" -conf "$(NODE_DIR)/Corefile"
    wait_until coredns 60 "/ready" curl -fsS --max-time 2 "http://127.0.0.1:$COREDNS_READY_PORT/ready"
}

# containerd and the images every node has, then the kubelet, kube-proxy and CoreDNS.
start_node() {
    log "starting containerd ($CONTAINERD_SOCKET)"
    start_containerd
    log "importing the node's images ($PAUSE_IMAGE, MinIO)"
    node_images_load
    # The kubelet first: kube-proxy takes the node's addresses from its Node object.
    log "starting the kubelet ($NODE_NAME on $NODE_IP)"
    start_kubelet
    log "starting kube-proxy and CoreDNS"
    start_kube_proxy
    start_coredns
}

# --- teardown ------------------------------------------------------------------------------------
# The network namespace of every pod sandbox containerd holds.
pod_netns_paths() {
    local id
    for id in $(crictl_node pods --quiet 2>/dev/null); do
        crictl_node inspectp --output go-template --template \
            '{{range .info.runtimeSpec.linux.namespaces}}{{if eq .type "network"}}{{.path}}{{"\n"}}{{end}}{{end}}' \
            "$id" 2>/dev/null || true
    done
}

# Node processes a lost state dir no longer names: anything running our own node binaries, or
# naming our containerd socket (containerd itself and the shims, which outlive it).
kill_node_strays() {
    local pid exe
    for pid in $(pgrep -f "kubelet|kube-proxy|coredns|containerd" 2>/dev/null || true); do
        exe="$(readlink "/proc/$pid/exe" 2>/dev/null)" || continue
        case "$exe" in
            "$K8S_DIR/bin/kubelet" | "$K8S_DIR/bin/kube-proxy" | "$COREDNS_DIR/bin/coredns")
                kill -KILL "$pid" 2>/dev/null || true ;;
            *)
                tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -qF -- "$CONTAINERD_SOCKET " \
                    && kill -KILL "$pid" 2>/dev/null || true ;;
        esac
    done
}

# Unmount everything at or below a directory, deepest first (the kubelet bind-mounts its root
# onto itself to make it a shared mount).
unmount_below() {
    local dir="$1" target
    [[ -d "$dir" ]] || return 0
    while read -r target; do
        [[ -n "$target" ]] && umount -l "$target" 2>/dev/null || true
    done < <(findmnt -rn -o TARGET | awk -v d="$dir" '$0 == d || index($0, d "/") == 1' | sort -r)
}

remove_pod_cgroups() {
    local ctrl
    for ctrl in /sys/fs/cgroup/*/; do
        [[ -d "$ctrl$KUBEPODS_CGROUP" ]] || continue
        find "$ctrl$KUBEPODS_CGROUP" -depth -type d -exec rmdir {} + 2>/dev/null || true
    done
}

# Stop the node and remove everything it made: pods (through the CRI, so the CNI plugin deletes
# their network namespaces, veths and address leases), containerd and its shims, kube-proxy's
# rules, the guard, the bridge, mounts and cgroups. Safe to run on any leftover state.
node_teardown() {
    stop_component kubelet 15
    local netns=()
    if [[ -f "$CRICTL_CONFIG" && -x "$CRICTL_DIR/bin/crictl" ]] && component_alive containerd; then
        mapfile -t netns < <(pod_netns_paths)
        crictl_node rmp --all --force >/dev/null 2>&1 || warn "crictl rmp failed; killing the pods' shims instead"
    fi
    stop_component coredns 5
    stop_component kube-proxy 5
    if [[ -f "$(NODE_DIR)/kube-proxy.yaml" ]]; then
        "$K8S_DIR/bin/kube-proxy" --cleanup --config "$(NODE_DIR)/kube-proxy.yaml" >/dev/null 2>&1 || true
    fi
    stop_component containerd 15
    kill_node_strays
    # What the CNI teardown left of the pods' network namespaces (a pod's, exactly: none other).
    local path
    for path in "${netns[@]}"; do
        [[ -e "$path" ]] || continue
        umount -l "$path" 2>/dev/null || true
        rm -f "$path"
    done
    unmount_below "$NODE_RUN_DIR"
    unmount_below "$KUBELET_ROOT"
    unmount_below "$(NODE_DIR)"
    remove_pod_cgroups
    node_network_down
    rm -rf --one-file-system "$NODE_RUN_DIR" "$KUBELET_ROOT"
    rmdir "$(dirname "$KUBELET_ROOT")" 2>/dev/null || true
}
