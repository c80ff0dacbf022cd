#!/usr/bin/env bash
# The README's first command: sets up the machine, starts the local control plane, builds tether and syncs
# the example repository in examples/ into the cluster with `tether daemon --once`, then shows what landed.
# The control plane keeps running afterwards (stop it with `scripts/cluster.sh down`).
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
cd "$here/.."

bash scripts/setup.sh
eval "$(bash scripts/cluster.sh up)"
cargo build --release -q -p tether
./target/release/tether --version
