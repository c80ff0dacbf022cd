# syntax=docker/dockerfile:1
# tether's image: the binary and the three things a sync runs besides it (git, ssh, kustomize), nothing else.
#   docker build -t ghcr.io/tether-dev/tether:0.1.0 .
# `tether install` points its Deployment at that name; with another registry, pass --image.

# The workspace's rust-version, so the image is built by the toolchain the code promises to build with.
FROM rust:1.89-bookworm AS builder
WORKDIR /src
COPY . .
# --locked: the image gets exactly the dependency versions Cargo.lock was tested with. The cache mounts keep
# the registry and target/ between builds (BuildKit); target/ is a mount, so the binary is copied out of it.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked -p tether \
    && cp target/release/tether /usr/local/bin/tether

# kustomize builds kustomization directories and runs as `kustomize build .` in .flux.yaml generators.
# Its official image keeps a static (CGO_ENABLED=0) binary at /app/kustomize (kubernetes-sigs/kustomize,
# kustomize.Dockerfile), so it runs on Debian as it is. The tests use v5.8.2 built from source
# (testenv/kustomize/go.mod); v5.8.1 is the newest tag seen published on registry.k8s.io, unverified from
# here as these machines cannot pull images: move to v5.8.2 once it is.
FROM registry.k8s.io/kustomize/kustomize:v5.8.1 AS kustomize

# The builder's Debian release, so the binary finds the glibc it was linked against.
FROM debian:bookworm-slim
# git clones, fetches and pushes; openssh-client carries git over SSH and checks host keys against the
# mounted known_hosts; ca-certificates lets HTTPS to Git hosts, registries and the API server be verified.
# Nothing more: .flux.yaml commands get Debian's base (sh, coreutils) and kustomize.
RUN apt-get update \
    && apt-get install -y --no-install-recommends git openssh-client ca-certificates \
    && rm -rf /var/lib/apt/lists/*
COPY --from=kustomize /app/kustomize /usr/local/bin/kustomize
COPY --from=builder /usr/local/bin/tether /usr/local/bin/tether
# Numeric, and the uid the Deployment's securityContext names: runAsNonRoot can only verify a number.
USER 65532:65532
ENTRYPOINT ["/usr/local/bin/tether"]
