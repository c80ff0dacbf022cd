#!/usr/bin/env bash
# Builds the test ground's Kubernetes tooling with the ordinary `go` client from the wrapper modules in
# testenv/<tool>/ (their go.mod and go.sum pin every dependency), each into $TETHER_CACHE/<tool>-<version>/
# (default /var/cache/tether). Only tests and the demo use these binaries; tether itself is Rust.
#
#   scripts/build-tools.sh             build what is missing (a few seconds when everything is cached)
#   scripts/build-tools.sh bin TOOL    print TOOL's bin directory (kube, etcd, kwok, kustomize, helm)
#
# A cached build is reused only while its go.mod and go.sum are unchanged (a stamp records their hash).
# Each build records its wall time and peak memory in <dir>/build-stats.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cache=${TETHER_CACHE:-/var/cache/tether}
log() { printf 'build-tools: %s\n' "$*" >&2; }

# The wrapper modules need Go 1.26, which these machines have: never let a toolchain line fetch another one.
export GOTOOLCHAIN=local CGO_ENABLED=0 GOFLAGS=-mod=readonly

# The module each wrapper is named after, whose version keys the cache.
main_module() {
  case $1 in
    kube) echo k8s.io/kubernetes ;;
    etcd) echo go.etcd.io/etcd/server/v3 ;;
    kwok) echo sigs.k8s.io/kwok ;;
    kustomize) echo sigs.k8s.io/kustomize/kustomize/v5 ;;
    helm) echo helm.sh/helm/v3 ;;
    *) log "unknown tool '$1' (kube, etcd, kwok, kustomize, helm)"; return 64 ;;
  esac
}

version_of() { # tool
  local m
  m=$(main_module "$1") || return
  awk -v m="$m" '$1 == m { print $2; exit } $1 == "require" && $2 == m { print $3; exit }' "$root/testenv/$1/go.mod"
}

dir_of() { # tool
  local v
  v=$(version_of "$1") || return
  [[ -n $v ]] || { log "testenv/$1/go.mod requires no $(main_module "$1")"; return 1; }
  echo "$cache/$1-$v"
}

stamp_of() { cat "$root/testenv/$1/go.mod" "$root/testenv/$1/go.sum" | sha256sum | cut -c1-16; }

# build TOOL LDFLAGS NAME=PACKAGE...: one `go build` per binary; they share Go's build cache, so the second
# and third control-plane binaries mostly link.
build() {
  local tool=$1 ldflags=$2 out stamp
  shift 2
  out=$(dir_of "$tool")
  stamp=$(stamp_of "$tool")
  if [[ -f $out/stamp && $(cat "$out/stamp") == "$stamp" ]]; then return 0; fi
  log "building $tool $(version_of "$tool") into $out (the control plane takes the longest: see README)"
  rm -rf "$out.partial"
  mkdir -p "$out.partial/bin"
  local start=$SECONDS peak=0 spec name pkg kb
  for spec in "$@"; do
    name=${spec%%=*} pkg=${spec#*=}
    if ! (cd "$root/testenv/$tool" &&
      /usr/bin/time -f %M -o "$out.partial/rss" \
        go build -trimpath -ldflags "-s -w $ldflags" -o "$out.partial/bin/$name" "$pkg") \
      >>"$out.partial/build.log" 2>&1; then
      log "building $name ($pkg) failed; the end of the build log follows"
      tail -40 "$out.partial/build.log" >&2
      exit 1
    fi
    kb=$(tail -1 "$out.partial/rss")
    ((kb > peak)) && peak=$kb
  done
  printf 'seconds=%s peak_rss_mib=%s go=%s\n' $((SECONDS - start)) $((peak / 1024)) "$(go env GOVERSION)" \
    >"$out.partial/build-stats"
  echo "$stamp" >"$out.partial/stamp"
  rm -rf "$out" && mv "$out.partial" "$out"
  log "built $tool: $(cat "$out/build-stats")"
}

# kwok has no built-in stages: it runs the ones its config names. These are the ones kwokctl uses (nodes
# become Ready and keep a lease; Pods become Ready, Job Pods complete), taken from the pinned module's source.
kwok_stages() {
  local out src
  out=$(dir_of kwok)
  [[ -f $out/stages.yaml ]] && return 0
  src=$(cd "$root/testenv/kwok" && go list -m -f '{{.Dir}}' sigs.k8s.io/kwok)
  {
    for f in node/fast/node-initialize node/heartbeat-with-lease/node-heartbeat-with-lease \
      pod/fast/pod-ready pod/fast/pod-complete pod/fast/pod-delete; do
      echo '---'
      cat "$src/kustomize/stage/$f.yaml"
    done
  } >"$out/stages.yaml.partial"
  mv "$out/stages.yaml.partial" "$out/stages.yaml"
}

build_all() {
  command -v go >/dev/null || { log "go is missing (expected on these machines: see README)"; exit 1; }
  local kv kminor kpkg=k8s.io/component-base/version cpkg=k8s.io/client-go/pkg/version
  kv=$(version_of kube)
  kminor=${kv#v1.}
  kminor=${kminor%%.*}
  # Version stamping, as the Kubernetes release build does, so /version reports the real version.
  build kube "-X $kpkg.gitVersion=$kv -X $kpkg.gitMajor=1 -X $kpkg.gitMinor=$kminor -X $kpkg.gitTreeState=clean
    -X $cpkg.gitVersion=$kv -X $cpkg.gitMajor=1 -X $cpkg.gitMinor=$kminor -X $cpkg.gitTreeState=clean" \
    kube-apiserver=k8s.io/kubernetes/cmd/kube-apiserver \
    kube-controller-manager=k8s.io/kubernetes/cmd/kube-controller-manager \
    kube-scheduler=k8s.io/kubernetes/cmd/kube-scheduler \
    kubectl=k8s.io/kubernetes/cmd/kubectl
  build etcd "" etcd=go.etcd.io/etcd/server/v3
  build kwok "" kwok=sigs.k8s.io/kwok/cmd/kwok
  kwok_stages
  build kustomize "" kustomize=sigs.k8s.io/kustomize/kustomize/v5
  build helm "-X helm.sh/helm/v3/internal/version.version=$(version_of helm)" helm=helm.sh/helm/v3/cmd/helm
}

case ${1:-} in
  "") build_all ;;
  bin)
    d=$(dir_of "${2:?usage: $0 bin TOOL}")
    [[ -f $d/stamp ]] || { log "$2 is not built in $d: run scripts/setup.sh"; exit 1; }
    echo "$d/bin"
    ;;
  *) echo "usage: $0 [bin TOOL]" >&2; exit 64 ;;
esac
