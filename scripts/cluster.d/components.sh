# shellcheck shell=bash
# How each control-plane component and MinIO are started and how we know they are ready. Start
# order (each waits for the previous one): etcd -> kube-apiserver -> kube-controller-manager +
# kube-scheduler -> MinIO -> the node (node.sh). Ports come from $STATE_DIR/ports.env, chosen
# fresh by `up`. etcd and the controllers' health ports stay on loopback; the API server and MinIO
# listen on the node's address, which this machine and the pods both reach.

S3_BUCKET="flowpod-test"
S3_REGION="us-east-1"
minio_url() { echo "http://$NODE_IP:$MINIO_PORT"; }

kubectl_admin() { "$K8S_DIR/bin/kubectl" --kubeconfig "$STATE_DIR/admin.kubeconfig" "$@"; }

# GET an https URL with the cluster CA; anonymous unless a client cert name is given.
https_ok() {
    local url="$1" cert="${2:-}"
    local args=(-fsS --max-time 3 --cacert "$(PKI_DIR)/ca.crt")
    if [[ -n "$cert" ]]; then
        args+=(--cert "$(PKI_DIR)/$cert.crt" --key "$(PKI_DIR)/$cert.key")
    fi
    curl "${args[@]}" "$url"
}

# The controller manager and scheduler serve /healthz with an in-memory self-signed certificate;
# we only ask whether they are alive, on loopback, so the certificate is not verified.
healthz_ok() { curl -fsS --max-time 3 --insecure "$1"; }

# --- etcd ---------------------------------------------------------------------------------------
start_etcd() {
    # etcd 3.4 has no --unsafe-no-fsync; a tmpfs data dir gives the same speed for a throwaway
    # test cluster. Fall back to the state dir where /dev/shm is missing.
    local data
    if [[ -d /dev/shm && -w /dev/shm ]]; then
        data="$(mktemp -d /dev/shm/flowpod-etcd.XXXXXX)"
    else
        data="$STATE_DIR/etcd"
        mkdir -p "$data"
    fi
    echo "$data" >"$STATE_DIR/etcd-data-dir"
    chmod 700 "$data"
    local client="http://127.0.0.1:$ETCD_CLIENT_PORT" peer="http://127.0.0.1:$ETCD_PEER_PORT"
    start_detached etcd "$(etcd_binary)" --name flowpod --data-dir "$data" \
        --listen-client-urls "$client" --advertise-client-urls "$client" \
        --listen-peer-urls "$peer" --initial-advertise-peer-urls "$peer" \
        --initial-cluster "flowpod=$peer" --initial-cluster-state new \
        --logger zap --log-outputs stderr --quota-backend-bytes 4294967296
    wait_until etcd 30 "etcd /health" \
        bash -c "curl -fsS --max-time 2 $client/health | grep -q '\"health\":\"true\"'"
}

# --- kube-apiserver -----------------------------------------------------------------------------
start_apiserver() {
    local pki
    pki="$(PKI_DIR)"
    start_detached kube-apiserver "$K8S_DIR/bin/kube-apiserver" \
        --etcd-servers "http://127.0.0.1:$ETCD_CLIENT_PORT" \
        --bind-address "$NODE_IP" --advertise-address "$NODE_IP" --secure-port "$APISERVER_PORT" \
        --tls-cert-file "$pki/apiserver.crt" --tls-private-key-file "$pki/apiserver.key" \
        --client-ca-file "$pki/ca.crt" \
        --requestheader-client-ca-file "$pki/front-proxy-ca.crt" \
        --requestheader-allowed-names front-proxy-client \
        --requestheader-username-headers X-Remote-User \
        --requestheader-group-headers X-Remote-Group \
        --requestheader-extra-headers-prefix X-Remote-Extra- \
        --proxy-client-cert-file "$pki/front-proxy-client.crt" \
        --proxy-client-key-file "$pki/front-proxy-client.key" \
        --authorization-mode Node,RBAC \
        --enable-admission-plugins NodeRestriction \
        --service-account-issuer https://kubernetes.default.svc.cluster.local \
        --service-account-key-file "$pki/sa.pub" \
        --service-account-signing-key-file "$pki/sa.key" \
        --service-cluster-ip-range "$SERVICE_CIDR" \
        --kubelet-client-certificate "$pki/apiserver-kubelet-client.crt" \
        --kubelet-client-key "$pki/apiserver-kubelet-client.key" \
        --kubelet-certificate-authority "$pki/ca.crt" \
        --kubelet-preferred-address-types InternalIP,Hostname \
        --allow-privileged=true \
        --profiling=false \
        --v 1
    # /readyz includes etcd, the RBAC bootstrap roles and the priority-and-fairness config.
    wait_until kube-apiserver 120 "/readyz" \
        https_ok "$(apiserver_url)/readyz" admin
}

