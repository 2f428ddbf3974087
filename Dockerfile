# syntax=docker/dockerfile:1
#
# docker build -t instance-profile-controller:dev .
# The runtime image has no shell and no package manager: only the binary, glibc
# and CA certificates (distroless cc), run as the nonroot user 65532.

FROM rust:1-bookworm AS builder
WORKDIR /src
COPY Cargo.toml Cargo.lock ./
# jemalloc's built-in settings (.cargo/config.toml, README "Performance").
COPY .cargo ./.cargo
COPY src ./src
# Cargo refuses a manifest whose declared targets are missing, even the ones a
# `--bin` build does not compile (tests/dockerfile.rs checks every path): the
# bench and the integration-test binary's root (its modules need not be there).
COPY benches ./benches
COPY tests/integration.rs ./tests/
# The registry and target caches keep rebuilds incremental; the binary is copied
# out of the cache mount so the next stage can see it.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/usr/local/cargo/git \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked --bin instance-profile-controller \
 && install -D -m 0755 target/release/instance-profile-controller /out/instance-profile-controller

FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=builder /out/instance-profile-controller /usr/local/bin/instance-profile-controller
USER 65532:65532
ENTRYPOINT ["/usr/local/bin/instance-profile-controller"]
CMD ["run"]
