# syntax=docker/dockerfile:1
# Ramp's image: `ramp` (the controller, run as `/ramp controller`) and the `kubectl-ramp` plugin,
# built with the toolchain rust-toolchain.toml pins and the locked dependencies, on a distroless
# glibc runtime (the binaries link libc, libm and libgcc_s, so a `static` base would not do).
# Build: docker build -t ramp:0.1.0 .   (charts/ramp deploys image.repository:appVersion)

FROM rust:1.95.0-bookworm AS builder
WORKDIR /src
COPY . .
# The caches speed up rebuilds; the binaries are copied out in the same step because the
# target cache is not part of the image.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked -p ramp-cli --bin ramp --bin kubectl-ramp \
    && mkdir -p /out \
    && cp target/release/ramp target/release/kubectl-ramp /out/

FROM gcr.io/distroless/cc-debian12:nonroot
ARG VERSION=0.1.0
ARG REVISION=unknown
LABEL org.opencontainers.image.title="ramp" \
      org.opencontainers.image.description="Progressive-delivery controller for Kubernetes, compatible with the Argo Rollouts API" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.source="https://example.invalid/ramp"
COPY --from=builder /out/ramp /out/kubectl-ramp /
# distroless' nonroot user, by number so Kubernetes' runAsNonRoot can verify it.
USER 65532:65532
EXPOSE 8080 8090
ENTRYPOINT ["/ramp", "controller"]
