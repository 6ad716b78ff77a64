# shellcheck shell=bash
# Certificates, keys and kubeconfigs for one cluster, generated with openssl into $STATE_DIR/pki.
#
# One CA signs everything: the API server's serving certificate, every client certificate (admin in
# system:masters, the controller manager, scheduler and kube-proxy under the user names the RBAC
# bootstrap policy binds, CoreDNS, the API server's client certificate for the kubelet, and the
# node's own certificate, which the kubelet also serves with), and CSRs via the controller
# manager's signer. The
# service-account key pair is separate (tokens are JWTs, not certificates).

PKI_DIR() { echo "$STATE_DIR/pki"; }

# The first address of the service range is the `kubernetes` Service's cluster IP; the serving
# certificate names it so in-cluster clients (flow pods) can verify the server.
SERVICE_CIDR="10.96.0.0/16"
KUBERNETES_SERVICE_IP="10.96.0.1"
NODE_NAME="flowpod-node-1"
# Where the API server listens (node.sh's $NODE_IP: reachable from the machine and from pods).
apiserver_url() { echo "https://$NODE_IP:$APISERVER_PORT"; }

_openssl() {
    # openssl is chatty on stderr even on success; keep its output for failures only.
    local out
    if ! out="$(openssl "$@" 2>&1)"; then
        printf '%s\n' "$out" >&2
        die "openssl $1 failed"
    fi
}

# new_cert NAME SUBJECT EXTENSIONS: key + certificate signed by the CA.
new_cert() {
    local name="$1" subject="$2" extensions="$3" dir
    dir="$(PKI_DIR)"
    _openssl genrsa -out "$dir/$name.key" 2048
    _openssl req -new -key "$dir/$name.key" -subj "$subject" -out "$dir/$name.csr"
    printf '%s\n' "$extensions" >"$dir/$name.ext"
    _openssl x509 -req -in "$dir/$name.csr" -CA "$dir/ca.crt" -CAkey "$dir/ca.key" \
        -CAcreateserial -days 3650 -sha256 -extfile "$dir/$name.ext" -out "$dir/$name.crt"
    rm -f "$dir/$name.csr" "$dir/$name.ext"
}

client_ext() {
    printf '%s\n' "basicConstraints=critical,CA:FALSE" \
        "keyUsage=critical,digitalSignature,keyEncipherment" "extendedKeyUsage=clientAuth"
}

