#!/usr/bin/env bash
# The benchmark (issue 6): tether against `kubectl apply` (client-side and --server-side) and a raw
# server-side-apply client, each on a fresh local control plane, in one run. Builds the harness in release
# mode; the harness builds tether (release) from this working tree and records the commit. Arguments are passed
# on, e.g.
#
#   scripts/bench.sh                          # N = 1000 and 5000, 3 repetitions (about 30 minutes on 2 cores)
#   scripts/bench.sh --sizes 1000 --reps 5
#   scripts/bench.sh --tether /path/to/tether --tether-label "tether at abc123"
#   scripts/bench.sh --help
#
# Output: a Markdown table on stdout and report.md, results.csv, samples.csv, results.json, chart.svg in
# target/bench/. Needs the test ground (scripts/setup.sh: etcd, the control plane and kubectl of one release).
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
cd "$here/.."
# `kubectl apply` is measured with the kubectl of the API server's release: an older client against a newer
# server is outside the supported skew and was measured 10x slower (see docs/benchmarks.md).
PATH=$(bash scripts/build-tools.sh bin kube):$PATH
export PATH
cargo build --release -p tether-bench
exec target/release/tether-bench "$@"
