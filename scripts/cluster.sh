#!/usr/bin/env bash
# A real local Kubernetes control plane on loopback: etcd, kube-apiserver, kube-controller-manager and
# kube-scheduler (the versions testenv/*/go.mod pin, built by scripts/build-tools.sh), and kwok simulating a few
# Nodes, so Deployments, StatefulSets, DaemonSets and Jobs get Pods that are scheduled, become Ready and complete.
#
#   scripts/cluster.sh up   [--dir DIR] [--owner-pid PID] [--nodes N] [--lean]
#                                                   start; prints `export` lines (KUBECONFIG, ...)
#   scripts/cluster.sh env  [--dir DIR]             print the `export` lines of a running plane
#   scripts/cluster.sh down [--dir DIR]             stop exactly the processes `up` started, remove DIR
#
# DIR defaults to /tmp/tether-cluster. Ports are chosen free at start, so several planes (one per test binary)
# can run side by side. With --owner-pid the plane stops itself when that process exits, so a test binary
# that is killed never leaks an API server. --nodes sets the number of simulated Nodes (default 3). --lean
# starts only the controllers a sync itself needs (namespace, garbage collector, service accounts) and no
# scheduler or nodes: the benchmark uses it to measure the API path, not Pod churn.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
cmd=${1:-}
shift || true
dir=/tmp/tether-cluster
owner=
nodes=3
lean=
while [[ $# -gt 0 ]]; do
  case $1 in
    --dir) dir=$2; shift 2 ;;
    --owner-pid) owner=$2; shift 2 ;;
    --nodes) nodes=$2; shift 2 ;;
    --lean) lean=1; nodes=0; shift ;;
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

# started NAME: records the last background process (its log is $dir/NAME.log) so a wait can tell a crash.
started() {
  echo $! >>"$dir/pids"
  echo "$! $1" >>"$dir/procs"
}

wait_ready() { # what, seconds, command...
  local what=$1 secs=$2 pid name
  shift 2
  for _ in $(seq $((secs * 5))); do
    if "$@" >/dev/null 2>&1; then return 0; fi
    while read -r pid name; do
      if ! kill -0 "$pid" 2>/dev/null; then
        log "$name exited while waiting for $what; the end of its log follows"
        tail -30 "$dir/$name.log" >&2 || true
        return 1
      fi
    done <"$dir/procs"
    sleep 0.2
  done
  log "$what did not become ready in ${secs}s; the end of its log follows"
  tail -30 "$dir/$what.log" >&2 || true
  return 1
}

tool_bin() { # tool -> its bin directory, or a message naming the fix
  "$here/build-tools.sh" bin "$1" 2>/dev/null ||
    { log "$1 is not built: run scripts/setup.sh first (it builds and caches it)"; exit 1; }
}

# Simulated Nodes that kwok manages (it selects them by the annotation); sized like a large real node.
node_manifests() {
  local i
  for ((i = 0; i < nodes; i++)); do
    cat <<EOF
---
apiVersion: v1
kind: Node
metadata:
  name: kwok-node-$i
  annotations: {kwok.x-k8s.io/node: fake, node.alpha.kubernetes.io/ttl: "0"}
  labels: {kubernetes.io/hostname: kwok-node-$i, kubernetes.io/os: linux, kubernetes.io/arch: amd64, type: kwok}
status:
  allocatable: {cpu: "32", memory: 256Gi, pods: "110"}
  capacity: {cpu: "32", memory: 256Gi, pods: "110"}
EOF
  done
}

