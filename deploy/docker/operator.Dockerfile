# syntax=docker/dockerfile:1
# The Signpost operator image: signpost-operator (controllers, compiler, distribution, local
# mode) and signpostctl. Build from the repository root:
#
#   docker build -f deploy/docker/operator.Dockerfile -t signpost-operator:0.1.0 .
#
# Runs as a non-root user with nothing writable but what the pod mounts; the chart drops every
# capability and sets a read-only root filesystem.

FROM rust:1.95-bookworm AS build
# clang, libelf-dev, zlib1g-dev, pkg-config: the operator links signpost-cnf (the router's
# config validation), whose afxdp dependency builds its bundled libbpf.
RUN apt-get update \
 && apt-get install -y --no-install-recommends clang libelf-dev zlib1g-dev pkg-config \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked -p signpost-operator --bin signpost-operator --bin signpostctl \
 && install -D -m 0755 target/release/signpost-operator /out/signpost-operator \
 && install -D -m 0755 target/release/signpostctl /out/signpostctl

# glibc, libgcc_s and CA roots, nothing else; `nonroot` is uid/gid 65532. The operator's
# binary links only libc, libm and libgcc_s (no libelf: it never opens an XDP socket).
FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /out/signpost-operator /out/signpostctl /usr/local/bin/
USER 65532:65532
EXPOSE 7443 9090
ENTRYPOINT ["/usr/local/bin/signpost-operator"]
