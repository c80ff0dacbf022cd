#!/usr/bin/env bash
# A real local Kubernetes control plane (etcd + kube-apiserver + kube-controller-manager 1.20.2) on loopback.
#
#   scripts/cluster.sh up   [--dir DIR] [--owner-pid PID]   start; prints `export` lines (KUBECONFIG, ...)
#   scripts/cluster.sh env  [--dir DIR]                     print the `export` lines of a running plane
#   scripts/cluster.sh down [--dir DIR]                     stop exactly the processes `up` started, remove DIR
#
# DIR defaults to /tmp/tether-cluster. Ports are chosen free at start, so several planes (one per test binary)
# can run side by side. With --owner-pid the plane stops itself when that process exits, so a test binary
# that is killed never leaks an API server. Binaries come from scripts/build-kube.sh (cached).
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
cache=${TETHER_CACHE:-/var/cache/tether}
bin=$cache/k8s-1.20.2/bin
cmd=${1:-}
shift || true
dir=/tmp/tether-cluster
owner=
while [[ $# -gt 0 ]]; do
  case $1 in
    --dir) dir=$2; shift 2 ;;
    --owner-pid) owner=$2; shift 2 ;;
    *) echo "cluster.sh: unknown argument '$1' (see the header of $0)" >&2; exit 64 ;;
  esac
done

log() { printf 'cluster.sh: %s\n' "$*" >&2; }

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

print_env() {
  cat <<EOF
export KUBECONFIG=$dir/admin.kubeconfig
export TETHER_TEST_KUBECONFIG=$dir/admin.kubeconfig
export TETHER_TEST_USER_KUBECONFIG=$dir/user.kubeconfig
export TETHER_TEST_AUDIT_LOG=$dir/audit.log
EOF
}

write_kubeconfig() { # file user token
  cat >"$1" <<EOF
apiVersion: v1
kind: Config
clusters:
- name: tether-local
  cluster:
    server: https://127.0.0.1:$apiport
    certificate-authority: $dir/pki/ca.crt
users:
- name: $2
  user:
    token: $3
contexts:
- name: $2@tether-local
  context: {cluster: tether-local, user: $2}
current-context: $2@tether-local
EOF
}

wait_ready() { # what, seconds, command...
  local what=$1 secs=$2; shift 2
  for _ in $(seq $((secs * 5))); do
    if "$@" >/dev/null 2>&1; then return 0; fi
    sleep 0.2
  done
  log "$what did not become ready in ${secs}s; its log follows"
  tail -30 "$dir/$what.log" >&2 || true
  return 1
}