generate_pki() {
    local dir
    dir="$(PKI_DIR)"
    mkdir -p "$dir"
    chmod 700 "$dir"

    _openssl genrsa -out "$dir/ca.key" 2048
    _openssl req -x509 -new -key "$dir/ca.key" -subj "/CN=flowpod-test-cluster-ca" -days 3650 \
        -sha256 -addext "basicConstraints=critical,CA:TRUE" \
        -addext "keyUsage=critical,keyCertSign,cRLSign,digitalSignature" -out "$dir/ca.crt"

    new_cert apiserver "/CN=kube-apiserver" "$(printf '%s\n' \
        "basicConstraints=critical,CA:FALSE" \
        "keyUsage=critical,digitalSignature,keyEncipherment" \
        "extendedKeyUsage=serverAuth" \
        "subjectAltName=IP:$NODE_IP,IP:127.0.0.1,IP:$KUBERNETES_SERVICE_IP,DNS:localhost,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc,DNS:kubernetes.default.svc.cluster.local")"

    new_cert admin "/O=system:masters/CN=flowpod-admin" "$(client_ext)"
    new_cert controller-manager "/CN=system:kube-controller-manager" "$(client_ext)"
    new_cert scheduler "/CN=system:kube-scheduler" "$(client_ext)"
    new_cert kube-proxy "/CN=system:kube-proxy" "$(client_ext)"
    # CoreDNS's own user, bound by scripts/cluster to a read-only ClusterRole.
    new_cert coredns "/CN=flowpod:coredns" "$(client_ext)"
    # The API server's identity when it calls the kubelet (logs, exec): kubeadm's convention.
    new_cert apiserver-kubelet-client "/O=system:masters/CN=kube-apiserver-kubelet-client" "$(client_ext)"
    # The node's identity (Node authorizer + NodeRestriction) and its serving certificate.
    new_cert node "/O=system:nodes/CN=system:node:$NODE_NAME" "$(printf '%s\n' \
        "basicConstraints=critical,CA:FALSE" \
        "keyUsage=critical,digitalSignature,keyEncipherment" \
        "extendedKeyUsage=clientAuth,serverAuth" \
        "subjectAltName=IP:$NODE_IP,IP:127.0.0.1,DNS:localhost,DNS:$NODE_NAME")"

    # The front-proxy (request-header) CA and the API server's aggregator client: without them
    # every component's delegated authentication keeps logging a missing requestheader bundle.
    _openssl genrsa -out "$dir/front-proxy-ca.key" 2048
    _openssl req -x509 -new -key "$dir/front-proxy-ca.key" -subj "/CN=flowpod-front-proxy-ca" \
        -days 3650 -sha256 -addext "basicConstraints=critical,CA:TRUE" \
        -addext "keyUsage=critical,keyCertSign,cRLSign,digitalSignature" -out "$dir/front-proxy-ca.crt"
    _openssl genrsa -out "$dir/front-proxy-client.key" 2048
    _openssl req -new -key "$dir/front-proxy-client.key" -subj "/CN=front-proxy-client" \
        -out "$dir/front-proxy-client.csr"
    client_ext >"$dir/front-proxy-client.ext"
    _openssl x509 -req -in "$dir/front-proxy-client.csr" -CA "$dir/front-proxy-ca.crt" \
        -CAkey "$dir/front-proxy-ca.key" -CAcreateserial -days 3650 -sha256 \
        -extfile "$dir/front-proxy-client.ext" -out "$dir/front-proxy-client.crt"
    rm -f "$dir/front-proxy-client.csr" "$dir/front-proxy-client.ext" "$dir/front-proxy-ca.srl"

    # Service-account token signing pair.
    _openssl genrsa -out "$dir/sa.key" 2048
    _openssl rsa -in "$dir/sa.key" -pubout -out "$dir/sa.pub"
    rm -f "$dir/ca.srl"
    chmod 600 "$dir"/*.key
}

# write_kubeconfig FILE USER CERT_NAME: a kubeconfig with embedded credentials for one identity.
write_kubeconfig() {
    local file="$1" user="$2" cert="$3" dir
    dir="$(PKI_DIR)"
    local ca crt key
    ca="$(base64 -w0 <"$dir/ca.crt")"
    crt="$(base64 -w0 <"$dir/$cert.crt")"
    key="$(base64 -w0 <"$dir/$cert.key")"
    cat >"$file" <<EOF
apiVersion: v1
kind: Config
clusters:
- name: flowpod-test
  cluster:
    server: $(apiserver_url)
    certificate-authority-data: $ca
users:
- name: $user
  user:
    client-certificate-data: $crt
    client-key-data: $key
contexts:
- name: flowpod-test
  context:
    cluster: flowpod-test
    user: $user
    namespace: default
current-context: flowpod-test
EOF
    chmod 600 "$file"
}

generate_kubeconfigs() {
    write_kubeconfig "$STATE_DIR/admin.kubeconfig" flowpod-admin admin
    write_kubeconfig "$STATE_DIR/controller-manager.kubeconfig" system:kube-controller-manager controller-manager
    write_kubeconfig "$STATE_DIR/scheduler.kubeconfig" system:kube-scheduler scheduler
    write_kubeconfig "$STATE_DIR/node.kubeconfig" "system:node:$NODE_NAME" node
    write_kubeconfig "$STATE_DIR/kube-proxy.kubeconfig" system:kube-proxy kube-proxy
    write_kubeconfig "$STATE_DIR/coredns.kubeconfig" flowpod:coredns coredns
}
