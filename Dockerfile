# syntax=docker/dockerfile:1
# shoal's container image: the `shoal` server and the `shoal-loadtest` load tester.
#
#   docker build -t shoal:dev .
#   docker run --rm shoal:dev serve --help
#
# The build stage keeps cargo's registry and target directory in BuildKit cache mounts, so
# a rebuild after an edit compiles only what changed. The runtime stage is distroless
# (glibc, CA certificates for JWKS servers, no shell, no package manager).

# The toolchain this repository is built and tested with (some locked dependencies need a
# newer rustc than the workspace's declared rust-version).
ARG RUST_VERSION=1.95

FROM docker.io/library/rust:${RUST_VERSION}-bookworm AS build
WORKDIR /src
# protoc: etcd-client's build script compiles etcd's protos (the `serve --etcd` source).
RUN apt-get update -q && apt-get install -y -q --no-install-recommends protobuf-compiler \
 && rm -rf /var/lib/apt/lists/*
COPY . .
RUN --mount=type=cache,target=/usr/local/cargo/registry,sharing=locked \
    --mount=type=cache,target=/usr/local/cargo/git,sharing=locked \
    --mount=type=cache,target=/src/target,sharing=locked \
    cargo build --release --locked --package shoal --package shoal-loadtest \
 && mkdir -p /out \
 && cp target/release/shoal target/release/shoal-loadtest /out/

# Runs as distroless's `nonroot` user, 65532, not as 1337: in an Istio mesh 1337 is the
# sidecar proxy's uid, whose traffic the capture rules let through unredirected. The control
# plane has no business holding that exemption should it ever run beside a sidecar.
FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /out/shoal /out/shoal-loadtest /usr/local/bin/
USER 65532:65532
# 15010 plaintext xDS, 15012 TLS xDS and CSRs, 15014 admin and metrics, 15017 webhooks,
# 15030 Raft between replicas (deploy/kind/40-statefulset.yaml sets each address).
EXPOSE 15010 15012 15014 15017 15030
ENTRYPOINT ["/usr/local/bin/shoal"]
CMD ["--help"]