up() {
  if [[ ! -x $bin/kube-apiserver ]]; then
    log "no kube-apiserver in $bin: run scripts/setup.sh first (it builds and caches it)"
    exit 1
  fi
  if [[ -f $dir/pids ]] && kill -0 $(cat "$dir/pids") 2>/dev/null; then
    log "already running in $dir"
    print_env
    return 0
  fi
  rm -rf "$dir"
  mkdir -p "$dir/pki"
  : >"$dir/pids"
  # A failed start must not leave half a plane behind.
  trap 'log "start failed; cleaning up"; down_quiet' ERR

  local pki=$dir/pki
  openssl req -x509 -newkey rsa:2048 -nodes -days 3650 -subj /CN=tether-local-ca \
    -keyout "$pki/ca.key" -out "$pki/ca.crt" 2>/dev/null
  openssl req -newkey rsa:2048 -nodes -subj /CN=kube-apiserver -keyout "$pki/apiserver.key" \
    -out "$pki/apiserver.csr" 2>/dev/null
  printf 'subjectAltName=IP:127.0.0.1,DNS:localhost,DNS:kubernetes.default.svc\nbasicConstraints=CA:FALSE\nkeyUsage=digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth\n' \
    >"$pki/ext.cnf"
  openssl x509 -req -in "$pki/apiserver.csr" -CA "$pki/ca.crt" -CAkey "$pki/ca.key" -CAcreateserial \
    -days 3650 -extfile "$pki/ext.cnf" -out "$pki/apiserver.crt" 2>/dev/null
  openssl genrsa -out "$pki/sa.key" 2048 2>/dev/null
  openssl rsa -in "$pki/sa.key" -pubout -out "$pki/sa.pub" 2>/dev/null

  local admin_token user_token cm_token
  admin_token=$(openssl rand -hex 16)
  user_token=$(openssl rand -hex 16)
  cm_token=$(openssl rand -hex 16)
  cat >"$pki/tokens.csv" <<EOF
$admin_token,tether-admin,uid-admin,"system:masters"
$user_token,tether-user,uid-user
$cm_token,system:kube-controller-manager,uid-cm,"system:masters"
EOF
  cat >"$dir/audit-policy.yaml" <<'EOF'
apiVersion: audit.k8s.io/v1
kind: Policy
omitStages: [RequestReceived]
rules:
- level: Metadata
  verbs: [create, update, patch, delete, deletecollection]
- level: None
EOF

  local etcdport peerport cmport
  etcdport=$(free_port); peerport=$(free_port); apiport=$(free_port); cmport=$(free_port)
  # etcd's data lives in memory when it can: these planes are disposable and fsync dominates apply latency.
  local etcddata=$dir/etcd
  if [[ -d /dev/shm && -w /dev/shm ]]; then
    etcddata=$(mktemp -d /dev/shm/tether-etcd.XXXXXX)
    ln -s "$etcddata" "$dir/etcd"
  fi
  setsid /usr/bin/etcd --name default --data-dir "$etcddata" \
    --listen-client-urls "http://127.0.0.1:$etcdport" --advertise-client-urls "http://127.0.0.1:$etcdport" \
    --listen-peer-urls "http://127.0.0.1:$peerport" --initial-advertise-peer-urls "http://127.0.0.1:$peerport" \
    --initial-cluster "default=http://127.0.0.1:$peerport" --log-level warn \
    >"$dir/etcd.log" 2>&1 </dev/null &
  echo $! >>"$dir/pids"
  wait_ready etcd 30 curl -fsS "http://127.0.0.1:$etcdport/health"

  setsid "$bin/kube-apiserver" \
    --etcd-servers "http://127.0.0.1:$etcdport" \
    --bind-address 127.0.0.1 --advertise-address 127.0.0.1 --secure-port "$apiport" --insecure-port 0 \
    --tls-cert-file "$pki/apiserver.crt" --tls-private-key-file "$pki/apiserver.key" \
    --client-ca-file "$pki/ca.crt" --cert-dir "$pki" \
    --token-auth-file "$pki/tokens.csv" --authorization-mode RBAC \
    --service-account-issuer https://kubernetes.default.svc --service-account-key-file "$pki/sa.pub" \
    --service-account-signing-key-file "$pki/sa.key" --api-audiences https://kubernetes.default.svc \
    --service-cluster-ip-range 10.96.0.0/12 --allow-privileged \
    --audit-policy-file "$dir/audit-policy.yaml" --audit-log-path "$dir/audit.log" --audit-log-format json \
    --audit-log-mode blocking --profiling=false \
    >"$dir/kube-apiserver.log" 2>&1 </dev/null &
  echo $! >>"$dir/pids"

  write_kubeconfig "$dir/admin.kubeconfig" tether-admin "$admin_token"
  write_kubeconfig "$dir/user.kubeconfig" tether-user "$user_token"
  write_kubeconfig "$dir/controller-manager.kubeconfig" system:kube-controller-manager "$cm_token"
  wait_ready kube-apiserver 90 kubectl --kubeconfig "$dir/admin.kubeconfig" get --raw /readyz

  setsid "$bin/kube-controller-manager" \
    --kubeconfig "$dir/controller-manager.kubeconfig" \
    --authentication-kubeconfig "$dir/controller-manager.kubeconfig" \
    --authorization-kubeconfig "$dir/controller-manager.kubeconfig" \
    --controllers namespace,garbagecollector,serviceaccount,serviceaccount-token \
    --service-account-private-key-file "$pki/sa.key" --root-ca-file "$pki/ca.crt" \
    --leader-elect=false --port 0 --bind-address 127.0.0.1 --secure-port "$cmport" \
    >"$dir/kube-controller-manager.log" 2>&1 </dev/null &
  echo $! >>"$dir/pids"
  # The namespace controller is what makes `kubectl delete ns` finish; wait until it has made the default SA.
  wait_ready kube-controller-manager 60 \
    kubectl --kubeconfig "$dir/admin.kubeconfig" -n default get serviceaccount default

  trap - ERR
  if [[ -n $owner ]]; then
    # Stop with the owner (a test binary): `down` is idempotent, so a normal `down` first is harmless.
    setsid bash -c "while kill -0 $owner 2>/dev/null; do sleep 1; done; exec '$here/cluster.sh' down --dir '$dir'" \
      >/dev/null 2>&1 </dev/null &
  fi
  log "control plane up: kubectl --kubeconfig $dir/admin.kubeconfig get ns"
  print_env
}

down_quiet() {
  [[ -d $dir ]] || return 0
  if [[ -f $dir/pids ]]; then
    local pids
    pids=$(cat "$dir/pids")
    # shellcheck disable=SC2086
    kill $pids 2>/dev/null || true
    for _ in $(seq 50); do
      # shellcheck disable=SC2086
      kill -0 $pids 2>/dev/null || break
      sleep 0.1
    done
    # shellcheck disable=SC2086
    kill -9 $pids 2>/dev/null || true
  fi
  if [[ -L $dir/etcd ]]; then rm -rf "$(readlink "$dir/etcd")"; fi
  rm -rf "$dir"
}

case $cmd in
  up) up ;;
  env) [[ -f $dir/admin.kubeconfig ]] || { log "no control plane in $dir"; exit 1; }; print_env ;;
  down) down_quiet ;;
  *) echo "usage: $0 up|env|down [--dir DIR] [--owner-pid PID]" >&2; exit 64 ;;
esac
