# syntax=docker/dockerfile:1
#
# The provider's image: the release binary alone on distroless (glibc and the CA bundle the
# provider uses for the system roots; no shell, no package manager).
#
#   docker build -t vault-csi-provider:0.1.0 --build-arg VERSION=0.1.0 \
#     --build-arg GIT_COMMIT=$(git rev-parse --short=12 HEAD) --build-arg SOURCE=REPO_URL .
#
# Both architectures in one multi-platform image (arm64 builds under QEMU emulation where
# the builder is amd64: `docker run --privileged --rm tonistiigi/binfmt --install arm64`
# once; the build of the other architecture then takes several times longer):
#
#   docker buildx build --platform linux/amd64,linux/arm64 \
#     --build-arg VERSION=0.1.0 --build-arg GIT_COMMIT=$(git rev-parse --short=12 HEAD) \
#     --build-arg SOURCE=REPO_URL -t REGISTRY/vault-csi-provider:0.1.0 --push .

# Pinned toolchain (the crate needs Rust 1.89 or later).
FROM rust:1.95-bookworm AS build
ARG GIT_COMMIT=""
WORKDIR /src
COPY . .
# The commit in build information (-version, the metrics' build info): .git is not in the
# build context, so it comes in as an argument.
ENV VCSP_GIT_COMMIT=${GIT_COMMIT}
# Cargo.lock decides every dependency (--locked); the caches only speed up rebuilds.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked --bin vault-csi-provider \
    && cp target/release/vault-csi-provider /vault-csi-provider

FROM gcr.io/distroless/cc-debian12
ARG VERSION=0.1.0
ARG GIT_COMMIT=""
ARG SOURCE=""
LABEL org.opencontainers.image.title="vault-csi-provider" \
      org.opencontainers.image.description="Secrets Store CSI driver provider for HashiCorp Vault and OpenBao" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${GIT_COMMIT}" \
      org.opencontainers.image.source="${SOURCE}" \
      org.opencontainers.image.licenses="Apache-2.0"
COPY --from=build /vault-csi-provider /bin/vault-csi-provider
# Root, because the directory the driver shares for provider sockets
# (/var/run/secrets-store-csi-providers on the host) belongs to root and the provider
# creates its socket there. The manifests in deploy/ drop every capability, forbid privilege
# escalation and mount the root filesystem read-only, so root can do nothing more here.
USER 0:0
ENTRYPOINT ["/bin/vault-csi-provider"]
