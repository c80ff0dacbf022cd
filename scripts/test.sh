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
cargo test --workspace --locked -- --test-threads "${TETHER_TEST_THREADS:-4}"
