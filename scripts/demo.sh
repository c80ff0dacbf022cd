#!/usr/bin/env bash
# The README's first command: sets up the machine, starts the local control plane (with simulated nodes), and
# syncs the example repository in examples/ into it with `tether daemon --once`, then shows what landed and
# its rollout. The example is published as a local Git repository (file://), so the sync tag is pushed for real.
# The control plane keeps running afterwards; stop it with `scripts/cluster.sh down`.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
cd "$here/.."

bash scripts/setup.sh
# kubectl of the control plane's release (the machine's may be several minors older).
PATH=$(bash scripts/build-tools.sh bin kube):$PATH
export PATH
eval "$(bash scripts/cluster.sh up)"
echo "== building tether" >&2
cargo build --release -q -p tether

# A Git "remote" holding examples/, as a user's config repo would.
demo=/tmp/tether-demo
rm -rf "$demo" && mkdir -p "$demo"
git init -q --bare -b main "$demo/config.git"
git init -q -b main "$demo/work"
cp -r examples/. "$demo/work/"
git -C "$demo/work" add -A
git -C "$demo/work" -c user.name=demo -c user.email=demo@localhost commit -q -m "Example app"
git -C "$demo/work" push -q "$demo/config.git" main

echo "== tether daemon --once --git-url file://$demo/config.git" >&2
./target/release/tether daemon --once --git-url "file://$demo/config.git" --cache-dir "$demo/cache"
echo "== the sync tag" >&2
git -C "$demo/config.git" log --oneline -1 tether-sync
echo "== what landed in the cluster" >&2
kubectl get namespace podinfo
kubectl -n podinfo get deployment,service,configmap -l tether.dev/sync=tether
echo "== the rollout: Pods scheduled onto the simulated nodes and Ready" >&2
kubectl -n podinfo rollout status deployment/podinfo --timeout=90s
kubectl -n podinfo get deployment podinfo
kubectl -n podinfo get pods -o wide
echo "== a second sync of the same commit changes nothing" >&2
./target/release/tether daemon --once --git-url "file://$demo/config.git" --cache-dir "$demo/cache" 2>/dev/null
echo "control plane still running: export KUBECONFIG=$KUBECONFIG; stop it with scripts/cluster.sh down" >&2
