#!/usr/bin/env bash
# Builds kube-apiserver and kube-controller-manager 1.20.2 from Debian's source package and caches them
# under $TETHER_CACHE (default /var/cache/tether)/k8s-1.20.2/bin. Debian 12 ships etcd but no API server;
# this is the only way to get a real one on these machines without downloading a prebuilt binary.
# Idempotent: when the binaries are cached it exits at once.
set -euo pipefail

version=1.20.2
cache=${TETHER_CACHE:-/var/cache/tether}
out=$cache/k8s-$version/bin
if [[ -x $out/kube-apiserver && -x $out/kube-controller-manager ]]; then
  echo "build-kube: cached binaries in $out"
  exit 0
fi

log() { printf 'build-kube: %s\n' "$*" >&2; }
export DEBIAN_FRONTEND=noninteractive

# apt-get source needs a deb-src entry mirroring the binary sources.
if ! grep -rqs '^Types:.*deb-src' /etc/apt/sources.list.d/ /etc/apt/sources.list 2>/dev/null; then
  log "adding deb-src entries"
  sed 's/^Types: deb$/Types: deb-src/' /etc/apt/sources.list.d/debian.sources \
    > /etc/apt/sources.list.d/tether-deb-src.sources
  apt-get update -qq
fi
apt-get install -y -qq golang-go rsync jq dpkg-dev golang-github-modern-go-reflect2-dev >/dev/null

work=$cache/src
rm -rf "$work"
mkdir -p "$work" "$out"
cd "$work"
log "fetching Debian source package kubernetes"
apt-get source -qq --download-only kubernetes >/dev/null 2>&1 || apt-get source --download-only kubernetes
dpkg-source --no-check -x kubernetes_*.dsc tree >/dev/null
cd tree

# The vendored reflect2 1.0.1 crashes (SIGSEGV in runtime.mapiternext) with Go >= 1.18 as soon as a CRD is
# applied; Debian's 1.0.2 source is API-compatible and fixes it.
rm -rf vendor/github.com/modern-go/reflect2
cp -r /usr/share/gocode/src/github.com/modern-go/reflect2 vendor/github.com/modern-go/reflect2

mkdir -p .go/src/k8s.io
ln -sfn "$PWD" .go/src/k8s.io/kubernetes
for what in cmd/kube-apiserver cmd/kube-controller-manager; do
  log "building $what (a few minutes)"
  GOPATH=$PWD/.go CGO_ENABLED=0 make WHAT=$what >build.log 2>&1 || { tail -60 build.log >&2; exit 1; }
done
cp _output/local/bin/linux/amd64/kube-apiserver _output/local/bin/linux/amd64/kube-controller-manager "$out/"
cd / && rm -rf "$work"
log "built into $out"
