# syntax=docker/dockerfile:1
# The Signpost router image: signpost-router (the CNF: session pipeline on AF_XDP) and
# signpostctl (admin client: sessions, paths, counters, explain). Build from the repository root:
#
#   docker build -f deploy/docker/router.Dockerfile -t signpost-router:0.1.0 .

FROM rust:1.95-bookworm AS build
# clang, libelf-dev, zlib1g-dev, pkg-config: afxdp builds its bundled libbpf (and the XDP
# program) from source.
RUN apt-get update \
 && apt-get install -y --no-install-recommends clang libelf-dev zlib1g-dev pkg-config \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked -p signpost-cnf --bin signpost-router \
 && cargo build --release --locked -p signpost-operator --bin signpostctl \
 && install -D -m 0755 target/release/signpost-router /out/signpost-router \
 && install -D -m 0755 target/release/signpostctl /out/signpostctl

# The router links libelf and zlib (libbpf) besides glibc: Debian slim with libelf1. iproute2
# and ethtool: to look at (and, in the cluster test, create) devices from the image.
FROM debian:bookworm-slim
RUN apt-get update \
 && apt-get install -y --no-install-recommends libelf1 zlib1g iproute2 ethtool \
 && rm -rf /var/lib/apt/lists/*
COPY --from=build /out/signpost-router /out/signpostctl /usr/local/bin/
# Root, on purpose: the pod runs it as uid 0 with every capability dropped except NET_ADMIN,
# NET_RAW, BPF and IPC_LOCK, no privilege escalation and a read-only root filesystem. A
# non-root user would need file capabilities on the binary, which the kernel ignores under
# no_new_privs (allowPrivilegeEscalation: false); see charts/signpost/README.md.
USER 0:0
EXPOSE 9464
ENTRYPOINT ["/usr/local/bin/signpost-router"]