up() {
  local kube etcd kwok=
  kube=$(tool_bin kube)
  # The kubectl of the server's own release (the machine's may be several minors older).
  PATH=$kube:$PATH
  etcd=$(tool_bin etcd)
  [[ $nodes == 0 ]] || kwok=$(tool_bin kwok)
  if [[ -f $dir/pids ]] && kill -0 $(cat "$dir/pids") 2>/dev/null; then
    log "already running in $dir"
    print_env
    return 0
  fi
  rm -rf "$dir"
  mkdir -p "$dir/pki"
  : >"$dir/pids"
  : >"$dir/procs"
  # A failed or interrupted start must not leave half a plane behind.
  trap 'log "start failed; cleaning up"; down_quiet' ERR
  trap 'log "interrupted; cleaning up"; down_quiet; exit 130' INT TERM
  if [[ -n $owner ]]; then
    # Stop with the owner (a test binary), also when it dies while this script is still starting the plane:
    # `down` is idempotent, so a normal `down` first is harmless.
    setsid bash -c "while kill -0 $owner 2>/dev/null; do sleep 1; done; exec '$here/cluster.sh' down --dir '$dir'" \
      >/dev/null 2>&1 </dev/null &
  fi

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

  local admin_token user_token cm_token sched_token kwok_token
  admin_token=$(openssl rand -hex 16)
  user_token=$(openssl rand -hex 16)
  cm_token=$(openssl rand -hex 16)
  sched_token=$(openssl rand -hex 16)
  kwok_token=$(openssl rand -hex 16)
  # The components run under their usual user names; system:masters keeps this disposable plane simple.
  cat >"$pki/tokens.csv" <<EOF
$admin_token,tether-admin,uid-admin,"system:masters"
$user_token,tether-user,uid-user
$cm_token,system:kube-controller-manager,uid-cm,"system:masters"
$sched_token,system:kube-scheduler,uid-sched,"system:masters"
$kwok_token,system:kwok,uid-kwok,"system:masters"
EOF
  cat >"$dir/audit-policy.yaml" <<'EOF'
apiVersion: audit.k8s.io/v1
kind: Policy
omitStages: [RequestReceived]
rules:
- level: Metadata
  verbs: [create, update, patch, delete, deletecollection]
# Reads are logged for clients (tether, the tests), not for the control plane's own components: tests count
# the LISTs, GETs and WATCHes a sync sends.
- level: None
  users: [system:kube-controller-manager, system:kube-scheduler, system:kwok, system:apiserver]
- level: None
  userGroups: [system:nodes]
- level: Metadata
  verbs: [get, list, watch]
- level: None
EOF

  local etcdport peerport cmport schedport kwokport
  etcdport=$(free_port); peerport=$(free_port); apiport=$(free_port); cmport=$(free_port)
  schedport=$(free_port); kwokport=$(free_port)
  # etcd's data lives in memory when it can: these planes are disposable and fsync dominates apply latency.
  local etcddata=$dir/etcd
  if [[ -d /dev/shm && -w /dev/shm ]]; then
    etcddata=$(mktemp -d /dev/shm/tether-etcd.XXXXXX)
    ln -s "$etcddata" "$dir/etcd"
  fi
  # The order of the pids file (etcd, kube-apiserver, then the rest) is read by the benchmark.
  setsid "$etcd/etcd" --name default --data-dir "$etcddata" \
    --listen-client-urls "http://127.0.0.1:$etcdport" --advertise-client-urls "http://127.0.0.1:$etcdport" \
    --listen-peer-urls "http://127.0.0.1:$peerport" --initial-advertise-peer-urls "http://127.0.0.1:$peerport" \
    --initial-cluster "default=http://127.0.0.1:$peerport" --log-level warn \
    >"$dir/etcd.log" 2>&1 </dev/null &
  started etcd
  wait_ready etcd 30 curl -fsS "http://127.0.0.1:$etcdport/health"

  # The API server refuses to publish a loopback address as the `kubernetes` Service endpoint; nothing here
  # runs in-cluster to need one, so that reconciler is off.
  setsid "$kube/kube-apiserver" \
    --etcd-servers "http://127.0.0.1:$etcdport" \
    --bind-address 127.0.0.1 --advertise-address 127.0.0.1 --secure-port "$apiport" \
    --endpoint-reconciler-type none \
    --tls-cert-file "$pki/apiserver.crt" --tls-private-key-file "$pki/apiserver.key" \
    --client-ca-file "$pki/ca.crt" --cert-dir "$pki" \
    --token-auth-file "$pki/tokens.csv" --authorization-mode RBAC \
    --service-account-issuer https://kubernetes.default.svc --service-account-key-file "$pki/sa.pub" \
    --service-account-signing-key-file "$pki/sa.key" --api-audiences https://kubernetes.default.svc \
    --service-cluster-ip-range 10.96.0.0/12 --allow-privileged \
    --audit-policy-file "$dir/audit-policy.yaml" --audit-log-path "$dir/audit.log" --audit-log-format json \
    --audit-log-mode blocking --profiling=false \
    >"$dir/kube-apiserver.log" 2>&1 </dev/null &
  started kube-apiserver

  write_kubeconfig "$dir/admin.kubeconfig" tether-admin "$admin_token"
  write_kubeconfig "$dir/user.kubeconfig" tether-user "$user_token"
  write_kubeconfig "$dir/controller-manager.kubeconfig" system:kube-controller-manager "$cm_token"
  write_kubeconfig "$dir/scheduler.kubeconfig" system:kube-scheduler "$sched_token"
  write_kubeconfig "$dir/kwok.kubeconfig" system:kwok "$kwok_token"
  wait_ready kube-apiserver 90 kubectl --kubeconfig "$dir/admin.kubeconfig" get --raw /readyz

  # Every controller a cluster runs by default, so workloads behave as they do for users; --lean keeps only
  # what a sync itself relies on.
  local controllers='*'
  [[ -z $lean ]] || controllers=namespace,garbagecollector,serviceaccount,serviceaccount-token
  setsid "$kube/kube-controller-manager" \
    --kubeconfig "$dir/controller-manager.kubeconfig" \
    --authentication-kubeconfig "$dir/controller-manager.kubeconfig" \
    --authorization-kubeconfig "$dir/controller-manager.kubeconfig" \
    --controllers "$controllers" \
    --service-account-private-key-file "$pki/sa.key" --root-ca-file "$pki/ca.crt" \
    --cluster-signing-cert-file "$pki/ca.crt" --cluster-signing-key-file "$pki/ca.key" \
    --service-cluster-ip-range 10.96.0.0/12 \
    --leader-elect=false --bind-address 127.0.0.1 --secure-port "$cmport" \
    >"$dir/kube-controller-manager.log" 2>&1 </dev/null &
  started kube-controller-manager

  if [[ $nodes -gt 0 ]]; then
    setsid "$kube/kube-scheduler" \
      --kubeconfig "$dir/scheduler.kubeconfig" \
      --authentication-kubeconfig "$dir/scheduler.kubeconfig" \
      --authorization-kubeconfig "$dir/scheduler.kubeconfig" \
      --leader-elect=false --bind-address 127.0.0.1 --secure-port "$schedport" \
      >"$dir/kube-scheduler.log" 2>&1 </dev/null &
    started kube-scheduler
    # kwok plays the kubelet of the annotated Nodes: it keeps them Ready (with a lease, so the node
    # lifecycle controller never evicts), gives Pods an IP and walks them through the stages it is given.
    setsid "$kwok/kwok" --kubeconfig "$dir/kwok.kubeconfig" --config "$kwok/../stages.yaml" \
      --manage-all-nodes=false --manage-nodes-with-annotation-selector kwok.x-k8s.io/node=fake \
      --node-lease-duration-seconds 40 --cidr 10.244.0.0/16 --node-ip 127.0.0.1 \
      --server-address "127.0.0.1:$kwokport" \
      >"$dir/kwok.log" 2>&1 </dev/null &
    started kwok
    node_manifests | kubectl --kubeconfig "$dir/admin.kubeconfig" apply -f - >/dev/null
    wait_ready kwok 60 \
      kubectl --kubeconfig "$dir/admin.kubeconfig" wait --for condition=Ready node --all --timeout 1s
  fi
  # The namespace controller is what makes `kubectl delete ns` finish; wait until it has made the default SA.
  wait_ready kube-controller-manager 60 \
    kubectl --kubeconfig "$dir/admin.kubeconfig" -n default get serviceaccount default

  trap - ERR INT TERM
  log "control plane $("$kube/kube-apiserver" --version) up, $nodes simulated node(s): kubectl --kubeconfig $dir/admin.kubeconfig get ns"
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
