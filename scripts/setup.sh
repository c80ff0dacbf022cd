#!/usr/bin/env bash
# Installs everything tether's demo and tests need on a fresh Debian 12 machine (as root) and builds the test
# ground's Go tools once (control plane, etcd, kwok, kustomize, helm; cached under /var/cache/tether by
# scripts/build-tools.sh). Safe to re-run: a second run takes seconds.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
export DEBIAN_FRONTEND=noninteractive

# Binaries the project runs for real in tests and the demo (see README "Real components"); chromium loads the
# status page (`tether dashboard`) headless in its test.
need=(time openssh-server openssh-client git curl openssl python3 jq docker-registry apache2-utils chromium)
missing=()
for p in "${need[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if [[ ${#missing[@]} -gt 0 ]]; then
  echo "setup: installing ${missing[*]}" >&2
  # Debian would start sshd and the registry as system services on install; tether's tests start their
  # own on free loopback ports, so keep the packaged ones from starting (the standard policy-rc.d switch).
  policy=/usr/sbin/policy-rc.d
  created_policy=
  if [[ ! -e $policy ]]; then printf '#!/bin/sh\nexit 101\n' >$policy; chmod +x $policy; created_policy=1; fi
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  [[ -z $created_policy ]] || rm -f $policy
fi
command -v kubectl >/dev/null || { echo "setup: kubectl is missing (expected on these machines)" >&2; exit 1; }

"$here/build-tools.sh"

if ! command -v cargo >/dev/null; then
  echo "setup: cargo is missing; install the Rust toolchain (rustup) first" >&2
  exit 1
fi
rustup component list --installed 2>/dev/null | grep -q clippy || rustup component add clippy rustfmt >/dev/null 2>&1 || true
echo "setup: ready" >&2
