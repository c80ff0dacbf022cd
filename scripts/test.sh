#!/usr/bin/env bash
# The project's test command (the README's second command; .ci/run calls exactly this):
# installs what is missing, starts one local control plane for the whole run, then runs formatting, lints
# and every test, integration tests included. Fails loudly when anything is missing; never skips.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
cd "$here/.."

bash scripts/setup.sh
# kubectl of the control plane's release first on PATH, for the tests and the benchmark smoke test.
PATH=$(bash scripts/build-tools.sh bin kube):$PATH
export PATH

dir=$(mktemp -d /tmp/tether-test-cluster.XXXXXX)
trap 'bash scripts/cluster.sh down --dir "$dir/plane"' EXIT
eval "$(bash scripts/cluster.sh up --dir "$dir/plane" --owner-pid $$)"

echo "== cargo fmt --check" >&2
cargo fmt --all -- --check
echo "== cargo clippy" >&2
cargo clippy --workspace --all-targets --locked -- -D warnings
echo "== cargo test" >&2
# Fault tests record what they survived here (crates/cli/tests/sync/support.rs, World::survived).
tally=${CARGO_TARGET_DIR:-target}/tmp/fault-tally
rm -rf "$tally"
cargo test --workspace --locked -- --test-threads "${TETHER_TEST_THREADS:-4}"
echo "== fault tally (quoted in docs/reliability.md)" >&2
cat "$tally"/*.tsv | sort | awk -F'\t' '
    { cases++; faults += $2; objects += $3; lost += $4; orphaned += $5; bystanders += $6; wrongful += $7
      printf "  %s: %d fault(s); %d objects in Git, %d lost, %d orphaned; %d bystanders, %d deleted\n",
             $1, $2, $3, $4, $5, $6, $7 }
    END { printf "%d fault cases survived, %d faults injected, %d objects checked against Git: %d lost, %d orphaned; %d bystanders: %d wrongful deletions\n",
          cases, faults, objects, lost, orphaned, bystanders, wrongful }' >&2