# --- kube-controller-manager / kube-scheduler ---------------------------------------------------
start_controller_manager() {
    local pki kc
    pki="$(PKI_DIR)"
    kc="$STATE_DIR/controller-manager.kubeconfig"
    # The default controller set: garbage collector, namespace deletion, service accounts and
    # their tokens, root CA config maps, node lifecycle, CSR signing, EndpointSlices... Cloud
    # controllers stay inert without a cloud provider; node IPAM is off: the node's one pod
    # subnet is in its CNI configuration.
    start_detached kube-controller-manager "$K8S_DIR/bin/kube-controller-manager" \
        --kubeconfig "$kc" --authentication-kubeconfig "$kc" --authorization-kubeconfig "$kc" \
        --bind-address 127.0.0.1 --secure-port "$CONTROLLER_MANAGER_PORT" \
        --leader-elect=false \
        --use-service-account-credentials=true \
        --service-account-private-key-file "$pki/sa.key" \
        --root-ca-file "$pki/ca.crt" \
        --cluster-signing-cert-file "$pki/ca.crt" --cluster-signing-key-file "$pki/ca.key" \
        --service-cluster-ip-range "$SERVICE_CIDR" \
        --allocate-node-cidrs=false \
        --profiling=false \
        --v 1
}

start_scheduler() {
    local kc="$STATE_DIR/scheduler.kubeconfig"
    start_detached kube-scheduler "$K8S_DIR/bin/kube-scheduler" \
        --kubeconfig "$kc" --authentication-kubeconfig "$kc" --authorization-kubeconfig "$kc" \
        --bind-address 127.0.0.1 --secure-port "$SCHEDULER_PORT" \
        --leader-elect=false \
        --profiling=false \
        --v 1
}

wait_controllers() {
    wait_until kube-controller-manager 60 "/healthz" \
        healthz_ok "https://127.0.0.1:$CONTROLLER_MANAGER_PORT/healthz"
    wait_until kube-scheduler 60 "/healthz" \
        healthz_ok "https://127.0.0.1:$SCHEDULER_PORT/healthz"
    # The default ServiceAccount proves the service-account controller is running (pods cannot be
    # created in a namespace until it exists).
    wait_until kube-controller-manager 60 "ServiceAccount default/default" \
        kubectl_admin get serviceaccount default --namespace default
}

# --- MinIO --------------------------------------------------------------------------------------
start_minio() {
    mkdir -p "$STATE_DIR/minio-data"
    # Credentials are generated per cluster and only ever live in the state dir and env output.
    MINIO_ROOT_USER="$S3_ACCESS_KEY" MINIO_ROOT_PASSWORD="$S3_SECRET_KEY" \
        MINIO_BROWSER=off MINIO_UPDATE=off \
        start_detached minio "$MINIO_DIR/bin/minio" server --quiet --anonymous \
        --address "$NODE_IP:$MINIO_PORT" --console-address "127.0.0.1:$MINIO_CONSOLE_PORT" \
        "$STATE_DIR/minio-data"
    wait_until minio 60 "/minio/health/ready" \
        curl -fsS --max-time 2 "$(minio_url)/minio/health/ready"
    log "creating bucket $S3_BUCKET"
    if ! AWS_ACCESS_KEY_ID="$S3_ACCESS_KEY" AWS_SECRET_ACCESS_KEY="$S3_SECRET_KEY" \
        "$VENV_PYTHON" - "$(minio_url)" "$S3_BUCKET" "$S3_REGION" \
        >>"$(LOG_DIR)/minio.log" 2>&1 <<'EOF'; then
import sys

import boto3

endpoint, bucket, region = sys.argv[1:4]
s3 = boto3.client("s3", endpoint_url=endpoint, region_name=region)
existing = {b["Name"] for b in s3.list_buckets().get("Buckets", [])}
if bucket not in existing:
    s3.create_bucket(Bucket=bucket)
s3.head_bucket(Bucket=bucket)
EOF
        show_log_tail "$(LOG_DIR)/minio.log"
        die "could not create the S3 bucket $S3_BUCKET in MinIO"
    fi
}
